/* Rate-limited logging (broker/log.c): the first `burst` lines of a window are printed, the rest
 * counted, and the next window starts with one "suppressed K similar messages" line; shared by
 * threads without losing count. stderr is redirected to a temporary file to count lines. */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker/log.h"

static int saved_stderr = -1;
static FILE *capture;

static void capture_start(void)
{
    capture = tmpfile();
    assert_non_null(capture);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(fileno(capture), STDERR_FILENO) >= 0);
}

/* Restores stderr; returns the captured text (malloc'd). */
static char *capture_end(void)
{
    assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    long n = ftell(capture);
    fseek(capture, 0, SEEK_END);
    n = ftell(capture);
    rewind(capture);
    char *text = calloc(1, (size_t)n + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)n, capture), (size_t)n);
    fclose(capture);
    return text;
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void burst_then_summary(void **state)
{
    (void)state;
    struct broker_log_limit l = BROKER_LOG_LIMIT_INIT(3, 200);
    capture_start();
    int printed = 0;
    for (int i = 0; i < 1000; i++)
        printed += broker_log_limited(&l, BROKER_LOG_WARN, "accept: Too many open files %d", i);
    uint64_t dropped = broker_log_limit_suppressed(&l);
    struct timespec ts = {0, 250 * 1000000};
    nanosleep(&ts, NULL);
    printed += broker_log_limited(&l, BROKER_LOG_WARN, "accept: Too many open files %d", 1000);
    char *text = capture_end();
    assert_int_equal(printed, 4);
    assert_int_equal(dropped, 997);
    assert_int_equal(count(text, "accept: Too many open files"), 4 + 1); /* + the summary */
    assert_int_equal(count(text, "suppressed 997 similar messages"), 1);
    assert_int_equal(count(text, "\n"), 5);
    assert_int_equal(broker_log_limit_suppressed(&l), 0);
    free(text);
}

static struct broker_log_limit g_shared = BROKER_LOG_LIMIT_INIT(5, 60000);

static void *spam(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++)
        BLOG_WARN_LIMITED("macro site %d", i); /* its own limiter: 10 per 10 s */
    for (int i = 0; i < 20000; i++)
        broker_log_limited(&g_shared, BROKER_LOG_WARN, "shared site %d", i);
    return NULL;
}

static void threads_share_a_limit(void **state)
{
    (void)state;
    capture_start();
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, spam, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    char *text = capture_end();
    assert_int_equal(count(text, "shared site"), 5);
    assert_int_equal(broker_log_limit_suppressed(&g_shared), 4 * 20000 - 5);
    assert_int_equal(count(text, "macro site"), BROKER_LOG_LIMIT_BURST);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(burst_then_summary),
        cmocka_unit_test(threads_share_a_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
