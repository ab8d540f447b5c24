/* What a shard offers its handlers besides connections: cross-shard calls through the
 * mailboxes, fsyncs off the shard thread (the backend's op, or a sync worker) and timers. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "broker/log.h"
#include "broker/reqhdr.h"
#include "broker/shard_internal.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_hash.h"
#include "common/lm_grow.h"

/* ---- cross-shard calls ------------------------------------------------------------------- */

static void xlist_push(struct broker_xcall_list *l, struct broker_xcall *c)
{
    c->next_ = NULL;
    if (l->tail)
        l->tail->next_ = c;
    else
        l->head = c;
    l->tail = c;
}

static struct broker_xcall *xlist_pop(struct broker_xcall_list *l)
{
    struct broker_xcall *c = l->head;
    if (c != NULL) {
        l->head = c->next_;
        if (l->head == NULL)
            l->tail = NULL;
        c->next_ = NULL;
    }
    return c;
}

/* Shard `to` has a new call in its mailbox from s: it is woken once, by xcalls_wake_flush. */
static void wake_mark(struct broker_shard *s, uint32_t to)
{
    if (!s->wake_pending[to]) {
        s->wake_pending[to] = true;
        s->wakes_pending++;
    }
    LM_ASSERT(s->wakes_pending <= s->nshards);
}

/* Sends c from s to shard `to` through their mailbox, or queues it behind earlier overflow so
 * order per pair is kept. */
static void xcall_send(struct broker_shard *s, uint32_t to, struct broker_xcall *c)
{
    LM_ASSERT(to < s->nshards);
    if (to == s->id) {
        xlist_push(&s->local, c);
        s->work_pending = true;
        return;
    }
    struct broker_xcall_list *ov = &s->overflow[to];
    if (ov->head == NULL && broker_mailbox_push(broker_rt_mailbox(s->rt, s->id, to), c) == 0) {
        wake_mark(s, to);
        return;
    }
    xlist_push(ov, c);
    s->work_pending = true;
}

void broker_shard_call(struct broker_shard *self, uint32_t target, struct broker_xcall *c)
{
    LM_ASSERT(c->run != NULL && c->done != NULL);
    LM_ASSERT(target < self->nshards);
    c->origin_ = self->id;
    c->target_ = target;
    c->returning_ = false;
    broker_rt_xcalls_add(self->rt, 1);
    xcall_send(self, target, c);
}

void broker_xcall_return(struct broker_shard *target, struct broker_xcall *c)
{
    LM_ASSERT(!c->returning_ && c->target_ == target->id);
    c->returning_ = true;
    xcall_send(target, c->origin_, c);
}

static void xcall_deliver(struct broker_shard *s, struct broker_xcall *c)
{
    if (c->returning_) {
        LM_ASSERT(c->origin_ == s->id);
        c->done(s, c); /* may free c */
        broker_rt_xcalls_add(s->rt, -1);
    } else {
        LM_ASSERT(c->target_ == s->id);
        c->run(s, c);
    }
}

void xcalls_process(struct broker_shard *s)
{
    s->work_pending = false;
    /* flush overflow into mailboxes that have room again */
    for (uint32_t to = 0; to < s->nshards; to++) {
        struct broker_xcall_list *ov = &s->overflow[to];
        while (ov->head != NULL) {
            if (broker_mailbox_push(broker_rt_mailbox(s->rt, s->id, to), ov->head) != 0) {
                s->work_pending = true;
                break;
            }
            xlist_pop(ov);
            wake_mark(s, to);
        }
    }
    for (uint32_t from = 0; from < s->nshards; from++) {
        if (from == s->id)
            continue;
        struct broker_mailbox *mb = broker_rt_mailbox(s->rt, from, s->id);
        for (int i = 0; i < XCALLS_PER_TURN; i++) {
            struct broker_xcall *c = broker_mailbox_pop(mb);
            if (c == NULL)
                break;
            xcall_deliver(s, c);
            if (i == XCALLS_PER_TURN - 1)
                s->work_pending = true;
        }
    }
    /* calls to self queued before this turn; new ones wait for the next turn */
    struct broker_xcall_list local = s->local;
    s->local.head = s->local.tail = NULL;
    struct broker_xcall *c;
    while ((c = xlist_pop(&local)) != NULL)
        xcall_deliver(s, c);
    xcalls_wake_flush(s);
}

