/* Replica placement: Kafka's published assignment for 5 nodes (AdminUtils' documented example),
 * rack-aware spreading, balance properties over random clusters, and the errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/cluster/placement.h"
#include "protocol/kafka_errors.h"

static void kafka_example_rack_unaware(void **state)
{
    (void)state;
    /* Kafka's example: nodes 0..4, 10 partitions, 3 replicas, start 0, shift 0. */
    struct placement_node nodes[5] = {{3, NULL}, {0, NULL}, {4, NULL}, {1, NULL}, {2, NULL}};
    static const int32_t want[10][3] = {{0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 0}, {4, 0, 1},
                                        {0, 2, 3}, {1, 3, 4}, {2, 4, 0}, {3, 0, 1}, {4, 1, 2}};
    int32_t out[30];
    assert_int_equal(placement_assign(nodes, 5, 0, 10, 3, 0, 0, out), 0);
    for (int p = 0; p < 10; p++)
        for (int j = 0; j < 3; j++)
            assert_int_equal(out[p * 3 + j], want[p][j]);
    /* CreatePartitions goes on from partition 10 with the same start: the leader round robin
     * continues where it stopped. */
    assert_int_equal(placement_assign(nodes, 5, 10, 2, 3, 0, 0, out), 0);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[3], 1);
}

static int rack_no(const struct placement_node *nodes, uint32_t n, int32_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (nodes[i].id == id)
            return nodes[i].rack[strlen(nodes[i].rack) - 1] - '0';
    fail();
    return -1;
}

static void rack_aware_spreads_over_racks(void **state)
{
    (void)state;
    struct placement_node nodes[6] = {{0, "rack1"}, {1, "rack2"}, {2, "rack2"},
                                      {3, "rack3"}, {4, "rack3"}, {5, "rack1"}};
    int32_t out[6 * 3];
    assert_int_equal(placement_assign(nodes, 6, 0, 6, 3, 2, 0, out), 0);
    int leaders[6] = {0}, replicas[6] = {0};
    for (int p = 0; p < 6; p++) {
        int seen[4] = {0};
        for (int j = 0; j < 3; j++) {
            seen[rack_no(nodes, 6, out[p * 3 + j])]++;
            replicas[out[p * 3 + j]]++;
        }
        assert_int_equal(seen[1], 1); /* one replica in each of the three racks */
        assert_int_equal(seen[2], 1);
        assert_int_equal(seen[3], 1);
        leaders[out[p * 3]]++;
    }
    for (int b = 0; b < 6; b++) {
        assert_int_equal(leaders[b], 1);
        assert_int_equal(replicas[b], 3);
    }
}

static void partial_racks_fall_back_to_rack_unaware(void **state)
{
    (void)state;
    struct placement_node mixed[4] = {{1, "a"}, {2, NULL}, {3, "b"}, {4, "a"}};
    struct placement_node none[4] = {{1, NULL}, {2, NULL}, {3, NULL}, {4, NULL}};
    int32_t a[12 * 2], b[12 * 2];
    assert_int_equal(placement_assign(mixed, 4, 0, 12, 2, 1, 3, a), 0);
    assert_int_equal(placement_assign(none, 4, 0, 12, 2, 1, 3, b), 0);
    assert_memory_equal(a, b, sizeof(a));
}

static void errors(void **state)
{
    (void)state;
    struct placement_node nodes[3] = {{1, NULL}, {2, NULL}, {3, NULL}};
    struct placement_node dup[2] = {{1, NULL}, {1, NULL}};
    int32_t out[64];
    assert_int_equal(placement_assign(nodes, 3, 0, 4, 4, 0, 0, out),
                     KAFKA_INVALID_REPLICATION_FACTOR);
    assert_int_equal(placement_assign(nodes, 3, 0, 4, 0, 0, 0, out),
                     KAFKA_INVALID_REPLICATION_FACTOR);
    assert_int_equal(placement_assign(nodes, 3, 0, 0, 1, 0, 0, out), KAFKA_INVALID_PARTITIONS);
    assert_int_equal(placement_assign(nodes, 3, -1, 1, 1, 0, 0, out), KAFKA_INVALID_PARTITIONS);
    assert_int_equal(placement_assign(nodes, 0, 0, 1, 1, 0, 0, out), KAFKA_INVALID_REQUEST);
    assert_int_equal(placement_assign(dup, 2, 0, 1, 1, 0, 0, out), KAFKA_INVALID_REQUEST);

    const int32_t good[] = {1, 2, 3, 1, 2, 3};
    const int32_t twice[] = {1, 1, 2, 3, 2, 1};
    const int32_t unknown[] = {1, 2, 3, 1, 9, 3};
    assert_int_equal(placement_check_explicit(nodes, 3, good, 2, 3), 0);
    assert_int_equal(placement_check_explicit(nodes, 3, twice, 2, 3),
                     KAFKA_INVALID_REPLICA_ASSIGNMENT);
    assert_int_equal(placement_check_explicit(nodes, 3, unknown, 2, 3),
                     KAFKA_INVALID_REPLICA_ASSIGNMENT);
    assert_int_equal(placement_check_explicit(nodes, 3, good, 2, 0),
                     KAFKA_INVALID_REPLICATION_FACTOR);
}

