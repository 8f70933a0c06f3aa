/*
 * bench_stats.c - the numbers behind the table: percentiles of round-trip
 * samples and the median and spread of repeated runs.
 *
 * Percentiles are nearest-rank over every sample, sorted: no interpolation
 * and no histogram buckets, so p99.9 is a round trip that really happened
 * and max is the slowest one. Sorting a few hundred thousand u64 is a few
 * milliseconds, after the runs.
 */
#include "bench.h"

#include <stdlib.h>

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

void bench_stats_sort(uint64_t *samples, size_t count)
{
    if (count > 1) {
        qsort(samples, count, sizeof(*samples), compare_u64);
    }
}

uint64_t bench_stats_percentile(const uint64_t *sorted, size_t count, double p)
{
    if (count == 0) {
        return 0;
    }
    /* Nearest rank: ceil(p/100 * N), 1-based, in integers (p in
     * thousandths of a percent) so that rounding cannot move it: p99.9 of
     * 1000 samples is the 999th, not the 1000th. */
    uint64_t p_milli = (uint64_t)(p * 1000.0 + 0.5);
    size_t rank = (size_t)((p_milli * count + 99999u) / 100000u);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > count) {
        rank = count;
    }
    return sorted[rank - 1];
}

bench_spread bench_stats_spread(double *values, size_t count)
{
    bench_spread s = {0};

    if (count == 0) {
        return s;
    }
    qsort(values, count, sizeof(*values), compare_double);
    s.min = values[0];
    s.max = values[count - 1];
    if (count % 2 == 1) {
        s.median = values[count / 2];
    } else {
        s.median = (values[count / 2 - 1] + values[count / 2]) / 2.0;
    }
    return s;
}

void bench_rtt_init(bench_rtt *rtt)
{
    *rtt = (bench_rtt){.deadline = UINT64_MAX};
}

bool bench_rtt_record(bench_rtt *rtt, const bench_job *job, bench_shared *sh, uint64_t i,
                      uint64_t t0, uint64_t t1)
{
    rtt->last_ns = t1;
    if (i < BENCH_RTT_WARMUP) {
        if (i + 1 == BENCH_RTT_WARMUP) {
            sh->first_ns = t1;
            rtt->deadline = t1 + (uint64_t)job->duration_ns;
        }
        return bench_aborted(sh);
    }
    job->samples[rtt->count++] = t1 - t0;
    return t1 >= rtt->deadline || rtt->count == job->sample_cap || bench_aborted(sh);
}

void bench_rtt_finish(const bench_rtt *rtt, bench_shared *sh)
{
    sh->sample_count = rtt->count;
    sh->last_ns = rtt->last_ns;
}
