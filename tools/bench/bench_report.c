/*
 * bench_report.c - what `sockbus bench` prints: the aligned table, the
 * ratios between transports, and the same as JSON (--json).
 *
 * Throughput rows (thru, fanout, scale) fill the rate columns (msgs/s,
 * MB/s, loss), rtt rows the latency columns; the other columns show "-".
 * With --runs N a rate shows its median and the [min-max] spread over the
 * runs; latencies come from all samples of all runs. idle rows measure
 * memory, not time, and get a small table of their own under the big one.
 * The ratios are computed from the medians and carry the targets of the
 * benchmark issue where it sets one, so the table says at a glance which
 * targets a broker meets.
 */
#include "bench.h"
#include "cli.h"

#include <string.h>

#define REPORT_COLUMNS    11
#define REPORT_CELL       64
#define REPORT_MAX_RATIOS 128

/* Targets of the benchmark issue. */
#define TARGET_THRU_VS_RAW    0.40 /* thru 16 B and 128 B: unix >= 40% of raw-unix */
#define TARGET_RTT_P50_VS_RAW 2.0  /* rtt: unix p50 <= 2x raw-unix p50 */
#define TARGET_RTT_P99_VS_RAW 3.0  /* rtt: unix p99 <= 3x raw-unix p99 */
#define TARGET_FANOUT_VS_THRU 1.5  /* fanout 1->4 128 B: >= 1.5x thru msgs/s */
#define TARGET_FANOUT_SUBS    4u
#define TARGET_FANOUT_SIZE    128u
#define TARGET_SCALE_VS_ONE   0.8    /* scale: N subscriptions >= 80% of 1 */
#define TARGET_IDLE_BYTES     8192.0 /* idle: broker RSS per connection <= 8 KiB */

const char *bench_format_size(size_t size, char *buf, size_t len)
{
    if (size >= 1024 * 1024 && size % (1024 * 1024) == 0) {
        snprintf(buf, len, "%zu MiB", size / (1024 * 1024));
    } else if (size >= 1024 && size % 1024 == 0) {
        snprintf(buf, len, "%zu KiB", size / 1024);
    } else {
        snprintf(buf, len, "%zu B", size);
    }
    return buf;
}

const char *bench_format_si(double v, char *buf, size_t len)
{
    static const char suffix[] = {'\0', 'k', 'M', 'G', 'T'};
    int i = 0;

    while (v >= 999.5 && i < 4) {
        v /= 1000.0;
        i++;
    }
    int decimals = v >= 99.95 ? 0 : v >= 9.995 ? 1 : 2;
    if (i == 0 && v == (double)(long long)v) {
        decimals = 0;
    }
    if (suffix[i] != '\0') {
        snprintf(buf, len, "%.*f%c", decimals, v, suffix[i]);
    } else {
        snprintf(buf, len, "%.*f", decimals, v);
    }
    return buf;
}

const char *bench_format_count(uint64_t n, char *buf, size_t len)
{
    if (n >= 1000000 && n % 1000000 == 0) {
        snprintf(buf, len, "%lluM", (unsigned long long)(n / 1000000));
    } else if (n >= 1000 && n % 1000 == 0) {
        snprintf(buf, len, "%lluk", (unsigned long long)(n / 1000));
    } else {
        snprintf(buf, len, "%llu", (unsigned long long)n);
    }
    return buf;
}

const char *bench_row_workload(const bench_row *row, char *buf, size_t len)
{
    char count[32];

    if (row->workload == BENCH_FANOUT) {
        snprintf(buf, len, "fanout 1->%u", row->receivers);
    } else if (row->workload == BENCH_SCALE) {
        snprintf(buf, len, "scale %s", bench_format_count(row->subjects, count, sizeof(count)));
    } else {
        snprintf(buf, len, "%s", bench_workload_name(row->workload));
    }
    return buf;
}

uint64_t bench_row_loss(const bench_row *row)
{
    if (row->workload == BENCH_RTT || row->workload == BENCH_IDLE ||
        row->received >= row->expected) {
        return 0;
    }
    return row->expected - row->received;
}

double bench_row_mbps(const bench_row *row, double rate)
{
    return rate * (double)row->size / 1e6;
}

