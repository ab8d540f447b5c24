/* Process-level runtime: chooses the I/O backend, opens one SO_REUSEPORT listener per shard and
 * listener, attaches the sk_reuseport BPF selector (or falls back to the kernel's hash), starts
 * one pinned thread per shard, and turns SIGTERM/SIGINT into an orderly shutdown. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/console/console.h"
#include "broker/log.h"
#include "broker/security/tls.h"
#include "broker/metrics.h"
#include "broker/shard_internal.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#ifdef LAMINAR_HAVE_BPF
#include "bpf/lm_bpf.h"
#endif

enum { MAILBOX_SLOTS = 1024, LISTEN_BACKLOG = 4096 };

struct broker_rt {
    struct broker_http *http; /* /metrics and the console, or NULL */
    struct console console;   /* read-only once the HTTP thread runs */
    const struct broker_config *cfg;
    const struct broker_dispatch *dispatch;
    const struct broker_io_ops *io;
    uint32_t nshards;
    struct broker_shard *shards;
    struct broker_mailbox *mailboxes; /* [from * n + to] */
    pthread_t *threads;
    pthread_barrier_t barrier;
    _Atomic bool stopping;
    _Atomic int start_failed;
    _Atomic uint32_t drained;
    _Atomic int64_t xcalls_out; /* cross-shard calls sent whose done() has not run */
    _Atomic uint32_t finals;    /* shards at the end of their shutdown sequence */
    _Atomic bool quiesced;      /* finals == nshards and xcalls_out == 0 was seen */
    struct broker_connquota quota;
    bool quota_ready;
    int cpus[BROKER_SHARDS_MAX];
    /* TLS contexts of the SSL / SASL_SSL listeners (NULL for the others), shared read-only by
     * the shards (an SSL_CTX is safe to use from several threads once set up); a reload swaps
     * one under tls_lock (broker_rt_tls_conn_new takes a connection's reference under it) */
    struct broker_tls_ctx *tls[BROKER_LISTENERS_MAX];
    pthread_mutex_t tls_lock;
    /* what each listener's keystore and truststore files looked like when last loaded */
    struct tls_file_stamp {
        bool present;
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtime, ctime;
    } tls_stamp[BROKER_LISTENERS_MAX][2];
    /* node-to-node connections' client context when the controller listener is SSL
     * (broker_rt_tls_peer_conn_new), reloaded with its files as the listeners' are */
    struct broker_tls_ctx *tls_peer;
    struct tls_file_stamp tls_peer_stamp[2];
#ifdef LAMINAR_HAVE_BPF
    struct lm_bpf *bpf[BROKER_LISTENERS_MAX];
#endif
};

struct broker_mailbox *broker_rt_mailbox(struct broker_rt *rt, uint32_t from, uint32_t to)
{
    LM_ASSERT(from < rt->nshards && to < rt->nshards && from != to);
    return &rt->mailboxes[from * rt->nshards + to];
}

struct broker_shard *broker_rt_shard(struct broker_rt *rt, uint32_t id)
{
    LM_ASSERT(id < rt->nshards);
    return &rt->shards[id];
}

bool broker_rt_stopping(struct broker_rt *rt)
{
    return atomic_load_explicit(&rt->stopping, memory_order_acquire);
}

void broker_rt_conn_closed(struct broker_rt *rt, uint32_t shard)
{
#ifdef LAMINAR_HAVE_BPF
    /* The selector counted the connection when it picked this shard; the counts map is shared
     * by every listener's program. */
    if (rt->bpf[0] != NULL)
        lm_bpf_conn_closed(rt->bpf[0], shard);
#else
    (void)rt;
    (void)shard;
#endif
}

bool broker_rt_selector_reconcile(struct broker_rt *rt, uint32_t shard, uint32_t truth,
                                  uint64_t *prev)
{
#ifdef LAMINAR_HAVE_BPF
    if (rt->bpf[0] != NULL)
        return lm_bpf_reconcile(rt->bpf[0], shard, truth, prev);
#else
    (void)shard;
    (void)truth;
    (void)prev;
#endif
    (void)rt;
    return false;
}

