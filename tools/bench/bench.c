/*
 * bench.c - `sockbus bench`: how fast is the bus, and what does the broker
 * cost? The command itself: it checks the endpoints before the runs,
 * starts the private broker, catches SIGINT and SIGTERM, runs the plan and
 * prints the report. Its parts: bench_options.c reads the command line,
 * bench_plan.c makes the rows, bench_jobs.c runs a row once; bench.h lists
 * the rest.
 *
 * What is measured. A row is one workload over one transport at one
 * payload size:
 *   thru    1 publisher -> 1 subscriber, msgs/s and MB/s at the subscriber;
 *   fanout  1 publisher -> K subscribers, each must receive everything;
 *           msgs/s delivered, summed over the subscribers;
 *   rtt     a requester and a responder, one request in flight, after
 *           BENCH_RTT_WARMUP round trips; p50/p90/p99/p99.9/max of every
 *           round trip (nearest rank, no buckets);
 *   sweep   thru at 16 B, 128 B, 1 KiB, 16 KiB and 64 KiB;
 *   scale   thru at 128 B twice: the subscriber holding 1 subscription,
 *           and holding --scale-subs (100,000) on distinct subjects, all
 *           made and confirmed before the timed phase; the publisher cycles
 *           through every subject in order, so each publish is matched
 *           alone (none repeats the subject before it, none hits the 256
 *           entries of the broker's match cache). The ratio of the two is
 *           what a big routing table costs;
 *   idle    broker RSS per idle connection: a fresh private broker per row
 *           (one that served other rows keeps freed memory that new
 *           connections would reuse unseen), VmRSS from /proc before and
 *           after --idle-conns (1,000) library connections from one
 *           process, each flushed so the broker has handled its HELLO.
 * Transports, side by side in one run: unix and tcp go through the same
 * broker (ours, or the one -s names); raw-unix and raw-tcp send the same
 * frames straight from one process to another with no broker at all
 * (bench_raw.c), so the gap between unix and raw-unix is the broker's cost.
 *
 * How. Publishers, subscribers, requesters and responders are separate
 * processes forked from here, each with its own libsockbus connection
 * (bench_workers.c). They share one MAP_SHARED block (bench_shared.c):
 * readiness, the credit window, results and the first error. A publisher
 * sends for --duration and then an end marker (an empty payload); every
 * payload carries a sequence number, so receivers check order and count
 * gaps. Rates are measured at the receivers, from their first message to
 * the end marker. The publisher never runs more than a window (--window,
 * default 2 MiB of frames, well below the broker's 8 MiB max_pending) ahead
 * of its slowest subscriber, so the broker's slow-consumer policy never
 * fires in a healthy run: loss is published x subscribers - received, and
 * is 0 unless the row says otherwise (the broker's DROPPED notices are
 * counted too). Nothing is allocated or written per message beyond what
 * the library itself does.
 *
 * Our broker. Unless -s is given, we start a private sockbusd on a socket
 * in a temporary directory and on a free 127.0.0.1 port (bench_broker.c),
 * so unix and tcp hit the same process, and stop it at the end: on
 * success, on errors and on SIGINT/SIGTERM. Every process we fork dies
 * with us (PR_SET_PDEATHSIG) and is reaped by pid.
 *
 * --runs N repeats the whole plan N times, the rows interleaved so that a
 * slow phase of the machine does not hit one row only; rates show the
 * median and the min-max spread, latencies come from every sample of
 * every run.
 */
#include "bench_cmd.h"
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

volatile sig_atomic_t bench_stop_signal;

/* ---- the progress line -------------------------------------------------- */

void bench_progress_show(bench_progress *p, const char *label, unsigned run, unsigned runs,
                         int64_t elapsed_ms, int64_t duration_ms)
{
    if (!p->enabled) {
        return;
    }
    char runs_text[32] = "";
    if (runs > 1) {
        snprintf(runs_text, sizeof(runs_text), " (run %u/%u)", run + 1, runs);
    }
    fprintf(stderr, "\r\033[Ksockbus bench: [%zu/%zu] %s%s %.1f/%.1f s", p->done + 1, p->total,
            label, runs_text, (double)elapsed_ms / 1000.0, (double)duration_ms / 1000.0);
    fflush(stderr);
    p->visible = true;
}

