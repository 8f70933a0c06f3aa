/*
 * bench_options.c - the command line of `sockbus bench`: its --help, and
 * parsing it into a bench_args, starting from the defaults.
 *
 * A WORKLOAD is a keyword (thru, fanout, rtt, sweep, scale, idle, all), so
 * options may come before or after the workloads. Sizes are bytes, with k
 * and m for KiB and MiB, since they size frames; --scale-subs and
 * --idle-conns count things, so there k and m mean 10^3 and 10^6. Every
 * bad value is one line naming it and what to give instead. -s names one
 * broker, whose endpoint has one transport: it becomes the only broker
 * transport, and asking for the other one with -T is an error rather than
 * a silent skip. The names of workloads and transports are spelled here,
 * for the command line and for the report alike.
 */
#include "bench_cmd.h"
#include "cli.h"
#include "frame.h"
#include "units.h"

#include <errno.h>
#include <string.h>

#define BENCH_DURATION_DEFAULT_MS 1000
#define BENCH_WINDOW_DEFAULT      (2u * 1024u * 1024u)
#define BENCH_SUBS_DEFAULT        4u
#define BENCH_SCALE_SUBS_DEFAULT  100000u
#define BENCH_IDLE_CONNS_DEFAULT  1000u
#define BENCH_IDLE_CONNS_MAX      1000000u

enum {
    OPT_JSON = 256,
    OPT_SVG,
    OPT_BROKER,
    OPT_WINDOW,
    OPT_SCALE_SUBS,
    OPT_IDLE_CONNS,
};

/* No "+": a WORKLOAD is a keyword, never data that could start with '-',
 * so options may come before or after it ("sockbus bench thru -z 128").
 * ":": report a missing argument as ':' rather than '?'. */
#define BENCH_OPTSTRING ":s:z:k:T:d:n:qh"

static const struct option bench_options[] = {
    {"socket", required_argument, NULL, 's'},
    {"size", required_argument, NULL, 'z'},
    {"subs", required_argument, NULL, 'k'},
    {"transport", required_argument, NULL, 'T'},
    {"duration", required_argument, NULL, 'd'},
    {"runs", required_argument, NULL, 'n'},
    {"json", no_argument, NULL, OPT_JSON},
    {"svg", required_argument, NULL, OPT_SVG},
    {"broker", required_argument, NULL, OPT_BROKER},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"scale-subs", required_argument, NULL, OPT_SCALE_SUBS},
    {"idle-conns", required_argument, NULL, OPT_IDLE_CONNS},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const char *const transport_names[BENCH_TRANSPORT_COUNT] = {
    [BENCH_UNIX] = "unix",
    [BENCH_TCP] = "tcp",
    [BENCH_RAW_UNIX] = "raw-unix",
    [BENCH_RAW_TCP] = "raw-tcp",
    [BENCH_RELAY_UNIX] = "relay-unix",
    [BENCH_RELAY_TCP] = "relay-tcp",
};

const char *bench_transport_name(bench_transport t)
{
    return transport_names[t];
}

const char *bench_workload_name(bench_workload w)
{
    switch (w) {
    case BENCH_THRU:
        return "thru";
    case BENCH_FANOUT:
        return "fanout";
    case BENCH_RTT:
        return "rtt";
    case BENCH_SCALE:
        return "scale";
    case BENCH_IDLE:
        return "idle";
    }
    return "?";
}

