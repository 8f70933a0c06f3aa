/*
 * bench.h - what the files of `sockbus bench` share.
 *
 *   bench.c          the command: preflight, signals, the runs, the report
 *   bench_options.c  --help, and the command line into bench_args
 *   bench_plan.c     the rows to run
 *   bench_jobs.c     running a row once: forking, waiting for and collecting
 *                    the job's processes; idle on a broker of its own
 *   bench_cmd.h      what those four share (this file is what all share)
 *   bench_broker.c   finding, starting and stopping the private sockbusd
 *   bench_shared.c   the shared block: counters, credit window, errors
 *   bench_workers.c  publisher, subscriber, responder, requester (libsockbus)
 *   bench_idle.c     the idle client: connections held while the broker's
 *                    RSS is read
 *   bench_raw.c      the same frames between two processes, no broker
 *   bench_relay.c    the same frames through a process that only copies
 *                    them, where the broker would be
 *   bench_stats.c    percentiles, median, min and max
 *   bench_report.c   the table and --json
 *   bench_ratios.c   the ratios they end with, what each means, and the
 *                    values the broker is built to reach
 *   bench_svg.c      --svg: the bar chart
 *
 * A measurement ("job") is one workload over one transport at one payload
 * size. The orchestrator maps a bench_shared block (MAP_SHARED) and forks
 * the job's processes, which find everything they need in the job and
 * report through the shared block; it then waits for them and reads the
 * results. See bench.c for the design.
 */
#ifndef SOCKBUS_BENCH_H
#define SOCKBUS_BENCH_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "sockbus.h"

/* The subcommand, for the table in main.c. */
int cmd_bench(int argc, char **argv);

/* ---- what is measured --------------------------------------------------- */

typedef enum bench_workload {
    BENCH_THRU,   /* 1 publisher -> 1 subscriber */
    BENCH_FANOUT, /* 1 publisher -> K subscribers, each gets everything */
    BENCH_RTT,    /* request/reply round trips, one in flight */
    BENCH_SCALE,  /* thru, the subscriber holding 1 or N subscriptions */
    BENCH_IDLE,   /* broker RSS per idle connection */
} bench_workload;

typedef enum bench_transport {
    BENCH_UNIX,       /* through the broker, Unix socket */
    BENCH_TCP,        /* through the broker, TCP loopback */
    BENCH_RAW_UNIX,   /* process to process, no broker, AF_UNIX */
    BENCH_RAW_TCP,    /* process to process, no broker, TCP loopback */
    BENCH_RELAY_UNIX, /* through a relay that copies bytes, Unix sockets */
    BENCH_RELAY_TCP,  /* through a relay that copies bytes, TCP loopback */
    BENCH_TRANSPORT_COUNT,
} bench_transport;

/* Largest K for fanout. */
#define BENCH_MAX_SUBS 64

/* Every payload starts with a little-endian u64 sequence number, so that
 * receivers check order and count gaps; a payload of 0 bytes is the end
 * marker. Hence the smallest payload. */
#define BENCH_SEQ_SIZE 8u
#define BENCH_MIN_SIZE BENCH_SEQ_SIZE

/* scale: most subscriptions, and their subjects: the job's subject plus
 * ".NNNNNN", the index zero-padded so that every subject (and so every
 * frame) of both scale rows has the same length. */
#define BENCH_SCALE_SUBS_MAX   1000000u
#define BENCH_SCALE_SUFFIX_LEN 7u /* ".NNNNNN" */

/* scale: time allowed per subscription for subscribing before the timed
 * phase (far more than a broker needs: this only bounds a hang). */
#define BENCH_SCALE_SETUP_US_PER_SUB 100u

/* idle: descriptors the idle-client process keeps for itself beside its
 * connections (stdio, the shared block, a warm-up connection). */
#define BENCH_IDLE_FD_MARGIN 32u

/* Round trips before the requester starts counting. */
#define BENCH_RTT_WARMUP 1000u

/* How long a request may wait for its reply, and the other waits of a
 * worker that are not the measurement itself (readiness, the last flush). */