/* Wakes the shards that have new calls from s (one wake per target, however many calls). Runs
 * after anything that may call another shard and before the loop waits: a call whose wake is
 * left pending would sit in the mailbox until some other event ends the wait (a fetch's
 * max_wait_ms timer running the final pass on another shard's partitions answered 100 ms to
 * 1 s late). */
void xcalls_wake_flush(struct broker_shard *s)
{
    if (s->wakes_pending == 0)
        return;
    for (uint32_t to = 0; to < s->nshards; to++) {
        if (s->wake_pending[to]) {
            s->wake_pending[to] = false;
            s->io->wake(s, broker_rt_shard(s->rt, to));
        }
    }
    s->wakes_pending = 0;
}

void broker_core_on_wake(struct broker_shard *s)
{
    s->work_pending = true;
}

/* ---- asynchronous fsync ------------------------------------------------------------------ */

/* The sync worker of a shard without an io_uring fsync (epoll backend): one thread fed by a
 * bounded SPSC queue; it sleeps on its own eventfd and wakes the shard through the shard's
 * eventfd. The queues hold at most BROKER_FSYNC_INFLIGHT_MAX entries, the number of slots, so
 * a push never finds them full. The only system calls the shard makes for it are the eventfd
 * writes. The metadata workers (broker_shard_meta_job, any backend, BROKER_META_THREADS per
 * shard) are threads of the same kind whose queues carry jobs (at most
 * BROKER_META_JOBS_INFLIGHT_MAX in all). */
struct broker_sync_worker {
    pthread_t thread;
    /* a metadata worker (broker_shard_meta_job): its queues carry jobs, not fsyncs */
    bool meta;
    /* laminar.fault.disk.control: the file re-read at most every FAULT_READ_MS, and the delay
     * it named */
    const char *fault_path;
    int64_t fault_read_ms;
    int32_t fault_delay_ms;
    struct broker_mailbox requests; /* fsyncs to run: shard -> worker */
    struct broker_mailbox done;     /* worker -> shard */
    int wake_fd;
    int shard_event_fd;
    _Atomic bool stop;
};

#define FAULT_READ_MS   100
#define FAULT_DELAY_MAX 60000

/* A slow disk for fault campaigns: every fsync first waits the milliseconds the control file
 * names (absent, empty or 0: none; at most FAULT_DELAY_MAX). The worker serves one fsync at a
 * time, so a delay also bounds how many complete per second, as on a slow device. */
