/*
 * bench_idle.c - the process of an idle row: library connections that do
 * nothing, so that the orchestrator can read what they cost the broker.
 *
 * It goes in stages, each one reported in the shared block and each next
 * one waited for, so that the orchestrator reads the broker's VmRSS at
 * the right moments (see bench_shared in bench.h): first one warm-up
 * connection, made and closed, so that what the broker sets up once does
 * not count; then every connection, each flushed, so that the broker has
 * handled its HELLO; then, once measured, it closes them. If RLIMIT_NOFILE
 * will not allow them all, it opens fewer and says why, rather than fail.
 */
#include "bench.h"

#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

/* Wait (bounded, and abort) until the orchestrator lets us go on to `go`. */
static int idle_wait_go(bench_shared *sh, uint32_t go)
{
    uint64_t deadline = bench_now_ns() + (uint64_t)BENCH_WAIT_MS * 1000000u;

    while (atomic_load(&sh->go) < go) {
        if (bench_aborted(sh)) {
            return -1;
        }
        if (bench_now_ns() >= deadline) {
            return bench_fail(sh, "idle clients: the bench did not measure within %d s",
                              BENCH_WAIT_MS / 1000);
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* How many of `wanted` connections fit under RLIMIT_NOFILE, after raising
 * its soft limit to the hard one; if fewer, says why in sh->idle_note. */
static unsigned idle_fit(bench_shared *sh, unsigned wanted)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        return wanted; /* we will see at connect time */
    }
    if (rl.rlim_cur != rl.rlim_max) {
        struct rlimit raised = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
            rl = raised;
        }
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)wanted + BENCH_IDLE_FD_MARGIN) {
        return wanted;
    }
    unsigned fit =
        rl.rlim_cur > BENCH_IDLE_FD_MARGIN ? (unsigned)(rl.rlim_cur - BENCH_IDLE_FD_MARGIN) : 0;
    snprintf(sh->idle_note, sizeof(sh->idle_note),
             "only %u of %u connections: RLIMIT_NOFILE allows %llu descriptors (hard limit "
             "%llu); raise the hard limit to measure all of them",
             fit, wanted, (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
    return fit;
}

int bench_idle_run(const bench_job *job, bench_shared *sh)
{
    sb_options opts = {
        .endpoint = job->endpoint,
        .name = "sockbus bench",
        .no_echo = true,
        .timeout_ms = BENCH_WAIT_MS,
    };
    unsigned count = idle_fit(sh, job->connections);
    unsigned opened = 0;
    int rc = -1;
    int r;

    if (count == 0) {
        return bench_fail(sh, "idle clients: %s", sh->idle_note);
    }
    sb_client **clients = calloc(count, sizeof(*clients));
    if (clients == NULL) {
        return bench_fail(sh, "idle clients: out of memory for %u connections", count);
    }

    /* One connection first, gone before the first RSS is read: what the
     * broker sets up once (code paths faulted in, lazily made tables) is
     * not the cost of a connection. */
    sb_client *warm = NULL;
    r = sb_connect(&warm, &opts);
    if (r == 0) {
        r = sb_flush(warm, BENCH_WAIT_MS);
    }
    sb_close(warm);
    if (r < 0) {
        bench_fail(sh, "idle clients: cannot connect to %s: %s; is sockbusd running there?",
                   job->endpoint, sb_strerror(r));
        goto out;
    }
    atomic_store(&sh->stage, 1);
    if (idle_wait_go(sh, 1) < 0) {
        goto out;
    }

    for (; opened < count; opened++) {
        r = sb_connect(&clients[opened], &opts);
        if (r < 0) {
            bench_fail(sh, "idle clients: connection %u of %u to %s failed: %s%s", opened + 1,
                       count, job->endpoint, sb_strerror(r),
                       r == SB_E_LIMIT ? " (the broker's max_connections)" : "");
            goto out;
        }
    }
    /* A barrier on each: once it returns, the broker has handled the
     * connection's HELLO and everything after it. */
    for (unsigned i = 0; i < count; i++) {
        r = sb_flush(clients[i], BENCH_WAIT_MS);
        if (r < 0) {
            bench_fail(sh, "idle clients: connection %u of %u: the flush failed: %s", i + 1, count,
                       sb_strerror(r));
            goto out;
        }
    }
    sh->idle_opened = count;
    atomic_store(&sh->stage, 2);
    if (idle_wait_go(sh, 2) < 0) {
        goto out;
    }
    rc = 0;
out:
    for (unsigned i = 0; i < opened; i++) {
        sb_close(clients[i]);
    }
    free(clients);
    return rc;
}
