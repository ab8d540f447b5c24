/* The sk_reuseport selector routes each new connection to the listener whose count in the map
 * is lowest (ties to the lowest index), and counts the connection it routed. Needs CAP_BPF:
 * skipped with a message when the program cannot be loaded for lack of privilege. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdlib.h>

#include <cmocka.h>

#include "bpf/lm_bpf.h"
#include "common/lm_err.h"

enum { N = 3 };

static int listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    int one = 1;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(*port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 64), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Connects once and returns the index of the listener that got the connection. */
static int route_one(const int *lfds, uint16_t port)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
    struct pollfd p[N];
    for (int i = 0; i < N; i++)
        p[i] = (struct pollfd){.fd = lfds[i], .events = POLLIN};
    assert_true(poll(p, N, 2000) > 0);
    int got = -1;
    for (int i = 0; i < N; i++) {
        if (p[i].revents & POLLIN) {
            assert_int_equal(got, -1); /* exactly one listener */
            int a_fd = accept(lfds[i], NULL, NULL);
            assert_true(a_fd >= 0);
            close(a_fd);
            got = i;
        }
    }
    close(c);
    return got;
}

static void routes_by_map_counts(void **state)
{
    (void)state;
    uint16_t port = 0;
    int lfds[N];
    for (int i = 0; i < N; i++)
        lfds[i] = listener(&port);
    struct lm_bpf *b = NULL;
    char why[160] = "";
    int rc = lm_bpf_reuseport_attach(lfds, N, NULL, &b, why, sizeof(why));
    if (rc != 0 && geteuid() != 0) {
        for (int i = 0; i < N; i++)
            close(lfds[i]);
        printf("SKIPPED: BPF unavailable without root (%s)\n", why);
        skip();
    }
    if (rc != 0)
        fail_msg("BPF attach failed as root: %s", why);

    /* counts {5, 0, 3}: listener 1 until it reaches 3, ties go to the lowest index, then 2 */
    lm_bpf_set_count(b, 0, 5);
    lm_bpf_set_count(b, 1, 0);
    lm_bpf_set_count(b, 2, 3);
    const int want[] = {1, 1, 1, 1, 2, 1, 2};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        int got = route_one(lfds, port);
        if (got != want[i])
            fail_msg("connection %zu went to listener %d, want %d (counts %u %u %u)", i, got,
                     want[i], lm_bpf_get_count(b, 0), lm_bpf_get_count(b, 1),
                     lm_bpf_get_count(b, 2));
    }
    /* the program counted what it routed: 1 got 5, 2 got 2 */
    assert_int_equal(lm_bpf_get_count(b, 0), 5);
    assert_int_equal(lm_bpf_get_count(b, 1), 5);
    assert_int_equal(lm_bpf_get_count(b, 2), 5);

    /* closes decrement (never below 0) and steer the next connections */
    for (int i = 0; i < 2; i++) {
        lm_bpf_conn_closed(b, 1);
        lm_bpf_conn_closed(b, 2);
    }
    assert_int_equal(lm_bpf_get_count(b, 1), 3);
    assert_int_equal(lm_bpf_get_count(b, 2), 3);
    assert_int_equal(route_one(lfds, port), 1); /* 5 3 3: the lowest index of the two */
    assert_int_equal(route_one(lfds, port), 2); /* 5 4 3 */
    lm_bpf_set_count(b, 2, 0);
    lm_bpf_conn_closed(b, 2);
    assert_int_equal(lm_bpf_get_count(b, 2), 0);

    /* everything goes to the least-loaded listener 0 */
    lm_bpf_set_count(b, 0, 0);
    lm_bpf_set_count(b, 1, 9);
    lm_bpf_set_count(b, 2, 9);
    for (int i = 0; i < 5; i++)
        assert_int_equal(route_one(lfds, port), 0);

    /* drift correction: only a count that stayed put since the last look is corrected */
    uint64_t prev = UINT64_MAX;
    lm_bpf_set_count(b, 1, 7);
    assert_false(lm_bpf_reconcile(b, 1, 2, &prev)); /* first look */
    lm_bpf_set_count(b, 1, 8);                      /* moved: a connection was routed */
    assert_false(lm_bpf_reconcile(b, 1, 2, &prev));
    assert_true(lm_bpf_reconcile(b, 1, 2, &prev)); /* stayed at 8 for a whole period */
    assert_int_equal(lm_bpf_get_count(b, 1), 2);
    assert_false(lm_bpf_reconcile(b, 1, 2, &prev)); /* agrees now */

    lm_bpf_free(b);
    for (int i = 0; i < N; i++)
        close(lfds[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(routes_by_map_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