static void fault_disk_wait(struct broker_sync_worker *w)
{
    if (w->fault_path == NULL)
        return;
    int64_t now = (int64_t)broker_now_ms();
    if (now - w->fault_read_ms >= FAULT_READ_MS) {
        w->fault_read_ms = now;
        long v = 0;
        FILE *fp = fopen(w->fault_path, "r");
        if (fp != NULL) {
            if (fscanf(fp, "%ld", &v) != 1)
                v = 0;
            fclose(fp);
        }
        int32_t d = v < 0 ? 0 : v > FAULT_DELAY_MAX ? FAULT_DELAY_MAX : (int32_t)v;
        if (d != w->fault_delay_ms)
            BLOG_WARN("fault injection: every fsync delayed by %d ms", (int)d);
        w->fault_delay_ms = d;
    }
    if (w->fault_delay_ms > 0) {
        struct timespec ts = {w->fault_delay_ms / 1000, (long)(w->fault_delay_ms % 1000) * 1000000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
}

/* The file systems of a batch: one descriptor kept open on each (the first staged job's
 * there), the result of its syncfs. A batch on more than META_BATCH_FS file systems runs the
 * jobs beyond them one by one. */
#define META_BATCH_FS 8
struct meta_batch_fs {
    dev_t dev;
    int fd;
    int rc;
};

/* The index in fs[] of fd's file system, added (taking fd) when new; closes fd when the file
 * system is known already. -1 with fd still open when it is neither known nor fits; < -1
 * (an error) when fd cannot be examined, closed. */
static int meta_batch_fs_of(struct meta_batch_fs *fs, uint32_t *nfs, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int rc = LM_E_IO;
        close(fd);
        return rc;
    }
    for (uint32_t d = 0; d < *nfs; d++) {
        if (fs[d].dev == st.st_dev) {
            close(fd); /* data stays in the page cache; the kept descriptor's syncfs covers it */
            return (int)d;
        }
    }
    if (*nfs == META_BATCH_FS)
        return -1;
    fs[*nfs] = (struct meta_batch_fs){.dev = st.st_dev, .fd = fd, .rc = 0};
    return (int)(*nfs)++;
}

/* The machine's dirty and under-writeback page cache in bytes (/proc/meminfo), or UINT64_MAX
 * when unknown. */
static uint64_t dirty_bytes(void)
{
    char buf[4096];
    int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return UINT64_MAX;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return UINT64_MAX;
    buf[n] = '\0';
    uint64_t total = 0;
    int found = 0;
    static const char *const keys[] = {"\nDirty:", "\nWriteback:"};
    for (int k = 0; k < 2; k++) {
        const char *at = strstr(buf, keys[k]);
        unsigned long long kib;
        if (at != NULL && sscanf(at + strlen(keys[k]), "%llu", &kib) == 1) {
            total += (uint64_t)kib * 1024u;
            found++;
        }
    }
    return found == 2 ? total : UINT64_MAX;
}

/* Runs a metadata worker's jobs taken at once: those with stage, when there are several, with
 * one syncfs per file system (two when some renamed); the others one by one. A syncfs writes
 * back everything dirty on its file system, so with more than META_BATCH_DIRTY_MAX bytes dirty
 * (acks=1 data of unreplicated topics waiting for the kernel's writeback, say) each job syncs
 * its own file instead: a state write must not wait for gigabytes of other data. */
#define META_BATCH_MAX       64
#define META_BATCH_DIRTY_MAX (64u << 20)
static void meta_run_batch(struct broker_sync_worker *w, struct broker_meta_job **jobs, uint32_t n)
{
    uint32_t staged = 0;
    for (uint32_t i = 0; i < n; i++)
        staged += jobs[i]->stage != NULL;
    if (staged >= 2 && dirty_bytes() > META_BATCH_DIRTY_MAX)
        staged = 0;
    struct broker_meta_job *batch[META_BATCH_MAX];
    uint8_t batch_fs[META_BATCH_MAX];
    struct meta_batch_fs fs[META_BATCH_FS];
    uint32_t nb = 0, nfs = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct broker_meta_job *j = jobs[i];
        if (j->stage == NULL || staged < 2) {
            fault_disk_wait(w);
            j->res_ = j->run(j);
            continue;
        }
        int fd = -1;
        j->res_ = j->stage(j, &fd);
        if (j->res_ != 0)
            continue;
        LM_ASSERT(fd >= 0);
        int d = meta_batch_fs_of(fs, &nfs, fd);
        if (d == -1) { /* a ninth file system: synced on its own */
            fault_disk_wait(w);
            int rc = j->commit(j, syncfs(fd) == 0 ? 0 : LM_E_IO);
            if (rc == 1)
                rc = syncfs(fd) == 0 ? 0 : LM_E_IO;
            close(fd);
            j->res_ = rc;
            continue;
        }
        if (d < 0) { /* fd closed */
            j->res_ = j->commit(j, d);
            continue;
        }
        batch[nb] = j;
        batch_fs[nb++] = (uint8_t)d;
    }
    if (nb == 0)
        goto out;
    fault_disk_wait(w);
    for (uint32_t d = 0; d < nfs; d++)
        fs[d].rc = syncfs(fs[d].fd) == 0 ? 0 : LM_E_IO;
    bool again[META_BATCH_FS] = {false};
    uint32_t nagain = 0;
    for (uint32_t i = 0; i < nb; i++) {
        int rc = batch[i]->commit(batch[i], fs[batch_fs[i]].rc);
        LM_ASSERT(rc <= 1);
        batch[i]->res_ = rc;
        if (rc == 1) {
            nagain += !again[batch_fs[i]];
            again[batch_fs[i]] = true;
        }
    }
    if (nagain == 0)
        goto out;
    for (uint32_t d = 0; d < nfs; d++)
        if (again[d])
            fs[d].rc = syncfs(fs[d].fd) == 0 ? 0 : LM_E_IO;
    for (uint32_t i = 0; i < nb; i++)
        if (batch[i]->res_ == 1)
            batch[i]->res_ = fs[batch_fs[i]].rc;
out:
    for (uint32_t d = 0; d < nfs; d++)
        close(fs[d].fd);
}

