/* Two broker nodes in one process: each has its own configuration, port, log directory, metadata
 * store, cluster id and handler state (struct handlers_ctx, one struct hshard per shard), and
 * both serve real clients at once. librdkafka produces (acks=all) and consumes a topic on each;
 * the records read back from a node are exactly the ones produced to it, and a topic created on
 * one node does not exist on the other. Run on the io_uring and the epoll backend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "broker/config.h"
#include "broker/handlers/handlers.h"
#include "broker/runtime.h"
#include "tests/unit/storage/storage_test_util.h"

#define NODES   2
#define RECORDS 200

struct node {
    struct broker_config cfg;
    struct broker_dispatch d;
    struct broker_rt *rt;
    uint16_t port;
    char dir[4096];
    char bootstrap[64];
};

struct fx {
    char root[2048];
    struct node nodes[NODES];
};

/* A loopback port nobody listens on right now. */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void node_start(struct fx *f, int i, const char *io)
{
    struct node *n = &f->nodes[i];
    n->port = free_port();
    snprintf(n->dir, sizeof(n->dir), "%s/node-%d", f->root, i);
    snprintf(n->bootstrap, sizeof(n->bootstrap), "127.0.0.1:%u", n->port);
    char listeners[96], node_id[16];
    snprintf(listeners, sizeof(listeners), "PLAINTEXT://127.0.0.1:%u", n->port);
    snprintf(node_id, sizeof(node_id), "%d", i + 1);
    broker_config_init(&n->cfg);
    assert_int_equal(broker_config_set(&n->cfg, "listeners", listeners), 0);
    assert_int_equal(broker_config_set(&n->cfg, "log.dirs", n->dir), 0);
    assert_int_equal(broker_config_set(&n->cfg, "node.id", node_id), 0);
    assert_int_equal(broker_config_set(&n->cfg, "laminar.shards", "2"), 0);
    assert_int_equal(broker_config_set(&n->cfg, "laminar.io", io), 0);
    assert_int_equal(broker_config_set(&n->cfg, "offsets.topic.num.partitions", "4"), 0);
    n->cfg.fd_limit = 1024;
    memset(&n->d, 0, sizeof(n->d));
    assert_int_equal(broker_handlers_setup(&n->d, &n->cfg), 0);
    assert_non_null(n->d.ctx);
    assert_int_equal(broker_config_finish(&n->cfg), 0);
    assert_int_equal(broker_runtime_start(&n->cfg, &n->d, &n->rt), 0);
}

static void node_stop(struct node *n)
{
    if (n->rt == NULL)
        return;
    assert_int_equal(broker_runtime_stop(n->rt), 0);
    n->rt = NULL;
    n->d.teardown(n->d.ctx);
    broker_config_deinit(&n->cfg);
}

static rd_kafka_conf_t *client_conf(const struct node *n)
{
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(c, "bootstrap.servers", n->bootstrap, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(c, "log_level", "3", err, sizeof(err)), RD_KAFKA_CONF_OK);
    return c;
}

static int delivered_ok;
static int delivered_err;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        delivered_ok++;
    else
        delivered_err++;
}

/* Produces RECORDS values "<topic>-<i>" with acks=all; every one must be acknowledged. */
static void produce(const struct node *n, const char *topic)
{
    char err[256];
    rd_kafka_conf_t *c = client_conf(n);
    assert_int_equal(rd_kafka_conf_set(c, "acks", "all", err, sizeof(err)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(c, "linger.ms", "1", err, sizeof(err)), RD_KAFKA_CONF_OK);
    rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    assert_non_null(p);
    delivered_ok = delivered_err = 0;
    for (int i = 0; i < RECORDS; i++) {
        char v[64];
        int len = snprintf(v, sizeof(v), "%s-%d", topic, i);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                      RD_KAFKA_V_VALUE(v, (size_t)len),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(p, 10);
        assert_int_equal(e, RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    assert_int_equal(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(delivered_err, 0);
    assert_int_equal(delivered_ok, RECORDS);
    rd_kafka_destroy(p);
}

/* Reads partition 0 of topic from the start: exactly the RECORDS values produce() wrote. */
static void consume(const struct node *n, const char *topic)
{
    char err[256];
    rd_kafka_conf_t *c = client_conf(n);
    assert_int_equal(rd_kafka_conf_set(c, "group.id", "two-nodes", err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *k = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    assert_non_null(k);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(k, l), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
    int got = 0;
    for (int polls = 0; got < RECORDS && polls < 300; polls++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(k, 100);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            char want[64];
            int len = snprintf(want, sizeof(want), "%s-%d", topic, got);
            assert_int_equal(m->offset, got);
            assert_int_equal(m->len, (size_t)len);
            assert_memory_equal(m->payload, want, (size_t)len);
            got++;
        } else {
            assert_int_equal(m->err, RD_KAFKA_RESP_ERR__PARTITION_EOF);
        }
        rd_kafka_message_destroy(m);
    }
    assert_int_equal(got, RECORDS);
    rd_kafka_consumer_close(k);
    rd_kafka_destroy(k);
}

/* Whether the node's metadata lists topic (Metadata of all topics: no auto-creation). */
static bool has_topic(const struct node *n, const char *topic)
{
    char err[256];
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, client_conf(n), err, sizeof(err));
    assert_non_null(p);
    const struct rd_kafka_metadata *md = NULL;
    assert_int_equal(rd_kafka_metadata(p, 1, NULL, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    bool found = false;
    for (int i = 0; i < md->topic_cnt; i++)
        found |= strcmp(md->topics[i].topic, topic) == 0;
    assert_int_equal(md->broker_cnt, 1);
    assert_int_equal(md->brokers[0].port, n->port);
    rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(p);
    return found;
}

static void run(void **state, const char *io)
{
    struct fx *f = *state;
    for (int i = 0; i < NODES; i++)
        node_start(f, i, io);
    /* Both serve at the same time: produce to each, then read each back. */
    produce(&f->nodes[0], "on-first");
    produce(&f->nodes[1], "on-second");
    consume(&f->nodes[0], "on-first");
    consume(&f->nodes[1], "on-second");
    assert_true(has_topic(&f->nodes[0], "on-first"));
    assert_false(has_topic(&f->nodes[0], "on-second"));
    assert_true(has_topic(&f->nodes[1], "on-second"));
    assert_false(has_topic(&f->nodes[1], "on-first"));
    /* Each node persisted its own metadata and cluster id. */
    char a[64], b[64];
    for (int i = 0; i < NODES; i++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/__laminar_metadata/cluster.id", f->nodes[i].dir);
        FILE *fp = fopen(path, "r");
        assert_non_null(fp);
        assert_non_null(fgets(i == 0 ? a : b, sizeof(a), fp));
        fclose(fp);
    }
    assert_string_not_equal(a, b);
    /* Stopping one leaves the other serving. */
    node_stop(&f->nodes[0]);
    consume(&f->nodes[1], "on-second");
    node_stop(&f->nodes[1]);
}

static void test_two_nodes_uring(void **state)
{
    run(state, "uring");
}
static void test_two_nodes_epoll(void **state)
{
    run(state, "epoll");
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    tu_mkdtemp(f->root, "two-nodes");
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < NODES; i++)
        node_stop(&f->nodes[i]);
    tu_rm_rf(f->root);
    free(f);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_nodes_uring, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_two_nodes_epoll, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
