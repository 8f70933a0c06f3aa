/*
 * bench_plan.c - the rows a `sockbus bench` runs, from its command line.
 *
 * Each workload asked for gets a row per payload size and per transport
 * asked for (sweep is thru at five sizes), and no row comes twice, so
 * "thru sweep" runs 128 B once. scale and idle measure the broker, so they
 * get unix and tcp rows only; scale gets a row with 1 subscription and one
 * with --scale-subs side by side, for the ratio of the two. The rows are
 * sorted by workload, then size, then transport, so that the rows the
 * report compares stand together; each gets room for the result of every
 * run.
 */
#include "bench_cmd.h"
#include "cli.h"

#include <stdlib.h>

#define BENCH_THRU_SIZE_DEFAULT_1 16u
#define BENCH_THRU_SIZE_DEFAULT_2 128u
#define BENCH_FANOUT_SIZE_DEFAULT 128u
#define BENCH_RTT_SIZE_DEFAULT    128u
#define BENCH_SCALE_SIZE_DEFAULT  128u

static const size_t sweep_sizes[] = {16, 128, 1024, 16384, 65536};

static bool plan_has(const bench_plan *plan, const bench_row *row)
{
    for (size_t i = 0; i < plan->count; i++) {
        const bench_row *r = &plan->rows[i];
        if (r->workload == row->workload && r->transport == row->transport &&
            r->size == row->size && r->receivers == row->receivers &&
            r->subjects == row->subjects) {
            return true;
        }
    }
    return false;
}

static void plan_add(bench_plan *plan, const bench_row *row)
{
    if (plan->count < BENCH_MAX_ROWS && !plan_has(plan, row)) {
        plan->rows[plan->count++] = *row;
    }
}

static void plan_add_sizes(bench_plan *plan, const bench_args *args, bench_workload w,
                           const size_t *sizes, size_t count, unsigned receivers)
{
    for (size_t s = 0; s < count; s++) {
        for (int t = 0; t < BENCH_TRANSPORT_COUNT; t++) {
            if (args->transports[t]) {
                plan_add(plan, &(bench_row){
                                   .workload = w,
                                   .transport = (bench_transport)t,
                                   .size = sizes[s],
                                   .receivers = receivers,
                               });
            }
        }
    }
}

/* scale and idle measure the broker: its transports only. scale gets a
 * row with 1 subscription and one with --scale-subs for each size. */
static void plan_add_broker_rows(bench_plan *plan, const bench_args *args, bench_workload w,
                                 const size_t *sizes, size_t count)
{
    for (size_t s = 0; s < count; s++) {
        for (int t = BENCH_UNIX; t <= BENCH_TCP; t++) {
            if (!args->transports[t]) {
                continue;
            }
            bench_row row = {
                .workload = w,
                .transport = (bench_transport)t,
                .size = sizes[s],
                .receivers = w == BENCH_SCALE ? 1 : 0,
                .subjects = w == BENCH_SCALE ? 1 : 0,
                .connections = w == BENCH_IDLE ? args->idle_conns : 0,
            };
            plan_add(plan, &row);
            if (w == BENCH_SCALE) {
                row.subjects = args->scale_subs;
                plan_add(plan, &row);
            }
        }
    }
}

static int row_compare(const void *a, const void *b)
{
    const bench_row *x = a;
    const bench_row *y = b;

    if (x->workload != y->workload) {
        return (int)x->workload - (int)y->workload;
    }
    if (x->size != y->size) {
        return x->size < y->size ? -1 : 1;
    }
    if (x->transport != y->transport) {
        return (int)x->transport - (int)y->transport;
    }
    /* scale: 1 subscription before many, side by side per transport. */
    return x->subjects < y->subjects ? -1 : x->subjects > y->subjects ? 1 : 0;
}

int bench_plan_make(bench_plan *plan, const bench_args *args)
{
    static const size_t thru_default[] = {BENCH_THRU_SIZE_DEFAULT_1, BENCH_THRU_SIZE_DEFAULT_2};
    static const size_t fanout_default[] = {BENCH_FANOUT_SIZE_DEFAULT};
    static const size_t rtt_default[] = {BENCH_RTT_SIZE_DEFAULT};
    static const size_t scale_default[] = {BENCH_SCALE_SIZE_DEFAULT};
    static const size_t idle_size[] = {0};
    const bool given = args->size_count > 0;

    plan->count = 0;
    if (args->workloads[WL_THRU]) {
        plan_add_sizes(plan, args, BENCH_THRU, given ? args->sizes : thru_default,
                       given ? args->size_count : 2, 1);
    }
    if (args->workloads[WL_SWEEP]) {
        plan_add_sizes(plan, args, BENCH_THRU, sweep_sizes,
                       sizeof(sweep_sizes) / sizeof(sweep_sizes[0]), 1);
    }
    if (args->workloads[WL_FANOUT]) {
        plan_add_sizes(plan, args, BENCH_FANOUT, given ? args->sizes : fanout_default,
                       given ? args->size_count : 1, args->subs);
    }
    if (args->workloads[WL_RTT]) {
        plan_add_sizes(plan, args, BENCH_RTT, given ? args->sizes : rtt_default,
                       given ? args->size_count : 1, 1);
    }
    if (args->workloads[WL_SCALE]) {
        plan_add_broker_rows(plan, args, BENCH_SCALE, given ? args->sizes : scale_default,
                             given ? args->size_count : 1);
    }
    if (args->workloads[WL_IDLE]) {
        plan_add_broker_rows(plan, args, BENCH_IDLE, idle_size, 1);
    }
    if (plan->count == 0) {
        return cli_usage_error(CMD, "nothing to run: no transport selected%s",
                               args->workloads[WL_SCALE] || args->workloads[WL_IDLE]
                                   ? " (scale and idle need unix or tcp)"
                                   : "");
    }
    qsort(plan->rows, plan->count, sizeof(plan->rows[0]), row_compare);

    for (size_t i = 0; i < plan->count; i++) {
        bench_row *row = &plan->rows[i];
        row->rate = calloc(args->runs, sizeof(double));
        row->rtt_p50 = calloc(args->runs, sizeof(double));
        if (row->rate == NULL || row->rtt_p50 == NULL) {
            fprintf(stderr, "sockbus bench: out of memory\n");
            return CLI_EXIT_FAILURE;
        }
    }
    return 0;
}

void bench_plan_free(bench_plan *plan)
{
    for (size_t i = 0; i < plan->count; i++) {
        free(plan->rows[i].rate);
        free(plan->rows[i].rtt_p50);
        free(plan->rows[i].samples);
    }
    plan->count = 0;
}

const char *bench_row_label(const bench_row *row, char *buf, size_t len)
{
    char workload[48];
    char size[32];

    bench_row_workload(row, workload, sizeof(workload));
    if (row->workload == BENCH_IDLE) {
        snprintf(buf, len, "%s %s %u connections", workload, bench_transport_name(row->transport),
                 row->connections);
    } else {
        bench_format_size(row->size, size, sizeof(size));
        snprintf(buf, len, "%s %s %s", workload, bench_transport_name(row->transport), size);
    }
    return buf;
}