void bench_report_finish(bench_report *rep)
{
    for (size_t i = 0; i < rep->row_count; i++) {
        bench_row *row = &rep->rows[i];
        double *copy = calloc(row->runs ? row->runs : 1, sizeof(double));
        if (copy != NULL) {
            /* bench_stats_spread() reorders; keep the run order for JSON. */
            memcpy(copy, row->rate, row->runs * sizeof(double));
            row->rate_spread = bench_stats_spread(copy, row->runs);
            free(copy);
        }
        if (row->workload == BENCH_RTT) {
            bench_stats_sort(row->samples, row->sample_count);
            const uint64_t *s = row->samples;
            size_t n = row->sample_count;
            row->latency = (bench_latency){
                .samples = n,
                .p50 = bench_stats_percentile(s, n, 50.0),
                .p90 = bench_stats_percentile(s, n, 90.0),
                .p99 = bench_stats_percentile(s, n, 99.0),
                .p999 = bench_stats_percentile(s, n, 99.9),
                .max = n ? s[n - 1] : 0,
            };
        }
    }
}

/* ---- ratios ------------------------------------------------------------- */

typedef enum ratio_op {
    RATIO_INFO, /* no target */
    RATIO_GE,
    RATIO_GT,
    RATIO_LE,
    RATIO_LT,
} ratio_op;

typedef struct ratio {
    char group[48]; /* "thru 128 B" */
    char what[64];  /* "unix / raw-unix msgs/s" */
    double value;
    bool bytes; /* value is bytes, not a ratio */
    ratio_op op;
    double target;
} ratio;

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

static bool ratio_met(const ratio *r)
{
    switch (r->op) {
    case RATIO_INFO:
        return true;
    case RATIO_GE:
        return r->value >= r->target;
    case RATIO_GT:
        return r->value > r->target;
    case RATIO_LE:
        return r->value <= r->target;
    case RATIO_LT:
        return r->value < r->target;
    }
    return false;
}

static const char *ratio_op_text(ratio_op op)
{
    switch (op) {
    case RATIO_INFO:
        return "";
    case RATIO_GE:
        return ">=";
    case RATIO_GT:
        return ">";
    case RATIO_LE:
        return "<=";
    case RATIO_LT:
        return "<";
    }
    return "";
}

static void ratio_add(ratio *out, size_t *count, const char *group, const char *what, double num,
                      double den, ratio_op op, double target)
{
    if (*count == REPORT_MAX_RATIOS || !(num > 0.0) || !(den > 0.0)) {
        return;
    }
    ratio *r = &out[(*count)++];
    snprintf(r->group, sizeof(r->group), "%s", group);
    snprintf(r->what, sizeof(r->what), "%s", what);
    r->value = num / den;
    r->bytes = false;
    r->op = op;
    r->target = target;
}

/* A line that is a measure in bytes rather than a ratio (0 is a value). */
static void ratio_add_bytes(ratio *out, size_t *count, const char *group, const char *what,
                            double bytes, ratio_op op, double target)
{
    if (*count == REPORT_MAX_RATIOS) {
        return;
    }
    ratio *r = &out[(*count)++];
    snprintf(r->group, sizeof(r->group), "%s", group);
    snprintf(r->what, sizeof(r->what), "%s", what);
    r->value = bytes;
    r->bytes = true;
    r->op = op;
    r->target = target;
}

