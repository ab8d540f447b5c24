/* Real SWIM cluster on loopback: five processes of a small driver (lm_gossip + its UDP shell)
 * on 127.0.0.x ports form a cluster through one seed; one is killed with SIGKILL and the others
 * must report it dead within the configured bound; it restarts and rejoins; a packet with a
 * wrong HMAC (declaring a live member dead) changes nothing and is counted as dropped.
 *
 *   swim_cluster                      the test (spawns, checks, stops everything it started)
 *   swim_cluster node --bind A:P [--seed A:P] --secret S --period-ms N --node-id I
 *                                     one member; prints one line per event on stdout */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/lm_err.h"
#include "gossip/swim.h"
#include "gossip/swim_clock.h"
#include "gossip/swim_udp.h"

#define NODES     5
#define PERIOD_MS 100
#define SECRET    "laminar-cluster-test-secret"
/* The configured bound for a crash to be reported dead by everyone: Lifeguard's longest
 * suspicion (beta * alpha * T = 6 * 4 * 100 ms at n <= 10) stretched by a health multiplier,
 * plus detection and dissemination. */
#define DEAD_BOUND_MS 8000
#define FORM_BOUND_MS 10000
#define TEST_BOUND_S  90

/* ---- node mode ---------------------------------------------------------------------------- */

static volatile sig_atomic_t stop_flag;

static void on_term(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static const char *ev_name(uint8_t t)
{
    switch (t) {
    case SWIM_EV_JOINED:
        return "joined";
    case SWIM_EV_SUSPECT:
        return "suspect";
    case SWIM_EV_ALIVE:
        return "alive";
    case SWIM_EV_DEAD:
        return "dead";
    case SWIM_EV_LEFT:
        return "left";
    case SWIM_EV_META:
        return "meta";
    }
    return "unknown";
}

static void node_event(void *ctx, const struct swim_event *ev)
{
    (void)ctx;
    char a[32];
    printf("EV %s %s %" PRIu64 " node_id=%d\n", ev_name(ev->type),
           swim_addr_format(&ev->addr, a, sizeof(a)), ev->incarnation,
           ev->meta ? ev->meta->node_id : 0);
}

static int node_main(int argc, char **argv)
{
    struct swim_config cfg;
    swim_config_default(&cfg);
    struct swim_addr seed = {0, 0};
    const char *secret = NULL;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--bind") == 0 && swim_addr_parse(argv[i + 1], &cfg.self) == 0)
            continue;
        if (strcmp(argv[i], "--seed") == 0 && swim_addr_parse(argv[i + 1], &seed) == 0)
            continue;
        if (strcmp(argv[i], "--secret") == 0) {
            secret = argv[i + 1];
            continue;
        }
        if (strcmp(argv[i], "--period-ms") == 0) {
            cfg.period_ms = (uint32_t)atoi(argv[i + 1]);
            cfg.ack_timeout_ms = cfg.period_ms * 2 / 5;
            continue;
        }
        if (strcmp(argv[i], "--node-id") == 0) {
            cfg.meta.node_id = atoi(argv[i + 1]);
            continue;
        }
        fprintf(stderr, "node: bad argument %s\n", argv[i]);
        return 2;
    }
    if (secret != NULL) {
        cfg.secret = (const uint8_t *)secret;
        cfg.secret_len = strlen(secret);
    }
    char a[32];
    snprintf(cfg.meta.kafka_listener, sizeof(cfg.meta.kafka_listener), "%s",
             swim_addr_format(&cfg.self, a, sizeof(a)));
    cfg.incarnation = 0; /* a restart relies on refutation to outbid its old incarnation */
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    struct swim_udp *u = NULL;
    int rc = swim_udp_new(&cfg, node_event, NULL, &u);
    if (rc != 0) {
        fprintf(stderr, "node: swim_udp_new: %s\n", lm_strerror(rc));
        return 1;
    }
    struct swim *s = swim_udp_swim(u);
    if (seed.port != 0) {
        rc = swim_join(s, swim_clock_now_ms(), &seed, 1);
        if (rc != 0) {
            fprintf(stderr, "node: join: %s\n", lm_strerror(rc));
            swim_udp_free(u);
            return 1;
        }
    }
    printf("READY %s\n", swim_addr_format(&cfg.self, a, sizeof(a)));
    uint64_t auth = 0, bad = 0;
    while (!stop_flag) {
        rc = swim_udp_run(u, 20);
        if (rc != 0) {
            fprintf(stderr, "node: run: %s\n", lm_strerror(rc));
            break;
        }
        const struct swim_stats *st = swim_stats(s);
        if (st->drop_auth != auth || st->drop_malformed != bad) {
            auth = st->drop_auth;
            bad = st->drop_malformed;
            printf("STATS drop_auth=%" PRIu64 " drop_malformed=%" PRIu64 "\n", auth, bad);
        }
    }
    if (stop_flag) {
        rc = swim_leave(s, swim_clock_now_ms());
        printf("LEAVE %d\n", rc);
    }
    swim_udp_free(u);
    return 0;
}

