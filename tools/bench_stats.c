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