/* The ratios the table ends with; returns how many. */
static size_t report_ratios(const bench_report *rep, ratio *out)
{
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
                ratio_add_bytes(out, &n, "idle connection", what, idle->rate_spread.median,
                                idle->sanitized ? RATIO_INFO : RATIO_LE, TARGET_IDLE_BYTES);
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
                    ratio_add(out, &n, group, what, many->rate_spread.median,
                              one->rate_spread.median, RATIO_GE, TARGET_SCALE_VS_ONE);
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

        if (row->workload == BENCH_RTT) {
            snprintf(group, sizeof(group), "rtt %s", size);
            if (ux && rux) {
                ratio_add(out, &n, group, "unix / raw-unix p50", (double)ux->latency.p50,
                          (double)rux->latency.p50, RATIO_LE, TARGET_RTT_P50_VS_RAW);
                ratio_add(out, &n, group, "unix / raw-unix p99", (double)ux->latency.p99,
                          (double)rux->latency.p99, RATIO_LE, TARGET_RTT_P99_VS_RAW);
            }
            if (ux && tcp) {
                ratio_add(out, &n, group, "unix / tcp p50", (double)ux->latency.p50,
                          (double)tcp->latency.p50, RATIO_LT, 1.0);
                ratio_add(out, &n, group, "unix / tcp p99", (double)ux->latency.p99,
                          (double)tcp->latency.p99, RATIO_LT, 1.0);
            }
            if (tcp && rtcp) {
                ratio_add(out, &n, group, "tcp / raw-tcp p50", (double)tcp->latency.p50,
                          (double)rtcp->latency.p50, RATIO_INFO, 0);
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
            ratio_add(out, &n, group, "unix / raw-unix msgs/s", ux->rate_spread.median,
                      rux->rate_spread.median,
                      row->workload == BENCH_THRU && small ? RATIO_GE : RATIO_INFO,
                      TARGET_THRU_VS_RAW);
        }
        if (tcp && rtcp) {
            ratio_add(out, &n, group, "tcp / raw-tcp msgs/s", tcp->rate_spread.median,
                      rtcp->rate_spread.median, RATIO_INFO, 0);
        }
        if (ux && tcp) {
            ratio_add(out, &n, group, "unix / tcp msgs/s", ux->rate_spread.median,
                      tcp->rate_spread.median, RATIO_GT, 1.0);
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
                    ratio_add(out, &n, group, what, f->rate_spread.median, th->rate_spread.median,
                              target ? RATIO_GE : RATIO_INFO, TARGET_FANOUT_VS_THRU);
                }
            }
        }
    }
    return n;
}

/* ---- the table ---------------------------------------------------------- */

typedef char report_cell[REPORT_CELL];

/* What the scale rows did, under the table: a number alone does not say
 * that the subjects vary. */
static void report_scale_note(const bench_report *rep, FILE *out, bool *noted)
{
    for (size_t i = 0; i < rep->row_count; i++) {
        const bench_row *row = &rep->rows[i];
        char count[32];
        if (row->workload != BENCH_SCALE || row->subjects <= 1) {
            continue;
        }
        fprintf(out,
                "%snote: scale N: the subscriber holds N subscriptions on distinct subjects "
                "(scale 1: one),\n      made before the timed phase; the publisher cycles "
                "through all %s subjects in order,\n      so publishes miss the broker's "
                "small match cache and each one is a trie lookup\n",
                *noted ? "" : "\n", bench_format_count(row->subjects, count, sizeof(count)));
        *noted = true;
        return;
    }
}

/* idle rows: connections, RSS before and after, bytes per connection. */
static void report_idle_table(const bench_report *rep, FILE *out)
{
    bool header = false;

    for (size_t i = 0; i < rep->row_count; i++) {
        const bench_row *row = &rep->rows[i];
        if (row->workload != BENCH_IDLE) {
            continue;
        }
        if (!header) {
            fprintf(out,
                    "\nidle connections (a fresh private broker per run; VmRSS from /proc; "
                    "KiB = 1024 B%s):\n",
                    rep->runs > 1 ? "; RSS of the last run, per connection: median [min-max]" : "");
            fprintf(out, "  %-9s  %11s  %13s  %12s  %-s\n", "transport", "connections",
                    "RSS before", "RSS after", "broker RSS per connection");
            header = true;
        }
        if (row->runs == 0) {
            fprintf(out, "  %-9s  skipped: %s\n", bench_transport_name(row->transport),
                    row->note[0] ? row->note : "not measured");
            continue;
        }
        char before[32];
        char after[32];
        char per[64];
        snprintf(before, sizeof(before), "%.1f KiB", (double)row->rss_before / 1024.0);
        snprintf(after, sizeof(after), "%.1f KiB", (double)row->rss_after / 1024.0);
        if (row->runs > 1) {
            snprintf(per, sizeof(per), "%.0f B [%.0f-%.0f]", row->rate_spread.median,
                     row->rate_spread.min, row->rate_spread.max);
        } else {
            snprintf(per, sizeof(per), "%.0f B", row->rate_spread.median);
        }
        fprintf(out, "  %-9s  %11llu  %13s  %12s  %s\n", bench_transport_name(row->transport),
                (unsigned long long)row->opened, before, after, per);
        if (row->note[0] != '\0') {
            fprintf(out, "  note: %s\n", row->note);
        }
        if (row->sanitized) {
            fprintf(out, "  note: an AddressSanitizer broker: its RSS holds shadow memory and a "
                         "quarantine;\n        measure a normal build\n");
        }
    }
}

