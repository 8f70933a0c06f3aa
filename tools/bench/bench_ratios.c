/*
 * bench_ratios.c - the ratios under the table of `sockbus bench`: what the
 * transports cost next to each other, each with a sentence that says what
 * it means, and the value the broker is built to reach where there is one
 * (kept for --json, as "target" and "met").
 *
 * Rows are compared within one workload and size: unix and tcp against
 * the raw rows (no process in the middle) and the relay rows (a process
 * that only copies bytes where the broker would be: the gap is the
 * broker's own work), unix against tcp, fanout against
 * thru, scale N against scale 1; idle gives a size in bytes rather than a
 * ratio. The ratios are computed from the medians over the runs. An ASan
 * build's idle RSS is not the broker's, so it gets no target.
 */
#include "bench.h"

#include <stdarg.h>
#include <stdio.h>

/* The values the broker is built to reach (docs/benchmarks.md). */
#define TARGET_THRU_VS_RAW    0.40 /* thru 16 B and 128 B: unix >= 40% of raw-unix */
#define TARGET_RTT_P50_VS_RAW 2.0  /* rtt: unix p50 <= 2x raw-unix p50 */
#define TARGET_RTT_P99_VS_RAW 3.0  /* rtt: unix p99 <= 3x raw-unix p99 */
/* Against the relay, the broker's process layout with none of its work. */
#define TARGET_THRU16_VS_RELAY  0.30 /* thru 16 B: unix >= 30% of relay-unix */
#define TARGET_THRU128_VS_RELAY 0.60 /* thru 128 B: unix >= 60% of relay-unix */
#define TARGET_RTT_P50_VS_RELAY 1.5  /* rtt: unix p50 <= 1.5x relay-unix p50 */
#define TARGET_RTT_P99_VS_RELAY 2.0  /* rtt: unix p99 <= 2x relay-unix p99 */
#define TARGET_FANOUT_VS_THRU   1.5  /* fanout 1->4 128 B: >= 1.5x thru msgs/s */
#define TARGET_FANOUT_SUBS      4u
#define TARGET_FANOUT_SIZE      128u
#define TARGET_SCALE_VS_ONE     0.8    /* scale: N subscriptions >= 80% of 1 */
#define TARGET_IDLE_BYTES       8192.0 /* idle: broker RSS per connection <= 8 KiB */

/* A scale row of transport t and size: with one subscription (`many`
 * false) or with more. */
static const bench_row *find_scale_row(const bench_report *rep, bench_transport t, size_t size,
                                       bool many)
{
    for (size_t i = 0; i < rep->row_count; i++) {
        const bench_row *r = &rep->rows[i];
        if (r->workload == BENCH_SCALE && r->transport == t && r->size == size &&
            (r->subjects > 1) == many && r->runs > 0) {
            return r;
        }
    }
    return NULL;
}

static const bench_row *find_row(const bench_report *rep, bench_workload w, bench_transport t,
                                 size_t size, unsigned receivers)
{
    for (size_t i = 0; i < rep->row_count; i++) {
        const bench_row *r = &rep->rows[i];
        if (r->workload == w && r->transport == t && r->size == size &&
            (w != BENCH_FANOUT || r->receivers == receivers) && r->runs > 0) {
            return r;
        }
    }
    return NULL;
}

bool bench_ratio_met(const bench_ratio *r)
{
    switch (r->op) {
    case BENCH_RATIO_INFO:
        return true;
    case BENCH_RATIO_GE:
        return r->value >= r->target;
    case BENCH_RATIO_GT:
        return r->value > r->target;
    case BENCH_RATIO_LE:
        return r->value <= r->target;
    case BENCH_RATIO_LT:
        return r->value < r->target;
    }
    return false;
}

const char *bench_ratio_op_text(bench_ratio_op op)
{
    switch (op) {
    case BENCH_RATIO_INFO:
        return "";
    case BENCH_RATIO_GE:
        return ">=";
    case BENCH_RATIO_GT:
        return ">";
    case BENCH_RATIO_LE:
        return "<=";
    case BENCH_RATIO_LT:
        return "<";
    }
    return "";
}