bool broker_rt_has_selector(struct broker_rt *rt)
{
#ifdef LAMINAR_HAVE_BPF
    return rt->bpf[0] != NULL;
#else
    (void)rt;
    return false;
#endif
}

struct broker_connquota *broker_rt_quota(struct broker_rt *rt)
{
    return &rt->quota;
}

void broker_rt_shard_drained(struct broker_rt *rt)
{
    atomic_fetch_add(&rt->drained, 1);
}

bool broker_rt_all_drained(struct broker_rt *rt)
{
    return atomic_load(&rt->drained) >= rt->nshards;
}

void broker_rt_xcalls_add(struct broker_rt *rt, int64_t delta)
{
    int64_t before = atomic_fetch_add_explicit(&rt->xcalls_out, delta, memory_order_acq_rel);
    LM_ASSERT(before + delta >= 0);
}

void broker_rt_shard_final(struct broker_rt *rt)
{
    atomic_fetch_add(&rt->finals, 1);
}

bool broker_rt_quiesced(struct broker_rt *rt)
{
    if (atomic_load(&rt->quiesced))
        return true;
    if (atomic_load(&rt->finals) < rt->nshards || atomic_load(&rt->xcalls_out) != 0)
        return false;
    atomic_store(&rt->quiesced, true);
    return true;
}

void broker_rt_barrier(struct broker_rt *rt)
{
    pthread_barrier_wait(&rt->barrier);
}

static int open_listener(const struct broker_listener *l, bool nonblock)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", l->port);
    int rc = getaddrinfo(l->host[0] ? l->host : NULL, port, &hints, &res);
    if (rc != 0) {
        BLOG_ERROR("listener %s://%s:%u: %s", l->name, l->host, l->port, gai_strerror(rc));
        return LM_E_CONFIG;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0),
                    0);
        if (fd < 0)
            continue;
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0 &&
            bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, LISTEN_BACKLOG) == 0)
            break;
        BLOG_ERROR("listener %s://%s:%u: %s", l->name, l->host, l->port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd < 0 ? LM_E_IO : fd;
}

static void choose_cpus(struct broker_rt *rt, uint32_t *nshards)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    uint32_t ncpu = 0;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        for (int c = 0; c < CPU_SETSIZE && ncpu < BROKER_SHARDS_MAX; c++)
            if (CPU_ISSET(c, &set))
                rt->cpus[ncpu++] = c;
    }
    if (ncpu == 0) {
        ncpu = 1;
        rt->cpus[0] = -1;
    }
    if (*nshards == 0)
        *nshards = ncpu;
    if (*nshards > BROKER_SHARDS_MAX)
        *nshards = BROKER_SHARDS_MAX;
    for (uint32_t i = ncpu; i < *nshards; i++)
        rt->cpus[i] = rt->cpus[i % ncpu];
}

static void *shard_thread(void *arg)
{
    struct broker_shard *s = arg;
    struct broker_rt *rt = s->rt;
    broker_log_set_shard((int)s->id);
    /* "lm-shard-N" in top -H, perf and strace's thread lists (advisory: errors ignored) */
    char name[16];
    snprintf(name, sizeof(name), "lm-shard-%u", s->id);
    (void)pthread_setname_np(pthread_self(), name);
    if (s->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(s->cpu, &set);
        if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
            BLOG_WARN("cannot pin to cpu %d", s->cpu);
            s->cpu = -1;
        }
    }
    /* The ring is created here: SINGLE_ISSUER ties it to the creating thread. */
    int rc = s->io->init(s);
    if (rc != 0) {
        BLOG_ERROR("%s backend init failed: %s", s->io->name, lm_strerror(rc));
        atomic_store(&rt->start_failed, 1);
    }
    broker_rt_barrier(rt);
    if (rc == 0 && atomic_load(&rt->start_failed) == 0 && rt->dispatch->shard_start) {
        rc = rt->dispatch->shard_start(s, rt->dispatch->ctx);
        if (rc != 0) {
            BLOG_ERROR("shard start hook failed: %s", lm_strerror(rc));
            atomic_store(&rt->start_failed, 1);
        }
    }
    broker_rt_barrier(rt);
    bool ran = false;
    if (atomic_load(&rt->start_failed) == 0) {
        ran = true;
        rc = broker_shard_run(s);
        s->loop_done = true;
        if (rc != 0) {
            atomic_store(&rt->start_failed, 1);
            atomic_store(&rt->stopping, true);
            kill(getpid(), SIGTERM); /* wake the main thread so every shard stops */
        }
    }
    /* Peers may still wake us (MSG_RING) while they drain: keep the ring until all stop. The
     * handlers' per-shard state is freed only past this point, when no shard runs anything:
     * a peer still busy in a long step could otherwise deliver a cross-shard call into, or
     * return one to, a shard whose state is gone. */
    broker_rt_barrier(rt);
    if (ran)
        broker_shard_stop(s);
    s->loop_done = true;
    broker_core_udp_free_all(s); /* sockets the handlers left open */
    if (s->io_state != NULL)
        s->io->deinit(s);
    return NULL;
}

