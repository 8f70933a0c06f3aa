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

#include <stdio.h>
#include <string.h>

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

/* The ratio added, or NULL when the list is full or a side is not a
 * positive measure. */
static bench_ratio *ratio_add(bench_ratio *out, size_t *count, const char *group, const char *what,
                              double num, double den, bench_ratio_op op, double target)
{
    if (*count == BENCH_MAX_RATIOS || !(num > 0.0) || !(den > 0.0)) {
        return NULL;
    }
    bench_ratio *r = &out[(*count)++];
    snprintf(r->group, sizeof(r->group), "%s", group);
    snprintf(r->what, sizeof(r->what), "%s", what);
    r->value = num / den;
    r->bytes = false;
    r->op = op;
    r->target = target;
    r->meaning[0] = '\0';
    return r;
}

/* A line that is a measure in bytes rather than a ratio (0 is a value). */
static bench_ratio *ratio_add_bytes(bench_ratio *out, size_t *count, const char *group,
                                    const char *what, double bytes, bench_ratio_op op,
                                    double target)
{
    if (*count == BENCH_MAX_RATIOS) {
        return NULL;
    }
    bench_ratio *r = &out[(*count)++];
    snprintf(r->group, sizeof(r->group), "%s", group);
    snprintf(r->what, sizeof(r->what), "%s", what);
    r->value = bytes;
    r->bytes = true;
    r->op = op;
    r->target = target;
    r->meaning[0] = '\0';
    return r;
}

/* Give a ratio its meaning: `pre`, the ratio as a share ("23%" for 0.23)
 * or a multiple ("1.8x" for 1.8), then `post`. Nothing for NULL (a ratio
 * that was not added). */
static void ratio_say(bench_ratio *r, const char *pre, const char *post)
{
    if (!r) {
        return;
    }
    char value[32];
    if (r->value < 1.0) {
        snprintf(value, sizeof(value), "%.0f%%", r->value * 100.0);
    } else {
        snprintf(value, sizeof(value), "%.1fx", r->value);
    }
    /* Joined by hand: snprintf() of the three would make the compiler warn
     * that a long `pre` may cut the rest, which is what it should do. */
    const char *parts[] = {pre, value, post};
    size_t len = 0;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        size_t n = strlen(parts[i]);
        size_t room = sizeof(r->meaning) - 1 - len;
        n = n < room ? n : room;
        memcpy(r->meaning + len, parts[i], n);
        len += n;
    }
    r->meaning[len] = '\0';
}

/* Give a ratio a meaning that does not quote its value. */
static void ratio_note(bench_ratio *r, const char *text)
{
    if (r) {
        snprintf(r->meaning, sizeof(r->meaning), "%s", text);
    }
}

/* What a broker row is held against: the same frames between two processes
 * with no broker (raw), or through a process that only copies bytes where
 * the broker would be (relay: the gap is the broker's own work). A target
 * of 0 is none (BENCH_RATIO_INFO); a round trip without a p99 target has
 * no p99 line. */
typedef struct baseline {
    bench_transport broker; /* BENCH_UNIX or BENCH_TCP */
    bench_transport base;
    const char *rate_what; /* "unix / raw-unix msgs/s" */
    const char *p50_what;
    const char *p99_what;
    double thru16, thru128;         /* thru: broker msgs/s >= target x base msgs/s */
    double rtt_p50, rtt_p99;        /* rtt: broker latency <= target x base latency */
    const char *rtt_pre, *rtt_post; /* meaning of the p50 line */
    const char *rate_post;          /* meaning of the msgs/s line, after the value */
} baseline;

static const baseline baselines[] = {
    {BENCH_UNIX, BENCH_RAW_UNIX, "unix / raw-unix msgs/s", "unix / raw-unix p50",
     "unix / raw-unix p99", TARGET_THRU_VS_RAW, TARGET_THRU_VS_RAW, TARGET_RTT_P50_VS_RAW,
     TARGET_RTT_P99_VS_RAW, "a typical round trip through the broker takes ",
     " as long as over a bare Unix socket", " of the messages a bare Unix socket carries"},
    {BENCH_TCP, BENCH_RAW_TCP, "tcp / raw-tcp msgs/s", "tcp / raw-tcp p50", NULL, 0, 0, 0, 0,
     "a round trip through the broker over TCP takes ", " as long as over a bare TCP socket",
     " of the messages a bare TCP socket carries"},
    {BENCH_UNIX, BENCH_RELAY_UNIX, "unix / relay-unix msgs/s", "unix / relay-unix p50",
     "unix / relay-unix p99", TARGET_THRU16_VS_RELAY, TARGET_THRU128_VS_RELAY,
     TARGET_RTT_P50_VS_RELAY, TARGET_RTT_P99_VS_RELAY,
     "a typical round trip through the broker takes ",
     " as long as through a process that only copies bytes",
     " of the messages a process that only copies bytes passes on (Unix)"},
    {BENCH_TCP, BENCH_RELAY_TCP, "tcp / relay-tcp msgs/s", "tcp / relay-tcp p50", NULL, 0, 0, 0, 0,
     "over TCP, a round trip through the broker takes ",
     " as long as through a process that only copies bytes",
     " of the messages a process that only copies bytes passes on (TCP)"},
};