static void bench_usage(FILE *out)
{
    /* Two parts: one string literal of this length is more than C
     * promises a compiler takes. */
    fprintf(out,
            "usage: sockbus bench [OPTIONS] [WORKLOAD...]\n"
            "\n"
            "Measure the bus: messages per second and round-trip latency through the\n"
            "broker over its Unix socket and over TCP loopback, side by side with the\n"
            "same frames sent straight between two processes without a broker (raw)\n"
            "and through a process that only copies them where the broker would be\n"
            "(relay), so the table shows what the broker costs; and what a big\n"
            "routing table and an idle connection cost the broker.\n"
            "\n"
            "Workloads (default: all):\n"
            "  thru     1 publisher -> 1 subscriber (sizes: --size, default 16 and 128)\n"
            "  fanout   1 publisher -> K subscribers, each receives everything (128 B)\n"
            "  rtt      request/reply round trips through a responder, one in flight,\n"
            "           after %u warm-up round trips (128 B)\n"
            "  sweep    thru at 16 B, 128 B, 1 KiB, 16 KiB and 64 KiB\n"
            "  scale    thru (128 B) twice: \"scale 1\", the subscriber holding one\n"
            "           subscription, and \"scale N\", holding N (--scale-subs) on\n"
            "           distinct subjects, with the publisher cycling through all N\n"
            "           subjects in order, so that publishes miss the broker's small\n"
            "           match cache and each one is a real trie lookup. Subscribing is\n"
            "           done and confirmed before the timed phase. unix and tcp only\n"
            "  idle     broker RSS per idle connection: a fresh private broker, its\n"
            "           VmRSS before and after N (--idle-conns) library connections\n"
            "           from one process, each flushed. Needs the private broker:\n"
            "           skipped with -s. unix and tcp only\n"
            "  all      sweep, fanout, rtt, scale and idle (plus thru if --size is\n"
            "           given)\n"
            "\n",
            BENCH_RTT_WARMUP);
    fprintf(out,
            "Options (before or after the WORKLOADs):\n"
            "  -z, --size LIST        payload sizes for thru, fanout, rtt and scale: bytes,\n"
            "                         or with k or m for KiB or MiB, comma-separated (16,1k,64k);\n"
            "                         at least %u (each payload carries a sequence number)\n"
            "  -k, --subs K           subscribers for fanout (default %u, at most %u)\n"
            "      --scale-subs N     subscriptions for scale (default %u, at most\n"
            "                         %u; k and m mean 10^3 and 10^6: 100k)\n"
            "      --idle-conns N     connections for idle (default %u, at most %u);\n"
            "                         if the RLIMIT_NOFILE hard limit allows fewer, the\n"
            "                         row uses fewer and says so\n"
            "  -T, --transport LIST   any of unix, tcp, raw (= raw-unix,raw-tcp),\n"
            "                         raw-unix, raw-tcp, relay (= relay-unix,relay-tcp;\n"
            "                         also raw-relay), relay-unix, relay-tcp (default:\n"
            "                         all of them)\n"
            "  -d, --duration SECONDS how long each row sends (default %d.%d; 0.5, 250ms)\n"
            "  -n, --runs N           run everything N times: rates show the median and\n"
            "                         [min-max]; latencies use every sample of every run\n"
            "      --json             print one JSON document instead of the table\n"
            "      --svg FILE         also write a bar chart of the results (SVG)\n"
            "  -s, --socket ENDPOINT  bench the broker running there (a socket path or\n"
            "                         tcp://HOST:PORT) instead of a private one; the\n"
            "                         broker rows then use that endpoint's transport\n"
            "      --broker PATH      the sockbusd to start (default: next to this\n"
            "                         sockbus, else on PATH)\n"
            "      --window BYTES     most bytes of frames a publisher may be ahead of its\n"
            "                         slowest subscriber (default 2m; keep it below the\n"
            "                         broker's max_pending, 8m by default)\n"
            "  -q, --quiet            no progress line on stderr (it is shown only on a\n"
            "                         terminal, and only when the runs take over 1 s)\n"
            "  -h, --help             show this help and exit\n"
            "\n"
            "How it measures: publishers, subscribers, requesters and responders are\n"
            "separate processes, each with its own libsockbus connection. By default\n"
            "the bench starts its own sockbusd on a temporary Unix socket and a free\n"
            "127.0.0.1 port, so unix and tcp hit the same broker, and stops it at the\n"
            "end (idle starts a fresh one for each of its rows, since a broker that\n"
            "served other rows reuses freed memory unseen). A publisher sends for\n"
            "SECONDS, never more than the window ahead of its slowest subscriber\n"
            "(credit through shared memory), then an end marker. msgs/s is measured\n"
            "at the subscribers, from the first message to the last (fanout: summed\n"
            "over them); MB/s counts payload bytes (1 MB = 10^6 B). loss is\n"
            "published x subscribers - received, and 0 unless the row says otherwise.\n"
            "Latencies are in microseconds. raw-unix and raw-tcp send the same frames\n"
            "between two processes with no broker: the ceiling. relay-unix and\n"
            "relay-tcp send them through a third process, where the broker would be,\n"
            "that reads into one buffer and writes what it read unchanged: the same\n"
            "hops and wake-ups as the broker with none of its work, so unix against\n"
            "relay-unix is the broker's own cost. After the table, ratios compare the\n"
            "transports (with targets where there are some).\n"
            "\n"
            "Exit status: 0 when every row ran (loss is reported, not an error), 1 on\n"
            "failure, 2 on a bad command line.\n"
            "\n"
            "Examples:\n"
            "  sockbus bench\n"
            "  sockbus bench --runs 5 --svg bench.svg\n"
            "  sockbus bench thru -z 128 -T unix,raw -d 3\n"
            "  sockbus bench scale idle -T unix --scale-subs 200k\n"
            "  sockbus bench rtt -s /run/sockbus/sockbus.sock --json\n",
            BENCH_MIN_SIZE, BENCH_SUBS_DEFAULT, BENCH_MAX_SUBS, BENCH_SCALE_SUBS_DEFAULT,
            BENCH_SCALE_SUBS_MAX, BENCH_IDLE_CONNS_DEFAULT, BENCH_IDLE_CONNS_MAX,
            BENCH_DURATION_DEFAULT_MS / 1000, (BENCH_DURATION_DEFAULT_MS % 1000) / 100);
}