static const struct broker_io_ops *choose_backend(const struct broker_config *cfg)
{
    char why[128] = "";
    if (cfg->io_mode == BROKER_IO_EPOLL)
        return &broker_io_epoll_ops;
    if (broker_io_uring_available(why, sizeof(why)))
        return &broker_io_uring_ops;
    if (cfg->io_mode == BROKER_IO_URING) {
        BLOG_ERROR("io_uring requested but unavailable: %s", why);
        return NULL;
    }
    BLOG_WARN("io_uring unavailable (%s); using epoll", why);
    return &broker_io_epoll_ops;
}

static void attach_bpf(struct broker_rt *rt)
{
#ifdef LAMINAR_HAVE_BPF
    if (!rt->cfg->bpf_enable) {
        BLOG_INFO("reuseport: BPF selector disabled by laminar.bpf.enable; kernel hash in use");
        return;
    }
    if (rt->nshards < 2)
        return;
    for (uint32_t l = 0; l < rt->cfg->listeners_count; l++) {
        int fds[BROKER_SHARDS_MAX];
        for (uint32_t i = 0; i < rt->nshards; i++)
            fds[i] = rt->shards[i].listen_fds[l];
        char why[160] = "";
        int rc = lm_bpf_reuseport_attach(fds, rt->nshards, l > 0 ? rt->bpf[0] : NULL, &rt->bpf[l],
                                         why, sizeof(why));
        if (rc != 0) {
            BLOG_WARN("reuseport: BPF selector not loaded (%s); using the kernel's hash", why);
            return;
        }
    }
    BLOG_INFO("reuseport: BPF least-connections selector attached to %u listener(s)",
              rt->cfg->listeners_count);
#else
    (void)rt;
    BLOG_WARN("reuseport: built without BPF support; using the kernel's hash");
#endif
}

static void rt_free(struct broker_rt *rt)
{
#ifdef LAMINAR_HAVE_BPF
    for (uint32_t l = 0; l < BROKER_LISTENERS_MAX; l++)
        if (rt->bpf[l] != NULL)
            lm_bpf_free(rt->bpf[l]);
#endif
    if (rt->shards != NULL) {
        for (uint32_t i = 0; i < rt->nshards; i++) {
            struct broker_shard *s = &rt->shards[i];
            for (uint32_t l = 0; l < s->listen_count; l++)
                close(s->listen_fds[l]);
            if (s->event_fd >= 0)
                close(s->event_fd);
            broker_shard_deinit(s);
        }
    }
    if (rt->quota_ready)
        broker_connquota_deinit(&rt->quota);
    for (uint32_t l = 0; l < BROKER_LISTENERS_MAX; l++)
        broker_tls_ctx_free(rt->tls[l]);
    broker_tls_ctx_free(rt->tls_peer);
    pthread_mutex_destroy(&rt->tls_lock);
    if (rt->mailboxes != NULL)
        for (uint32_t i = 0; i < rt->nshards * rt->nshards; i++)
            broker_mailbox_deinit(&rt->mailboxes[i]);
    free(rt->mailboxes);
    free(rt->shards);
    free(rt->threads);
    free(rt);
}