static void format_latency(uint64_t ns, char *buf, size_t len)
{
    double us = (double)ns / 1000.0;

    if (us >= 1000.0) {
        snprintf(buf, len, "%.0f", us);
    } else {
        snprintf(buf, len, "%.1f", us);
    }
}

static void format_rate(const bench_row *row, char *buf, size_t len)
{
    char med[16];
    char lo[16];
    char hi[16];

    bench_format_si(row->rate_spread.median, med, sizeof(med));
    if (row->runs > 1) {
        bench_format_si(row->rate_spread.min, lo, sizeof(lo));
        bench_format_si(row->rate_spread.max, hi, sizeof(hi));
        snprintf(buf, len, "%s [%s-%s]", med, lo, hi);
    } else {
        snprintf(buf, len, "%s", med);
    }
}

static void row_cells(const bench_row *row, report_cell *cells)
{
    for (int c = 0; c < REPORT_COLUMNS; c++) {
        snprintf(cells[c], REPORT_CELL, "-");
    }
    bench_row_workload(row, cells[0], REPORT_CELL);
    snprintf(cells[1], REPORT_CELL, "%s", bench_transport_name(row->transport));
    bench_format_size(row->size, cells[2], REPORT_CELL);
    if (row->runs == 0) {
        return;
    }
    if (row->workload == BENCH_RTT) {
        format_latency(row->latency.p50, cells[6], REPORT_CELL);
        format_latency(row->latency.p90, cells[7], REPORT_CELL);
        format_latency(row->latency.p99, cells[8], REPORT_CELL);
        format_latency(row->latency.p999, cells[9], REPORT_CELL);
        format_latency(row->latency.max, cells[10], REPORT_CELL);
        return;
    }
    format_rate(row, cells[3], REPORT_CELL);
    snprintf(cells[4], REPORT_CELL, "%.1f", bench_row_mbps(row, row->rate_spread.median));
    snprintf(cells[5], REPORT_CELL, "%llu", (unsigned long long)bench_row_loss(row));
}

