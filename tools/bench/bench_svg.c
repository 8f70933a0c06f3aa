/*
 * bench_svg.c - `sockbus bench --svg FILE`: the table as a bar chart a
 * person can open in a browser.
 *
 * One panel per workload and size, the transports as bars in fixed colors
 * (unix, tcp, raw-unix, raw-tcp, relay-unix, relay-tcp) with one legend
 * for all. Rates span four orders of magnitude between 16 B and 64 KiB,
 * so one shared axis would
 * flatten the large sizes to nothing, and a log axis would hide the very
 * ratios the chart is for; instead each panel has its own linear axis from
 * zero, with ticks and a label, and every bar carries its value. rtt gets
 * two panels, p50 and p99, where shorter is better. scale gets one panel
 * with a bar per transport and subscription count, each bar with many
 * subscriptions labelled with its ratio to the bar with one; idle one panel
 * of bytes per connection with the target drawn as a line. With --runs N a
 * bar is the median and a whisker spans min to max.
 *
 * The file is self-contained SVG 1.1: no scripts, no external fonts,
 * images or style sheets; every text we write is escaped for XML.
 */
#include "bench.h"

#include <errno.h>
#include <string.h>

#define SVG_WIDTH       980
#define SVG_MARGIN      20
#define SVG_LABEL_WIDTH 90 /* transport names left of the bars */
#define SVG_PLOT_X      (SVG_MARGIN + SVG_LABEL_WIDTH)
#define SVG_PLOT_WIDTH  560
#define SVG_BAR_HEIGHT  18
#define SVG_BAR_GAP     6
#define SVG_PANEL_TITLE 26
#define SVG_PANEL_AXIS  34
#define SVG_PANEL_GAP   14
#define SVG_HEADER      92
#define SVG_TICKS       5

/* Targets drawn or quoted in panels (the same as in bench_report.c). */
#define SVG_TARGET_SCALE      0.8
#define SVG_TARGET_IDLE_BYTES 8192.0

static const char *const svg_colors[BENCH_TRANSPORT_COUNT] = {
    [BENCH_UNIX] = "#1f77b4",    [BENCH_TCP] = "#ff7f0e",        [BENCH_RAW_UNIX] = "#2ca02c",
    [BENCH_RAW_TCP] = "#9467bd", [BENCH_RELAY_UNIX] = "#8c564b", [BENCH_RELAY_TCP] = "#e377c2",
};

/* What a panel plots for its rows. */
typedef enum svg_metric {
    SVG_RATE,    /* msgs/s, median and spread */
    SVG_RTT_P50, /* microseconds */
    SVG_RTT_P99,
    SVG_IDLE, /* bytes of broker RSS per idle connection */
} svg_metric;

typedef struct svg_panel {
    size_t first; /* rows[first .. first + count) */
    size_t count;
    svg_metric metric;
} svg_panel;

/* Write text with &, <, >, " escaped. */
static void svg_text(FILE *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        default:
            fputc(*s, out);
        }
    }
}

static double panel_value(const bench_row *row, svg_metric m, double *lo, double *hi)
{
    switch (m) {
    case SVG_RATE:
        *lo = row->rate_spread.min;
        *hi = row->rate_spread.max;
        return row->rate_spread.median;
    case SVG_RTT_P50:
        *lo = *hi = (double)row->latency.p50 / 1e3;
        return *lo;
    case SVG_RTT_P99:
        *lo = *hi = (double)row->latency.p99 / 1e3;
        return *lo;
    case SVG_IDLE:
        *lo = row->rate_spread.min;
        *hi = row->rate_spread.max;
        return row->rate_spread.median;
    }
    *lo = *hi = 0;
    return 0;
}

/* A tick step of 1, 2 or 5 times a power of ten giving about SVG_TICKS
 * ticks up to max. Loops instead of log10(): no libm for this. */
static double nice_step(double max)
{
    double raw = max / SVG_TICKS;
    double mag = 1.0;

    if (!(raw > 0.0)) {
        return 1.0;
    }
    while (mag * 10.0 <= raw) {
        mag *= 10.0;
    }
    while (mag > raw) {
        mag /= 10.0;
    }
    double norm = raw / mag;
    return (norm <= 1.0 ? 1.0 : norm <= 2.0 ? 2.0 : norm <= 5.0 ? 5.0 : 10.0) * mag;
}

static void format_value(svg_metric m, double v, char *buf, size_t len)
{
    if (m == SVG_RATE) {
        bench_format_si(v, buf, len);
    } else if (m == SVG_IDLE) {
        snprintf(buf, len, "%.0f", v);
    } else if (v >= 100.0) {
        snprintf(buf, len, "%.0f", v);
    } else {
        snprintf(buf, len, "%.1f", v);
    }
}

/* A tick label: like a value, without the zeros that only say how exact
 * a value is ("10.0M" -> "10M", "0.0" -> "0"). */