/* A table bound to a listener name that is not in `listeners` would serve nothing: the
 * embedding code and the config disagree, so start-up stops. */
static int check_listener_tables(const struct broker_config *cfg, const struct broker_dispatch *d)
{
    for (uint32_t t = 0; t < d->listener_tables_count; t++) {
        bool found = false;
        for (uint32_t l = 0; l < cfg->listeners_count && !found; l++)
            found = strcasecmp(cfg->listeners[l].name, d->listener_tables[t].name) == 0;
        if (!found) {
            BLOG_ERROR("config: listener %s has a request table but is not in listeners",
                       d->listener_tables[t].name);
            return LM_E_CONFIG;
        }
    }
    return 0;
}

/* One scrape: every shard's counters summed, then the node's gauges. */
static void rt_render(void *ctx, struct broker_metrics_out *o)
{
    struct broker_rt *rt = ctx;
    const struct broker_shard_metrics *m[BROKER_SHARDS_MAX];
    uint32_t depth[BROKER_SHARDS_MAX] = {0};
    for (uint32_t i = 0; i < rt->nshards; i++) {
        m[i] = rt->shards[i].metrics;
        for (uint32_t from = 0; from < rt->nshards; from++)
            depth[i] += broker_mailbox_count(&rt->mailboxes[from * rt->nshards + i]);
    }
    broker_metrics_render(o, m, rt->nshards, rt->cfg, depth);
    if (rt->dispatch->metrics_gauges != NULL)
        rt->dispatch->metrics_gauges(rt->dispatch->ctx, o);
    if (rt->cfg->metrics_enable)
        console_lag_metrics(&rt->console, o);
}

#define HTTP_DEFAULT_PORT 9644

/* laminar.http.listener=HOST:PORT serves /metrics ("" turns it off). Unset: the first
 * listener's host on port 9644, and a port already taken there is only a warning (several
 * brokers on one machine); set explicitly, a failure to listen stops the start. */
static int http_start(struct broker_rt *rt)
{
    const char *v = broker_config_get(rt->cfg, "laminar.http.listener");
    bool explicit_ = v != NULL;
    char host[256];
    unsigned port = HTTP_DEFAULT_PORT;
    if (v == NULL) {
        snprintf(host, sizeof(host), "%s", rt->cfg->listeners[0].host);
    } else if (v[0] == 0) {
        return 0;
    } else {
        const char *colon = strrchr(v, ':');
        char *end = NULL;
        unsigned long p = colon != NULL ? strtoul(colon + 1, &end, 10) : 0;
        if (colon == NULL || end == colon + 1 || *end != 0 || p > 65535 ||
            (size_t)(colon - v) >= sizeof(host)) {
            BLOG_ERROR("laminar.http.listener=%s: expected HOST:PORT (or empty to turn it off)", v);
            return LM_E_CONFIG;
        }
        memcpy(host, v, (size_t)(colon - v));
        host[colon - v] = 0;
        if (host[0] == '[' && host[strlen(host) - 1] == ']') {
            memmove(host, host + 1, strlen(host));
            host[strlen(host) - 1] = 0;
        }
        port = (unsigned)p;
    }
    uint16_t bound = 0;
    console_setup(&rt->console, rt->cfg);
    rt->console.node_states = rt->dispatch->node_states;
    rt->console.node_states_ctx = rt->dispatch->ctx;
    int rc =
        broker_http_start(host, (uint16_t)port, rt_render, rt, &rt->console, &rt->http, &bound);
    if (rc != 0) {
        if (!explicit_) {
            BLOG_WARN("metrics: cannot listen on %s:%u (%s); /metrics is off (set "
                      "laminar.http.listener)",
                      host[0] ? host : "0.0.0.0", port, strerror(errno));
            return 0;
        }
        BLOG_ERROR("laminar.http.listener: cannot listen on %s:%u: %s", host[0] ? host : "0.0.0.0",
                   port, strerror(errno));
        return rc;
    }
    BLOG_INFO("metrics: http://%s:%u/metrics", host[0] ? host : "0.0.0.0", bound);
    if (rt->console.auth == CONSOLE_OFF)
        BLOG_WARN("console: off: %s", rt->console.why_off);
    else
        BLOG_INFO("console: http://%s:%u/ (%s, via %s:%u)", host[0] ? host : "0.0.0.0", bound,
                  rt->console.auth == CONSOLE_ANONYMOUS ? "no authentication"
                  : rt->console.auth == CONSOLE_PLAIN   ? "HTTP Basic checked by SASL PLAIN"
                                                        : "HTTP Basic checked by SASL SCRAM",
                  rt->console.host, rt->console.port);
    return 0;
}