#define BENCH_WAIT_MS 10000

/* How long a receiver waits for the end marker once the sender is done:
 * the marker itself can be lost to the broker's slow-consumer policy. */
#define BENCH_END_GRACE_MS 2000

/* Names of the transports as the table and --transport spell them. */
const char *bench_transport_name(bench_transport t);
const char *bench_workload_name(bench_workload w);

/* A relay row is a raw row with a relay process in the middle: both run
 * without the broker, with the raw peers (bench_raw.c). */
static inline bool bench_transport_is_relay(bench_transport t)
{
    return t == BENCH_RELAY_UNIX || t == BENCH_RELAY_TCP;
}

static inline bool bench_transport_is_raw(bench_transport t)
{
    return t == BENCH_RAW_UNIX || t == BENCH_RAW_TCP || bench_transport_is_relay(t);
}

/*
 * One job, as the forked processes see it. Everything is filled in by the
 * orchestrator before fork(); the children only read it.
 */
typedef struct bench_job {
    bench_workload workload;
    bench_transport transport;
    size_t size;           /* payload bytes */
    unsigned receivers;    /* subscribers (1 for thru, scale and rtt) */
    unsigned subjects;     /* scale: subscriptions, one subject each; else 0 */
    unsigned connections;  /* idle: connections to open */
    int64_t duration_ns;   /* how long the sender sends / requester asks */
    int setup_ms;          /* extra time the receivers may take to get ready */
    uint64_t window_msgs;  /* credit: most messages ahead of the slowest receiver */
    uint64_t report_every; /* a receiver publishes its count at least this often */
    const char *endpoint;  /* broker endpoint (unix/tcp transports) */
    char subject[64];      /* bench.PID.N: unique per job */
    char reply[64];        /* _INBOX.bench.PID.N (rtt) */
    uint64_t *samples;     /* rtt: shared array of round trips in ns */
    uint64_t sample_cap;
} bench_job;

/* scale: the subject of subscription `index` of `job` into buf (at least
 * sizeof(job->subject) + BENCH_SCALE_SUFFIX_LEN bytes). */
void bench_scale_subject(const bench_job *job, unsigned index, char *buf, size_t len);

/* ---- the shared block (bench_shared.c) ---------------------------------- */

/*
 * One receiver's slot. `received` is written only by the receiver, every
 * report_every messages and whenever it is about to block; the sender reads
 * it only when its window is used up. `wake` is the futex word the sender
 * sleeps on when it waits for this receiver (`wake_at`, `waiting` are the
 * sender's side of that handshake). The slot owns a cache line, so that
 * receivers do not slow each other down.
 */
typedef struct bench_receiver {
    alignas(64) _Atomic uint64_t received;
    _Atomic uint64_t wake_at;
    _Atomic uint32_t waiting;
    _Atomic uint32_t wake;
    /* Results, written once at the end. */
    uint64_t first_ns; /* when the first message arrived */
    uint64_t last_ns;  /* when the end marker (or the last message) arrived */
    uint64_t gaps;     /* messages missing from the sequence */
    uint64_t dropped;  /* DROPPED notices from the broker */
    uint32_t got_end;  /* saw the end marker */
} bench_receiver;

#define BENCH_ERROR_MAX 400

typedef struct bench_shared {
    alignas(64) _Atomic uint32_t ready; /* receivers (or responder) set up */
    _Atomic uint32_t sender_done;       /* the sender has sent its end marker */
    _Atomic uint32_t abort;             /* someone failed: everyone stop */
    _Atomic uint32_t error_set;
    uint64_t published;         /* messages sent, end marker not counted */
    uint64_t sample_count;      /* rtt samples in job->samples */
    uint64_t first_ns, last_ns; /* rtt: measured span */
    /* idle: the client process reports its progress in `stage` (1: warmed
     * up, 2: every connection open and flushed), the orchestrator lets it
     * go on with `go` (1: open them, 2: close them) once it has read the
     * broker's RSS. */
    _Atomic uint32_t stage;
    _Atomic uint32_t go;
    uint64_t idle_opened;            /* connections open at stage 2 */
    char idle_note[BENCH_ERROR_MAX]; /* why fewer than asked, or "" */
    char error[BENCH_ERROR_MAX];
    bench_receiver receivers[BENCH_MAX_SUBS];
} bench_shared;