/* "100000", "100k", "1m": a count, k and m meaning 10^3 and 10^6 (a count
 * of things, not bytes). Returns 0 or -EINVAL; 0 is invalid. */
static int parse_count_si(const char *text, uint64_t *out)
{
    char digits[32];
    size_t len = strlen(text);
    uint64_t scale = 1;

    if (len > 0 && (text[len - 1] == 'k' || text[len - 1] == 'K')) {
        scale = 1000;
        len--;
    } else if (len > 0 && (text[len - 1] == 'm' || text[len - 1] == 'M')) {
        scale = 1000 * 1000;
        len--;
    }
    if (len == 0 || len >= sizeof(digits)) {
        return -EINVAL;
    }
    memcpy(digits, text, len);
    digits[len] = '\0';
    uint64_t v;
    if (cli_parse_count(digits, &v) < 0 || v > UINT64_MAX / scale) {
        return -EINVAL;
    }
    *out = v * scale;
    return 0;
}

static int parse_sizes(bench_args *args, const char *list)
{
    const char *p = list;

    args->size_count = 0;
    for (;;) {
        size_t len = strcspn(p, ",");
        uint64_t v;
        if (units_parse_bytes(p, len, &v) < 0) {
            return cli_usage_error(CMD,
                                   "invalid size '%.*s' in '%s': give bytes, e.g. 128, 1k "
                                   "or 64k",
                                   (int)len, p, list);
        }
        uint64_t max = SB_MAX_FRAME_DEFAULT - FRAME_HEADER_SIZE - BENCH_SUBJECT_ROOM;
        if (v < BENCH_MIN_SIZE || v > max) {
            return cli_usage_error(CMD, "size %.*s is out of range: give %u to %llu bytes",
                                   (int)len, p, BENCH_MIN_SIZE, (unsigned long long)max);
        }
        if (args->size_count == BENCH_MAX_SIZES) {
            return cli_usage_error(CMD, "too many sizes in '%s' (at most %d)", list,
                                   BENCH_MAX_SIZES);
        }
        args->sizes[args->size_count++] = (size_t)v;
        if (p[len] == '\0') {
            return 0;
        }
        p += len + 1;
    }
}