/* SIGTERM and SIGINT: blocked in every runtime thread, taken by broker_runtime_run's sigwait. */
/* ---- TLS certificate reload ----------------------------------------------------------------- */

struct broker_tls_conn *broker_rt_tls_conn_new(struct broker_rt *rt, uint32_t listener)
{
    LM_ASSERT(listener < BROKER_LISTENERS_MAX);
    pthread_mutex_lock(&rt->tls_lock);
    struct broker_tls_conn *tc =
        rt->tls[listener] != NULL ? broker_tls_conn_new(rt->tls[listener]) : NULL;
    pthread_mutex_unlock(&rt->tls_lock);
    return tc;
}

struct broker_tls_conn *broker_rt_tls_peer_conn_new(struct broker_rt *rt, const char *host)
{
    pthread_mutex_lock(&rt->tls_lock);
    struct broker_tls_conn *tc =
        rt->tls_peer != NULL ? broker_tls_conn_new_client(rt->tls_peer, host) : NULL;
    pthread_mutex_unlock(&rt->tls_lock);
    return tc;
}

static void tls_stamp_take(const char *path, struct tls_file_stamp *st)
{
    struct stat sb;
    memset(st, 0, sizeof(*st));
    if (path == NULL || path[0] == '\0' || stat(path, &sb) != 0)
        return;
    st->present = true;
    st->dev = sb.st_dev;
    st->ino = sb.st_ino;
    st->size = sb.st_size;
    st->mtime = sb.st_mtim;
    st->ctime = sb.st_ctim;
}