static void ratio_add(bench_ratio *out, size_t *count, const char *group, const char *what,
                      double num, double den, bench_ratio_op op, double target)
{
    if (*count == BENCH_MAX_RATIOS || !(num > 0.0) || !(den > 0.0)) {
        return;
    }
    bench_ratio *r = &out[(*count)++];
    snprintf(r->group, sizeof(r->group), "%s", group);
    snprintf(r->what, sizeof(r->what), "%s", what);
    r->value = num / den;
    r->bytes = false;
    r->op = op;
    r->target = target;
    r->meaning[0] = '\0';
}

/* A line that is a measure in bytes rather than a ratio (0 is a value). */
static void ratio_add_bytes(bench_ratio *out, size_t *count, const char *group, const char *what,
                            double bytes, bench_ratio_op op, double target)
{
    if (*count == BENCH_MAX_RATIOS) {
        return;
    }
    bench_ratio *r = &out[(*count)++];
    snprintf(r->group, sizeof(r->group), "%s", group);
    snprintf(r->what, sizeof(r->what), "%s", what);
    r->value = bytes;
    r->bytes = true;
    r->op = op;
    r->target = target;
    r->meaning[0] = '\0';
}

/* "23%" for 0.23, "1.8x" for 1.8: a share below 1, a multiple above. */
static const char *share(double v, char *buf, size_t len)
{
    if (v < 1.0) {
        snprintf(buf, len, "%.0f%%", v * 100.0);
    } else {
        snprintf(buf, len, "%.1fx", v);
    }
    return buf;
}

/* Give the last ratio added its meaning: `fmt` with %s for the value
 * (share()). Nothing when it was not added. */
__attribute__((format(printf, 4, 5))) static void ratio_mean(bench_ratio *out, size_t n,
                                                             size_t before, const char *fmt, ...)
{
    if (n == before) {
        return;
    }
    bench_ratio *r = &out[n - 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->meaning, sizeof(r->meaning), fmt, ap);
    va_end(ap);
}

