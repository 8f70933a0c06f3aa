/*
 * bench_jobs.c - running one row of `sockbus bench` once: a job.
 *
 * A job maps a fresh shared block (bench_shared.c) and forks its processes,
 * receivers first (subscribers, or the responder), then the sender (the
 * publisher, or the requester). A raw row has the same roles over socket
 * pairs made here, each child keeping only its own ends, so that a peer's
 * exit shows as end of stream; a relay row puts a relay process (forked
 * first) between the sender and the receivers, on pairs of its own. A child finds everything it
 * needs in the job, filled in before fork(), and reports through the shared block; it dies with us
 * (PR_SET_PDEATHSIG). The orchestrator polls its children by pid against a deadline: a child that
 * died without saying why becomes the error line, the others get a grace period to stop after the
 * first failure, and a signal kills them all. Then it folds the job into its row: the rates
 * measured at the receivers, the loss, and for rtt every sample.
 *
 * idle runs differently: a fresh private broker per run (one that served
 * other rows keeps freed memory that new connections would reuse unseen)
 * and one client process that opens its connections in stages, while the
 * orchestrator reads the broker's VmRSS before and after.
 *
 * Why one file of about 620 lines: the idle run (the last 130) starts its
 * process and reaps it with the same job_spawn() and job_wait() as every
 * other row; a file of its own would make the job's context and those
 * functions public for it alone.
 */
#include "bench_cmd.h"
#include "cli.h"

#include <errno.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* idle: how long the clients may take to connect: a base, plus this per
 * connection. */
#define BENCH_IDLE_CONNECT_US_PER_CONN 1000u
/* A receiver reports its count at most this many messages apart. */
#define BENCH_REPORT_EVERY_MAX 256u
/* rtt samples kept per run: plenty for any round trip above 1 us. */
#define BENCH_SAMPLES_PER_MS 1000u
#define BENCH_SAMPLES_MIN    (100u * 1000u)
#define BENCH_SAMPLES_MAX    (16u * 1000u * 1000u)
/* How often the orchestrator looks at its children (and the progress). */
#define BENCH_POLL_MS     10
#define BENCH_PROGRESS_MS 200
/* After one process failed, how long the others get to stop by themselves. */
#define BENCH_ABORT_GRACE_MS 1000

typedef enum job_role {
    ROLE_PUBLISHER,
    ROLE_SUBSCRIBER,
    ROLE_RESPONDER,
    ROLE_REQUESTER,
    ROLE_RAW_SENDER,
    ROLE_RAW_RECEIVER,
    ROLE_RAW_RESPONDER,
    ROLE_RAW_REQUESTER,
    ROLE_RELAY,
    ROLE_IDLE,
} job_role;

static const char *role_name(job_role role)
{
    switch (role) {
    case ROLE_PUBLISHER:
        return "publisher";
    case ROLE_SUBSCRIBER:
        return "subscriber";
    case ROLE_RESPONDER:
    case ROLE_RAW_RESPONDER:
        return "responder";
    case ROLE_REQUESTER:
    case ROLE_RAW_REQUESTER:
        return "requester";
    case ROLE_RAW_SENDER:
        return "sender";
    case ROLE_RAW_RECEIVER:
        return "receiver";
    case ROLE_RELAY:
        return "relay";
    case ROLE_IDLE:
        return "idle client";
    }
    return "?";
}

typedef struct job_child {
    pid_t pid;
    job_role role;
    bool reaped;
    int status;
} job_child;

/* Everything about one job the orchestrator keeps. */
typedef struct job_ctx {
    bench_job job;
    bench_shared *sh;
    uint64_t *samples;
    uint64_t sample_cap;
    job_child children[BENCH_MAX_SUBS + 3];
    unsigned child_count;
    /* Raw sockets: [i][0] the sender's end (the relay's, through a relay),
     * [i][1] the receiver's (or the responder's). */
    int fds[BENCH_MAX_SUBS][2];
    unsigned fd_pairs;
    /* Through a relay: [0] the sender's (or requester's) end, [1] the
     * relay's; else both -1. */
    int up[2];
} job_ctx;