static int parse_transports(bench_args *args, const char *list)
{
    const char *p = list;

    memset(args->transports, 0, sizeof(args->transports));
    for (;;) {
        size_t len = strcspn(p, ",");
        bool found = false;
        if (len == 3 && strncmp(p, "raw", 3) == 0) {
            args->transports[BENCH_RAW_UNIX] = args->transports[BENCH_RAW_TCP] = true;
            found = true;
        }
        if ((len == 5 && strncmp(p, "relay", 5) == 0) ||
            (len == 9 && strncmp(p, "raw-relay", 9) == 0)) {
            args->transports[BENCH_RELAY_UNIX] = args->transports[BENCH_RELAY_TCP] = true;
            found = true;
        }
        for (int t = 0; t < BENCH_TRANSPORT_COUNT && !found; t++) {
            if (strlen(transport_names[t]) == len && strncmp(p, transport_names[t], len) == 0) {
                args->transports[t] = true;
                found = true;
            }
        }
        if (!found) {
            return cli_usage_error(CMD,
                                   "unknown transport '%.*s': give unix, tcp, raw, raw-unix, "
                                   "raw-tcp, relay, relay-unix or relay-tcp, comma-separated",
                                   (int)len, p);
        }
        if (p[len] == '\0') {
            break;
        }
        p += len + 1;
    }
    args->transports_given = true;
    return 0;
}