static void *sync_worker_main(void *arg)
{
    struct broker_sync_worker *w = arg;
    (void)pthread_setname_np(pthread_self(), w->meta ? "lm-meta" : "lm-sync");
    for (;;) {
        bool any = false;
        void *item;
        if (w->meta) {
            struct broker_meta_job *jobs[META_BATCH_MAX];
            uint32_t n = 0;
            while (n < META_BATCH_MAX && (jobs[n] = broker_mailbox_pop(&w->requests)) != NULL)
                n++;
            if (n > 0) {
                meta_run_batch(w, jobs, n);
                for (uint32_t i = 0; i < n; i++) {
                    int rc = broker_mailbox_push(&w->done, jobs[i]);
                    LM_ASSERT(rc == 0); /* bounded by the shard's slots */
                }
                uint64_t one = 1;
                ssize_t wn = write(w->shard_event_fd, &one, sizeof(one));
                LM_ASSERT(wn == sizeof(one) || errno == EAGAIN);
                continue; /* more may have come meanwhile */
            }
        }
        while (!w->meta && (item = broker_mailbox_pop(&w->requests)) != NULL) {
            fault_disk_wait(w);
            struct broker_fsync *f = item;
            int r = f->datasync ? fdatasync(f->fd) : fsync(f->fd);
            f->res_ = r == 0 ? 0 : -errno;
            int rc = broker_mailbox_push(&w->done, item);
            LM_ASSERT(rc == 0); /* bounded by the shard's slots */
            any = true;
        }
        if (any) {
            uint64_t one = 1;
            ssize_t n = write(w->shard_event_fd, &one, sizeof(one));
            LM_ASSERT(n == sizeof(one) || errno == EAGAIN);
        }
        if (atomic_load(&w->stop) && broker_mailbox_count(&w->requests) == 0)
            return NULL;
        uint64_t v;
        ssize_t n = read(w->wake_fd, &v, sizeof(v)); /* blocks: this thread exists to wait */
        (void)n;
    }
}

/* Starts the shard's sync worker (meta false) or metadata worker (meta true) into *out. */
static int worker_start(struct broker_shard *s, bool meta, struct broker_sync_worker **out)
{
    struct broker_sync_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return LM_E_NOMEM;
    w->meta = meta;
    w->wake_fd = eventfd(0, EFD_CLOEXEC);
    w->shard_event_fd = s->event_fd;
    w->fault_path = s->fault_disk_control;
    w->fault_read_ms = INT64_MIN / 2;
    uint32_t cap = meta ? BROKER_META_JOBS_INFLIGHT_MAX : BROKER_FSYNC_INFLIGHT_MAX;
    if (w->wake_fd < 0 || broker_mailbox_init(&w->requests, cap) != 0 ||
        broker_mailbox_init(&w->done, cap) != 0) {
        if (w->wake_fd >= 0)
            close(w->wake_fd);
        broker_mailbox_deinit(&w->requests);
        broker_mailbox_deinit(&w->done);
        free(w);
        return LM_E_NOMEM;
    }
    if (pthread_create(&w->thread, NULL, sync_worker_main, w) != 0) {
        close(w->wake_fd);
        broker_mailbox_deinit(&w->requests);
        broker_mailbox_deinit(&w->done);
        free(w);
        return LM_E_IO;
    }
    *out = w;
    if (meta)
        BLOG_INFO("metadata worker thread started (Raft state files leave the shard thread)");
    else
        BLOG_INFO("sync worker thread started (fsyncs leave the shard thread)");
    return 0;
}

static int sync_worker_start(struct broker_shard *s)
{
    return worker_start(s, false, &s->sync_worker);
}