void bench_progress_clear(bench_progress *p)
{
    if (p->visible) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
        p->visible = false;
    }
}

/* ---- checks before the runs --------------------------------------------- */

/* Connect once to each broker endpoint: a wrong -s or a broken broker is
 * one clear line now, not an error in a forked publisher. Also checks that
 * the sizes fit the broker's max_frame. */
static int bench_preflight(const bench_ctx *ctx, const bench_plan *plan)
{
    const char *endpoints[2] = {NULL, NULL};
    bool need[2] = {false, false};

    for (size_t i = 0; i < plan->count; i++) {
        if (plan->rows[i].workload == BENCH_IDLE) {
            continue; /* its own broker */
        }
        need[0] |= plan->rows[i].transport == BENCH_UNIX;
        need[1] |= plan->rows[i].transport == BENCH_TCP;
    }
    endpoints[0] = need[0] ? ctx->unix_endpoint : NULL;
    endpoints[1] = need[1] ? ctx->tcp_endpoint : NULL;

    for (int e = 0; e < 2; e++) {
        if (endpoints[e] == NULL) {
            continue;
        }
        CLI_CLEANUP_CLIENT sb_client *client = NULL;
        if (cli_connect(CMD, endpoints[e], CLI_TIMEOUT_DEFAULT_MS, &client) < 0) {
            return -1;
        }
        for (size_t i = 0; i < plan->count; i++) {
            const bench_row *row = &plan->rows[i];
            size_t max = sb_max_payload(client, BENCH_SUBJECT_ROOM / 2, BENCH_SUBJECT_ROOM / 2, 0);
            if (row->size > max) {
                fprintf(stderr,
                        "sockbus bench: a %zu-byte payload does not fit the broker at %s "
                        "(max_frame %u); give a smaller --size\n",
                        row->size, sb_endpoint(client), sb_max_frame(client));
                return -1;
            }
        }
    }
    return 0;
}

static void bench_on_signal(int sig)
{
    bench_stop_signal = sig;
}

static void bench_catch_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = bench_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ---- the command -------------------------------------------------------- */

/* Open --svg FILE before the runs: a typo should not cost a whole bench. */
static FILE *bench_open_svg(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr,
                "sockbus bench: cannot write the chart to %s: %s; give another --svg FILE\n", path,
                strerror(errno));
    }
    return f;
}

