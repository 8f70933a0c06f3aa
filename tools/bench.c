/*
 * bench.c - `sockbus bench`: how fast is the bus, and what does the broker
 * cost? Options, the plan of rows, and the orchestration of the runs.
 *
 * What is measured. A row is one workload over one transport at one
 * payload size:
 *   thru    1 publisher -> 1 subscriber, msgs/s and MB/s at the subscriber;
 *   fanout  1 publisher -> K subscribers, each must receive everything;
 *           msgs/s delivered, summed over the subscribers;
 *   rtt     a requester and a responder, one request in flight, after
 *           BENCH_RTT_WARMUP round trips; p50/p90/p99/p99.9/max of every
 *           round trip (nearest rank, no buckets);
 *   sweep   thru at 16 B, 128 B, 1 KiB, 16 KiB and 64 KiB;
 *   scale   thru at 128 B twice: the subscriber holding 1 subscription,
 *           and holding --scale-subs (100,000) on distinct subjects, all
 *           made and confirmed before the timed phase; the publisher cycles
 *           through every subject in order, so almost no publish hits the
 *           broker's small match cache and each one walks the trie. The
 *           ratio of the two is what a big routing table costs;
 *   idle    broker RSS per idle connection: a fresh private broker per row
 *           (one that served other rows keeps freed memory that new
 *           connections would reuse unseen), VmRSS from /proc before and
 *           after --idle-conns (1,000) library connections from one
 *           process, each flushed so the broker has handled its HELLO.
 * Transports, side by side in one run: unix and tcp go through the same
 * broker (ours, or the one -s names); raw-unix and raw-tcp send the same
 * frames straight from one process to another with no broker at all
 * (bench_raw.c), so the gap between unix and raw-unix is the broker's cost.
 *
 * How. Publishers, subscribers, requesters and responders are separate
 * processes forked from here, each with its own libsockbus connection
 * (bench_workers.c). They share one MAP_SHARED block (bench_flow.c):
 * readiness, the credit window, results and the first error. A publisher
 * sends for --duration and then an end marker (an empty payload); every
 * payload carries a sequence number, so receivers check order and count
 * gaps. Rates are measured at the receivers, from their first message to
 * the end marker. The publisher never runs more than a window (--window,
 * default 2 MiB of frames, well below the broker's 8 MiB max_pending) ahead
 * of its slowest subscriber, so the broker's slow-consumer policy never
 * fires in a healthy run: loss is published x subscribers - received, and
 * is 0 unless the row says otherwise (the broker's DROPPED notices are
 * counted too). Nothing is allocated or written per message beyond what
 * the library itself does.
 *
 * Our broker. Unless -s is given, we start a private sockbusd on a socket
 * in a temporary directory and on a free 127.0.0.1 port (bench_broker.c),
 * so unix and tcp hit the same process, and stop it at the end: on
 * success, on errors and on SIGINT/SIGTERM. Every process we fork dies
 * with us (PR_SET_PDEATHSIG) and is reaped by pid.
 *
 * --runs N repeats the whole plan N times, the rows interleaved so that a
 * slow phase of the machine does not hit one row only; rates show the
 * median and the min-max spread, latencies come from every sample of
 * every run.
 */
#include "bench.h"
#include "cli.h"
#include "frame.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMD "bench"

#define BENCH_DURATION_DEFAULT_MS 1000
#define BENCH_WINDOW_DEFAULT      (2u * 1024u * 1024u)
#define BENCH_SUBS_DEFAULT        4u
#define BENCH_THRU_SIZE_DEFAULT_1 16u
#define BENCH_THRU_SIZE_DEFAULT_2 128u
#define BENCH_FANOUT_SIZE_DEFAULT 128u
#define BENCH_RTT_SIZE_DEFAULT    128u
#define BENCH_SCALE_SIZE_DEFAULT  128u
#define BENCH_SCALE_SUBS_DEFAULT  100000u
#define BENCH_IDLE_CONNS_DEFAULT  1000u
#define BENCH_IDLE_CONNS_MAX      1000000u
/* sockbusd's defaults (broker/broker.h): max_subscriptions per connection
 * and max_connections. Our private broker gets --scale-subs on top of the
 * former, and room for --idle-conns if they pass the latter. */
#define BENCH_BROKER_SUBSCRIPTIONS_DEFAULT 65536u
/* The broker memory each of those subscriptions may cost it
 * (max_subscription_bytes): a bench subject costs under 700 bytes. */
#define BENCH_BROKER_BYTES_PER_SUBSCRIPTION 1024u
#define BENCH_BROKER_CONNECTIONS_DEFAULT    4096u
/* idle: how long the clients may take to connect: a base, plus this per
 * connection. */