static void worker_stop(struct broker_sync_worker **wp)
{
    struct broker_sync_worker *w = *wp;
    if (w == NULL)
        return;
    atomic_store(&w->stop, true);
    uint64_t one = 1;
    ssize_t n = write(w->wake_fd, &one, sizeof(one));
    LM_ASSERT(n == sizeof(one) || errno == EAGAIN);
    pthread_join(w->thread, NULL);
    close(w->wake_fd);
    broker_mailbox_deinit(&w->requests);
    broker_mailbox_deinit(&w->done);
    free(w);
    *wp = NULL;
}

void sync_worker_stop(struct broker_shard *s)
{
    worker_stop(&s->sync_worker);
    for (uint32_t t = 0; t < BROKER_META_THREADS; t++)
        worker_stop(&s->meta_workers[t]);
}

static void fsync_issue(struct broker_shard *s, struct broker_fsync *f)
{
    LM_ASSERT(s->fsync_free_count > 0);
    uint32_t slot = s->fsync_free[--s->fsync_free_count];
    LM_ASSERT(s->fsync_slots[slot] == NULL);
    s->fsync_slots[slot] = f;
    f->slot_ = slot;
    s->fsyncs_inflight++;
    if (s->io->fsync != NULL && s->fault_disk_control == NULL) {
        int rc = s->io->fsync(s, f);
        LM_ASSERT(rc == 0);
        return;
    }
    if (s->sync_worker == NULL && sync_worker_start(s) != 0) {
        /* No thread to spare: the shard syncs itself rather than lose durability. */
        BLOG_WARN("cannot start the sync worker; fsync on the shard thread");
        int r = f->datasync ? fdatasync(f->fd) : fsync(f->fd);
        broker_core_on_fsync(s, slot, r == 0 ? 0 : -errno);
        return;
    }
    int rc = broker_mailbox_push(&s->sync_worker->requests, f);
    LM_ASSERT(rc == 0); /* at most BROKER_FSYNC_INFLIGHT_MAX slots */
    uint64_t one = 1;
    ssize_t n = write(s->sync_worker->wake_fd, &one, sizeof(one));
    LM_ASSERT(n == sizeof(one) || errno == EAGAIN);
}

void broker_shard_fsync(struct broker_shard *s, struct broker_fsync *f, int fd, bool datasync,
                        void (*done)(struct broker_shard *, struct broker_fsync *, int), void *arg)
{
    LM_ASSERT(fd >= 0 && done != NULL);
    f->done = done;
    f->arg = arg;
    f->fd = fd;
    f->datasync = datasync;
    f->res_ = 0;
    f->next_ = NULL;
    if (s->fsync_free_count == 0 || s->fsync_wait_head != NULL) {
        if (s->fsync_wait_tail != NULL)
            s->fsync_wait_tail->next_ = f;
        else
            s->fsync_wait_head = f;
        s->fsync_wait_tail = f;
        return;
    }
    fsync_issue(s, f);
}

static void fsync_finish(struct broker_shard *s, uint32_t slot, int res);

/* Test hook, LAMINAR_TEST_FSYNC_GATE=path: while that file exists, finished fsyncs are held
 * back (checked every 20 ms), so a test can see that acks=all answers wait for their fsync and
 * that the shard keeps serving meanwhile. Off (one NULL test) unless the variable is set. */
static void fsync_gate_check(struct broker_shard *s, struct broker_timer *t)
{
    (void)t;
    if (access(s->fsync_gate, F_OK) == 0) {
        if (broker_timer_start(s, &s->fsync_gate_timer, 20, fsync_gate_check, NULL) != 0)
            BLOG_ERROR("fsync gate: cannot arm timer");
        return;
    }
    struct broker_fsync *f = s->fsync_held;
    s->fsync_held = NULL;
    while (f != NULL) {
        struct broker_fsync *next = f->next_;
        f->next_ = NULL;
        fsync_finish(s, f->slot_, f->res_);
        f = next;
    }
}