/* Close the raw sockets but `keep` (-1: all of them). A child keeps only
 * its own ends, so that a peer's exit shows as end of stream. */
static void job_close_fds(job_ctx *jc, int keep)
{
    for (unsigned i = 0; i < jc->fd_pairs; i++) {
        for (int e = 0; e < 2; e++) {
            int fd = jc->fds[i][e];
            if (fd >= 0 && fd != keep) {
                close(fd);
            }
        }
    }
    for (int e = 0; e < 2; e++) {
        if (jc->up[e] >= 0 && jc->up[e] != keep) {
            close(jc->up[e]);
        }
    }
}

/* The relay keeps its end of every pair; its peers keep theirs. */
static void job_close_all_but_relay(job_ctx *jc, int *out)
{
    for (unsigned i = 0; i < jc->fd_pairs; i++) {
        out[i] = jc->fds[i][0];
        close(jc->fds[i][1]);
    }
    close(jc->up[0]);
}

/* The body of a forked process. Never returns. */
static void job_child_main(job_ctx *jc, job_role role, unsigned index)
{
    const bench_job *job = &jc->job;
    int sender_fds[BENCH_MAX_SUBS];
    int r = -1;

    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);

    switch (role) {
    case ROLE_PUBLISHER:
        job_close_fds(jc, -1);
        r = bench_publisher_run(job, jc->sh);
        break;
    case ROLE_SUBSCRIBER:
        job_close_fds(jc, -1);
        r = bench_subscriber_run(job, jc->sh, index);
        break;
    case ROLE_RESPONDER:
        job_close_fds(jc, -1);
        r = bench_responder_run(job, jc->sh);
        break;
    case ROLE_REQUESTER:
        job_close_fds(jc, -1);
        r = bench_requester_run(job, jc->sh);
        break;
    case ROLE_RAW_SENDER:
        if (jc->up[0] >= 0) {
            job_close_fds(jc, jc->up[0]);
            r = bench_raw_sender_run(job, jc->sh, &jc->up[0], 1);
            break;
        }
        for (unsigned i = 0; i < jc->fd_pairs; i++) {
            sender_fds[i] = jc->fds[i][0];
            close(jc->fds[i][1]);
        }
        r = bench_raw_sender_run(job, jc->sh, sender_fds, jc->fd_pairs);
        break;
    case ROLE_RAW_RECEIVER:
        job_close_fds(jc, jc->fds[index][1]);
        r = bench_raw_receiver_run(job, jc->sh, index, jc->fds[index][1]);
        break;
    case ROLE_RAW_RESPONDER:
        job_close_fds(jc, jc->fds[0][1]);
        r = bench_raw_responder_run(job, jc->sh, jc->fds[0][1]);
        break;
    case ROLE_RAW_REQUESTER: {
        int fd = jc->up[0] >= 0 ? jc->up[0] : jc->fds[0][0];
        job_close_fds(jc, fd);
        r = bench_raw_requester_run(job, jc->sh, fd);
        break;
    }
    case ROLE_RELAY:
        job_close_all_but_relay(jc, sender_fds);
        r = bench_relay_run(job, jc->sh, jc->up[1], sender_fds, jc->fd_pairs);
        break;
    case ROLE_IDLE:
        job_close_fds(jc, -1);
        r = bench_idle_run(job, jc->sh);
        break;
    }
    _exit(r == 0 ? 0 : 1);
}