#define BENCH_IDLE_CONNECT_US_PER_CONN 1000u
#define BENCH_MAX_SIZES                16
#define BENCH_MAX_ROWS                 512
/* Room kept in a frame for our subjects ("bench.PID.N", "_INBOX.bench.PID.N"). */
#define BENCH_SUBJECT_ROOM 128u
/* A receiver reports its count at most this many messages apart. */
#define BENCH_REPORT_EVERY_MAX 256u
/* rtt samples kept per run: plenty for any round trip above 1 us. */
#define BENCH_SAMPLES_PER_MS 1000u
#define BENCH_SAMPLES_MIN    (100u * 1000u)
#define BENCH_SAMPLES_MAX    (16u * 1000u * 1000u)
/* How often the orchestrator looks at its children (and the progress). */
#define BENCH_POLL_MS     10
#define BENCH_PROGRESS_MS 200
/* After one process failed, how long the others get to stop by themselves. */
#define BENCH_ABORT_GRACE_MS 1000

static const size_t sweep_sizes[] = {16, 128, 1024, 16384, 65536};

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

typedef struct bench_args {
    const char *endpoint; /* -s: bench this broker instead of our own */
    const char *broker;   /* --broker PATH */
    const char *svg;      /* --svg FILE */
    bool json;
    bool quiet;
    bool workloads[6]; /* thru, fanout, rtt, sweep, scale, idle */
    bool transports[BENCH_TRANSPORT_COUNT];
    bool transports_given;
    size_t sizes[BENCH_MAX_SIZES];
    size_t size_count; /* 0: the defaults */
    unsigned subs;
    int64_t duration_ms;
    unsigned runs;
    uint64_t window_bytes;
    unsigned scale_subs; /* --scale-subs */
    unsigned idle_conns; /* --idle-conns */
} bench_args;

enum { WL_THRU, WL_FANOUT, WL_RTT, WL_SWEEP, WL_SCALE, WL_IDLE, WL_COUNT };

/* Set by SIGINT/SIGTERM; the orchestrator cleans up and dies of it. */
static volatile sig_atomic_t bench_stop_signal;