/* ---- the test ----------------------------------------------------------------------------- */

struct child {
    pid_t pid;
    int fd;
    char addr[32];
    struct swim_addr sa;
    char line[4096];
    size_t line_len;
    /* what this member reported about each other member (index), as an event name */
    char seen[NODES][16];
    uint64_t drop_auth, drop_malformed;
    bool ready;
};

static struct child kids[NODES];
static const char *self_exe;

static int bad_exits; /* members that did not exit cleanly on SIGTERM (LeakSanitizer too) */

static void stop_all(void)
{
    for (int i = 0; i < NODES; i++)
        if (kids[i].pid > 0)
            kill(kids[i].pid, SIGTERM);
    for (int i = 0; i < NODES; i++) {
        if (kids[i].pid <= 0)
            continue;
        int st;
        bool gone = false;
        for (int w = 0; w < 250 && !gone; w++) {
            if (waitpid(kids[i].pid, &st, WNOHANG) == kids[i].pid)
                gone = true;
            else
                usleep(20000);
        }
        if (gone && (!WIFEXITED(st) || WEXITSTATUS(st) != 0))
            bad_exits++;
        if (!gone) {
            bad_exits++;
            kill(kids[i].pid, SIGKILL);
            waitpid(kids[i].pid, &st, 0);
        }
        kids[i].pid = 0;
        if (kids[i].fd >= 0)
            close(kids[i].fd);
        kids[i].fd = -1;
    }
}

static void die(const char *what)
{
    fprintf(stderr, "swim_cluster: FAILED: %s\n", what);
    stop_all();
    exit(1);
}

static void on_alarm(int sig)
{
    (void)sig;
    die("test exceeded its time bound");
}

static uint64_t now_ms(void)
{
    return swim_clock_now_ms();
}