/* Map a zeroed bench_shared (and `sample_cap` u64 samples, if any) shared
 * with the processes forked after this. Returns 0 or -errno. */
int bench_shared_new(bench_shared **out, uint64_t **samples, uint64_t sample_cap);
void bench_shared_free(bench_shared *sh, uint64_t *samples, uint64_t sample_cap);

/* Record the first failure as one line ("subscriber 2: lost connection
 * ...") and tell every process of the job to stop. Returns -1. */
int bench_fail(bench_shared *sh, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline bool bench_aborted(bench_shared *sh)
{
    return atomic_load_explicit(&sh->abort, memory_order_relaxed) != 0;
}

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/*
 * Sender side of the credit window. Call when `sent` messages have been
 * sent and the window is used up: waits until every receiver has received
 * at least `target` of them (sleeping on a futex, not spinning, so that on
 * a small machine the sender leaves the CPU to the broker and the
 * receivers). `pump`, if not NULL, is called while waiting and must push
 * out the sender's buffered output; it returns < 0 on failure. Returns the
 * slowest receiver's count (>= target), or -1 after bench_fail() or abort.
 */
typedef int (*bench_pump_fn)(void *arg);
int64_t bench_credit_wait(bench_shared *sh, unsigned receivers, uint64_t target, bench_pump_fn pump,
                          void *arg);

/* Receiver side: publish that `received` messages have arrived, and wake
 * the sender if it waits for that. */
void bench_credit_report(bench_receiver *rc, uint64_t received);

/* Wait (bounded by timeout_ms, and abort) until `count` processes have
 * said they are ready. Returns 0 or -1 after bench_fail(). */
int bench_wait_ready(bench_shared *sh, unsigned count, const char *who, int timeout_ms);

/* ---- process bodies ----------------------------------------------------- */

/* Through the broker (bench_workers.c). Each returns 0, or -1 after
 * bench_fail(). `index` numbers the subscribers from 0. */
int bench_publisher_run(const bench_job *job, bench_shared *sh);
int bench_subscriber_run(const bench_job *job, bench_shared *sh, unsigned index);
int bench_responder_run(const bench_job *job, bench_shared *sh);
int bench_requester_run(const bench_job *job, bench_shared *sh);

/* idle (bench_idle.c): open job->connections library connections (fewer
 * if RLIMIT_NOFILE will not allow them, saying why in sh->idle_note),
 * flush each, hold them while the orchestrator measures, then close them;
 * see bench_shared. */
int bench_idle_run(const bench_job *job, bench_shared *sh);

/* Without the broker (bench_raw.c): the peers own the fds they are given. */
int bench_raw_sender_run(const bench_job *job, bench_shared *sh, const int *fds, unsigned count);
int bench_raw_receiver_run(const bench_job *job, bench_shared *sh, unsigned index, int fd);
int bench_raw_responder_run(const bench_job *job, bench_shared *sh, int fd);
int bench_raw_requester_run(const bench_job *job, bench_shared *sh, int fd);

/* The relay (bench_relay.c): copies what arrives on `in` to each of the
 * `count` sockets of `out` (thru, fanout), or, for rtt, between `in` (the
 * requester's side) and out[0] (the responder's), until a side closes.
 * Owns the fds it is given. */
int bench_relay_run(const bench_job *job, bench_shared *sh, int in, const int *out, unsigned count);

/* Write all of buf[0..len) to a blocking socket (no SIGPIPE). Returns 0 or
 * -errno. */
int bench_write_all(int fd, const uint8_t *buf, size_t len);

/* A connected pair of stream sockets for a raw or relay job:
 * socketpair(AF_UNIX) or a TCP loopback connection (TCP_NODELAY on both
 * ends). Returns 0 with
 * fds[0], fds[1] owned by the caller, or -errno. */
int bench_raw_pair(bench_transport t, int fds[2]);

/* The bytes on the wire for one message of `job` as a receiver gets it
 * (a MSG frame). */
size_t bench_frame_size(const bench_job *job);

/* ---- the private broker (bench_broker.c) -------------------------------- */

typedef struct bench_broker {
    pid_t pid; /* -1 when not running */
    /* Set before bench_broker_start(); 0: the broker's default. */
    unsigned max_subscriptions;
    unsigned long long max_subscription_bytes;
    unsigned max_connections;
    char path[4096]; /* the sockbusd executable */
    char dir[256];   /* our temporary directory ("" if none) */
    char unix_endpoint[SB_ENDPOINT_MAX];
    char tcp_endpoint[64]; /* tcp://127.0.0.1:PORT */
} bench_broker;

/* Find sockbusd: `explicit_path` (--broker), else next to this executable
 * (the build tree's ../broker/sockbusd, or the same directory when
 * installed), else on PATH. Writes it to b->path. Prints one line and
 * returns -1 if there is none. */
int bench_broker_find(bench_broker *b, const char *explicit_path);

/* Start it on a socket in a new temporary directory and a free TCP
 * loopback port, and wait (bounded) until both accept. Prints one line and
 * returns -1 on failure (after cleaning up). */
int bench_broker_start(bench_broker *b);

/* The broker's resident set (VmRSS of /proc/PID/status) in bytes into
 * *bytes. Returns 0, or -errno (-ESRCH when it does not run). */
int bench_broker_rss(const bench_broker *b, uint64_t *bytes);

/* Is the running broker built with AddressSanitizer (libasan in its
 * /proc/PID/maps)? Its RSS then holds shadow memory and a quarantine of
 * freed blocks, and says little about what the broker itself needs. */
bool bench_broker_sanitized(const bench_broker *b);

/* SIGTERM, wait (then SIGKILL if it will not go), remove the directory.
 * Safe to call twice, and on a broker never started. */
void bench_broker_stop(bench_broker *b);

/* ---- statistics (bench_stats.c) ----------------------------------------- */

/*
 * A requester's record of round trips, the same for the broker and the raw
 * rows: BENCH_RTT_WARMUP round trips are not counted, then one sample per
 * round trip until the duration or the sample array is used up.
 */
typedef struct bench_rtt {
    uint64_t deadline; /* set when the warm-up ends */
    uint64_t count;
    uint64_t last_ns;
} bench_rtt;

/* Start a record. */
void bench_rtt_init(bench_rtt *rtt);

/* Record round trip i, sent at t0 and answered at t1 (ns). Returns true
 * when the run is over (time, samples, or an abort). */
bool bench_rtt_record(bench_rtt *rtt, const bench_job *job, bench_shared *sh, uint64_t i,
                      uint64_t t0, uint64_t t1);

/* Publish the record's samples and span to the parent. */
void bench_rtt_finish(const bench_rtt *rtt, bench_shared *sh);

/* Sort samples ascending. */
void bench_stats_sort(uint64_t *samples, size_t count);

/* Nearest-rank percentile (0 < p <= 100) of sorted samples: the smallest
 * value with at least p% of the samples at or below it. 0 if count == 0. */
uint64_t bench_stats_percentile(const uint64_t *sorted, size_t count, double p);

typedef struct bench_spread {
    double median;
    double min;
    double max;
} bench_spread;

/* Median (mean of the middle two for an even count), min and max of
 * values[0..count). Reorders values. All 0 if count == 0. */
bench_spread bench_stats_spread(double *values, size_t count);

/* ---- results and output ------------------------------------------------- */

typedef struct bench_latency {
    uint64_t samples;
    uint64_t p50, p90, p99, p999, max; /* ns */
} bench_latency;

/* One line of the table: a job, over all its runs. */
typedef struct bench_row {
    bench_workload workload;
    bench_transport transport;
    size_t size;
    unsigned receivers;
    unsigned subjects;    /* scale: subscriptions of the subscriber; else 0 */
    unsigned connections; /* idle: connections asked for; else 0 */

    unsigned runs;      /* runs done */
    double *rate;       /* [runs]: messages/s delivered, summed over receivers;
                         * rtt: round trips/s; idle: bytes of broker RSS
                         * per connection */
    double *rtt_p50;    /* [runs]: rtt p50 of each run, ns */
    uint64_t published; /* over all runs */
    uint64_t expected;  /* published x receivers */
    uint64_t received;  /* summed over receivers and runs */
    uint64_t dropped;   /* DROPPED notices */

    uint64_t *samples; /* rtt: every sample of every run, ns */
    size_t sample_count;
    size_t sample_cap;

    /* idle */
    uint64_t opened;            /* fewest connections open in a run */
    uint64_t rss_before;        /* bytes, last run */
    uint64_t rss_after;         /* bytes, last run */
    bool sanitized;             /* the broker runs with AddressSanitizer */
    char note[BENCH_ERROR_MAX]; /* skipped: why; else fewer opened: why */

    /* Filled by bench_report_finish(). */
    bench_spread rate_spread;
    bench_latency latency;
} bench_row;

typedef struct bench_report {
    bench_row *rows;
    size_t row_count;
    unsigned runs;
    int64_t duration_ms;
    uint64_t window_bytes;
    const char *broker_mode;   /* "private" or "external" */
    const char *broker_path;   /* private: the executable */
    const char *unix_endpoint; /* "" if none */
    const char *tcp_endpoint;  /* "" if none */
} bench_report;

/* Sort the samples and compute spreads and percentiles. */
void bench_report_finish(bench_report *rep);

/* Loss of a row: expected - received (0 for rtt). */
uint64_t bench_row_loss(const bench_row *row);

/* Payload MB/s (10^6 bytes) at a given message rate. */
double bench_row_mbps(const bench_row *row, double rate);

/* ---- ratios (bench_ratios.c) -------------------------------------------- */

#define BENCH_MAX_RATIOS 128

typedef enum bench_ratio_op {
    BENCH_RATIO_INFO, /* no target */
    BENCH_RATIO_GE,
    BENCH_RATIO_GT,
    BENCH_RATIO_LE,
    BENCH_RATIO_LT,
} bench_ratio_op;

typedef struct bench_ratio {
    char group[48]; /* "thru 128 B" */
    char what[64];  /* "unix / raw-unix msgs/s" */
    double value;
    bool bytes; /* value is bytes, not a ratio */
    bench_ratio_op op;
    double target;
    /* What the value means, in words: "the broker carries 23% of what a
     * bare Unix socket does". */
    char meaning[128];
} bench_ratio;

/* The ratios the report ends with, into out[BENCH_MAX_RATIOS], from a
 * finished report (bench_report_finish()). Returns how many. */
size_t bench_ratios(const bench_report *rep, bench_ratio *out);

/* Does a ratio meet its target (always, for BENCH_RATIO_INFO)? */
bool bench_ratio_met(const bench_ratio *r);

/* ">=", ">", "<=", "<", or "" for BENCH_RATIO_INFO. */
const char *bench_ratio_op_text(bench_ratio_op op);

/* ---- output ------------------------------------------------------------- */

/* The aligned table and the ratios to stdout. */
void bench_report_table(const bench_report *rep, FILE *out);

/* The same as one JSON document. */
void bench_report_json(const bench_report *rep, FILE *out);

/* A self-contained SVG bar chart. Returns 0 or -errno. */
int bench_svg_write(const bench_report *rep, FILE *out);

/* "16 B", "1 KiB", "64 KiB", "1000 B". */
const char *bench_format_size(size_t size, char *buf, size_t len);

/* "1.23M", "456k", "789" (3 significant digits). */
const char *bench_format_si(double v, char *buf, size_t len);

/* A count as written on the command line: "1", "100k", "2M", "12345". */
const char *bench_format_count(uint64_t n, char *buf, size_t len);

/* "scale 1", "scale 100k", "fanout 1->4", "thru": a row's workload cell. */
const char *bench_row_workload(const bench_row *row, char *buf, size_t len);

#endif /* SOCKBUS_BENCH_H */