static int job_spawn(job_ctx *jc, job_role role, unsigned index)
{
    pid_t parent = getpid();

    fflush(NULL); /* nothing buffered may be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        return bench_fail(jc->sh, "cannot start the %s process: %s", role_name(role),
                          strerror(errno));
    }
    if (pid == 0) {
        /* Never outlive the bench, even when it is killed. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(1);
        }
        job_child_main(jc, role, index);
    }
    jc->children[jc->child_count++] = (job_child){.pid = pid, .role = role};
    return 0;
}

static int job_spawn_all(job_ctx *jc)
{
    const bench_job *job = &jc->job;
    const bool raw = bench_transport_is_raw(job->transport);
    const bool relay = bench_transport_is_relay(job->transport);
    const unsigned pairs = job->workload == BENCH_RTT ? 1 : job->receivers;

    jc->up[0] = jc->up[1] = -1;
    for (unsigned i = 0; raw && i <= pairs; i++) {
        /* The last pair, through a relay only, is the sender's to it. */
        if (i == pairs && !relay) {
            break;
        }
        int r = bench_raw_pair(job->transport, i < pairs ? jc->fds[i] : jc->up);
        if (r < 0) {
            job_close_fds(jc, -1);
            jc->fd_pairs = 0;
            jc->up[0] = jc->up[1] = -1;
            return bench_fail(jc->sh, "cannot connect a %s socket pair: %s",
                              bench_transport_name(job->transport), strerror(-r));
        }
        if (i < pairs) {
            jc->fd_pairs++;
        }
    }

    /* Receivers first: the sender waits until they are all ready. The
     * relay needs no waiting for: the sockets exist before it runs. */
    int r = relay ? job_spawn(jc, ROLE_RELAY, 0) : 0;
    if (r == 0 && job->workload == BENCH_RTT) {
        r = job_spawn(jc, raw ? ROLE_RAW_RESPONDER : ROLE_RESPONDER, 0);
        if (r == 0) {
            r = job_spawn(jc, raw ? ROLE_RAW_REQUESTER : ROLE_REQUESTER, 0);
        }
    } else if (r == 0) {
        for (unsigned i = 0; r == 0 && i < job->receivers; i++) {
            r = job_spawn(jc, raw ? ROLE_RAW_RECEIVER : ROLE_SUBSCRIBER, i);
        }
        if (r == 0) {
            r = job_spawn(jc, raw ? ROLE_RAW_SENDER : ROLE_PUBLISHER, 0);
        }
    }
    job_close_fds(jc, -1); /* the children have theirs */
    jc->fd_pairs = 0;
    jc->up[0] = jc->up[1] = -1;
    return r;
}

static void job_kill_all(job_ctx *jc)
{
    for (unsigned i = 0; i < jc->child_count; i++) {
        if (!jc->children[i].reaped) {
            kill(jc->children[i].pid, SIGKILL);
        }
    }
    for (unsigned i = 0; i < jc->child_count; i++) {
        if (!jc->children[i].reaped) {
            while (waitpid(jc->children[i].pid, &jc->children[i].status, 0) < 0 && errno == EINTR) {
            }
            jc->children[i].reaped = true;
        }
    }
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* a signal ends it early: fine, we look again */
}

/* Wait for every child, with a deadline, watching for errors and signals.
 * Returns 0, -1 on a failure (sh->error says which), or -EINTR. */
static int job_wait(job_ctx *jc, bench_progress *pg, const char *label, unsigned run, unsigned runs,
                    int64_t duration_ms)
{
    const int64_t start = cli_now_ms();
    const int64_t deadline =
        start + jc->job.setup_ms + duration_ms + 2 * BENCH_WAIT_MS + BENCH_END_GRACE_MS;
    int64_t abort_seen = 0;
    unsigned left = jc->child_count;

    for (;;) {
        if (bench_stop_signal != 0) {
            /* Checked first: children that died of the same Ctrl-C are
             * not failures to report. */
            job_kill_all(jc);
            return -EINTR;
        }
        for (unsigned i = 0; i < jc->child_count; i++) {
            job_child *c = &jc->children[i];
            if (c->reaped || waitpid(c->pid, &c->status, WNOHANG) != c->pid) {
                continue;
            }
            c->reaped = true;
            left--;
            if (!(WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0) &&
                atomic_load(&jc->sh->error_set) == 0) {
                /* It died without saying why: a crash or a kill. */
                if (WIFSIGNALED(c->status)) {
                    bench_fail(jc->sh, "the %s process was killed by signal %d (%s)",
                               role_name(c->role), WTERMSIG(c->status),
                               strsignal(WTERMSIG(c->status)));
                } else {
                    bench_fail(jc->sh, "the %s process exited with status %d", role_name(c->role),
                               WEXITSTATUS(c->status));
                }
            }
        }
        if (left == 0) {
            return bench_aborted(jc->sh) ? -1 : 0;
        }
        int64_t now = cli_now_ms();
        if (bench_aborted(jc->sh)) {
            if (abort_seen == 0) {
                abort_seen = now;
            } else if (now - abort_seen >= BENCH_ABORT_GRACE_MS) {
                job_kill_all(jc);
                return -1;
            }
        } else if (now >= deadline) {
            bench_fail(jc->sh, "the run did not finish within %lld s; is the broker stuck?",
                       (long long)((deadline - start) / 1000));
            job_kill_all(jc);
            return -1;
        }
        if (now - pg->last_ms >= BENCH_PROGRESS_MS) {
            pg->last_ms = now;
            int64_t shown = now - start < duration_ms ? now - start : duration_ms;
            bench_progress_show(pg, label, run, runs, shown, duration_ms);
        }
        sleep_ms(BENCH_POLL_MS);
    }
}