static bool tls_stamp_same(const struct tls_file_stamp *a, const struct tls_file_stamp *b)
{
    return a->present == b->present && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* The listener's keystore and truststore files as they are now. */
static void tls_stamps_of(const struct broker_config *cfg, uint32_t l, struct tls_file_stamp out[2])
{
    struct broker_tls_settings st;
    broker_config_tls_settings(cfg, l, &st);
    tls_stamp_take(st.value[BROKER_TLS_KEYSTORE_LOCATION], &out[0]);
    tls_stamp_take(st.value[BROKER_TLS_TRUSTSTORE_LOCATION], &out[1]);
}

/* The same for the peers' client context (the controller listener's settings). */
static void tls_peer_stamps_of(const struct broker_config *cfg, struct broker_tls_settings *st,
                               struct tls_file_stamp out[2])
{
    broker_config_tls_settings_named(cfg, cfg->controller_listener_names[0], st);
    tls_stamp_take(st->value[BROKER_TLS_KEYSTORE_LOCATION], &out[0]);
    tls_stamp_take(st->value[BROKER_TLS_TRUSTSTORE_LOCATION], &out[1]);
}

/* Reloads the peers' client context when its files changed: connections opened after it
 * present the new certificate and trust the new CAs. */
static void tls_peer_reload_check(struct broker_rt *rt, const struct broker_config *cfg)
{
    if (rt->tls_peer == NULL)
        return;
    struct tls_file_stamp now[2];
    struct broker_tls_settings st;
    tls_peer_stamps_of(cfg, &st, now);
    if (tls_stamp_same(&now[0], &rt->tls_peer_stamp[0]) &&
        tls_stamp_same(&now[1], &rt->tls_peer_stamp[1]))
        return;
    memcpy(rt->tls_peer_stamp, now, sizeof(now));
    char err[512];
    struct broker_tls_ctx *fresh = NULL;
    int rc = broker_tls_ctx_new_client(&st, &fresh, err, sizeof(err));
    if (rc != 0) {
        BLOG_ERROR("node-to-node TLS: the certificate files changed but do not load (%s); new "
                   "peer connections still use the previous ones",
                   rc == LM_E_CONFIG ? err : lm_strerror(rc));
        return;
    }
    pthread_mutex_lock(&rt->tls_lock);
    struct broker_tls_ctx *old = rt->tls_peer;
    rt->tls_peer = fresh;
    pthread_mutex_unlock(&rt->tls_lock);
    broker_tls_ctx_free(old);
    BLOG_INFO("node-to-node TLS: certificates reloaded; new peer connections use them");
}

/* Reloads a TLS listener whose keystore or truststore file changed (replaced or rewritten, as
 * certificate renewal tools do): new connections get the new certificates, the open ones keep
 * theirs. A file that does not load (a renewal half written) leaves the old context in
 * service; the next change is tried again. */
static void tls_reload_check(struct broker_rt *rt, const struct broker_config *cfg)
{
    for (uint32_t l = 0; l < cfg->listeners_count && l < BROKER_LISTENERS_MAX; l++) {
        if (rt->tls[l] == NULL)
            continue;
        struct tls_file_stamp now[2];
        tls_stamps_of(cfg, l, now);
        if (tls_stamp_same(&now[0], &rt->tls_stamp[l][0]) &&
            tls_stamp_same(&now[1], &rt->tls_stamp[l][1]))
            continue;
        memcpy(rt->tls_stamp[l], now, sizeof(now));
        struct broker_tls_settings st;
        char err[512];
        broker_config_tls_settings(cfg, l, &st);
        struct broker_tls_ctx *fresh = NULL;
        int rc = broker_tls_ctx_new(&st, &fresh, err, sizeof(err));
        if (rc != 0) {
            BLOG_ERROR("listener %s: its certificate files changed but do not load (%s); still "
                       "serving the previous ones",
                       cfg->listeners[l].name, rc == LM_E_CONFIG ? err : lm_strerror(rc));
            continue;
        }
        pthread_mutex_lock(&rt->tls_lock);
        struct broker_tls_ctx *old = rt->tls[l];
        rt->tls[l] = fresh;
        pthread_mutex_unlock(&rt->tls_lock);
        broker_tls_ctx_free(old); /* freed once its last connection closes */
        BLOG_INFO("listener %s: certificates reloaded; new connections use them",
                  cfg->listeners[l].name);
    }
    tls_peer_reload_check(rt, cfg);
}

/* laminar.ssl.reload.check.ms: how often the TLS listeners' files are looked at (0: never). */
static uint64_t tls_reload_interval_ms(const struct broker_config *cfg)
{
    const char *v = broker_config_get(cfg, "laminar.ssl.reload.check.ms");
    char *end = NULL;
    long long n = v != NULL ? strtoll(v, &end, 10) : -1;
    return v != NULL && end != v && *end == '\0' && n >= 0 ? (uint64_t)n : 10000;
}

static void stop_signals(sigset_t *sigs)
{
    sigemptyset(sigs);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGINT);
}

