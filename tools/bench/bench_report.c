/*
 * bench_report.c - what `sockbus bench` prints: the aligned table, the
 * ratios between transports, and the same as JSON (--json).
 *
 * Throughput rows (thru, fanout, scale) fill the rate columns (msgs/s,
 * MB/s, loss), rtt rows the latency columns; the other columns show "-".
 * With --runs N a rate shows its median and the [min-max] spread over the
 * runs; latencies come from all samples of all runs. idle rows measure
 * memory, not time, and get a small table of their own under the big one.
 * The table and the JSON both end with the ratios (bench_ratios.c).
 */
#include "bench.h"
#include "cli.h"

#include <string.h>

#define REPORT_COLUMNS 11
#define REPORT_CELL    64

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
                "through all %s subjects in order,\n      so each publish is matched "
                "alone: none repeats the subject of the one before\n",
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

    bench_ratio ratios[BENCH_MAX_RATIOS];
    size_t n = bench_ratios(rep, ratios);
    if (n == 0) {
        return;
    }
    size_t gw = 0;
    size_t ww = 0;
    for (size_t i = 0; i < n; i++) {
        gw = strlen(ratios[i].group) > gw ? strlen(ratios[i].group) : gw;
        ww = strlen(ratios[i].what) > ww ? strlen(ratios[i].what) : ww;
    }
    fprintf(out, "\nratios (of the medians over the runs), and what they mean:\n");
    for (size_t i = 0; i < n; i++) {
        const bench_ratio *r = &ratios[i];
        char value[32];
        if (r->bytes) {
            snprintf(value, sizeof(value), "%.0f B", r->value);
        } else {
            snprintf(value, sizeof(value), "%.2fx", r->value);
        }
        fprintf(out, "  %-*s  %-*s  %8s%s%s\n", (int)gw, r->group, (int)ww, r->what, value,
                r->meaning[0] != '\0' ? "  " : "", r->meaning);
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

    bench_ratio ratios[BENCH_MAX_RATIOS];
    size_t n = bench_ratios(rep, ratios);
    fputs("\n],\"ratios\":[", out);
    for (size_t i = 0; i < n; i++) {
        const bench_ratio *r = &ratios[i];
        fprintf(out, "%s\n{\"group\":\"%s\",\"ratio\":\"%s\",\"value\":%.4f%s", i ? "," : "",
                r->group, r->what, r->value, r->bytes ? ",\"unit\":\"bytes\"" : "");
        if (r->op != BENCH_RATIO_INFO) {
            fprintf(out, ",\"target\":\"%s %.6g\",\"met\":%s", bench_ratio_op_text(r->op),
                    r->target, bench_ratio_met(r) ? "true" : "false");
        }
        fputc('}', out);
    }
    fputs("\n]}\n", out);
}