int bench_parse(int argc, char **argv, bench_args *args)
{
    uint64_t count;
    int ch;
    int r = 0;

    *args = (bench_args){
        .subs = BENCH_SUBS_DEFAULT,
        .duration_ms = BENCH_DURATION_DEFAULT_MS,
        .runs = 1,
        .window_bytes = BENCH_WINDOW_DEFAULT,
        .scale_subs = BENCH_SCALE_SUBS_DEFAULT,
        .idle_conns = BENCH_IDLE_CONNS_DEFAULT,
    };
    for (int t = 0; t < BENCH_TRANSPORT_COUNT; t++) {
        args->transports[t] = true;
    }
    while ((ch = getopt_long(argc, argv, BENCH_OPTSTRING, bench_options, NULL)) != -1) {
        switch (ch) {
        case 's':
            args->endpoint = optarg[0] != '\0' ? optarg : NULL;
            break;
        case 'z':
            r = parse_sizes(args, optarg);
            break;
        case 'k':
            if (cli_parse_count(optarg, &count) < 0 || count > BENCH_MAX_SUBS) {
                return cli_usage_error(CMD, "invalid subscriber count '%s': give 1 to %d", optarg,
                                       BENCH_MAX_SUBS);
            }
            args->subs = (unsigned)count;
            break;
        case 'T':
            r = parse_transports(args, optarg);
            break;
        case 'd':
            if (cli_parse_duration_ms(optarg, &args->duration_ms) < 0 || args->duration_ms == 0 ||
                args->duration_ms > 3600 * 1000) {
                return cli_usage_error(CMD,
                                       "invalid duration '%s': give seconds > 0 (at most an "
                                       "hour), e.g. 1, 0.5 or 250ms",
                                       optarg);
            }
            break;
        case 'n':
            if (cli_parse_count(optarg, &count) < 0 || count > 1000) {
                return cli_usage_error(CMD, "invalid run count '%s': give 1 to 1000", optarg);
            }
            args->runs = (unsigned)count;
            break;
        case OPT_JSON:
            args->json = true;
            break;
        case OPT_SVG:
            args->svg = optarg;
            break;
        case OPT_BROKER:
            args->broker = optarg;
            break;
        case OPT_WINDOW:
            if (units_parse_bytes(optarg, strlen(optarg), &args->window_bytes) < 0 ||
                args->window_bytes < 4096 || args->window_bytes > (1ull << 32)) {
                return cli_usage_error(CMD,
                                       "invalid window '%s': give bytes from 4k to 4g, e.g. "
                                       "2m",
                                       optarg);
            }
            break;
        case OPT_SCALE_SUBS:
            if (parse_count_si(optarg, &count) < 0 || count > BENCH_SCALE_SUBS_MAX) {
                return cli_usage_error(CMD,
                                       "invalid subscription count '%s': give 1 to %u, e.g. "
                                       "100k",
                                       optarg, BENCH_SCALE_SUBS_MAX);
            }
            args->scale_subs = (unsigned)count;
            break;
        case OPT_IDLE_CONNS:
            if (parse_count_si(optarg, &count) < 0 || count > BENCH_IDLE_CONNS_MAX) {
                return cli_usage_error(CMD,
                                       "invalid connection count '%s': give 1 to %u, e.g. "
                                       "1000",
                                       optarg, BENCH_IDLE_CONNS_MAX);
            }
            args->idle_conns = (unsigned)count;
            break;
        case 'q':
            args->quiet = true;
            break;
        case 'h':
            bench_usage(stdout);
            return -1;
        default:
            return cli_option_error(CMD, argv, ch, bench_options);
        }
        if (r != 0) {
            return r;
        }
    }
    static const char *const workload_names[WL_COUNT] = {
        [WL_THRU] = "thru",   [WL_FANOUT] = "fanout", [WL_RTT] = "rtt",
        [WL_SWEEP] = "sweep", [WL_SCALE] = "scale",   [WL_IDLE] = "idle",
    };
    bool any = false;
    for (int i = optind; i < argc; i++) {
        bool found = false;
        if (strcmp(argv[i], "all") == 0) {
            args->workloads[WL_FANOUT] = args->workloads[WL_RTT] = true;
            args->workloads[WL_SWEEP] = args->workloads[WL_SCALE] = true;
            args->workloads[WL_IDLE] = true;
            args->workloads[WL_THRU] = args->size_count > 0;
            found = true;
        }
        for (int w = 0; w < WL_COUNT && !found; w++) {
            if (strcmp(argv[i], workload_names[w]) == 0) {
                args->workloads[w] = true;
                found = true;
            }
        }
        if (!found) {
            return cli_usage_error(CMD,
                                   "unknown workload '%s': give thru, fanout, rtt, sweep, "
                                   "scale, idle or all",
                                   argv[i]);
        }
        any = true;
    }
    if (!any) {
        args->workloads[WL_FANOUT] = args->workloads[WL_RTT] = args->workloads[WL_SWEEP] = true;
        args->workloads[WL_SCALE] = args->workloads[WL_IDLE] = true;
        args->workloads[WL_THRU] = args->size_count > 0;
    }

    /* -s names one broker: its transport is the one broker transport. */
    if (args->endpoint != NULL) {
        char resolved[SB_ENDPOINT_MAX];
        if (sb_endpoint_resolve(args->endpoint, resolved, sizeof(resolved)) < 0) {
            return cli_usage_error(CMD, "endpoint '%s' is too long", args->endpoint);
        }
        bench_transport mine = sb_endpoint_is_tcp(resolved) ? BENCH_TCP : BENCH_UNIX;
        bench_transport other = mine == BENCH_TCP ? BENCH_UNIX : BENCH_TCP;
        if (args->transports_given && args->transports[other]) {
            return cli_usage_error(CMD,
                                   "-s %s is a %s endpoint, so it cannot bench --transport %s; "
                                   "leave -s out to bench a private broker on both",
                                   args->endpoint, transport_names[mine], transport_names[other]);
        }
        if (!args->transports_given) {
            args->transports[mine] = true;
        }
        args->transports[other] = false;
    }
    return 0;
}
