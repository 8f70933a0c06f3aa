/*
 * test_abuse.c - clients that misbehave at the transport level: thousands
 * of connections that come and go, peers that vanish in the middle of a
 * large frame or with megabytes queued to them, frames that stall half way,
 * a peer that closes while the broker writes to it (SIGPIPE), and signals
 * that interrupt the library's system calls (EINTR).
 *
 * The malformed-frame cases (sizes, lengths, ops, HELLO, subjects, sids,
 * text from netcat) are in test_protocol.c; these tests add what leaks or
 * blocks over time. After each case the broker must still serve a healthy
 * client, and its open file descriptors (/proc/PID/fd) must come back to
 * what they were before the case: a connection the broker forgot to close
 * shows there. Resident memory is checked against a small bound where it
 * means something: not under AddressSanitizer (its quarantine holds freed
 * memory on purpose) and not under a wrapper such as valgrind (which
 * leak-checks the broker at exit instead, see harness.h).
 *
 * Waiting is bounded everywhere; "the broker closed it" is awaited by
 * polling /proc until the count is back, with a timeout.
 */
#include "harness.h"

#include "frame.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define ABUSE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ABUSE_ASAN 1
#endif
#endif
#ifndef ABUSE_ASAN
#define ABUSE_ASAN 0
#endif

/* Resident memory a thousand connect/close cycles may add (allocator
 * slack, not per-connection state). */
#define RSS_SLACK_KIB (2 * 1024)

static struct harness_broker broker;

static void setup(void)
{
    int r = harness_start(&broker, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
}

static void teardown(void)
{
    harness_cleanup(&broker);
}

TestSuite(abuse, .init = setup, .fini = teardown, .timeout = 120);

/* ---- the broker's resources --------------------------------------------- */

static int broker_fds(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)broker.pid);
    DIR *d = opendir(path);
    cr_assert_not_null(d, "cannot open %s: %s", path, strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* A field of /proc/PID/status ("VmRSS", "SigIgn"), as text. */
static void broker_status_field(const char *field, char *out, size_t len)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)broker.pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s: %s", path, strerror(errno));
    char line[256];
    size_t flen = strlen(field);
    out[0] = '\0';
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            const char *v = line + flen + 1;
            size_t n = strcspn(v, "\n");
            n = n < len - 1 ? n : len - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            break;
        }
    }
    fclose(f);
    cr_assert(out[0] != '\0', "no %s in %s", field, path);
}

/*
 * The broker's fd count, less one probe connection of ours. The probe says
 * HELLO and gets its PING answered first: by then the broker has handled
 * every close that happened before the probe connected (all were ready in
 * the same or an earlier loop iteration), so the count is exact, not a
 * snapshot of closes in progress.
 */
static int settled_fds(void)
{
    int probe = harness_raw(&broker, true);
    uint8_t ping[FRAME_HEADER_SIZE];
    frame_encode_header(ping, FRAME_HEADER_SIZE, FRAME_OP_PING, 0, 0, 0, 0, 1);
    harness_write(probe, ping, sizeof(ping));
    uint8_t hdr[FRAME_HEADER_SIZE];
    uint8_t body[64];
    long size = harness_read_frame(probe, hdr, body, sizeof(body), HARNESS_IO_MS);
    cr_assert(size > 0 && hdr[4] == FRAME_OP_PONG, "probe: no PONG");
    int n = broker_fds() - 1;
    close(probe);
    return n;
}

/* The fd count to come back to, taken once the broker has served a
 * client, so that what it opens once and keeps (under valgrind, for one)
 * is in it. */
static int baseline_fds(void)
{
    sb_client *c = harness_client(&broker, "warm-up", true);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    sb_close(c);
    return settled_fds();
}

static void assert_fds_back(int baseline, const char *after)
{
    /* Exact already (settled_fds()); the retry only absorbs a close that
     * the broker defers by design (a draining connection, CONN_DRAIN_MS). */
    int64_t deadline = harness_now_ms() + HARNESS_IO_MS;
    int n = settled_fds();
    while (n != baseline && harness_now_ms() < deadline) {
        poll(NULL, 0, 20);
        n = settled_fds();
    }
    cr_assert_eq(n, baseline, "after %s the broker holds %d fds, %d before", after, n, baseline);
}