/* The lines of one baseline for the group of `row` (rtt, thru or fanout). */
static void ratio_baseline(const bench_report *rep, const bench_row *row, const baseline *b,
                           const char *group, bench_ratio *out, size_t *n)
{
    const bench_row *x = find_row(rep, row->workload, b->broker, row->size, row->receivers);
    const bench_row *base = find_row(rep, row->workload, b->base, row->size, row->receivers);
    if (!x || !base) {
        return;
    }
    if (row->workload == BENCH_RTT) {
        ratio_say(ratio_add(out, n, group, b->p50_what, (double)x->latency.p50,
                            (double)base->latency.p50,
                            b->rtt_p50 > 0 ? BENCH_RATIO_LE : BENCH_RATIO_INFO, b->rtt_p50),
                  b->rtt_pre, b->rtt_post);
        if (b->p99_what) {
            ratio_note(ratio_add(out, n, group, b->p99_what, (double)x->latency.p99,
                                 (double)base->latency.p99, BENCH_RATIO_LE, b->rtt_p99),
                       "the same for the slowest 1%");
        }
        return;
    }
    bool small = row->size == 16 || row->size == 128;
    double target = row->size == 16 ? b->thru16 : b->thru128;
    bench_ratio_op op =
        row->workload == BENCH_THRU && small && target > 0 ? BENCH_RATIO_GE : BENCH_RATIO_INFO;
    ratio_say(ratio_add(out, n, group, b->rate_what, x->rate_spread.median,
                        base->rate_spread.median, op, target),
              "through the broker, ", b->rate_post);
}

size_t bench_ratios(const bench_report *rep, bench_ratio *out)
{
    size_t n = 0;
    char group[48];
    char size[32];
    char pre[96];

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
                ratio_note(ratio_add_bytes(out, &n, "idle connection", what,
                                           idle->rate_spread.median,
                                           idle->sanitized ? BENCH_RATIO_INFO : BENCH_RATIO_LE,
                                           TARGET_IDLE_BYTES),
                           "the broker's memory for each connection that does nothing");
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
                    snprintf(pre, sizeof(pre), "with %s subscriptions, the rate is ", count);
                    ratio_say(ratio_add(out, &n, group, what, many->rate_spread.median,
                                        one->rate_spread.median, BENCH_RATIO_GE,
                                        TARGET_SCALE_VS_ONE),
                              pre, " of the rate with one");
                }
            }
            continue;
        }
        const bench_row *ux = find_row(rep, row->workload, BENCH_UNIX, row->size, row->receivers);
        const bench_row *tcp = find_row(rep, row->workload, BENCH_TCP, row->size, row->receivers);

        if (row->workload == BENCH_RTT) {
            snprintf(group, sizeof(group), "rtt %s", size);
        } else if (row->workload == BENCH_FANOUT) {
            snprintf(group, sizeof(group), "fanout 1->%u %s", row->receivers, size);
        } else {
            snprintf(group, sizeof(group), "thru %s", size);
        }
        for (size_t k = 0; k < sizeof(baselines) / sizeof(baselines[0]); k++) {
            ratio_baseline(rep, row, &baselines[k], group, out, &n);
        }
        if (row->workload == BENCH_RTT) {
            if (ux && tcp) {
                ratio_say(ratio_add(out, &n, group, "unix / tcp p50", (double)ux->latency.p50,
                                    (double)tcp->latency.p50, BENCH_RATIO_LT, 1.0),
                          "a round trip over Unix takes ",
                          " of the time over TCP (below 1: Unix is faster)");
                ratio_note(ratio_add(out, &n, group, "unix / tcp p99", (double)ux->latency.p99,
                                     (double)tcp->latency.p99, BENCH_RATIO_LT, 1.0),
                           "the same for the slowest 1%");
            }
            continue;
        }
        if (ux && tcp) {
            ratio_say(ratio_add(out, &n, group, "unix / tcp msgs/s", ux->rate_spread.median,
                                tcp->rate_spread.median, BENCH_RATIO_GT, 1.0),
                      "the broker carries ", " as many messages over Unix as over TCP");
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
                    snprintf(pre, sizeof(pre), "one publisher to %u subscribers: ", row->receivers);
                    ratio_say(ratio_add(out, &n, group, what, f->rate_spread.median,
                                        th->rate_spread.median,
                                        target ? BENCH_RATIO_GE : BENCH_RATIO_INFO,
                                        TARGET_FANOUT_VS_THRU),
                              pre, " the deliveries per second of one to one");
                }
            }
        }
    }
    return n;
}