void broker_core_on_fsync(struct broker_shard *s, uint32_t slot, int res)
{
    LM_ASSERT(slot < BROKER_FSYNC_INFLIGHT_MAX && s->fsync_slots[slot] != NULL);
    if (s->fsync_gate != NULL && (s->fsync_held != NULL || access(s->fsync_gate, F_OK) == 0)) {
        struct broker_fsync *f = s->fsync_slots[slot], **pp = &s->fsync_held;
        while (*pp != NULL)
            pp = &(*pp)->next_;
        f->res_ = res;
        f->next_ = NULL;
        *pp = f;
        if (s->fsync_gate_timer.heap_index_ == UINT32_MAX &&
            broker_timer_start(s, &s->fsync_gate_timer, 20, fsync_gate_check, NULL) != 0)
            BLOG_ERROR("fsync gate: cannot arm timer");
        return;
    }
    fsync_finish(s, slot, res);
}

static void fsync_finish(struct broker_shard *s, uint32_t slot, int res)
{
    LM_ASSERT(slot < BROKER_FSYNC_INFLIGHT_MAX && s->fsync_slots[slot] != NULL);
    struct broker_fsync *f = s->fsync_slots[slot];
    s->fsync_slots[slot] = NULL;
    s->fsync_free[s->fsync_free_count++] = slot;
    LM_ASSERT(s->fsyncs_inflight > 0);
    s->fsyncs_inflight--;
    if (res != 0)
        BLOG_ERROR("fsync of fd %d: %s", f->fd, strerror(-res));
    /* Queued calls take the freed slot before done() may queue more (FIFO). */
    while (s->fsync_wait_head != NULL && s->fsync_free_count > 0) {
        struct broker_fsync *w = s->fsync_wait_head;
        s->fsync_wait_head = w->next_;
        if (s->fsync_wait_head == NULL)
            s->fsync_wait_tail = NULL;
        w->next_ = NULL;
        fsync_issue(s, w);
    }
    f->done(s, f, res == 0 ? 0 : LM_E_IO);
}

/* Completions from the sync worker (polled every loop turn: one atomic load when idle). */
static void meta_poll(struct broker_shard *s);

void fsync_poll(struct broker_shard *s)
{
    meta_poll(s);
    if (s->sync_worker == NULL)
        return;
    struct broker_fsync *f;
    for (int i = 0; i < BROKER_FSYNC_INFLIGHT_MAX; i++) {
        if ((f = broker_mailbox_pop(&s->sync_worker->done)) == NULL)
            break;
        broker_core_on_fsync(s, f->slot_, f->res_);
    }
}

bool fsync_pending(const struct broker_shard *s)
{
    return s->fsyncs_inflight > 0 || s->fsync_wait_head != NULL || s->meta_inflight > 0 ||
           s->meta_wait_head != NULL;
}

/* ---- blocking file work on the metadata worker -------------------------------------------- */

static void meta_issue(struct broker_shard *s, struct broker_meta_job *j)
{
    LM_ASSERT(s->meta_inflight < BROKER_META_JOBS_INFLIGHT_MAX);
    uint32_t t = 0;
    for (uint32_t i = 1; i < BROKER_META_THREADS; i++)
        if (s->meta_load[i] < s->meta_load[t])
            t = i;
    if (s->meta_workers[t] == NULL && worker_start(s, true, &s->meta_workers[t]) != 0) {
        /* No thread to spare: the shard does the work itself rather than not at all. */
        BLOG_WARN_LIMITED("cannot start a metadata worker; state files written on the "
                          "shard thread");
        j->done(s, j, j->run(j));
        return;
    }
    s->meta_inflight++;
    s->meta_load[t]++;
    j->thread_ = t;
    int rc = broker_mailbox_push(&s->meta_workers[t]->requests, j);
    LM_ASSERT(rc == 0); /* at most BROKER_META_JOBS_INFLIGHT_MAX in flight */
    uint64_t one = 1;
    ssize_t n = write(s->meta_workers[t]->wake_fd, &one, sizeof(one));
    LM_ASSERT(n == sizeof(one) || errno == EAGAIN);
}

void broker_shard_meta_job(struct broker_shard *s, struct broker_meta_job *j)
{
    LM_ASSERT(j->run != NULL && j->done != NULL);
    j->res_ = 0;
    j->next_ = NULL;
    if (s->meta_inflight == BROKER_META_JOBS_INFLIGHT_MAX || s->meta_wait_head != NULL) {
        if (s->meta_wait_tail != NULL)
            s->meta_wait_tail->next_ = j;
        else
            s->meta_wait_head = j;
        s->meta_wait_tail = j;
        return;
    }
    meta_issue(s, j);
}