/* A free UDP port on ip (the kernel picks; we release it for the child). */
static int free_port(const char *ip)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    socklen_t len = sizeof(sa);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static void spawn(int i, bool with_seed)
{
    struct child *c = &kids[i];
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        die("pipe");
    char node_id[16];
    snprintf(node_id, sizeof(node_id), "%d", i + 1);
    char period[16];
    snprintf(period, sizeof(period), "%d", PERIOD_MS);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        dup2(p[1], 1);
        const char *argv[16] = {self_exe, "node",        "--bind", c->addr,     "--secret",
                                SECRET,   "--period-ms", period,   "--node-id", node_id};
        int n = 10;
        if (with_seed) {
            argv[n++] = "--seed";
            argv[n++] = kids[0].addr;
        }
        argv[n] = NULL;
        execv(self_exe, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    c->pid = pid;
    c->fd = p[0];
    c->line_len = 0;
    c->ready = false;
    c->drop_auth = c->drop_malformed = 0;
    memset(c->seen, 0, sizeof(c->seen));
}

static int index_of_addr(const char *a)
{
    for (int i = 0; i < NODES; i++)
        if (strcmp(kids[i].addr, a) == 0)
            return i;
    return -1;
}

static void handle_line(int i, char *line)
{
    struct child *c = &kids[i];
    char type[16], addr[32];
    if (strncmp(line, "READY", 5) == 0) {
        c->ready = true;
    } else if (sscanf(line, "EV %15s %31s", type, addr) == 2) {
        int j = index_of_addr(addr);
        if (j >= 0)
            snprintf(c->seen[j], sizeof(c->seen[j]), "%s", type);
        printf("  [%d] %s\n", i + 1, line);
    } else if (strncmp(line, "STATS", 5) == 0) {
        sscanf(line, "STATS drop_auth=%" SCNu64 " drop_malformed=%" SCNu64, &c->drop_auth,
               &c->drop_malformed);
        printf("  [%d] %s\n", i + 1, line);
    }
}

/* Read whatever the children printed, waiting up to wait_ms. */
static void pump(int wait_ms)
{
    struct pollfd pfd[NODES];
    int idx[NODES], n = 0;
    for (int i = 0; i < NODES; i++)
        if (kids[i].pid > 0 && kids[i].fd >= 0) {
            pfd[n] = (struct pollfd){.fd = kids[i].fd, .events = POLLIN};
            idx[n++] = i;
        }
    if (poll(pfd, (nfds_t)n, wait_ms) <= 0)
        return;
    for (int k = 0; k < n; k++) {
        if (!(pfd[k].revents & (POLLIN | POLLHUP)))
            continue;
        struct child *c = &kids[idx[k]];
        ssize_t r = read(c->fd, c->line + c->line_len, sizeof(c->line) - 1 - c->line_len);
        if (r <= 0) {
            close(c->fd);
            c->fd = -1;
            continue;
        }
        c->line_len += (size_t)r;
        c->line[c->line_len] = 0;
        char *start = c->line, *nl;
        while ((nl = strchr(start, '\n')) != NULL) {
            *nl = 0;
            handle_line(idx[k], start);
            start = nl + 1;
        }
        c->line_len = strlen(start);
        memmove(c->line, start, c->line_len);
    }
}

/* Does member i currently consider member j alive (joined, alive or meta last)? */
static bool sees_alive(int i, int j)
{
    const char *s = kids[i].seen[j];
    return strcmp(s, "joined") == 0 || strcmp(s, "alive") == 0 || strcmp(s, "meta") == 0;
}

static bool all_see_all_alive(void)
{
    for (int i = 0; i < NODES; i++)
        for (int j = 0; j < NODES; j++)
            if (i != j && !sees_alive(i, j))
                return false;
    return true;
}

static bool others_see(int victim, const char *status)
{
    for (int i = 0; i < NODES; i++)
        if (i != victim && strcmp(kids[i].seen[victim], status) != 0)
            return false;
    return true;
}

static uint64_t wait_for(bool (*cond)(void), uint64_t bound_ms, const char *what)
{
    uint64_t t0 = now_ms();
    while (!cond()) {
        if (now_ms() - t0 > bound_ms)
            die(what);
        pump(20);
    }
    return now_ms() - t0;
}

static int victim_idx = 2;

static bool victim_dead_everywhere(void)
{
    return others_see(victim_idx, "dead");
}

/* Forge a datagram claiming member `about` is dead, signed with the wrong secret. */
static void send_forged(const struct swim_addr *to, const struct swim_addr *about,
                        const struct swim_addr *claimed_sender)
{
    uint8_t buf[SWIM_PACKET_SIZE_DEFAULT];
    struct swim_enc e;
    struct swim_msg m = {.type = SWIM_MSG_SYNC, .sender = *claimed_sender, .target = *to};
    if (swim_enc_begin(&e, buf, sizeof(buf), &m, true) != 0)
        die("forge: begin");
    struct swim_update u = {.status = SWIM_DEAD, .addr = *about, .incarnation = 1000000};
    if (swim_enc_update(&e, &u) != 0)
        die("forge: update");
    static const char wrong[] = "not-the-cluster-secret";
    int len = swim_enc_finish(&e, (const uint8_t *)wrong, strlen(wrong));
    if (len <= 0)
        die("forge: finish");
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        die("forge: socket");
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(to->port), .sin_addr.s_addr = htonl(to->ip)};
    if (sendto(fd, buf, (size_t)len, 0, (struct sockaddr *)&sa, sizeof(sa)) != len)
        die("forge: sendto");
    /* and a malformed one: right version byte, garbage after */
    uint8_t junk[40] = {SWIM_PROTO_VERSION, 0xee, 0x01, 0xff};
    if (sendto(fd, junk, sizeof(junk), 0, (struct sockaddr *)&sa, sizeof(sa)) != sizeof(junk))
        die("forge: sendto junk");
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "node") == 0)
        return node_main(argc, argv);
    self_exe = "/proc/self/exe";
    static char exe[4096];
    ssize_t el = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (el > 0) {
        exe[el] = 0;
        self_exe = exe;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, on_alarm);
    signal(SIGPIPE, SIG_IGN);
    alarm(TEST_BOUND_S);
    for (int i = 0; i < NODES; i++) {
        char ip[16];
        snprintf(ip, sizeof(ip), "127.0.0.%d", 11 + i);
        int port = free_port(ip);
        if (port <= 0)
            die("no free UDP port on loopback");
        snprintf(kids[i].addr, sizeof(kids[i].addr), "%s:%d", ip, port);
        if (swim_addr_parse(kids[i].addr, &kids[i].sa) != 0)
            die("address");
        kids[i].fd = -1;
    }
    printf("swim_cluster: %d members, T = %d ms, seed %s\n", NODES, PERIOD_MS, kids[0].addr);
    for (int i = 0; i < NODES; i++)
        spawn(i, i != 0);
    uint64_t t = wait_for(all_see_all_alive, FORM_BOUND_MS, "cluster did not form");
    printf("swim_cluster: formed through one seed in %" PRIu64 " ms\n", t);

    /* SIGKILL one member: everyone else must report it dead within the bound */
    kill(kids[victim_idx].pid, SIGKILL);
    waitpid(kids[victim_idx].pid, NULL, 0);
    kids[victim_idx].pid = 0;
    close(kids[victim_idx].fd);
    kids[victim_idx].fd = -1;
    t = wait_for(victim_dead_everywhere, DEAD_BOUND_MS, "killed member not reported dead in bound");
    printf("swim_cluster: SIGKILLed member reported dead by all %d others in %" PRIu64
           " ms (%.1f periods; bound %d ms)\n",
           NODES - 1, t, (double)t / PERIOD_MS, DEAD_BOUND_MS);

    /* restart on the same address: it refutes its death and rejoins */
    memset(kids[victim_idx].seen, 0, sizeof(kids[victim_idx].seen));
    spawn(victim_idx, true);
    t = wait_for(all_see_all_alive, FORM_BOUND_MS, "restarted member did not rejoin");
    printf("swim_cluster: restarted member rejoined in %" PRIu64 " ms\n", t);

    /* forged packets: a wrong HMAC claiming member 4 is dead, plus a malformed datagram */
    int about = 3;
    for (int i = 0; i < NODES; i++)
        if (i != about)
            send_forged(&kids[i].sa, &kids[about].sa, &kids[(i + 1) % NODES].sa);
    uint64_t t0 = now_ms();
    while (now_ms() - t0 < 10 * PERIOD_MS)
        pump(20);
    for (int i = 0; i < NODES; i++) {
        if (i == about)
            continue;
        if (kids[i].drop_auth < 1 || kids[i].drop_malformed < 1)
            die("forged or malformed packet not counted as dropped");
        if (!sees_alive(i, about))
            die("a packet with a wrong HMAC changed membership");
    }
    if (!all_see_all_alive())
        die("membership changed after forged packets");
    printf("swim_cluster: wrong-HMAC and malformed packets dropped and counted; nothing "
           "changed\n");
    stop_all();
    if (bad_exits != 0) {
        fprintf(stderr, "swim_cluster: FAILED: %d members did not exit cleanly\n", bad_exits);
        return 1;
    }
    printf("swim_cluster: PASS\n");
    return 0;
}