static void format_tick(svg_metric m, double v, char *buf, size_t len)
{
    format_value(m, v, buf, len);
    char *dot = strchr(buf, '.');
    if (dot == NULL) {
        return;
    }
    char *end = dot + strspn(dot + 1, "0123456789") + 1; /* the suffix, if any */
    char *cut = end;
    while (cut > dot + 1 && cut[-1] == '0') {
        cut--;
    }
    if (cut == dot + 1) {
        cut = dot;
    }
    memmove(cut, end, strlen(end) + 1);
}

static int panel_height(const svg_panel *p)
{
    return SVG_PANEL_TITLE + (int)p->count * (SVG_BAR_HEIGHT + SVG_BAR_GAP) + SVG_PANEL_AXIS +
           SVG_PANEL_GAP;
}

/* The panel's rows with the most subscriptions (scale), for the title. */
static unsigned panel_max_subjects(const bench_row *rows, size_t count)
{
    unsigned max = 0;

    for (size_t i = 0; i < count; i++) {
        max = rows[i].subjects > max ? rows[i].subjects : max;
    }
    return max;
}

static void panel_title(const bench_row *rows, size_t count, svg_metric m, char *buf, size_t len)
{
    const bench_row *row = &rows[0];
    char size[32];
    char subs[32];

    bench_format_size(row->size, size, sizeof(size));
    switch (m) {
    case SVG_RATE:
        if (row->workload == BENCH_SCALE) {
            snprintf(buf, len,
                     "scale %s: msgs/s with 1 and with %s subscriptions on distinct subjects, "
                     "published in turn (longer is better)",
                     size, bench_format_count(panel_max_subjects(rows, count), subs, sizeof(subs)));
        } else if (row->workload == BENCH_FANOUT) {
            snprintf(buf, len,
                     "fanout 1\xe2\x86\x92%u, %s: delivered msgs/s, summed over the "
                     "subscribers (longer is better)",
                     row->receivers, size);
        } else {
            snprintf(buf, len, "thru %s: msgs/s at the subscriber (longer is better)", size);
        }
        break;
    case SVG_RTT_P50:
        snprintf(buf, len, "rtt %s: round trip p50, \xc2\xb5s (shorter is better)", size);
        break;
    case SVG_RTT_P99:
        snprintf(buf, len, "rtt %s: round trip p99, \xc2\xb5s (shorter is better)", size);
        break;
    case SVG_IDLE:
        snprintf(buf, len,
                 "idle: broker RSS per idle connection, bytes, %u connections (shorter is "
                 "better; target \xe2\x89\xa4 %.0f: the dashed line)",
                 row->connections, SVG_TARGET_IDLE_BYTES);
        break;
    }
}

static const char *axis_label(svg_metric m)
{
    switch (m) {
    case SVG_RATE:
        return "messages per second";
    case SVG_RTT_P50:
    case SVG_RTT_P99:
        return "microseconds";
    case SVG_IDLE:
        return "bytes of broker RSS per connection";
    }
    return "";
}

/* scale: the row with one subscription beside `row` in the panel. */
static const bench_row *scale_partner(const bench_row *rows, size_t count, const bench_row *row)
{
    for (size_t i = 0; i < count; i++) {
        if (rows[i].transport == row->transport && rows[i].subjects == 1) {
            return &rows[i];
        }
    }
    return NULL;
}