/* Fold one finished job into its row. Returns 0 or -1 (with sh->error). */
static int job_collect(job_ctx *jc, bench_row *row, unsigned run)
{
    const bench_job *job = &jc->job;
    bench_shared *sh = jc->sh;

    if (job->workload == BENCH_RTT) {
        uint64_t n = sh->sample_count;
        if (n == 0) {
            return bench_fail(sh, "no round trip was measured");
        }
        if (row->sample_count + n > row->sample_cap) {
            size_t cap = row->sample_cap ? row->sample_cap : n;
            while (cap < row->sample_count + n) {
                cap *= 2;
            }
            uint64_t *p = realloc(row->samples, cap * sizeof(uint64_t));
            if (p == NULL) {
                return bench_fail(sh, "out of memory for %zu samples", cap);
            }
            row->samples = p;
            row->sample_cap = cap;
        }
        bench_stats_sort(jc->samples, n);
        row->rtt_p50[run] = (double)bench_stats_percentile(jc->samples, n, 50.0);
        memcpy(row->samples + row->sample_count, jc->samples, n * sizeof(uint64_t));
        row->sample_count += n;
        uint64_t span = sh->last_ns > sh->first_ns ? sh->last_ns - sh->first_ns : 1;
        row->rate[run] = (double)n * 1e9 / (double)span; /* round trips/s */
        row->runs = run + 1;
        return 0;
    }

    if (sh->published == 0) {
        return bench_fail(sh, "the sender sent nothing within %.1f s",
                          (double)job->duration_ns / 1e9);
    }
    double rate = 0.0;
    uint64_t received = 0;
    for (unsigned i = 0; i < job->receivers; i++) {
        const bench_receiver *rc = &sh->receivers[i];
        uint64_t n = atomic_load(&rc->received);
        received += n;
        row->dropped += rc->dropped;
        if (n >= 2 && rc->last_ns > rc->first_ns) {
            /* n - 1 messages arrived after the first one was stamped. */
            rate += (double)(n - 1) * 1e9 / (double)(rc->last_ns - rc->first_ns);
        }
    }
    row->published += sh->published;
    row->expected += sh->published * job->receivers;
    row->received += received;
    row->rate[run] = rate;
    row->runs = run + 1;
    return 0;
}