/* Random clusters: rows without duplicates; leaders within one of each other; with racks on
 * every node, each row covers min(rf, racks) racks; with equal racks, replicas balanced too. */
static void random_clusters(void **state)
{
    (void)state;
    static const char *rack_names[4] = {"r0", "r1", "r2", "r3"};
    srand(4242);
    for (int round = 0; round < 3000; round++) {
        uint32_t n = 1 + (uint32_t)(rand() % 12);
        int racks = 1 + rand() % 4;
        bool use_racks = rand() % 2;
        bool equal_racks = use_racks && n % (uint32_t)racks == 0;
        struct placement_node nodes[12];
        int32_t ids[12];
        for (uint32_t i = 0; i < n; i++)
            ids[i] = (int32_t)(i * 7 + 100);
        for (uint32_t i = n; i > 1; i--) { /* shuffle the ids */
            uint32_t j = (uint32_t)rand() % i;
            int32_t t = ids[i - 1];
            ids[i - 1] = ids[j];
            ids[j] = t;
        }
        for (uint32_t i = 0; i < n; i++) {
            nodes[i].id = ids[i];
            nodes[i].rack =
                use_racks ? rack_names[equal_racks ? (int)(i % (uint32_t)racks) : rand() % racks]
                          : NULL;
        }
        int distinct_racks = 0;
        if (use_racks) {
            bool present[4] = {false};
            for (uint32_t i = 0; i < n; i++)
                present[nodes[i].rack[1] - '0'] = true;
            for (int r = 0; r < 4; r++)
                distinct_racks += present[r];
        }
        int32_t parts = 1 + rand() % 60;
        int16_t rf = (int16_t)(1 + rand() % (int)(n < 4 ? n : 4));
        int32_t out[60 * 4];
        assert_int_equal(
            placement_assign(nodes, n, 0, parts, rf, (uint32_t)rand(), (uint32_t)rand(), out), 0);
        int leaders[12] = {0}, replicas[12] = {0};
        for (int32_t p = 0; p < parts; p++) {
            bool rack_seen[4] = {false};
            int covered = 0;
            for (int16_t j = 0; j < rf; j++) {
                int32_t id = out[p * rf + j];
                uint32_t at = n;
                for (uint32_t i = 0; i < n; i++)
                    if (nodes[i].id == id)
                        at = i;
                assert_true(at < n);
                for (int16_t k = 0; k < j; k++)
                    assert_int_not_equal(out[p * rf + k], id);
                replicas[at]++;
                if (j == 0)
                    leaders[at]++;
                if (use_racks && !rack_seen[nodes[at].rack[1] - '0']) {
                    rack_seen[nodes[at].rack[1] - '0'] = true;
                    covered++;
                }
            }
            if (use_racks)
                assert_int_equal(covered, rf < distinct_racks ? rf : distinct_racks);
        }
        int lo = parts, hi = 0, rlo = parts * rf, rhi = 0;
        for (uint32_t i = 0; i < n; i++) {
            lo = leaders[i] < lo ? leaders[i] : lo;
            hi = leaders[i] > hi ? leaders[i] : hi;
            rlo = replicas[i] < rlo ? replicas[i] : rlo;
            rhi = replicas[i] > rhi ? replicas[i] : rhi;
        }
        assert_true(hi - lo <= 1);
        if (!use_racks || equal_racks)
            assert_true(rhi - rlo <= rf); /* followers spread: no node far above another */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kafka_example_rack_unaware),
        cmocka_unit_test(rack_aware_spreads_over_racks),
        cmocka_unit_test(partial_racks_fall_back_to_rack_unaware),
        cmocka_unit_test(errors),
        cmocka_unit_test(random_clusters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