static void svg_panel_write(FILE *out, const bench_report *rep, const svg_panel *p, int y,
                            unsigned runs)
{
    const bench_row *rows = rep->rows + p->first;
    char text[160];
    double max = 0.0;

    for (size_t i = 0; i < p->count; i++) {
        double lo;
        double hi;
        double v = panel_value(&rows[i], p->metric, &lo, &hi);
        max = v > max ? v : max;
        max = hi > max ? hi : max;
    }
    if (p->metric == SVG_IDLE && max < SVG_TARGET_IDLE_BYTES * 1.1) {
        max = SVG_TARGET_IDLE_BYTES * 1.1; /* the target line stays in view */
    }
    double step = nice_step(max);
    int ticks = 1;
    while (step * ticks < max) {
        ticks++;
    }
    double axis_max = step * ticks;

    panel_title(rows, p->count, p->metric, text, sizeof(text));
    fprintf(out, "<text x=\"%d\" y=\"%d\" class=\"title\">", SVG_MARGIN, y + 17);
    svg_text(out, text);
    fputs("</text>\n", out);

    int top = y + SVG_PANEL_TITLE;
    int bottom = top + (int)p->count * (SVG_BAR_HEIGHT + SVG_BAR_GAP);

    /* Grid and tick labels first, so the bars draw over the grid. */
    for (int t = 0; t <= ticks; t++) {
        double x = SVG_PLOT_X + SVG_PLOT_WIDTH * (step * t) / axis_max;
        char label[32];
        format_tick(p->metric, step * t, label, sizeof(label));
        fprintf(out,
                "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" class=\"grid\"/>\n"
                "<text x=\"%.1f\" y=\"%d\" class=\"tick\">%s</text>\n",
                x, top - 2, x, bottom + 2, x, bottom + 15, label);
    }
    fprintf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", SVG_PLOT_X,
            top - 2, SVG_PLOT_X, bottom + 2);
    fprintf(out, "<text x=\"%d\" y=\"%d\" class=\"axislabel\">%s</text>\n",
            SVG_PLOT_X + SVG_PLOT_WIDTH / 2, bottom + 29, axis_label(p->metric));
    if (p->metric == SVG_IDLE) {
        /* The target, under the bars and their values like the grid; the
         * title says what it is (a label here would collide with the
         * ticks or the title). */
        double x = SVG_PLOT_X + SVG_PLOT_WIDTH * SVG_TARGET_IDLE_BYTES / axis_max;
        fprintf(out,
                "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" class=\"target\">"
                "<title>target: %.0f bytes</title></line>\n",
                x, top - 2, x, bottom + 2, SVG_TARGET_IDLE_BYTES);
    }

    for (size_t i = 0; i < p->count; i++) {
        const bench_row *row = &rows[i];
        double lo;
        double hi;
        double v = panel_value(row, p->metric, &lo, &hi);
        int by = top + (int)i * (SVG_BAR_HEIGHT + SVG_BAR_GAP);
        double w = axis_max > 0 ? SVG_PLOT_WIDTH * v / axis_max : 0;
        char value[32];
        char low[32];
        char high[32];

        char label[48];
        if (row->workload == BENCH_SCALE) {
            char subs[32];
            snprintf(label, sizeof(label), "%s %s", bench_transport_name(row->transport),
                     bench_format_count(row->subjects, subs, sizeof(subs)));
        } else {
            snprintf(label, sizeof(label), "%s", bench_transport_name(row->transport));
        }
        fprintf(out, "<text x=\"%d\" y=\"%d\" class=\"label\">%s</text>\n", SVG_PLOT_X - 8, by + 13,
                label);
        fprintf(out,
                "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\">"
                "<title>%s</title></rect>\n",
                SVG_PLOT_X, by, w, SVG_BAR_HEIGHT, svg_colors[row->transport],
                bench_transport_name(row->transport));

        format_value(p->metric, v, value, sizeof(value));
        double text_x = SVG_PLOT_X + w + 6;
        if ((p->metric == SVG_RATE || p->metric == SVG_IDLE) && runs > 1) {
            double x0 = SVG_PLOT_X + SVG_PLOT_WIDTH * lo / axis_max;
            double x1 = SVG_PLOT_X + SVG_PLOT_WIDTH * hi / axis_max;
            int cy = by + SVG_BAR_HEIGHT / 2;
            fprintf(out, "<path d=\"M%.1f %dV%dM%.1f %dH%.1fM%.1f %dV%d\" class=\"whisker\"/>\n",
                    x0, cy - 4, cy + 4, x0, cy, x1, x1, cy - 4, cy + 4);
            text_x = (x1 > SVG_PLOT_X + w ? x1 : SVG_PLOT_X + w) + 6;
            format_value(p->metric, lo, low, sizeof(low));
            format_value(p->metric, hi, high, sizeof(high));
            snprintf(text, sizeof(text), "%s%s [%s\xe2\x80\x93%s]", value,
                     p->metric == SVG_IDLE ? " B" : "", low, high);
        } else {
            snprintf(text, sizeof(text), "%s%s", value, p->metric == SVG_IDLE ? " B" : "");
        }
        if (p->metric == SVG_RATE) {
            size_t len = strlen(text);
            snprintf(text + len, sizeof(text) - len, "  (%.1f MB/s)", bench_row_mbps(row, v));
            if (bench_row_loss(row) > 0) {
                len = strlen(text);
                snprintf(text + len, sizeof(text) - len, "  loss %llu",
                         (unsigned long long)bench_row_loss(row));
            }
            const bench_row *one = row->workload == BENCH_SCALE && row->subjects > 1
                                       ? scale_partner(rows, p->count, row)
                                       : NULL;
            if (one != NULL && one->rate_spread.median > 0) {
                double ratio = v / one->rate_spread.median;
                len = strlen(text);
                snprintf(text + len, sizeof(text) - len,
                         ", %.2fx of scale 1 (target \xe2\x89\xa5 %.1f: %s)", ratio,
                         SVG_TARGET_SCALE, ratio >= SVG_TARGET_SCALE ? "ok" : "missed");
            }
        } else if (p->metric == SVG_IDLE) {
            size_t len = strlen(text);
            snprintf(text + len, sizeof(text) - len, "  (target \xe2\x89\xa4 %.0f: %s)%s",
                     SVG_TARGET_IDLE_BYTES, v <= SVG_TARGET_IDLE_BYTES ? "ok" : "missed",
                     row->sanitized ? "  ASan build: not comparable" : "");
        }
        fprintf(out, "<text x=\"%.1f\" y=\"%d\" class=\"value\">", text_x, by + 13);
        svg_text(out, text);
        fputs("</text>\n", out);
    }
}