/* Completions from the metadata workers (polled every loop turn with the fsyncs'). */
static void meta_poll(struct broker_shard *s)
{
    if (s->meta_inflight == 0)
        return;
    for (uint32_t t = 0; t < BROKER_META_THREADS; t++) {
        if (s->meta_workers[t] == NULL)
            continue;
        struct broker_meta_job *j;
        for (int i = 0; i < BROKER_META_JOBS_INFLIGHT_MAX; i++) {
            if ((j = broker_mailbox_pop(&s->meta_workers[t]->done)) == NULL)
                break;
            LM_ASSERT(s->meta_inflight > 0 && j->thread_ == t && s->meta_load[t] > 0);
            s->meta_inflight--;
            s->meta_load[t]--;
            /* Waiting calls take the freed room before done() may queue more (FIFO). */
            while (s->meta_wait_head != NULL && s->meta_inflight < BROKER_META_JOBS_INFLIGHT_MAX) {
                struct broker_meta_job *w = s->meta_wait_head;
                s->meta_wait_head = w->next_;
                if (s->meta_wait_head == NULL)
                    s->meta_wait_tail = NULL;
                w->next_ = NULL;
                meta_issue(s, w);
            }
            j->done(s, j, j->res_);
        }
    }
}

/* ---- timers ------------------------------------------------------------------------------ */

static void heap_swap(struct broker_shard *s, uint32_t a, uint32_t b)
{
    struct broker_timer *t = s->timers[a];
    s->timers[a] = s->timers[b];
    s->timers[b] = t;
    s->timers[a]->heap_index_ = a;
    s->timers[b]->heap_index_ = b;
}

static void heap_up(struct broker_shard *s, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (s->timers[p]->deadline_ms_ <= s->timers[i]->deadline_ms_)
            break;
        heap_swap(s, i, p);
        i = p;
    }
}

static void heap_down(struct broker_shard *s, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->timers_count && s->timers[l]->deadline_ms_ < s->timers[m]->deadline_ms_)
            m = l;
        if (r < s->timers_count && s->timers[r]->deadline_ms_ < s->timers[m]->deadline_ms_)
            m = r;
        if (m == i)
            return;
        heap_swap(s, i, m);
        i = m;
    }
}

int broker_timer_start(struct broker_shard *s, struct broker_timer *t, uint64_t delay_ms,
                       void (*fn)(struct broker_shard *, struct broker_timer *), void *arg)
{
    LM_ASSERT(fn != NULL);
    if (LM_GROW(s->timers, s->timers_cap, (size_t)s->timers_count + 1, 64) != 0)
        return LM_E_NOMEM;
    t->fn = fn;
    t->arg = arg;
    t->deadline_ms_ = broker_now_ms() + delay_ms;
    t->heap_index_ = s->timers_count;
    s->timers[s->timers_count++] = t;
    heap_up(s, t->heap_index_);
    return 0;
}

void broker_timer_cancel(struct broker_shard *s, struct broker_timer *t)
{
    uint32_t i = t->heap_index_;
    if (i == UINT32_MAX || i >= s->timers_count || s->timers[i] != t)
        return;
    t->heap_index_ = UINT32_MAX;
    s->timers_count--;
    if (i == s->timers_count)
        return;
    s->timers[i] = s->timers[s->timers_count];
    s->timers[i]->heap_index_ = i;
    heap_down(s, i);
    heap_up(s, i);
}

/* Fires due timers; returns ms until the next one, or -1 when none. */
int timers_run(struct broker_shard *s)
{
    uint64_t now = broker_now_ms();
    while (s->timers_count > 0 && s->timers[0]->deadline_ms_ <= now) {
        struct broker_timer *t = s->timers[0];
        broker_timer_cancel(s, t);
        t->fn(s, t);
    }
    if (s->timers_count == 0)
        return -1;
    uint64_t d = s->timers[0]->deadline_ms_ - now;
    return d > 60000 ? 60000 : (int)d;
}