void bench_report_table(const bench_report *rep, FILE *out)
{
    static const char *const header[REPORT_COLUMNS] = {
        "workload", "transport", "size", "msgs/s", "MB/s", "loss",
        "p50",      "p90",       "p99",  "p99.9",  "max",
    };
    /* Text columns align left, numbers right. */
    static const bool left[REPORT_COLUMNS] = {true, true};
    size_t width[REPORT_COLUMNS];
    report_cell cells[REPORT_COLUMNS];

    size_t timed = 0; /* rows of the big table: all but idle */

    for (int c = 0; c < REPORT_COLUMNS; c++) {
        width[c] = strlen(header[c]);
    }
    for (size_t i = 0; i < rep->row_count; i++) {
        if (rep->rows[i].workload == BENCH_IDLE) {
            continue; /* a table of its own */
        }
        timed++;
        row_cells(&rep->rows[i], cells);
        for (int c = 0; c < REPORT_COLUMNS; c++) {
            size_t w = strlen(cells[c]);
            width[c] = w > width[c] ? w : width[c];
        }
    }

    char window[32];
    bench_format_size((size_t)rep->window_bytes, window, sizeof(window));
    if (strcmp(rep->broker_mode, "private") == 0 && rep->tcp_endpoint[0] != '\0') {
        fprintf(out, "broker: %s, private: a temporary Unix socket and %s\n", rep->broker_path,
                rep->tcp_endpoint + strlen("tcp://"));
    } else if (strcmp(rep->broker_mode, "private") == 0) {
        fprintf(out, "broker: %s, private\n", rep->broker_path);
    } else if (strcmp(rep->broker_mode, "external") == 0 &&
               (rep->unix_endpoint[0] != '\0' || rep->tcp_endpoint[0] != '\0')) {
        fprintf(out, "broker: %s\n",
                rep->unix_endpoint[0] ? rep->unix_endpoint : rep->tcp_endpoint);
    }
    if (timed > 0) {
        fprintf(out,
                "%u run%s of %g s per row, window %s; msgs/s at the subscribers (fanout: "
                "summed), MB/s of payload (10^6 B), latency in microseconds%s\n\n",
                rep->runs, rep->runs == 1 ? "" : "s", (double)rep->duration_ms / 1000.0, window,
                rep->runs > 1 ? "; rates: median [min-max]" : "");
        for (int c = 0; c < REPORT_COLUMNS; c++) {
            fprintf(out, c == 0 ? "%-*s" : left[c] ? "  %-*s" : "  %*s", (int)width[c], header[c]);
        }
        fputc('\n', out);
    }
    for (size_t i = 0; i < rep->row_count; i++) {
        if (rep->rows[i].workload == BENCH_IDLE) {
            continue;
        }
        /* A blank line between workloads keeps the eye on one group. */
        if (i > 0 && rep->rows[i].workload != rep->rows[i - 1].workload) {
            fputc('\n', out);
        }
        row_cells(&rep->rows[i], cells);
        for (int c = 0; c < REPORT_COLUMNS; c++) {
            fprintf(out, c == 0 ? "%-*s" : left[c] ? "  %-*s" : "  %*s", (int)width[c], cells[c]);
        }
        fputc('\n', out);
    }

    /* Loss is never silent. */
    bool noted = false;
    for (size_t i = 0; i < rep->row_count; i++) {
        const bench_row *row = &rep->rows[i];
        uint64_t loss = bench_row_loss(row);
        if (row->workload == BENCH_IDLE || (loss == 0 && row->dropped == 0)) {
            continue;
        }
        row_cells(row, cells);
        fprintf(out,
                "%snote: %s %s %s lost %llu of %llu messages (the broker reported %llu "
                "DROPPED)\n",
                noted ? "" : "\n", cells[0], cells[1], cells[2], (unsigned long long)loss,
                (unsigned long long)row->expected, (unsigned long long)row->dropped);
        noted = true;
    }
    report_scale_note(rep, out, &noted);
    report_idle_table(rep, out);

    ratio ratios[REPORT_MAX_RATIOS];
    size_t n = report_ratios(rep, ratios);
    if (n == 0) {
        return;
    }
    size_t gw = 0;
    size_t ww = 0;
    for (size_t i = 0; i < n; i++) {
        gw = strlen(ratios[i].group) > gw ? strlen(ratios[i].group) : gw;
        ww = strlen(ratios[i].what) > ww ? strlen(ratios[i].what) : ww;
    }
    fprintf(out, "\nratios (of medians; targets of the benchmark issue where set):\n");
    for (size_t i = 0; i < n; i++) {
        const ratio *r = &ratios[i];
        char value[32];
        if (r->bytes) {
            snprintf(value, sizeof(value), "%.0f B", r->value);
        } else {
            snprintf(value, sizeof(value), "%.2fx", r->value);
        }
        fprintf(out, "  %-*s  %-*s  %8s", (int)gw, r->group, (int)ww, r->what, value);
        if (r->op != RATIO_INFO) {
            char target[32];
            snprintf(target, sizeof(target), "%s %.6g", ratio_op_text(r->op), r->target);
            fprintf(out, "  target %-7s %s", target, ratio_met(r) ? "ok" : "MISSED");
        }
        fputc('\n', out);
    }
}

/* ---- JSON --------------------------------------------------------------- */

static void json_string(FILE *out, const char *s)
{
    /* Paths may hold anything; cli_json_write_string() needs UTF-8. */
    if (cli_utf8_valid(s, strlen(s))) {
        cli_json_write_string(out, s, strlen(s));
    } else {
        fputs("null", out);
    }
}

static void json_spread(FILE *out, const char *key, bench_spread s, double scale)
{
    fprintf(out, "\"%s\":{\"median\":%.1f,\"min\":%.1f,\"max\":%.1f}", key, s.median * scale,
            s.min * scale, s.max * scale);
}