int bench_svg_write(const bench_report *rep, FILE *out)
{
    svg_panel panels[2 * 512];
    size_t count = 0;

    /* Rows come grouped by workload and size (bench_plan.c sorts them). */
    for (size_t i = 0; i < rep->row_count && count + 2 <= sizeof(panels) / sizeof(panels[0]);) {
        size_t j = i;
        while (j < rep->row_count && rep->rows[j].workload == rep->rows[i].workload &&
               rep->rows[j].size == rep->rows[i].size &&
               rep->rows[j].receivers == rep->rows[i].receivers) {
            j++;
        }
        if (rep->rows[i].workload == BENCH_RTT) {
            panels[count++] = (svg_panel){i, j - i, SVG_RTT_P50};
            panels[count++] = (svg_panel){i, j - i, SVG_RTT_P99};
        } else if (rep->rows[i].workload == BENCH_IDLE) {
            if (rep->rows[i].runs > 0) { /* not with -s: skipped */
                panels[count++] = (svg_panel){i, j - i, SVG_IDLE};
            }
        } else {
            panels[count++] = (svg_panel){i, j - i, SVG_RATE};
        }
        i = j;
    }

    int height = SVG_HEADER;
    for (size_t i = 0; i < count; i++) {
        height += panel_height(&panels[i]);
    }
    height += SVG_MARGIN;

    fprintf(out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" "
            "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
            "<style>\n"
            "  .h1 { font-size: 18px; font-weight: bold; }\n"
            "  .sub { fill: #555; }\n"
            "  .title { font-size: 13px; font-weight: bold; }\n"
            "  .label { text-anchor: end; }\n"
            "  .tick { text-anchor: middle; fill: #555; font-size: 11px; }\n"
            "  .axislabel { text-anchor: middle; fill: #555; font-size: 11px; }\n"
            "  .value { font-size: 11px; }\n"
            "  .grid { stroke: #e3e3e3; }\n"
            "  .axis { stroke: #333; }\n"
            "  .whisker { stroke: #222; stroke-width: 1.5; fill: none; }\n"
            "  .target { stroke: #d62728; stroke-width: 1.5; stroke-dasharray: 4 3; }\n"
            "</style>\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            SVG_WIDTH, height, SVG_WIDTH, height);

    fprintf(out, "<text x=\"%d\" y=\"30\" class=\"h1\">sockbus bench</text>\n", SVG_MARGIN);
    char sub[256];
    snprintf(sub, sizeof(sub),
             "%u run%s of %g s per row%s; %s broker; each panel has its own scale", rep->runs,
             rep->runs == 1 ? "" : "s", (double)rep->duration_ms / 1000.0,
             rep->runs > 1 ? " (bars: median, whiskers: min\xe2\x80\x93max)" : "",
             strcmp(rep->broker_mode, "external") == 0 ? "a running" : "a private");
    fprintf(out, "<text x=\"%d\" y=\"50\" class=\"sub\">", SVG_MARGIN);
    svg_text(out, sub);
    fputs("</text>\n", out);

    /* The legend: every transport, whether or not this run had it. */
    int lx = SVG_MARGIN;
    for (int t = 0; t < BENCH_TRANSPORT_COUNT; t++) {
        static const char *const legend[BENCH_TRANSPORT_COUNT] = {
            [BENCH_UNIX] = "unix (broker)",
            [BENCH_TCP] = "tcp (broker)",
            [BENCH_RAW_UNIX] = "raw-unix (no broker)",
            [BENCH_RAW_TCP] = "raw-tcp (no broker)",
            [BENCH_RELAY_UNIX] = "relay-unix (copies only)",
            [BENCH_RELAY_TCP] = "relay-tcp (copies only)",
        };
        fprintf(out,
                "<rect x=\"%d\" y=\"64\" width=\"14\" height=\"14\" fill=\"%s\"/>"
                "<text x=\"%d\" y=\"76\">%s</text>\n",
                lx, svg_colors[t], lx + 20, legend[t]);
        lx += 44 + (int)strlen(legend[t]) * 7;
    }

    int y = SVG_HEADER;
    for (size_t i = 0; i < count; i++) {
        svg_panel_write(out, rep, &panels[i], y, rep->runs);
        y += panel_height(&panels[i]);
    }
    fputs("</svg>\n", out);
    return ferror(out) ? -EIO : 0;
}
