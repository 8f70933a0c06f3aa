/*
 * test_bench.c - `sockbus bench` end to end: it starts its own broker,
 * runs each kind of row over each transport, loses nothing, and writes
 * JSON and SVG that parse. Rates are only checked to be positive: speed
 * claims come from the benchmark itself, never from a timed test.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(bench, .timeout = 120);

static json_object *field(json_object *o, const char *key)
{
    json_object *v = NULL;
    cr_assert(json_object_object_get_ex(o, key, &v), "no \"%s\" in %s", key,
              json_object_to_json_string(o));
    return v;
}

Test(bench, every_row_runs_without_loss)
{
    char dir[] = "/tmp/sbtest-bench-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char svg[128];
    snprintf(svg, sizeof(svg), "%s/chart.svg", dir);
    const char *const argv[] = {"sockbus",
                                "bench",
                                "thru",
                                "fanout",
                                "rtt",
                                "-z",
                                "128",
                                "-k",
                                "2",
                                "-T",
                                "unix,tcp,raw,relay",
                                "-d",
                                "0.2",
                                "--json",
                                "--svg",
                                svg,
                                "-q",
                                NULL};
    char *out = NULL;
    size_t out_len = 0;
    char err[4096];
    int status = harness_cli(argv, NULL, 0, &out, &out_len, err, sizeof(err), 100000);
    cr_assert_eq(status, 0, "sockbus bench exited %d: %s", status, err);

    json_object *doc = json_tokener_parse(out);
    cr_assert_not_null(doc, "bench --json printed no JSON: %.200s", out);
    json_object *rows = field(doc, "rows");
    size_t n = json_object_array_length(rows);
    /* 3 workloads x 6 transports (unix, tcp, raw-unix, raw-tcp, relay-unix,
     * relay-tcp). */
    cr_assert_eq(n, 18, "expected 18 rows, got %zu", n);
    for (size_t i = 0; i < n; i++) {
        json_object *row = json_object_array_get_idx(rows, i);
        const char *workload = json_object_get_string(field(row, "workload"));
        const char *transport = json_object_get_string(field(row, "transport"));
        if (strcmp(workload, "rtt") == 0) {
            json_object *rtt = field(row, "rtt_us");
            cr_assert_gt(json_object_get_int64(field(rtt, "samples")), 0, "rtt %s", transport);
            cr_assert_gt(json_object_get_double(field(rtt, "p50")), 0.0);
            continue;
        }
        cr_assert_eq(json_object_get_int64(field(row, "loss")), 0, "%s %s lost messages", workload,
                     transport);
        cr_assert_eq(json_object_get_int64(field(row, "received")),
                     json_object_get_int64(field(row, "expected")), "%s %s", workload, transport);
        cr_assert_gt(json_object_get_double(field(field(row, "msgs_per_s"), "median")), 0.0);
    }
    /* Each broker row is set against its relay row, the same hops with
     * none of the broker's work. */
    json_object *ratios = field(doc, "ratios");
    bool unix_vs_relay = false;
    bool tcp_vs_relay = false;
    for (size_t i = 0; i < json_object_array_length(ratios); i++) {
        const char *what =
            json_object_get_string(field(json_object_array_get_idx(ratios, i), "ratio"));
        unix_vs_relay |= strcmp(what, "unix / relay-unix msgs/s") == 0;
        tcp_vs_relay |= strcmp(what, "tcp / relay-tcp msgs/s") == 0;
    }
    cr_assert(unix_vs_relay && tcp_vs_relay, "no broker/relay ratios in %s",
              json_object_to_json_string(ratios));
    json_object_put(doc);
    free(out);

    /* The chart is a whole SVG document. */
    FILE *f = fopen(svg, "r");
    cr_assert_not_null(f, "no chart at %s", svg);
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[len] = '\0';
    cr_assert(strstr(text, "<svg") != NULL && strstr(text, "</svg>") != NULL,
              "the chart is not an SVG document");
    unlink(svg);
    rmdir(dir);
}

Test(bench, unknown_workload_is_a_usage_error)
{
    const char *const argv[] = {"sockbus", "bench", "nosuch", NULL};
    char *out = NULL;
    size_t out_len = 0;
    char err[4096];
    int status = harness_cli(argv, NULL, 0, &out, &out_len, err, sizeof(err), HARNESS_IO_MS);
    free(out);
    cr_assert_eq(status, 2, "exit %d", status);
    cr_assert(strchr(err, '\n') == err + strlen(err) - 1, "one line on stderr: [%s]", err);
}

/* The ratios speak to a user: each says what it means, none is judged
 * against a number the user never set. */
Test(bench, ratios_say_what_they_mean)
{
    const char *const argv[] = {"sockbus", "bench", "thru",           "rtt", "-z",  "128", "-k",
                                "1",       "-T",    "unix,raw,relay", "-d",  "0.2", NULL};
    char *out = NULL;
    size_t out_len = 0;
    char err[4096];
    int status = harness_cli(argv, NULL, 0, &out, &out_len, err, sizeof(err), 100000);
    cr_assert_eq(status, 0, "sockbus bench exited %d: %s", status, err);
    cr_assert_not_null(strstr(out, "what they mean"), "no ratios: %s", out);
    cr_assert_not_null(strstr(out, "of the messages a bare Unix socket carries"), "%s", out);
    cr_assert_null(strstr(out, "MISSED"), "%s", out);
    cr_assert_null(strstr(out, "target"), "%s", out);
    /* Every ratio line goes on past its value with words. */
    int lines = 0;
    for (const char *l = strstr(out, "what they mean:\n") + 16; *l == ' ';) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        size_t end = len;
        while (end > 0 && l[end - 1] == ' ') {
            end--;
        }
        cr_assert(end > 0 && l[end - 1] != 'x' && l[end - 1] != 'B',
                  "a ratio without meaning: %.*s", (int)len, l);
        lines++;
        l = nl ? nl + 1 : l + len;
    }
    cr_assert_geq(lines, 4, "%d ratio lines: %s", lines, out);
    free(out);
}