static const char *const transport_names[BENCH_TRANSPORT_COUNT] = {
    [BENCH_UNIX] = "unix",
    [BENCH_TCP] = "tcp",
    [BENCH_RAW_UNIX] = "raw-unix",
    [BENCH_RAW_TCP] = "raw-tcp",
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
            "same frames sent straight between two processes without a broker (raw),\n"
            "so the table shows what the broker costs; and what a big routing table\n"
            "and an idle connection cost the broker.\n"
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
            "                         or with k/m for KiB/MiB, comma-separated (16,1k,64k);\n"
            "                         at least %u (each payload carries a sequence number)\n"
            "  -k, --subs K           subscribers for fanout (default %u, at most %u)\n"
            "      --scale-subs N     subscriptions for scale (default %u, at most\n"
            "                         %u; k and m mean 10^3 and 10^6: 100k)\n"
            "      --idle-conns N     connections for idle (default %u, at most %u);\n"
            "                         if the RLIMIT_NOFILE hard limit allows fewer, the\n"
            "                         row uses fewer and says so\n"
            "  -T, --transport LIST   any of unix, tcp, raw (= raw-unix,raw-tcp),\n"
            "                         raw-unix, raw-tcp (default: all of them)\n"
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
            "between two processes with no broker: the ceiling. After the table,\n"
            "ratios compare the transports (with targets where there are some).\n"
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

/* "128", "1k", "64K", "1m": bytes. Returns 0 or -EINVAL. */
static int parse_bytes(const char *text, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;

    if (len == 0 || text[0] < '0' || text[0] > '9') {
        return -EINVAL;
    }
    for (; i < len && text[i] >= '0' && text[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10) {
            return -EINVAL;
        }
        v = v * 10 + (uint64_t)(text[i] - '0');
    }
    uint64_t scale = 1;
    if (i < len) {
        char unit = text[i++];
        if (unit == 'k' || unit == 'K') {
            scale = 1024;
        } else if (unit == 'm' || unit == 'M') {
            scale = 1024 * 1024;
        } else {
            return -EINVAL;
        }
        /* Also accept "kib"/"KiB" and "kb" spelled out. */
        if (i < len && (text[i] == 'i' || text[i] == 'I')) {
            i++;
        }
        if (i < len && (text[i] == 'b' || text[i] == 'B')) {
            i++;
        }
    }
    if (i != len || v > UINT64_MAX / scale) {
        return -EINVAL;
    }
    *out = v * scale;
    return 0;
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
        if (parse_bytes(p, len, &v) < 0) {
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
        for (int t = 0; t < BENCH_TRANSPORT_COUNT && !found; t++) {
            if (strlen(transport_names[t]) == len && strncmp(p, transport_names[t], len) == 0) {
                args->transports[t] = true;
                found = true;
            }
        }
        if (!found) {
            return cli_usage_error(CMD,
                                   "unknown transport '%.*s': give unix, tcp, raw, raw-unix or "
                                   "raw-tcp, comma-separated",
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

static int bench_parse(int argc, char **argv, bench_args *args)
{
    uint64_t count;
    int ch;
    int r = 0;

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
            if (parse_bytes(optarg, strlen(optarg), &args->window_bytes) < 0 ||
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

/* ---- the plan ----------------------------------------------------------- */

typedef struct bench_plan {
    bench_row rows[BENCH_MAX_ROWS];
    size_t count;
} bench_plan;

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

static int plan_make(bench_plan *plan, const bench_args *args)
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

static void plan_free(bench_plan *plan)
{
    for (size_t i = 0; i < plan->count; i++) {
        free(plan->rows[i].rate);
        free(plan->rows[i].rtt_p50);
        free(plan->rows[i].samples);
    }
    plan->count = 0;
}

/* "thru unix 128 B", "fanout 1->4 tcp 16 B", "scale 100k unix 128 B",
 * "idle unix 1000 connections": how rows are named in lines. */
static const char *row_label(const bench_row *row, char *buf, size_t len)
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

/* ---- running one job ---------------------------------------------------- */

typedef enum job_role {
    ROLE_PUBLISHER,
    ROLE_SUBSCRIBER,
    ROLE_RESPONDER,
    ROLE_REQUESTER,
    ROLE_RAW_SENDER,
    ROLE_RAW_RECEIVER,
    ROLE_RAW_RESPONDER,
    ROLE_RAW_REQUESTER,
    ROLE_IDLE,
} job_role;

static const char *role_name(job_role role)
{
    switch (role) {
    case ROLE_PUBLISHER:
        return "publisher";
    case ROLE_SUBSCRIBER:
        return "subscriber";
    case ROLE_RESPONDER:
    case ROLE_RAW_RESPONDER:
        return "responder";
    case ROLE_REQUESTER:
    case ROLE_RAW_REQUESTER:
        return "requester";
    case ROLE_RAW_SENDER:
        return "sender";
    case ROLE_RAW_RECEIVER:
        return "receiver";
    case ROLE_IDLE:
        return "idle client";
    }
    return "?";
}

typedef struct job_child {
    pid_t pid;
    job_role role;
    bool reaped;
    int status;
} job_child;

/* Everything about one job the orchestrator keeps. */
typedef struct job_ctx {
    bench_job job;
    bench_shared *sh;
    uint64_t *samples;
    uint64_t sample_cap;
    job_child children[BENCH_MAX_SUBS + 2];
    unsigned child_count;
    /* Raw sockets: [i][0] the sender's end, [i][1] the receiver's. */
    int fds[BENCH_MAX_SUBS][2];
    unsigned fd_pairs;
} job_ctx;

/* Close the raw sockets but `keep` (-1: all of them). A child keeps only
 * its own end, so that a peer's exit shows as end of stream. */
static void job_close_fds(job_ctx *jc, int keep)
{
    for (unsigned i = 0; i < jc->fd_pairs; i++) {
        for (int e = 0; e < 2; e++) {
            int fd = jc->fds[i][e];
            if (fd >= 0 && fd != keep) {
                close(fd);
            }
        }
    }
}

/* The body of a forked process. Never returns. */
static void job_child_main(job_ctx *jc, job_role role, unsigned index)
{
    const bench_job *job = &jc->job;
    int sender_fds[BENCH_MAX_SUBS];
    int r = -1;

    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);

    switch (role) {
    case ROLE_PUBLISHER:
        job_close_fds(jc, -1);
        r = bench_publisher_run(job, jc->sh);
        break;
    case ROLE_SUBSCRIBER:
        job_close_fds(jc, -1);
        r = bench_subscriber_run(job, jc->sh, index);
        break;
    case ROLE_RESPONDER:
        job_close_fds(jc, -1);
        r = bench_responder_run(job, jc->sh);
        break;
    case ROLE_REQUESTER:
        job_close_fds(jc, -1);
        r = bench_requester_run(job, jc->sh);
        break;
    case ROLE_RAW_SENDER:
        for (unsigned i = 0; i < jc->fd_pairs; i++) {
            sender_fds[i] = jc->fds[i][0];
            close(jc->fds[i][1]);
        }
        r = bench_raw_sender_run(job, jc->sh, sender_fds, jc->fd_pairs);
        break;
    case ROLE_RAW_RECEIVER:
        job_close_fds(jc, jc->fds[index][1]);
        r = bench_raw_receiver_run(job, jc->sh, index, jc->fds[index][1]);
        break;
    case ROLE_RAW_RESPONDER:
        job_close_fds(jc, jc->fds[0][1]);
        r = bench_raw_responder_run(job, jc->sh, jc->fds[0][1]);
        break;
    case ROLE_RAW_REQUESTER:
        job_close_fds(jc, jc->fds[0][0]);
        r = bench_raw_requester_run(job, jc->sh, jc->fds[0][0]);
        break;
    case ROLE_IDLE:
        job_close_fds(jc, -1);
        r = bench_idle_run(job, jc->sh);
        break;
    }
    _exit(r == 0 ? 0 : 1);
}

static int job_spawn(job_ctx *jc, job_role role, unsigned index)
{
    pid_t parent = getpid();

    fflush(NULL); /* nothing buffered may be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        return bench_fail(jc->sh, "cannot start the %s process: %s", role_name(role),
                          strerror(errno));
    }
    if (pid == 0) {
        /* Never outlive the bench, even when it is killed. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(1);
        }
        job_child_main(jc, role, index);
    }
    jc->children[jc->child_count++] = (job_child){.pid = pid, .role = role};
    return 0;
}

static int job_spawn_all(job_ctx *jc)
{
    const bench_job *job = &jc->job;
    const bool raw = bench_transport_is_raw(job->transport);
    const unsigned pairs = job->workload == BENCH_RTT ? 1 : job->receivers;

    if (raw) {
        for (unsigned i = 0; i < pairs; i++) {
            int r = bench_raw_pair(job->transport, jc->fds[i]);
            if (r < 0) {
                job_close_fds(jc, -1);
                jc->fd_pairs = 0;
                return bench_fail(jc->sh, "cannot connect a %s socket pair: %s",
                                  bench_transport_name(job->transport), strerror(-r));
            }
            jc->fd_pairs++;
        }
    }

    /* Receivers first: the sender waits until they are all ready. */
    int r = 0;
    if (job->workload == BENCH_RTT) {
        r = job_spawn(jc, raw ? ROLE_RAW_RESPONDER : ROLE_RESPONDER, 0);
        if (r == 0) {
            r = job_spawn(jc, raw ? ROLE_RAW_REQUESTER : ROLE_REQUESTER, 0);
        }
    } else {
        for (unsigned i = 0; r == 0 && i < job->receivers; i++) {
            r = job_spawn(jc, raw ? ROLE_RAW_RECEIVER : ROLE_SUBSCRIBER, i);
        }
        if (r == 0) {
            r = job_spawn(jc, raw ? ROLE_RAW_SENDER : ROLE_PUBLISHER, 0);
        }
    }
    job_close_fds(jc, -1); /* the children have theirs */
    jc->fd_pairs = 0;
    return r;
}

static void job_kill_all(job_ctx *jc)
{
    for (unsigned i = 0; i < jc->child_count; i++) {
        if (!jc->children[i].reaped) {
            kill(jc->children[i].pid, SIGKILL);
        }
    }
    for (unsigned i = 0; i < jc->child_count; i++) {
        if (!jc->children[i].reaped) {
            while (waitpid(jc->children[i].pid, &jc->children[i].status, 0) < 0 && errno == EINTR) {
            }
            jc->children[i].reaped = true;
        }
    }
}

typedef struct progress {
    bool enabled;
    bool visible; /* a line is on the terminal */
    size_t done;  /* jobs finished */
    size_t total; /* jobs in all */
    int64_t last_ms;
} progress;

static void progress_show(progress *p, const char *label, unsigned run, unsigned runs,
                          int64_t elapsed_ms, int64_t duration_ms)
{
    if (!p->enabled) {
        return;
    }
    char runs_text[32] = "";
    if (runs > 1) {
        snprintf(runs_text, sizeof(runs_text), " (run %u/%u)", run + 1, runs);
    }
    fprintf(stderr, "\r\033[Ksockbus bench: [%zu/%zu] %s%s %.1f/%.1f s", p->done + 1, p->total,
            label, runs_text, (double)elapsed_ms / 1000.0, (double)duration_ms / 1000.0);
    fflush(stderr);
    p->visible = true;
}

static void progress_clear(progress *p)
{
    if (p->visible) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
        p->visible = false;
    }
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* a signal ends it early: fine, we look again */
}

/* Wait for every child, with a deadline, watching for errors and signals.
 * Returns 0, -1 on a failure (sh->error says which), or -EINTR. */
static int job_wait(job_ctx *jc, progress *pg, const char *label, unsigned run, unsigned runs,
                    int64_t duration_ms)
{
    const int64_t start = cli_now_ms();
    const int64_t deadline =
        start + jc->job.setup_ms + duration_ms + 2 * BENCH_WAIT_MS + BENCH_END_GRACE_MS;
    int64_t abort_seen = 0;
    unsigned left = jc->child_count;

    for (;;) {
        if (bench_stop_signal != 0) {
            /* Checked first: children that died of the same Ctrl-C are
             * not failures to report. */
            job_kill_all(jc);
            return -EINTR;
        }
        for (unsigned i = 0; i < jc->child_count; i++) {
            job_child *c = &jc->children[i];
            if (c->reaped || waitpid(c->pid, &c->status, WNOHANG) != c->pid) {
                continue;
            }
            c->reaped = true;
            left--;
            if (!(WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0) &&
                atomic_load(&jc->sh->error_set) == 0) {
                /* It died without saying why: a crash or a kill. */
                if (WIFSIGNALED(c->status)) {
                    bench_fail(jc->sh, "the %s process was killed by signal %d (%s)",
                               role_name(c->role), WTERMSIG(c->status),
                               strsignal(WTERMSIG(c->status)));
                } else {
                    bench_fail(jc->sh, "the %s process exited with status %d", role_name(c->role),
                               WEXITSTATUS(c->status));
                }
            }
        }
        if (left == 0) {
            return bench_aborted(jc->sh) ? -1 : 0;
        }
        int64_t now = cli_now_ms();
        if (bench_aborted(jc->sh)) {
            if (abort_seen == 0) {
                abort_seen = now;
            } else if (now - abort_seen >= BENCH_ABORT_GRACE_MS) {
                job_kill_all(jc);
                return -1;
            }
        } else if (now >= deadline) {
            bench_fail(jc->sh, "the run did not finish within %lld s; is the broker stuck?",
                       (long long)((deadline - start) / 1000));
            job_kill_all(jc);
            return -1;
        }
        if (now - pg->last_ms >= BENCH_PROGRESS_MS) {
            pg->last_ms = now;
            int64_t shown = now - start < duration_ms ? now - start : duration_ms;
            progress_show(pg, label, run, runs, shown, duration_ms);
        }
        sleep_ms(BENCH_POLL_MS);
    }
}

/* Fold one finished job into its row. Returns 0 or -1 (with sh->error). */
static int job_collect(job_ctx *jc, bench_row *row, unsigned run)
{
    const bench_job *job = &jc->job;
    bench_shared *sh = jc->sh;

    if (job->workload == BENCH_RTT) {
        uint64_t n = sh->sample_count;
        if (n == 0) {
            return bench_fail(sh, "no round trip was measured");
        }
        if (row->sample_count + n > row->sample_cap) {
            size_t cap = row->sample_cap ? row->sample_cap : n;
            while (cap < row->sample_count + n) {
                cap *= 2;
            }
            uint64_t *p = realloc(row->samples, cap * sizeof(uint64_t));
            if (p == NULL) {
                return bench_fail(sh, "out of memory for %zu samples", cap);
            }
            row->samples = p;
            row->sample_cap = cap;
        }
        bench_stats_sort(jc->samples, n);
        row->rtt_p50[run] = (double)bench_stats_percentile(jc->samples, n, 50.0);
        memcpy(row->samples + row->sample_count, jc->samples, n * sizeof(uint64_t));
        row->sample_count += n;
        uint64_t span = sh->last_ns > sh->first_ns ? sh->last_ns - sh->first_ns : 1;
        row->rate[run] = (double)n * 1e9 / (double)span; /* round trips/s */
        row->runs = run + 1;
        return 0;
    }

    if (sh->published == 0) {
        return bench_fail(sh, "the sender sent nothing within %.1f s",
                          (double)job->duration_ns / 1e9);
    }
    double rate = 0.0;
    uint64_t received = 0;
    for (unsigned i = 0; i < job->receivers; i++) {
        const bench_receiver *rc = &sh->receivers[i];
        uint64_t n = atomic_load(&rc->received);
        received += n;
        row->dropped += rc->dropped;
        if (n >= 2 && rc->last_ns > rc->first_ns) {
            /* n - 1 messages arrived after the first one was stamped. */
            rate += (double)(n - 1) * 1e9 / (double)(rc->last_ns - rc->first_ns);
        }
    }
    row->published += sh->published;
    row->expected += sh->published * job->receivers;
    row->received += received;
    row->rate[run] = rate;
    row->runs = run + 1;
    return 0;
}

typedef struct bench_ctx {
    const bench_args *args;
    const char *broker_path; /* the sockbusd idle starts; NULL with -s */
    const char *unix_endpoint;
    const char *tcp_endpoint;
    unsigned job_counter;
    progress progress;
} bench_ctx;

/* Run one row once. Returns 0, -1 after printing the error, or -EINTR. */
static int bench_run_row(bench_ctx *ctx, bench_row *row, unsigned run)
{
    const bench_args *args = ctx->args;
    job_ctx jc;
    char label[96];
    int r;

    memset(&jc, 0, sizeof(jc));
    bench_job *job = &jc.job;
    job->workload = row->workload;
    job->transport = row->transport;
    job->size = row->size;
    job->receivers = row->workload == BENCH_RTT ? 1 : row->receivers;
    job->subjects = row->subjects;
    job->setup_ms = (int)((uint64_t)row->subjects * BENCH_SCALE_SETUP_US_PER_SUB / 1000u);
    job->duration_ns = args->duration_ms * 1000000;
    job->endpoint = row->transport == BENCH_TCP ? ctx->tcp_endpoint : ctx->unix_endpoint;
    /* Fresh subjects per job: a straggler of an earlier job cannot count. */
    ctx->job_counter++;
    snprintf(job->subject, sizeof(job->subject), "bench.%ld.%u", (long)getpid(), ctx->job_counter);
    snprintf(job->reply, sizeof(job->reply), "_INBOX.bench.%ld.%u", (long)getpid(),
             ctx->job_counter);
    size_t frame = bench_frame_size(job);
    job->window_msgs = args->window_bytes / frame;
    if (job->window_msgs < 2) {
        job->window_msgs = 2;
    }
    job->report_every = job->window_msgs / 8;
    if (job->report_every < 1) {
        job->report_every = 1;
    }
    if (job->report_every > BENCH_REPORT_EVERY_MAX) {
        job->report_every = BENCH_REPORT_EVERY_MAX;
    }
    if (row->workload == BENCH_RTT) {
        uint64_t cap = (uint64_t)args->duration_ms * BENCH_SAMPLES_PER_MS;
        jc.sample_cap = cap < BENCH_SAMPLES_MIN   ? BENCH_SAMPLES_MIN
                        : cap > BENCH_SAMPLES_MAX ? BENCH_SAMPLES_MAX
                                                  : cap;
    }
    for (unsigned i = 0; i < BENCH_MAX_SUBS; i++) {
        jc.fds[i][0] = jc.fds[i][1] = -1;
    }
    row_label(row, label, sizeof(label));

    r = bench_shared_new(&jc.sh, &jc.samples, jc.sample_cap);
    if (r < 0) {
        progress_clear(&ctx->progress);
        fprintf(stderr, "sockbus bench: %s: cannot map shared memory: %s\n", label, strerror(-r));
        return -1;
    }
    job->samples = jc.samples;
    job->sample_cap = jc.sample_cap;

    r = job_spawn_all(&jc);
    if (r == 0 || jc.child_count > 0) {
        int w = job_wait(&jc, &ctx->progress, label, run, args->runs, args->duration_ms);
        r = r < 0 ? r : w;
    }
    if (bench_stop_signal != 0) {
        r = -EINTR; /* whatever failed, it failed because of Ctrl-C */
    }
    if (r == 0) {
        r = job_collect(&jc, row, run);
    }
    if (r == -1) {
        progress_clear(&ctx->progress);
        fprintf(stderr, "sockbus bench: %s: %s\n", label,
                jc.sh->error[0] ? jc.sh->error : "failed");
    }
    bench_shared_free(jc.sh, jc.samples, jc.sample_cap);
    return r;
}

/* ---- idle ----------------------------------------------------------------- */

/* Wait until the idle client reaches `stage`, for at most timeout_ms.
 * Returns 0, -1 on a failure (the client died, or said why in sh->error),
 * or -EINTR. Does not reap the client: job_wait() does, and says how it
 * died. */
static int idle_wait_stage(job_ctx *jc, uint32_t stage, int64_t timeout_ms, const char *what)
{
    const int64_t deadline = cli_now_ms() + timeout_ms;
    const job_child *c = &jc->children[0];

    for (;;) {
        if (bench_stop_signal != 0) {
            return -EINTR;
        }
        if (atomic_load(&jc->sh->stage) >= stage) {
            return 0;
        }
        if (bench_aborted(jc->sh)) {
            return -1;
        }
        siginfo_t info = {0};
        if (waitid(P_PID, (id_t)c->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == c->pid) {
            return -1;
        }
        if (cli_now_ms() >= deadline) {
            return bench_fail(jc->sh, "the idle clients did not %s within %lld s", what,
                              (long long)(timeout_ms / 1000));
        }
        sleep_ms(1);
    }
}

/*
 * One idle run: a fresh broker, its RSS once a warm-up connection has come
 * and gone, then with every idle connection open. A fresh one because a
 * broker that served other rows has freed memory in its heap that new
 * connections would take without a change in RSS. Returns 0 (the row
 * records a skip with -s), -1 after printing the error, or -EINTR.
 */
static int bench_run_idle(bench_ctx *ctx, bench_row *row, unsigned run)
{
    const bench_args *args = ctx->args;
    bench_broker broker = {.pid = -1};
    job_ctx jc;
    char label[96];
    uint64_t before = 0;
    uint64_t after = 0;
    int r;

    if (ctx->broker_path == NULL) {
        snprintf(row->note, sizeof(row->note),
                 "needs a fresh private broker, and -s names a running one");
        return 0;
    }
    memset(&jc, 0, sizeof(jc));
    for (unsigned i = 0; i < BENCH_MAX_SUBS; i++) {
        jc.fds[i][0] = jc.fds[i][1] = -1;
    }
    row_label(row, label, sizeof(label));

    snprintf(broker.path, sizeof(broker.path), "%s", ctx->broker_path);
    if ((uint64_t)row->connections + BENCH_IDLE_FD_MARGIN > BENCH_BROKER_CONNECTIONS_DEFAULT) {
        broker.max_connections = row->connections + BENCH_IDLE_FD_MARGIN;
    }
    progress_clear(&ctx->progress);
    if (bench_broker_start(&broker) < 0) {
        return -1;
    }
    r = bench_shared_new(&jc.sh, NULL, 0);
    if (r < 0) {
        fprintf(stderr, "sockbus bench: %s: cannot map shared memory: %s\n", label, strerror(-r));
        bench_broker_stop(&broker);
        return -1;
    }
    bench_job *job = &jc.job;
    job->workload = BENCH_IDLE;
    job->transport = row->transport;
    job->connections = row->connections;
    job->endpoint = row->transport == BENCH_TCP ? broker.tcp_endpoint : broker.unix_endpoint;
    job->setup_ms =
        BENCH_WAIT_MS + (int)((uint64_t)row->connections * BENCH_IDLE_CONNECT_US_PER_CONN / 1000u);

    r = job_spawn(&jc, ROLE_IDLE, 0);
    if (r == 0) {
        r = idle_wait_stage(&jc, 1, 2 * BENCH_WAIT_MS, "make the warm-up connection");
    }
    if (r == 0 && (r = bench_broker_rss(&broker, &before)) < 0) {
        r = bench_fail(jc.sh, "cannot read the broker's VmRSS: %s", strerror(-r));
    }
    if (r == 0) {
        atomic_store(&jc.sh->go, 1);
        r = idle_wait_stage(&jc, 2, job->setup_ms, "connect");
    }
    if (r == 0 && (r = bench_broker_rss(&broker, &after)) < 0) {
        r = bench_fail(jc.sh, "cannot read the broker's VmRSS: %s", strerror(-r));
    }
    if (r == 0) {
        row->sanitized = bench_broker_sanitized(&broker);
    }
    atomic_store(&jc.sh->go, 2); /* close them */
    if (jc.child_count > 0) {
        int w = job_wait(&jc, &ctx->progress, label, run, args->runs, 0);
        r = r < 0 ? r : w;
    }
    if (bench_stop_signal != 0) {
        r = -EINTR;
    }
    if (r == 0) {
        uint64_t opened = jc.sh->idle_opened;
        uint64_t growth = after > before ? after - before : 0;
        row->rate[run] = opened > 0 ? (double)growth / (double)opened : 0.0;
        row->opened = run == 0 || opened < row->opened ? opened : row->opened;
        row->rss_before = before;
        row->rss_after = after;
        if (jc.sh->idle_note[0] != '\0') {
            snprintf(row->note, sizeof(row->note), "%s", jc.sh->idle_note);
        }
        row->runs = run + 1;
    }
    if (r == -1) {
        progress_clear(&ctx->progress);
        fprintf(stderr, "sockbus bench: %s: %s\n", label,
                jc.sh->error[0] ? jc.sh->error : "failed");
    }
    bench_shared_free(jc.sh, NULL, 0);
    bench_broker_stop(&broker);
    return r;
}

/* ---- checks before the runs --------------------------------------------- */

/* Connect once to each broker endpoint: a wrong -s or a broken broker is
 * one clear line now, not an error in a forked publisher. Also checks that
 * the sizes fit the broker's max_frame. */
static int bench_preflight(const bench_ctx *ctx, const bench_plan *plan)
{
    const char *endpoints[2] = {NULL, NULL};
    bool need[2] = {false, false};

    for (size_t i = 0; i < plan->count; i++) {
        if (plan->rows[i].workload == BENCH_IDLE) {
            continue; /* its own broker */
        }
        need[0] |= plan->rows[i].transport == BENCH_UNIX;
        need[1] |= plan->rows[i].transport == BENCH_TCP;
    }
    endpoints[0] = need[0] ? ctx->unix_endpoint : NULL;
    endpoints[1] = need[1] ? ctx->tcp_endpoint : NULL;

    for (int e = 0; e < 2; e++) {
        if (endpoints[e] == NULL) {
            continue;
        }
        CLI_CLEANUP_CLIENT sb_client *client = NULL;
        if (cli_connect(CMD, endpoints[e], CLI_TIMEOUT_DEFAULT_MS, &client) < 0) {
            return -1;
        }
        for (size_t i = 0; i < plan->count; i++) {
            const bench_row *row = &plan->rows[i];
            size_t max = sb_max_payload(client, BENCH_SUBJECT_ROOM / 2, BENCH_SUBJECT_ROOM / 2, 0);
            if (row->size > max) {
                fprintf(stderr,
                        "sockbus bench: a %zu-byte payload does not fit the broker at %s "
                        "(max_frame %u); give a smaller --size\n",
                        row->size, sb_endpoint(client), sb_max_frame(client));
                return -1;
            }
        }
    }
    return 0;
}

static void bench_on_signal(int sig)
{
    bench_stop_signal = sig;
}

static void bench_catch_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = bench_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ---- the command -------------------------------------------------------- */

/* Open --svg FILE before the runs: a typo should not cost a whole bench. */
static FILE *bench_open_svg(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr,
                "sockbus bench: cannot write the chart to %s: %s; give another --svg FILE\n", path,
                strerror(errno));
    }
    return f;
}

static int bench_write_svg(const bench_report *rep, FILE *f, const char *path)
{
    int r = bench_svg_write(rep, f);
    if (fflush(f) != 0 && r == 0) {
        r = -errno;
    }
    if (r < 0) {
        fprintf(stderr, "sockbus bench: cannot write the chart to %s: %s\n", path, strerror(-r));
        return -1;
    }
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    static bench_plan plan; /* large: not on the stack */
    bench_args args = {
        .subs = BENCH_SUBS_DEFAULT,
        .duration_ms = BENCH_DURATION_DEFAULT_MS,
        .runs = 1,
        .window_bytes = BENCH_WINDOW_DEFAULT,
        .scale_subs = BENCH_SCALE_SUBS_DEFAULT,
        .idle_conns = BENCH_IDLE_CONNS_DEFAULT,
    };
    bench_broker broker = {.pid = -1};
    bench_ctx ctx = {.args = &args};
    FILE *svg = NULL;
    int status = CLI_EXIT_FAILURE;

    for (int t = 0; t < BENCH_TRANSPORT_COUNT; t++) {
        args.transports[t] = true;
    }
    int r = bench_parse(argc, argv, &args);
    if (r != 0) {
        return r < 0 ? CLI_EXIT_OK : r; /* -1: --help was printed */
    }
    r = plan_make(&plan, &args);
    if (r != 0) {
        plan_free(&plan);
        return r;
    }

    if (args.svg != NULL && (svg = bench_open_svg(args.svg)) == NULL) {
        plan_free(&plan);
        return CLI_EXIT_FAILURE;
    }

    /* The shared broker serves every broker row but idle, which starts
     * its own (a fresh one per run) and is skipped with -s. */
    bool need_broker = false;
    bool need_idle = false;
    bool need_scale = false;
    for (size_t i = 0; i < plan.count; i++) {
        need_idle |= plan.rows[i].workload == BENCH_IDLE;
        need_scale |= plan.rows[i].workload == BENCH_SCALE;
        need_broker |=
            !bench_transport_is_raw(plan.rows[i].transport) && plan.rows[i].workload != BENCH_IDLE;
    }
    bench_catch_signals();
    if ((need_broker || need_idle) && args.endpoint == NULL) {
        if (bench_broker_find(&broker, args.broker) < 0) {
            goto out;
        }
        ctx.broker_path = broker.path;
    }
    if (need_broker && args.endpoint == NULL) {
        /* scale's subscriber holds --scale-subs subscriptions, more than
         * the broker allows one connection by default. */
        if (need_scale) {
            broker.max_subscriptions = args.scale_subs + BENCH_BROKER_SUBSCRIPTIONS_DEFAULT;
            broker.max_subscription_bytes =
                (unsigned long long)broker.max_subscriptions * BENCH_BROKER_BYTES_PER_SUBSCRIPTION;
        }
        if (bench_broker_start(&broker) < 0) {
            goto out;
        }
        ctx.unix_endpoint = broker.unix_endpoint;
        ctx.tcp_endpoint = broker.tcp_endpoint;
    } else if (need_broker) {
        static char resolved[SB_ENDPOINT_MAX];
        sb_endpoint_resolve(args.endpoint, resolved, sizeof(resolved));
        ctx.unix_endpoint = resolved;
        ctx.tcp_endpoint = resolved;
    }
    if (need_broker && bench_preflight(&ctx, &plan) < 0) {
        goto out;
    }

    ctx.progress.total = plan.count * args.runs;
    ctx.progress.enabled = !args.quiet && isatty(STDERR_FILENO) &&
                           (int64_t)ctx.progress.total * args.duration_ms > 1000;
    for (unsigned run = 0; run < args.runs; run++) {
        for (size_t i = 0; i < plan.count && bench_stop_signal == 0; i++) {
            bench_row *row = &plan.rows[i];
            r = row->workload == BENCH_IDLE ? bench_run_idle(&ctx, row, run)
                                            : bench_run_row(&ctx, row, run);
            if (r < 0) {
                goto out;
            }
            ctx.progress.done++;
        }
    }
    if (bench_stop_signal != 0) {
        goto out;
    }
    progress_clear(&ctx.progress);
    bench_broker_stop(&broker);

    bench_report rep = {
        .rows = plan.rows,
        .row_count = plan.count,
        .runs = args.runs,
        .duration_ms = args.duration_ms,
        .window_bytes = args.window_bytes,
        .broker_mode = !need_broker && !need_idle ? "none"
                       : args.endpoint            ? "external"
                                                  : "private",
        .broker_path = broker.path,
        .unix_endpoint =
            ctx.unix_endpoint && !sb_endpoint_is_tcp(ctx.unix_endpoint) ? ctx.unix_endpoint : "",
        .tcp_endpoint =
            ctx.tcp_endpoint && sb_endpoint_is_tcp(ctx.tcp_endpoint) ? ctx.tcp_endpoint : "",
    };
    bench_report_finish(&rep);
    if (args.json) {
        bench_report_json(&rep, stdout);
    } else {
        bench_report_table(&rep, stdout);
    }
    status = CLI_EXIT_OK;
    if (svg != NULL && bench_write_svg(&rep, svg, args.svg) < 0) {
        status = CLI_EXIT_FAILURE;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        status = CLI_EXIT_FAILURE;
    }
out:
    progress_clear(&ctx.progress);
    bench_broker_stop(&broker);
    plan_free(&plan);
    if (svg != NULL && fclose(svg) != 0 && status == CLI_EXIT_OK) {
        fprintf(stderr, "sockbus bench: cannot write the chart to %s: %s\n", args.svg,
                strerror(errno));
        status = CLI_EXIT_FAILURE;
    }
    if (bench_stop_signal != 0) {
        /* Cleaned up: now end the way the shell expects. */
        fprintf(stderr, "sockbus bench: interrupted\n");
        signal(bench_stop_signal, SIG_DFL);
        raise(bench_stop_signal);
    }
    return status;
}