size_t bench_ratios(const bench_report *rep, bench_ratio *out)
{
    char v[32];
    size_t before;
    size_t n = 0;
    char group[48];
    char size[32];

    for (size_t i = 0; i < rep->row_count; i++) {
        const bench_row *row = &rep->rows[i];
        /* One group per workload and size: act on its first row. */
        if (i > 0 && rep->rows[i - 1].workload == row->workload &&
            rep->rows[i - 1].size == row->size && rep->rows[i - 1].receivers == row->receivers) {
            continue;
        }
        bench_format_size(row->size, size, sizeof(size));
        if (row->workload == BENCH_IDLE) {
            for (size_t j = i; j < rep->row_count && rep->rows[j].workload == BENCH_IDLE; j++) {
                const bench_row *idle = &rep->rows[j];
                char what[64];
                if (idle->runs == 0) {
                    continue;
                }
                snprintf(what, sizeof(what), "%s: bytes of broker RSS%s",
                         bench_transport_name(idle->transport),
                         idle->sanitized ? " (under ASan)" : "");
                /* An ASan build's RSS is not the broker's: no verdict. */
                before = n;
                ratio_add_bytes(out, &n, "idle connection", what, idle->rate_spread.median,
                                idle->sanitized ? BENCH_RATIO_INFO : BENCH_RATIO_LE,
                                TARGET_IDLE_BYTES);
                ratio_mean(out, n, before,
                           "the broker's memory for each connection that does "
                           "nothing");
            }
            continue;
        }
        if (row->workload == BENCH_SCALE) {
            for (int t = BENCH_UNIX; t <= BENCH_TCP; t++) {
                const bench_row *one = find_scale_row(rep, (bench_transport)t, row->size, false);
                const bench_row *many = find_scale_row(rep, (bench_transport)t, row->size, true);
                if (one && many) {
                    char what[64];
                    char count[32];
                    snprintf(what, sizeof(what), "%s scale %s / scale 1 msgs/s",
                             bench_transport_name((bench_transport)t),
                             bench_format_count(many->subjects, count, sizeof(count)));
                    snprintf(group, sizeof(group), "scale %s", size);
                    before = n;
                    ratio_add(out, &n, group, what, many->rate_spread.median,
                              one->rate_spread.median, BENCH_RATIO_GE, TARGET_SCALE_VS_ONE);
                    ratio_mean(
                        out, n, before,
                        "with %s subscriptions, the rate is %s of the rate with one", count,
                        share(many->rate_spread.median / one->rate_spread.median, v, sizeof(v)));
                }
            }
            continue;
        }
        const bench_row *ux = find_row(rep, row->workload, BENCH_UNIX, row->size, row->receivers);
        const bench_row *tcp = find_row(rep, row->workload, BENCH_TCP, row->size, row->receivers);
        const bench_row *rux =
            find_row(rep, row->workload, BENCH_RAW_UNIX, row->size, row->receivers);
        const bench_row *rtcp =
            find_row(rep, row->workload, BENCH_RAW_TCP, row->size, row->receivers);
        const bench_row *lux =
            find_row(rep, row->workload, BENCH_RELAY_UNIX, row->size, row->receivers);
        const bench_row *ltcp =
            find_row(rep, row->workload, BENCH_RELAY_TCP, row->size, row->receivers);

        if (row->workload == BENCH_RTT) {
            snprintf(group, sizeof(group), "rtt %s", size);
            if (ux && rux) {
                before = n;
                ratio_add(out, &n, group, "unix / raw-unix p50", (double)ux->latency.p50,
                          (double)rux->latency.p50, BENCH_RATIO_LE, TARGET_RTT_P50_VS_RAW);
                ratio_mean(out, n, before,
                           "a typical round trip through the broker takes %s as long as over a "
                           "bare Unix socket",
                           share((double)ux->latency.p50 / (double)rux->latency.p50, v, sizeof(v)));
                before = n;
                ratio_add(out, &n, group, "unix / raw-unix p99", (double)ux->latency.p99,
                          (double)rux->latency.p99, BENCH_RATIO_LE, TARGET_RTT_P99_VS_RAW);
                ratio_mean(out, n, before, "the same for the slowest 1%%");
            }
            if (ux && tcp) {
                before = n;
                ratio_add(out, &n, group, "unix / tcp p50", (double)ux->latency.p50,
                          (double)tcp->latency.p50, BENCH_RATIO_LT, 1.0);
                ratio_mean(out, n, before,
                           "a round trip over Unix takes %s of the time over TCP (below 1: "
                           "Unix is faster)",
                           share((double)ux->latency.p50 / (double)tcp->latency.p50, v, sizeof(v)));
                before = n;
                ratio_add(out, &n, group, "unix / tcp p99", (double)ux->latency.p99,
                          (double)tcp->latency.p99, BENCH_RATIO_LT, 1.0);
                ratio_mean(out, n, before, "the same for the slowest 1%%");
            }
            if (tcp && rtcp) {
                before = n;
                ratio_add(out, &n, group, "tcp / raw-tcp p50", (double)tcp->latency.p50,
                          (double)rtcp->latency.p50, BENCH_RATIO_INFO, 0);
                ratio_mean(
                    out, n, before,
                    "a round trip through the broker over TCP takes %s as long as over "
                    "a bare TCP socket",
                    share((double)tcp->latency.p50 / (double)rtcp->latency.p50, v, sizeof(v)));
            }
            if (ux && lux) {
                before = n;
                ratio_add(out, &n, group, "unix / relay-unix p50", (double)ux->latency.p50,
                          (double)lux->latency.p50, BENCH_RATIO_LE, TARGET_RTT_P50_VS_RELAY);
                ratio_mean(out, n, before,
                           "a typical round trip through the broker takes %s as long as through "
                           "a process that only copies bytes",
                           share((double)ux->latency.p50 / (double)lux->latency.p50, v, sizeof(v)));
                before = n;
                ratio_add(out, &n, group, "unix / relay-unix p99", (double)ux->latency.p99,
                          (double)lux->latency.p99, BENCH_RATIO_LE, TARGET_RTT_P99_VS_RELAY);
                ratio_mean(out, n, before, "the same for the slowest 1%%");
            }
            if (tcp && ltcp) {
                before = n;
                ratio_add(out, &n, group, "tcp / relay-tcp p50", (double)tcp->latency.p50,
                          (double)ltcp->latency.p50, BENCH_RATIO_INFO, 0);
                ratio_mean(
                    out, n, before,
                    "over TCP, a round trip through the broker takes %s as long as "
                    "through a process that only copies bytes",
                    share((double)tcp->latency.p50 / (double)ltcp->latency.p50, v, sizeof(v)));
            }
            continue;
        }

        if (row->workload == BENCH_FANOUT) {
            snprintf(group, sizeof(group), "fanout 1->%u %s", row->receivers, size);
        } else {
            snprintf(group, sizeof(group), "thru %s", size);
        }
        bool small = row->size == 16 || row->size == 128;
        if (ux && rux) {
            before = n;
            ratio_add(out, &n, group, "unix / raw-unix msgs/s", ux->rate_spread.median,
                      rux->rate_spread.median,
                      row->workload == BENCH_THRU && small ? BENCH_RATIO_GE : BENCH_RATIO_INFO,
                      TARGET_THRU_VS_RAW);
            ratio_mean(out, n, before,
                       "through the broker, %s of the messages a bare Unix socket carries",
                       share(ux->rate_spread.median / rux->rate_spread.median, v, sizeof(v)));
        }
        if (tcp && rtcp) {
            before = n;
            ratio_add(out, &n, group, "tcp / raw-tcp msgs/s", tcp->rate_spread.median,
                      rtcp->rate_spread.median, BENCH_RATIO_INFO, 0);
            ratio_mean(out, n, before,
                       "through the broker, %s of the messages a bare TCP socket carries",
                       share(tcp->rate_spread.median / rtcp->rate_spread.median, v, sizeof(v)));
        }
        if (ux && lux) {
            bool thru = row->workload == BENCH_THRU && small;
            before = n;
            ratio_add(out, &n, group, "unix / relay-unix msgs/s", ux->rate_spread.median,
                      lux->rate_spread.median, thru ? BENCH_RATIO_GE : BENCH_RATIO_INFO,
                      row->size == 16 ? TARGET_THRU16_VS_RELAY : TARGET_THRU128_VS_RELAY);
            ratio_mean(out, n, before,
                       "through the broker, %s of the messages a process that only copies "
                       "bytes passes on (Unix)",
                       share(ux->rate_spread.median / lux->rate_spread.median, v, sizeof(v)));
        }
        if (tcp && ltcp) {
            before = n;
            ratio_add(out, &n, group, "tcp / relay-tcp msgs/s", tcp->rate_spread.median,
                      ltcp->rate_spread.median, BENCH_RATIO_INFO, 0);
            ratio_mean(out, n, before,
                       "through the broker, %s of the messages a process that only copies "
                       "bytes passes on (TCP)",
                       share(tcp->rate_spread.median / ltcp->rate_spread.median, v, sizeof(v)));
        }
        if (ux && tcp) {
            before = n;
            ratio_add(out, &n, group, "unix / tcp msgs/s", ux->rate_spread.median,
                      tcp->rate_spread.median, BENCH_RATIO_GT, 1.0);
            ratio_mean(out, n, before,
                       "the broker carries %s as many messages over Unix as over TCP",
                       share(ux->rate_spread.median / tcp->rate_spread.median, v, sizeof(v)));
        }
        if (row->workload == BENCH_FANOUT) {
            bool target = row->receivers == TARGET_FANOUT_SUBS && row->size == TARGET_FANOUT_SIZE;
            for (int t = BENCH_UNIX; t <= BENCH_TCP; t++) {
                const bench_row *f = t == BENCH_UNIX ? ux : tcp;
                const bench_row *th = find_row(rep, BENCH_THRU, (bench_transport)t, row->size, 1);
                if (f && th) {
                    char what[64];
                    snprintf(what, sizeof(what), "%s fanout / thru %s msgs/s",
                             bench_transport_name((bench_transport)t), size);
                    before = n;
                    ratio_add(out, &n, group, what, f->rate_spread.median, th->rate_spread.median,
                              target ? BENCH_RATIO_GE : BENCH_RATIO_INFO, TARGET_FANOUT_VS_THRU);
                    ratio_mean(out, n, before,
                               "one publisher to %u subscribers: %s the deliveries per second "
                               "of one to one",
                               row->receivers,
                               share(f->rate_spread.median / th->rate_spread.median, v, sizeof(v)));
                }
            }
        }
    }
    return n;
}