int broker_runtime_start(const struct broker_config *cfg, const struct broker_dispatch *d,
                         struct broker_rt **out)
{
    *out = NULL;
    int table_rc = check_listener_tables(cfg, d);
    if (table_rc != 0)
        return table_rc;
    struct broker_rt *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return LM_E_NOMEM;
    rt->cfg = cfg;
    rt->dispatch = d;
    rt->io = choose_backend(cfg);
    if (rt->io == NULL) {
        free(rt);
        return LM_E_UNSUPPORTED;
    }
    /* RLIMIT_NOFILE was raised by serve.c before the handlers sized their open-log budget. */
    if (broker_connquota_init(&rt->quota, cfg) != 0) {
        free(rt);
        return LM_E_NOMEM;
    }
    rt->quota_ready = true;
    pthread_mutex_init(&rt->tls_lock, NULL);
    for (uint32_t l = 0; l < cfg->listeners_count; l++) {
        if (!cfg->listener_tls[l])
            continue;
        tls_stamps_of(cfg, l, rt->tls_stamp[l]);
        struct broker_tls_settings st;
        char err[512];
        broker_config_tls_settings(cfg, l, &st);
        int trc = broker_tls_ctx_new(&st, &rt->tls[l], err, sizeof(err));
        if (trc != 0) {
            BLOG_ERROR("listener %s: %s", cfg->listeners[l].name,
                       trc == LM_E_CONFIG ? err : lm_strerror(trc));
            rt_free(rt);
            return trc;
        }
    }
    if (cfg->peer_tls) {
        struct broker_tls_settings st;
        char err[512];
        tls_peer_stamps_of(cfg, &st, rt->tls_peer_stamp);
        int trc = broker_tls_ctx_new_client(&st, &rt->tls_peer, err, sizeof(err));
        if (trc != 0) {
            BLOG_ERROR("controller listener %s (node-to-node connections): %s",
                       cfg->controller_listener_names[0],
                       trc == LM_E_CONFIG ? err : lm_strerror(trc));
            rt_free(rt);
            return trc;
        }
    }
    uint32_t n = cfg->shards;
    choose_cpus(rt, &n);
    rt->nshards = n;
    rt->shards = calloc(n, sizeof(*rt->shards));
    rt->mailboxes = calloc((size_t)n * n, sizeof(*rt->mailboxes));
    rt->threads = calloc(n, sizeof(*rt->threads));
    if (rt->shards == NULL || rt->mailboxes == NULL || rt->threads == NULL) {
        rt_free(rt);
        return LM_E_NOMEM;
    }
    int rc = 0;
    for (uint32_t i = 0; i < n * n && rc == 0; i++)
        if (i / n != i % n)
            rc = broker_mailbox_init(&rt->mailboxes[i], MAILBOX_SLOTS);
    for (uint32_t i = 0; i < n; i++) {
        struct broker_shard *s = &rt->shards[i];
        s->event_fd = -1;
        if (rc == 0)
            rc = broker_shard_init(s, rt, i, n, cfg, d, rt->io);
        if (rc != 0)
            break;
        s->cpu = rt->cpus[i];
        s->event_fd = eventfd(0, EFD_CLOEXEC);
        if (s->event_fd < 0) {
            rc = LM_E_IO;
            break;
        }
        for (uint32_t l = 0; l < cfg->listeners_count; l++) {
            int fd = open_listener(&cfg->listeners[l], rt->io == &broker_io_epoll_ops);
            if (fd < 0) {
                rc = fd;
                break;
            }
            s->listen_tls[s->listen_count] = rt->tls[l] != NULL;
            s->listen_fds[s->listen_count++] = fd;
        }
        if (rc != 0)
            break;
    }
    if (rc != 0) {
        BLOG_ERROR("start-up failed: %s", lm_strerror(rc));
        rt_free(rt);
        return rc;
    }
    attach_bpf(rt);
    for (uint32_t l = 0; l < cfg->listeners_count; l++)
        BLOG_INFO("listening on %s://%s:%u with %u shard(s), %s backend%s%s",
                  cfg->listeners[l].name,
                  cfg->listeners[l].host[0] ? cfg->listeners[l].host : "0.0.0.0",
                  cfg->listeners[l].port, n, rt->io->name, cfg->listener_tls[l] ? ", TLS" : "",
                  cfg->listener_sasl[l] ? ", SASL" : "");
    /* Signals go to the thread in broker_runtime_run's sigwait; shards never see them (they
     * inherit the mask). */
    sigset_t sigs;
    stop_signals(&sigs);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_barrier_init(&rt->barrier, NULL, n + 1);
    uint32_t started = 0;
    for (; started < n; started++)
        if (pthread_create(&rt->threads[started], NULL, shard_thread, &rt->shards[started]) != 0)
            break;
    if (started < n) {
        /* Cannot run with fewer shards than the barrier expects: abort start-up. */
        BLOG_ERROR("cannot start shard threads");
        abort();
    }
    broker_rt_barrier(rt); /* backends ready */
    broker_rt_barrier(rt); /* start hooks done */
    if (atomic_load(&rt->start_failed) != 0) {
        broker_runtime_stop(rt);
        return LM_E_STATE;
    }
    if (http_start(rt) != 0) {
        broker_runtime_stop(rt);
        return LM_E_CONFIG;
    }
    BLOG_INFO("started: node.id=%d, log.dirs=%s", cfg->node_id, cfg->log_dirs[0]);
    *out = rt;
    return 0;
}