/* Run one row once. Returns 0, -1 after printing the error, or -EINTR. */
int bench_run_row(bench_ctx *ctx, bench_row *row, unsigned run)
{
    const bench_args *args = ctx->args;
    job_ctx jc;
    char label[96];
    int r;

    memset(&jc, 0, sizeof(jc));
    bench_job *job = &jc.job;
    job->workload = row->workload;
    job->transport = row->transport;
    job->size = row->size;
    job->receivers = row->workload == BENCH_RTT ? 1 : row->receivers;
    job->subjects = row->subjects;
    job->setup_ms = (int)((uint64_t)row->subjects * BENCH_SCALE_SETUP_US_PER_SUB / 1000u);
    job->duration_ns = args->duration_ms * 1000000;
    job->endpoint = row->transport == BENCH_TCP ? ctx->tcp_endpoint : ctx->unix_endpoint;
    /* Fresh subjects per job: a straggler of an earlier job cannot count. */
    ctx->job_counter++;
    snprintf(job->subject, sizeof(job->subject), "bench.%ld.%u", (long)getpid(), ctx->job_counter);
    snprintf(job->reply, sizeof(job->reply), "_INBOX.bench.%ld.%u", (long)getpid(),
             ctx->job_counter);
    size_t frame = bench_frame_size(job);
    job->window_msgs = args->window_bytes / frame;
    if (job->window_msgs < 2) {
        job->window_msgs = 2;
    }
    job->report_every = job->window_msgs / 8;
    if (job->report_every < 1) {
        job->report_every = 1;
    }
    if (job->report_every > BENCH_REPORT_EVERY_MAX) {
        job->report_every = BENCH_REPORT_EVERY_MAX;
    }
    if (row->workload == BENCH_RTT) {
        uint64_t cap = (uint64_t)args->duration_ms * BENCH_SAMPLES_PER_MS;
        jc.sample_cap = cap < BENCH_SAMPLES_MIN   ? BENCH_SAMPLES_MIN
                        : cap > BENCH_SAMPLES_MAX ? BENCH_SAMPLES_MAX
                                                  : cap;
    }
    for (unsigned i = 0; i < BENCH_MAX_SUBS; i++) {
        jc.fds[i][0] = jc.fds[i][1] = -1;
    }
    bench_row_label(row, label, sizeof(label));

    r = bench_shared_new(&jc.sh, &jc.samples, jc.sample_cap);
    if (r < 0) {
        bench_progress_clear(&ctx->progress);
        fprintf(stderr, "sockbus bench: %s: cannot map shared memory: %s\n", label, strerror(-r));
        return -1;
    }
    job->samples = jc.samples;
    job->sample_cap = jc.sample_cap;

    r = job_spawn_all(&jc);
    if (r == 0 || jc.child_count > 0) {
        int w = job_wait(&jc, &ctx->progress, label, run, args->runs, args->duration_ms);
        r = r < 0 ? r : w;
    }
    if (bench_stop_signal != 0) {
        r = -EINTR; /* whatever failed, it failed because of Ctrl-C */
    }
    if (r == 0) {
        r = job_collect(&jc, row, run);
    }
    if (r == -1) {
        bench_progress_clear(&ctx->progress);
        fprintf(stderr, "sockbus bench: %s: %s\n", label,
                jc.sh->error[0] ? jc.sh->error : "failed");
    }
    bench_shared_free(jc.sh, jc.samples, jc.sample_cap);
    return r;
}

/* ---- idle --------------------------------------------------------------- */

/* Wait until the idle client reaches `stage`, for at most timeout_ms.
 * Returns 0, -1 on a failure (the client died, or said why in sh->error),
 * or -EINTR. Does not reap the client: job_wait() does, and says how it
 * died. */