static void assert_broker_alive(void)
{
    int status;
    cr_assert_eq(waitpid(broker.pid, &status, WNOHANG), 0, "the broker has exited (%s)",
                 WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "exit");
}

/* ---- clients ------------------------------------------------------------ */

/* A healthy pair completes a publish -> subscribe round trip. */
static void assert_serves(void)
{
    assert_broker_alive();
    sb_client *sub = harness_client(&broker, "healthy-sub", true);
    sb_client *pub = harness_client(&broker, "healthy-pub", true);
    cr_assert_eq(sb_subscribe(sub, "health.check", NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_publish(pub, "health.check", NULL, "ok", 2), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    sb_msg m;
    int r = sb_next_msg(sub, &m, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "healthy round trip failed: %s", sb_strerror(r));
    cr_assert_eq(m.payload_len, 2);
    cr_assert_eq(memcmp(m.payload, "ok", 2), 0);
    sb_close(pub);
    sb_close(sub);
}

static void send_frame(int fd, uint8_t op, uint32_t sid, const char *subject, const void *payload,
                       size_t payload_len)
{
    size_t slen = subject ? strlen(subject) : 0;
    size_t n = frame_encoded_size(slen, 0, 0, payload_len);
    uint8_t *buf = malloc(n);
    cr_assert_not_null(buf);
    frame_encode(buf, op, 0, sid, subject, slen, NULL, 0, NULL, 0, payload, payload_len);
    harness_write(fd, buf, n);
    free(buf);
}

/* A raw subscriber to `subject`, confirmed by a PING/PONG barrier. */
static int raw_subscriber(const char *subject)
{
    int fd = harness_raw(&broker, true);
    send_frame(fd, FRAME_OP_SUB, 1, subject, NULL, 0);
    send_frame(fd, FRAME_OP_PING, 77, NULL, NULL, 0);
    uint8_t hdr[FRAME_HEADER_SIZE];
    uint8_t body[512];
    long size = harness_read_frame(fd, hdr, body, sizeof(body), HARNESS_IO_MS);
    cr_assert(size > 0 && hdr[4] == FRAME_OP_PONG, "no PONG after SUB %s", subject);
    return fd;
}

/* Publish `count` messages of `size` bytes, flushing (a PING/PONG barrier)
 * every `batch`, so the broker has routed them all when this returns. */
static void flood(sb_client *pub, const char *subject, int count, size_t size, int batch)
{
    static uint8_t payload[64 * 1024];
    cr_assert(size <= sizeof(payload));
    for (int i = 0; i < count; i++) {
        cr_assert_eq(sb_publish(pub, subject, NULL, payload, size), 0);
        if ((i + 1) % batch == 0) {
            cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
        }
    }
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
}

/* ---- connections that come and go --------------------------------------- */

/* One connect/close cycle of kind i % 10: mostly raw HELLO/WELCOME, some
 * through the library, some that close without a word. */
static void cycle(int i)
{
    switch (i % 10) {
    case 0:
    case 5: {
        sb_client *c = harness_client(&broker, "cycle", true);
        sb_close(c);
        break;
    }
    case 3:
        close(harness_raw(&broker, false));
        break;
    default:
        close(harness_raw(&broker, true));
        break;
    }
}

Test(abuse, thousand_connect_close_cycles_leak_nothing)
{
    int fds = baseline_fds();
    /* Warm up first, so that what is allocated once (the loop's buffers,
     * the allocator's arenas) is in the baseline. */
    for (int i = 0; i < 50; i++) {
        cycle(i);
    }
    assert_fds_back(fds, "50 connect/close cycles");
    long rss = harness_status_kib(&broker, "VmRSS");

    for (int i = 0; i < 1000; i++) {
        cycle(i);
    }
    assert_fds_back(fds, "1,000 connect/close cycles");
    long grown = harness_status_kib(&broker, "VmRSS") - rss;
    fprintf(stderr, "abuse: 1,000 connect/close cycles: fds %d -> %d, RSS %+ld KiB\n", fds,
            settled_fds(), grown);
    if (!ABUSE_ASAN && !harness_wrapped()) {
        cr_assert_leq(grown, RSS_SLACK_KIB, "RSS grew by %ld KiB over 1,000 cycles", grown);
    }
    assert_serves();
    assert_fds_back(fds, "the healthy round trip");
    harness_stop(&broker);
}

/* ---- peers that vanish ---------------------------------------------------- */

Test(abuse, disconnect_in_the_middle_of_a_large_frame)
{
    int fds = baseline_fds();
    enum { DECLARED = 1024 * 1024, SENT = 100 * 1024 };
    uint8_t *frame = calloc(1, SENT);
    cr_assert_not_null(frame);
    frame_encode_header(frame, DECLARED, FRAME_OP_PUB, 0, 3, 0, 0, 0);
    memcpy(frame + FRAME_HEADER_SIZE, "big", 3);
    for (int round = 0; round < 10; round++) {
        int fd = harness_raw(&broker, true);
        /* Half the rounds also stall a moment, so the broker has buffered
         * the part before it sees the end. */
        harness_write(fd, frame, SENT);
        if (round % 2 == 0) {
            assert_serves();
        }
        close(fd);
    }
    /* And a peer that says HELLO in part, then goes. */
    int fd = harness_raw(&broker, false);
    harness_write(fd, "\x40\x00\x00\x00\x01\x00", 6);
    close(fd);
    free(frame);
    assert_serves();
    assert_fds_back(fds, "peers vanishing mid-frame");
    harness_stop(&broker);
}

Test(abuse, disconnect_with_a_full_outbound_queue)
{
    int fds = baseline_fds();
    sb_client *pub = harness_client(&broker, "pub", true);
    for (int round = 0; round < 3; round++) {
        /* Subscribed, never reads: 16 MiB fill its 8 MiB queue and more. */
        int stalled = raw_subscriber("flood");
        flood(pub, "flood", 256, 64 * 1024, 16);
        close(stalled);
        /* The broker goes on writing to, then closing, a peer that is
         * gone; others are served meanwhile. */
        flood(pub, "flood", 32, 64 * 1024, 8);
        assert_serves();
    }
    sb_close(pub);
    assert_fds_back(fds, "subscribers closing with full queues");
    harness_stop(&broker);
}

/* Is SIGPIPE in the SigIgn mask of /proc/PID/status? */
static bool broker_ignores_sigpipe(void)
{
    char v[64];
    broker_status_field("SigIgn", v, sizeof(v));
    unsigned long long mask = strtoull(v, NULL, 16);
    return (mask >> (SIGPIPE - 1)) & 1u;
}

Test(abuse, sigpipe_cannot_kill_the_broker)
{
    /* Valgrind handles every signal itself, so the kernel's view of the
     * process is valgrind's; the behaviour below is checked either way. */
    if (!harness_wrapped()) {
        cr_assert(broker_ignores_sigpipe(), "sockbusd does not ignore SIGPIPE");
    }
    int fds = baseline_fds();
    sb_client *pub = harness_client(&broker, "pub", true);
    for (int round = 0; round < 10; round++) {
        /* A subscriber with a big backlog that reads a little, so the
         * broker is busy writing to it, and closes with data unread: the
         * broker's next write meets a closed socket (EPIPE). */
        int sub = raw_subscriber("pipe");
        flood(pub, "pipe", 64, 64 * 1024, 16);
        uint8_t buf[16 * 1024];
        ssize_t got = recv(sub, buf, sizeof(buf), 0);
        cr_assert_gt(got, 0);
        close(sub);
        flood(pub, "pipe", 16, 64 * 1024, 4);
        assert_broker_alive();
    }
    /* A subscriber that closes while the broker is routing to it: the
     * close lands between the broker's read of the publishes and its
     * write of the MSGs (uv_try_write, before it has seen the EOF) often
     * enough that, without SIGPIPE ignored, a few hundred rounds kill it. */
    static uint8_t payload[1024];
    for (int round = 0; round < 300; round++) {
        int sub = raw_subscriber("pipe");
        for (int i = 0; i < 64; i++) {
            cr_assert_eq(sb_publish(pub, "pipe", NULL, payload, sizeof(payload)), 0);
        }
        cr_assert_eq(sb_process(pub), 0); /* write, do not wait */
        close(sub);
        cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0, "round %d", round);
    }
    assert_broker_alive();
    sb_close(pub);
    assert_serves();
    assert_fds_back(fds, "subscribers closing mid-write");
    /* harness_stop() asserts a clean exit 0, not death by a signal. */
    harness_stop(&broker);
}

/* ---- half frames -------------------------------------------------------- */

Test(abuse, half_frames_block_no_one_at_full_speed)
{
    enum { COUNT = 10000 };
    int fds = baseline_fds();
    /* A: after HELLO, a header declaring a 1 MiB PUB and 10 bytes of it.
     * B: two bytes of a HELLO. C: after HELLO, three bytes of a header. */
    int a = harness_raw(&broker, true);
    uint8_t big[FRAME_HEADER_SIZE + 10];
    frame_encode_header(big, 1024 * 1024, FRAME_OP_PUB, 0, 4, 0, 0, 0);
    memcpy(big + FRAME_HEADER_SIZE, "stallstall", 10);
    harness_write(a, big, sizeof(big));
    int b = harness_raw(&broker, false);
    harness_write(b, "\x1e\x00", 2);
    int c = harness_raw(&broker, true);
    harness_write(c, "\x20\x00\x00", 3);

    sb_client *sub = harness_client(&broker, "sub", true);
    sb_client *pub = harness_client(&broker, "pub", true);
    cr_assert_eq(sb_subscribe(sub, "speed", NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    int64_t t0 = harness_now_ms();
    for (uint32_t i = 0; i < COUNT; i++) {
        cr_assert_eq(sb_publish(pub, "speed", NULL, &i, sizeof(i)), 0);
    }
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    for (uint32_t i = 0; i < COUNT; i++) {
        sb_msg m;
        int r = sb_next_msg(sub, &m, HARNESS_IO_MS);
        cr_assert_eq(r, 0, "message %u of %u: %s", i, COUNT, sb_strerror(r));
        uint32_t v;
        cr_assert_eq(m.payload_len, sizeof(v));
        memcpy(&v, m.payload, sizeof(v));
        cr_assert_eq(v, i, "message %u arrived as %u", i, v);
    }
    int64_t took = harness_now_ms() - t0;
    cr_assert_eq(sb_take_dropped(sub), 0);
    fprintf(stderr, "abuse: %d messages past three stalled half frames in %lld ms\n", COUNT,
            (long long)took);
    /* Generous: this takes tens of milliseconds; a stall that blocked the
     * loop would hold it until a timeout instead. */
    cr_assert_lt(took, 20000, "10,000 messages took %lld ms", (long long)took);
    sb_close(pub);
    sb_close(sub);
    close(a);
    close(b);
    close(c);
    assert_fds_back(fds, "the stalled peers left");
    harness_stop(&broker);
}

/* ---- EINTR -------------------------------------------------------------- */

static volatile sig_atomic_t alarms;

static void on_alarm(int signum)
{
    (void)signum;
    alarms++;
}

Test(abuse, library_calls_are_not_interrupted_by_signals)
{
    /* A no-op handler without SA_RESTART, fired every millisecond at this
     * very thread: every blocking system call the library makes meets
     * EINTR again and again, and must carry on. */
    struct sigaction sa = {.sa_handler = on_alarm};
    sigemptyset(&sa.sa_mask);
    struct sigaction old;
    cr_assert_eq(sigaction(SIGALRM, &sa, &old), 0);
    struct sigevent sev = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGALRM};
    sev._sigev_un._tid = gettid();
    timer_t timer;
    cr_assert_eq(timer_create(CLOCK_MONOTONIC, &sev, &timer), 0, "timer_create: %s",
                 strerror(errno));
    struct itimerspec every_ms = {.it_interval = {0, 1000000}, .it_value = {0, 1000000}};
    cr_assert_eq(timer_settime(timer, 0, &every_ms, NULL), 0);

    sb_client *pub = harness_client(&broker, "eintr-pub", true);
    sb_client *sub = harness_client(&broker, "eintr-sub", true);
    sb_client *svc = harness_client(&broker, "eintr-svc", true);
    cr_assert_eq(sb_subscribe(sub, "eintr.>", NULL, NULL), 0);
    cr_assert_eq(sb_subscribe(svc, "eintr.svc", NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);

    static uint8_t large[256 * 1024]; /* written with sendmsg, in parts */
    int rounds = 0;
    int64_t end = harness_now_ms() + 400;
    while (harness_now_ms() < end) {
        int r = sb_publish(pub, "eintr.data", NULL, &rounds, sizeof(rounds));
        cr_assert_eq(r, 0, "publish: %s", sb_strerror(r));
        r = sb_publish(pub, "eintr.large", NULL, large, sizeof(large));
        cr_assert_eq(r, 0, "large publish: %s", sb_strerror(r));
        r = sb_flush(pub, HARNESS_IO_MS);
        cr_assert_eq(r, 0, "flush: %s", sb_strerror(r));
        sb_msg m;
        r = sb_next_msg(sub, &m, HARNESS_IO_MS);
        cr_assert_eq(r, 0, "next_msg: %s", sb_strerror(r));
        cr_assert_eq(m.payload_len, sizeof(rounds));
        r = sb_next_msg(sub, &m, HARNESS_IO_MS);
        cr_assert_eq(r, 0, "next_msg (large): %s", sb_strerror(r));
        cr_assert_eq(m.payload_len, sizeof(large));

        /* A request, answered by a service on another connection. */
        sb_pub req = {.subject = "eintr.svc", .payload = "q", .payload_len = 1};
        uint32_t token;
        r = sb_request_send(pub, &req, &token);
        cr_assert_eq(r, 0, "request_send: %s", sb_strerror(r));
        r = sb_flush(pub, HARNESS_IO_MS);
        cr_assert_eq(r, 0, "flush (request): %s", sb_strerror(r));
        r = sb_next_msg(svc, &m, HARNESS_IO_MS);
        cr_assert_eq(r, 0, "service next_msg: %s", sb_strerror(r));
        cr_assert_eq(sb_publish(svc, m.reply, NULL, "a", 1), 0);
        r = sb_flush(svc, HARNESS_IO_MS);
        cr_assert_eq(r, 0, "service flush: %s", sb_strerror(r));
        sb_msg reply;
        r = sb_request_wait(pub, token, &reply, HARNESS_IO_MS);
        cr_assert_eq(r, 0, "request_wait: %s", sb_strerror(r));
        /* The subscriber sees the request too (eintr.>). */
        r = sb_next_msg(sub, &m, HARNESS_IO_MS);
        cr_assert_eq(r, 0, "next_msg (request): %s", sb_strerror(r));

        /* A wait that only a timeout ends: the signals must neither end
         * it early with -EINTR nor stretch it much. */
        int64_t t0 = harness_now_ms();
        r = sb_next_msg(pub, &m, 5);
        cr_assert_eq(r, -ETIMEDOUT, "idle next_msg: %s", sb_strerror(r));
        cr_assert_lt(harness_now_ms() - t0, 1000);
        rounds++;
    }
    /* A connect under the same fire. */
    sb_client *late = harness_client(&broker, "eintr-late", true);
    sb_close(late);

    struct itimerspec off = {0};
    timer_settime(timer, 0, &off, NULL);
    timer_delete(timer);
    sigaction(SIGALRM, &old, NULL);
    fprintf(stderr, "abuse: %d rounds under %d SIGALRMs\n", rounds, (int)alarms);
    cr_assert_gt(alarms, 50, "the timer hardly fired (%d)", (int)alarms);
    cr_assert_gt(rounds, 0);
    sb_close(svc);
    sb_close(sub);
    sb_close(pub);
    harness_stop(&broker);
}

/* ---- signals at the worst moment ----------------------------------------- */

Test(abuse, sigterm_as_soon_as_the_socket_accepts)
{
    /* The socket accepts before the loop runs; a SIGTERM sent in that
     * window must still stop the broker cleanly (exit 0, socket removed),
     * not kill it. Most likely to hit the window under valgrind. */
    harness_stop(&broker);
    for (int round = 0; round < 3; round++) {
        int r = harness_start(&broker, false, NULL);
        cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
        int status = harness_terminate(&broker, HARNESS_IO_MS);
        cr_assert_eq(status, 0, "exit status %d after an early SIGTERM", status);
        cr_assert_neq(access(broker.socket, F_OK), 0, "the socket file is still there");
        /* The log holds no sanitizer report; removes the directory. */
        harness_stop(&broker);
    }
}

/* ---- one client's expensive requests ------------------------------------ */

/*
 * One connection sends hundreds of $SYS.CLIENTS requests at once, each
 * answered with a large JSON document, and another client sends a PING
 * right behind them. The PING's answer must not wait for the whole flood:
 * the flood's connection gets a slice of each loop iteration (CONN_SLICE)
 * and the PING's connection its own. Both are sent while the broker is
 * stopped, so that they land in one iteration in that order; the test
 * compares the two waits in one run, not a time against a constant.
 */
Test(abuse, expensive_requests_do_not_hold_the_loop)
{
    enum { CLIENTS = 300, REQUESTS = 600 };
    static sb_client *crowd[CLIENTS];
    char name[128];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    for (int i = 0; i < CLIENTS; i++) {
        crowd[i] = harness_client(&broker, name, true); /* ~250 bytes each in $SYS.CLIENTS */
    }
    int flood_fd = harness_raw(&broker, true);
    int probe_fd = harness_raw(&broker, true);
    static uint8_t requests[REQUESTS * 64];
    size_t len = 0;
    for (int i = 0; i < REQUESTS; i++) {
        len += frame_encode(requests + len, FRAME_OP_PUB, 0, 0, "$SYS.CLIENTS", 12, "flood.answers",
                            13, NULL, 0, NULL, 0);
    }
    len += frame_encode(requests + len, FRAME_OP_PING, 0, 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0);
    uint8_t ping[FRAME_HEADER_SIZE];
    frame_encode_header(ping, FRAME_HEADER_SIZE, FRAME_OP_PING, 0, 0, 0, 0, 2);

    harness_freeze(&broker);
    harness_write(flood_fd, requests, len);
    harness_write(probe_fd, ping, sizeof(ping));
    int64_t t0 = harness_now_ms();
    harness_thaw(&broker);

    /* Wait for both PONGs; the flood's answers go to a subject nobody
     * subscribes to, so its connection receives only its PONG. */
    int64_t probe_ms = -1;
    int64_t flood_ms = -1;
    int64_t deadline = t0 + 60000;
    while ((probe_ms < 0 || flood_ms < 0) && harness_now_ms() < deadline) {
        struct pollfd p[2] = {{.fd = probe_fd, .events = probe_ms < 0 ? POLLIN : 0},
                              {.fd = flood_fd, .events = flood_ms < 0 ? POLLIN : 0}};
        if (poll(p, 2, 100) <= 0) {
            continue;
        }
        uint8_t hdr[FRAME_HEADER_SIZE];
        uint8_t body[64];
        if (p[0].revents & POLLIN) {
            cr_assert_gt(harness_read_frame(probe_fd, hdr, body, sizeof(body), HARNESS_IO_MS), 0);
            probe_ms = harness_now_ms() - t0;
        }
        if (p[1].revents & POLLIN) {
            cr_assert_gt(harness_read_frame(flood_fd, hdr, body, sizeof(body), HARNESS_IO_MS), 0);
            cr_assert_eq(hdr[4], FRAME_OP_PONG);
            flood_ms = harness_now_ms() - t0;
        }
    }
    cr_assert(probe_ms >= 0 && flood_ms >= 0, "no PONG within 60 s");
    fprintf(stderr,
            "abuse: %d $SYS.CLIENTS requests over %d clients answered in %lld ms; a PING sent "
            "behind them answered in %lld ms\n",
            REQUESTS, CLIENTS, (long long)flood_ms, (long long)probe_ms);
    cr_assert_lt(probe_ms * 5, flood_ms + 5,
                 "the PING waited %lld ms of the flood's %lld ms: one connection held the loop",
                 (long long)probe_ms, (long long)flood_ms);
    close(flood_fd);
    close(probe_fd);
    for (int i = 0; i < CLIENTS; i++) {
        sb_close(crowd[i]);
    }
    harness_stop(&broker);
}