bool broker_runtime_stopping(const struct broker_rt *rt)
{
    return atomic_load_explicit(&rt->stopping, memory_order_acquire);
}

int broker_runtime_stop(struct broker_rt *rt)
{
    broker_http_stop(rt->http); /* it reads the shards and the node: stopped first */
    rt->http = NULL;
    uint32_t n = rt->nshards;
    int rc = 0;
    atomic_store_explicit(&rt->stopping, true, memory_order_release);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t one = 1;
        ssize_t w = write(rt->shards[i].event_fd, &one, sizeof(one));
        LM_ASSERT(w == sizeof(one));
    }
    broker_rt_barrier(rt); /* every shard finished its shutdown */
    for (uint32_t i = 0; i < n; i++)
        pthread_join(rt->threads[i], NULL);
    pthread_barrier_destroy(&rt->barrier);
    if (atomic_load(&rt->start_failed) != 0)
        rc = LM_E_STATE;
    rt_free(rt);
    BLOG_INFO("shutdown complete");
    return rc;
}

/* Controlled shutdown's first step: the handlers move their leaderships while every shard
 * still serves (clients, and the peers that must hear from this node for a transfer to
 * complete). Ends when the handlers say so, at the deadline, or at a second signal. */
static void runtime_handoff(struct broker_rt *rt, const struct broker_config *cfg,
                            const struct broker_dispatch *d, const sigset_t *sigs)
{
    if (!cfg->controlled_shutdown_enable || d->handoff_begin == NULL || d->handoff_done == NULL)
        return;
    uint64_t start = broker_now_ms();
    uint64_t deadline = start + (uint64_t)cfg->controlled_shutdown_timeout_ms;
    d->handoff_begin(d->ctx);
    bool done;
    while (!(done = d->handoff_done(d->ctx)) && !broker_runtime_stopping(rt) &&
           broker_now_ms() < deadline) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000 * 1000};
        if (sigtimedwait(sigs, NULL, &ts) > 0) {
            BLOG_INFO("controlled shutdown: second signal, stopping at once");
            return;
        }
    }
    if (done)
        BLOG_INFO("controlled shutdown: leaderships moved in %llu ms",
                  (unsigned long long)(broker_now_ms() - start));
    else
        BLOG_WARN("controlled shutdown: leaderships still here after %llu ms; stopping",
                  (unsigned long long)(broker_now_ms() - start));
}

int broker_runtime_run(const struct broker_config *cfg, const struct broker_dispatch *d)
{
    struct broker_rt *rt = NULL;
    int rc = broker_runtime_start(cfg, d, &rt);
    if (rc != 0)
        return rc;
    sigset_t sigs;
    stop_signals(&sigs);
    uint64_t reload_ms = tls_reload_interval_ms(cfg);
    bool any_tls = rt->tls_peer != NULL;
    for (uint32_t l = 0; l < cfg->listeners_count; l++)
        any_tls = any_tls || rt->tls[l] != NULL;
    while (!broker_runtime_stopping(rt)) {
        int sig;
        if (any_tls && reload_ms > 0) {
            struct timespec ts = {.tv_sec = (time_t)(reload_ms / 1000),
                                  .tv_nsec = (long)(reload_ms % 1000) * 1000000L};
            sig = sigtimedwait(&sigs, NULL, &ts);
            if (sig < 0) {
                if (errno == EAGAIN)
                    tls_reload_check(rt, cfg);
                continue;
            }
        } else if (sigwait(&sigs, &sig) != 0) {
            continue;
        }
        BLOG_INFO("received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    if (!broker_runtime_stopping(rt))
        runtime_handoff(rt, cfg, d, &sigs);
    return broker_runtime_stop(rt);
}