void bench_report_json(const bench_report *rep, FILE *out)
{
    fprintf(out, "{\"tool\":\"sockbus bench\",\"version\":\"%s\",\"broker\":{\"mode\":",
            SOCKBUS_VERSION);
    json_string(out, rep->broker_mode);
    if (strcmp(rep->broker_mode, "private") == 0) {
        fputs(",\"path\":", out);
        json_string(out, rep->broker_path);
    }
    if (rep->unix_endpoint[0]) {
        fputs(",\"unix\":", out);
        json_string(out, rep->unix_endpoint);
    }
    if (rep->tcp_endpoint[0]) {
        fputs(",\"tcp\":", out);
        json_string(out, rep->tcp_endpoint);
    }
    fprintf(out,
            "},\"duration_s\":%.3f,\"runs\":%u,\"window_bytes\":%llu,\"units\":{\"rate\":"
            "\"messages per second at the subscribers, summed over them\",\"mb\":\"10^6 "
            "payload bytes\",\"latency\":\"microseconds\"},\"rows\":[",
            (double)rep->duration_ms / 1000.0, rep->runs, (unsigned long long)rep->window_bytes);

    for (size_t i = 0; i < rep->row_count; i++) {
        const bench_row *row = &rep->rows[i];
        if (row->workload == BENCH_IDLE) {
            fprintf(out,
                    "%s\n{\"workload\":\"idle\",\"transport\":\"%s\",\"connections_asked\":%u,"
                    "\"runs\":%u",
                    i ? "," : "", bench_transport_name(row->transport), row->connections,
                    row->runs);
            if (row->runs > 0) {
                fprintf(out,
                        ",\"connections\":%llu,\"rss_before_bytes\":%llu,\"rss_after_bytes\":%llu,"
                        "\"sanitized\":%s,",
                        (unsigned long long)row->opened, (unsigned long long)row->rss_before,
                        (unsigned long long)row->rss_after, row->sanitized ? "true" : "false");
                json_spread(out, "rss_bytes_per_connection", row->rate_spread, 1.0);
                fputs(",\"rss_bytes_per_connection_per_run\":[", out);
                for (unsigned r = 0; r < row->runs; r++) {
                    fprintf(out, "%s%.1f", r ? "," : "", row->rate[r]);
                }
                fputc(']', out);
            }
            if (row->note[0] != '\0') {
                fputs(row->runs > 0 ? ",\"note\":" : ",\"skipped\":", out);
                json_string(out, row->note);
            }
            fputc('}', out);
            continue;
        }
        fprintf(out,
                "%s\n{\"workload\":\"%s\",\"transport\":\"%s\",\"size\":%zu,\"subscribers\":%u,"
                "\"runs\":%u",
                i ? "," : "", bench_workload_name(row->workload),
                bench_transport_name(row->transport), row->size, row->receivers, row->runs);
        if (row->workload == BENCH_SCALE) {
            fprintf(out, ",\"subscriptions\":%u", row->subjects);
        }
        if (row->workload == BENCH_RTT) {
            const bench_latency *l = &row->latency;
            fprintf(out,
                    ",\"rtt_us\":{\"samples\":%llu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
                    "\"p99_9\":%.3f,\"max\":%.3f},\"p50_us_per_run\":[",
                    (unsigned long long)l->samples, (double)l->p50 / 1e3, (double)l->p90 / 1e3,
                    (double)l->p99 / 1e3, (double)l->p999 / 1e3, (double)l->max / 1e3);
            for (unsigned r = 0; r < row->runs; r++) {
                fprintf(out, "%s%.3f", r ? "," : "", row->rtt_p50[r] / 1e3);
            }
            fputs("],", out);
            json_spread(out, "round_trips_per_s", row->rate_spread, 1.0);
        } else {
            fputc(',', out);
            json_spread(out, "msgs_per_s", row->rate_spread, 1.0);
            fputc(',', out);
            json_spread(out, "mb_per_s", row->rate_spread, (double)row->size / 1e6);
            fputs(",\"msgs_per_s_per_run\":[", out);
            for (unsigned r = 0; r < row->runs; r++) {
                fprintf(out, "%s%.1f", r ? "," : "", row->rate[r]);
            }
            fprintf(out,
                    "],\"published\":%llu,\"expected\":%llu,\"received\":%llu,\"loss\":%llu,"
                    "\"dropped\":%llu",
                    (unsigned long long)row->published, (unsigned long long)row->expected,
                    (unsigned long long)row->received, (unsigned long long)bench_row_loss(row),
                    (unsigned long long)row->dropped);
        }
        fputc('}', out);
    }

    ratio ratios[REPORT_MAX_RATIOS];
    size_t n = report_ratios(rep, ratios);
    fputs("\n],\"ratios\":[", out);
    for (size_t i = 0; i < n; i++) {
        const ratio *r = &ratios[i];
        fprintf(out, "%s\n{\"group\":\"%s\",\"ratio\":\"%s\",\"value\":%.4f%s", i ? "," : "",
                r->group, r->what, r->value, r->bytes ? ",\"unit\":\"bytes\"" : "");
        if (r->op != RATIO_INFO) {
            fprintf(out, ",\"target\":\"%s %.6g\",\"met\":%s", ratio_op_text(r->op), r->target,
                    ratio_met(r) ? "true" : "false");
        }
        fputc('}', out);
    }
    fputs("\n]}\n", out);
}