static int idle_wait_stage(job_ctx *jc, uint32_t stage, int64_t timeout_ms, const char *what)
{
    const int64_t deadline = cli_now_ms() + timeout_ms;
    const job_child *c = &jc->children[0];

    for (;;) {
        if (bench_stop_signal != 0) {
            return -EINTR;
        }
        if (atomic_load(&jc->sh->stage) >= stage) {
            return 0;
        }
        if (bench_aborted(jc->sh)) {
            return -1;
        }
        siginfo_t info = {0};
        if (waitid(P_PID, (id_t)c->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == c->pid) {
            return -1;
        }
        if (cli_now_ms() >= deadline) {
            return bench_fail(jc->sh, "the idle clients did not %s within %lld s", what,
                              (long long)(timeout_ms / 1000));
        }
        sleep_ms(1);
    }
}

/*
 * One idle run: a fresh broker, its RSS once a warm-up connection has come
 * and gone, then with every idle connection open. A fresh one because a
 * broker that served other rows has freed memory in its heap that new
 * connections would take without a change in RSS. Returns 0 (the row
 * records a skip with -s), -1 after printing the error, or -EINTR.
 */
int bench_run_idle(bench_ctx *ctx, bench_row *row, unsigned run)
{
    const bench_args *args = ctx->args;
    bench_broker broker = {.pid = -1};
    job_ctx jc;
    char label[96];
    uint64_t before = 0;
    uint64_t after = 0;
    int r;

    if (ctx->broker_path == NULL) {
        snprintf(row->note, sizeof(row->note),
                 "needs a fresh private broker, and -s names a running one");
        return 0;
    }
    memset(&jc, 0, sizeof(jc));
    for (unsigned i = 0; i < BENCH_MAX_SUBS; i++) {
        jc.fds[i][0] = jc.fds[i][1] = -1;
    }
    bench_row_label(row, label, sizeof(label));

    snprintf(broker.path, sizeof(broker.path), "%s", ctx->broker_path);
    if ((uint64_t)row->connections + BENCH_IDLE_FD_MARGIN > BENCH_BROKER_CONNECTIONS_DEFAULT) {
        broker.max_connections = row->connections + BENCH_IDLE_FD_MARGIN;
    }
    bench_progress_clear(&ctx->progress);
    if (bench_broker_start(&broker) < 0) {
        return -1;
    }
    r = bench_shared_new(&jc.sh, NULL, 0);
    if (r < 0) {
        fprintf(stderr, "sockbus bench: %s: cannot map shared memory: %s\n", label, strerror(-r));
        bench_broker_stop(&broker);
        return -1;
    }
    bench_job *job = &jc.job;
    job->workload = BENCH_IDLE;
    job->transport = row->transport;
    job->connections = row->connections;
    job->endpoint = row->transport == BENCH_TCP ? broker.tcp_endpoint : broker.unix_endpoint;
    job->setup_ms =
        BENCH_WAIT_MS + (int)((uint64_t)row->connections * BENCH_IDLE_CONNECT_US_PER_CONN / 1000u);

    r = job_spawn(&jc, ROLE_IDLE, 0);
    if (r == 0) {
        r = idle_wait_stage(&jc, 1, 2 * BENCH_WAIT_MS, "make the warm-up connection");
    }
    if (r == 0 && (r = bench_broker_rss(&broker, &before)) < 0) {
        r = bench_fail(jc.sh, "cannot read the broker's VmRSS: %s", strerror(-r));
    }
    if (r == 0) {
        atomic_store(&jc.sh->go, 1);
        r = idle_wait_stage(&jc, 2, job->setup_ms, "connect");
    }
    if (r == 0 && (r = bench_broker_rss(&broker, &after)) < 0) {
        r = bench_fail(jc.sh, "cannot read the broker's VmRSS: %s", strerror(-r));
    }
    if (r == 0) {
        row->sanitized = bench_broker_sanitized(&broker);
    }
    atomic_store(&jc.sh->go, 2); /* close them */
    if (jc.child_count > 0) {
        int w = job_wait(&jc, &ctx->progress, label, run, args->runs, 0);
        r = r < 0 ? r : w;
    }
    if (bench_stop_signal != 0) {
        r = -EINTR;
    }
    if (r == 0) {
        uint64_t opened = jc.sh->idle_opened;
        uint64_t growth = after > before ? after - before : 0;
        row->rate[run] = opened > 0 ? (double)growth / (double)opened : 0.0;
        row->opened = run == 0 || opened < row->opened ? opened : row->opened;
        row->rss_before = before;
        row->rss_after = after;
        if (jc.sh->idle_note[0] != '\0') {
            snprintf(row->note, sizeof(row->note), "%s", jc.sh->idle_note);
        }
        row->runs = run + 1;
    }
    if (r == -1) {
        bench_progress_clear(&ctx->progress);
        fprintf(stderr, "sockbus bench: %s: %s\n", label,
                jc.sh->error[0] ? jc.sh->error : "failed");
    }
    bench_shared_free(jc.sh, NULL, 0);
    bench_broker_stop(&broker);
    return r;
}
