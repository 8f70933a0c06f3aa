/*
 * bench_cmd.h - what the parts of the `sockbus bench` command share: the
 * command line as parsed (bench_options.c), the plan of rows
 * (bench_plan.c), running a row (bench_jobs.c), and the progress line and
 * the interrupt flag of the command itself (bench.c). The processes of a
 * job and the report need none of it: they see bench.h only.
 */
#ifndef SOCKBUS_BENCH_CMD_H
#define SOCKBUS_BENCH_CMD_H

#include "bench.h"

#include <signal.h>

/* The subcommand, as cli.h's error lines name it. */
#define CMD "bench"

/* sockbusd's defaults (broker/broker.h): max_subscriptions per connection
 * and max_connections. Our private broker gets --scale-subs on top of the
 * former, and room for --idle-conns if they pass the latter. */
#define BENCH_BROKER_SUBSCRIPTIONS_DEFAULT 65536u
/* The broker memory each of those subscriptions may cost it
 * (max_subscription_bytes): a bench subject costs under 700 bytes. */
#define BENCH_BROKER_BYTES_PER_SUBSCRIPTION 1024u
#define BENCH_BROKER_CONNECTIONS_DEFAULT   4096u
#define BENCH_MAX_SIZES                    16
#define BENCH_MAX_ROWS                     512
/* Room kept in a frame for our subjects ("bench.PID.N", "_INBOX.bench.PID.N"). */
#define BENCH_SUBJECT_ROOM 128u

/* ---- the command line (bench_options.c) --------------------------------- */

enum { WL_THRU, WL_FANOUT, WL_RTT, WL_SWEEP, WL_SCALE, WL_IDLE, WL_COUNT };

typedef struct bench_args {
    const char *endpoint; /* -s: bench this broker instead of our own */
    const char *broker;   /* --broker PATH */
    const char *svg;      /* --svg FILE */
    bool json;
    bool quiet;
    bool workloads[WL_COUNT]; /* thru, fanout, rtt, sweep, scale, idle */
    bool transports[BENCH_TRANSPORT_COUNT];
    bool transports_given;
    size_t sizes[BENCH_MAX_SIZES];
    size_t size_count; /* 0: the defaults */
    unsigned subs;
    int64_t duration_ms;
    unsigned runs;
    uint64_t window_bytes;
    unsigned scale_subs; /* --scale-subs */
    unsigned idle_conns; /* --idle-conns */
} bench_args;

/* Fill *args with the defaults, then with what argv says. Returns 0; -1
 * when --help was printed (exit 0); or CLI_EXIT_USAGE after one line on
 * stderr. */
int bench_parse(int argc, char **argv, bench_args *args);

/* ---- the plan (bench_plan.c) -------------------------------------------- */

typedef struct bench_plan {
    bench_row rows[BENCH_MAX_ROWS];
    size_t count;
} bench_plan;

/* The rows `args` asks for, sorted, each with room for args->runs results.
 * Returns 0; CLI_EXIT_USAGE or CLI_EXIT_FAILURE after one line on stderr
 * (call bench_plan_free() either way). */
int bench_plan_make(bench_plan *plan, const bench_args *args);
void bench_plan_free(bench_plan *plan);

/* "thru unix 128 B", "fanout 1->4 tcp 16 B", "scale 100k unix 128 B",
 * "idle unix 1000 connections": how rows are named in lines. */
const char *bench_row_label(const bench_row *row, char *buf, size_t len);

/* ---- the command (bench.c) ---------------------------------------------- */

/* Set by SIGINT/SIGTERM; the orchestrator cleans up and dies of it. */
extern volatile sig_atomic_t bench_stop_signal;

/* The progress line on stderr (a terminal only). */
typedef struct bench_progress {
    bool enabled;
    bool visible; /* a line is on the terminal */
    size_t done;  /* jobs finished */
    size_t total; /* jobs in all */
    int64_t last_ms;
} bench_progress;

void bench_progress_show(bench_progress *p, const char *label, unsigned run, unsigned runs,
                         int64_t elapsed_ms, int64_t duration_ms);
void bench_progress_clear(bench_progress *p);

/* ---- running a row (bench_jobs.c) --------------------------------------- */

/* What every run of the command shares. */
typedef struct bench_ctx {
    const bench_args *args;
    const char *broker_path; /* the sockbusd idle starts; NULL with -s */
    const char *unix_endpoint;
    const char *tcp_endpoint;
    unsigned job_counter;
    bench_progress progress;
} bench_ctx;

/* Run one row once (not idle). Returns 0, -1 after printing the error, or
 * -EINTR. */
int bench_run_row(bench_ctx *ctx, bench_row *row, unsigned run);

/* Run one idle row once, on a fresh broker of its own. Returns 0 (the row
 * records a skip with -s), -1 after printing the error, or -EINTR. */
int bench_run_idle(bench_ctx *ctx, bench_row *row, unsigned run);

#endif /* SOCKBUS_BENCH_CMD_H */