static int bench_write_svg(const bench_report *rep, FILE *f, const char *path)
{
    int r = bench_svg_write(rep, f);
    if (fflush(f) != 0 && r == 0) {
        r = -errno;
    }
    if (r < 0) {
        fprintf(stderr, "sockbus bench: cannot write the chart to %s: %s\n", path, strerror(-r));
        return -1;
    }
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    static bench_plan plan; /* large: not on the stack */
    bench_args args;
    bench_broker broker = {.pid = -1};
    bench_ctx ctx = {.args = &args};
    FILE *svg = NULL;
    int status = CLI_EXIT_FAILURE;

    int r = bench_parse(argc, argv, &args);
    if (r != 0) {
        return r < 0 ? CLI_EXIT_OK : r; /* -1: --help was printed */
    }
    r = bench_plan_make(&plan, &args);
    if (r != 0) {
        bench_plan_free(&plan);
        return r;
    }

    if (args.svg != NULL && (svg = bench_open_svg(args.svg)) == NULL) {
        bench_plan_free(&plan);
        return CLI_EXIT_FAILURE;
    }

    /* The shared broker serves every broker row but idle, which starts
     * its own (a fresh one per run) and is skipped with -s. */
    bool need_broker = false;
    bool need_idle = false;
    bool need_scale = false;
    for (size_t i = 0; i < plan.count; i++) {
        need_idle |= plan.rows[i].workload == BENCH_IDLE;
        need_scale |= plan.rows[i].workload == BENCH_SCALE;
        need_broker |=
            !bench_transport_is_raw(plan.rows[i].transport) && plan.rows[i].workload != BENCH_IDLE;
    }
    bench_catch_signals();
    if ((need_broker || need_idle) && args.endpoint == NULL) {
        if (bench_broker_find(&broker, args.broker) < 0) {
            goto out;
        }
        ctx.broker_path = broker.path;
    }
    if (need_broker && args.endpoint == NULL) {
        /* scale's subscriber holds --scale-subs subscriptions, more than
         * the broker allows one connection by default. */
        if (need_scale) {
            broker.max_subscriptions = args.scale_subs + BENCH_BROKER_SUBSCRIPTIONS_DEFAULT;
            broker.max_subscription_bytes =
                (unsigned long long)broker.max_subscriptions * BENCH_BROKER_BYTES_PER_SUBSCRIPTION;
        }
        if (bench_broker_start(&broker) < 0) {
            goto out;
        }
        ctx.unix_endpoint = broker.unix_endpoint;
        ctx.tcp_endpoint = broker.tcp_endpoint;
    } else if (need_broker) {
        static char resolved[SB_ENDPOINT_MAX];
        sb_endpoint_resolve(args.endpoint, resolved, sizeof(resolved));
        ctx.unix_endpoint = resolved;
        ctx.tcp_endpoint = resolved;
    }
    if (need_broker && bench_preflight(&ctx, &plan) < 0) {
        goto out;
    }

    ctx.progress.total = plan.count * args.runs;
    ctx.progress.enabled = !args.quiet && isatty(STDERR_FILENO) &&
                           (int64_t)ctx.progress.total * args.duration_ms > 1000;
    for (unsigned run = 0; run < args.runs; run++) {
        for (size_t i = 0; i < plan.count && bench_stop_signal == 0; i++) {
            bench_row *row = &plan.rows[i];
            r = row->workload == BENCH_IDLE ? bench_run_idle(&ctx, row, run)
                                            : bench_run_row(&ctx, row, run);
            if (r < 0) {
                goto out;
            }
            ctx.progress.done++;
        }
    }
    if (bench_stop_signal != 0) {
        goto out;
    }
    bench_progress_clear(&ctx.progress);
    bench_broker_stop(&broker);

    bench_report rep = {
        .rows = plan.rows,
        .row_count = plan.count,
        .runs = args.runs,
        .duration_ms = args.duration_ms,
        .window_bytes = args.window_bytes,
        .broker_mode = !need_broker && !need_idle ? "none"
                       : args.endpoint            ? "external"
                                                  : "private",
        .broker_path = broker.path,
        .unix_endpoint =
            ctx.unix_endpoint && !sb_endpoint_is_tcp(ctx.unix_endpoint) ? ctx.unix_endpoint : "",
        .tcp_endpoint =
            ctx.tcp_endpoint && sb_endpoint_is_tcp(ctx.tcp_endpoint) ? ctx.tcp_endpoint : "",
    };
    bench_report_finish(&rep);
    if (args.json) {
        bench_report_json(&rep, stdout);
    } else {
        bench_report_table(&rep, stdout);
    }
    status = CLI_EXIT_OK;
    if (svg != NULL && bench_write_svg(&rep, svg, args.svg) < 0) {
        status = CLI_EXIT_FAILURE;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        status = CLI_EXIT_FAILURE;
    }
out:
    bench_progress_clear(&ctx.progress);
    bench_broker_stop(&broker);
    bench_plan_free(&plan);
    if (svg != NULL && fclose(svg) != 0 && status == CLI_EXIT_OK) {
        fprintf(stderr, "sockbus bench: cannot write the chart to %s: %s\n", args.svg,
                strerror(errno));
        status = CLI_EXIT_FAILURE;
    }
    if (bench_stop_signal != 0) {
        /* Cleaned up: now end the way the shell expects. */
        fprintf(stderr, "sockbus bench: interrupted\n");
        signal(bench_stop_signal, SIG_DFL);
        raise(bench_stop_signal);
    }
    return status;
}
