/*
 * test_limits.c - the broker's limits (DESIGN §4), each set by its flag and
 * by the config file, each enforced with its ERR; the config file's errors;
 * and the file descriptor limit: RLIMIT_NOFILE raised at start, EMFILE at
 * accept survived.
 *
 * Every limit test runs twice through one body: once with the flag, once
 * with the same value from a config file (written to a temporary file that
 * the suite removes). "Nothing more arrived" is made exact with a flush
 * (PING/PONG) barrier, never with a sleep.
 */
#include "harness.h"

#include "frame.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static struct harness_broker broker;
static char config_path[64];

static void teardown(void)
{
    harness_cleanup(&broker);
    if (config_path[0] != '\0') {
        unlink(config_path);
        config_path[0] = '\0';
    }
}

TestSuite(limits, .fini = teardown, .timeout = 120);

/* End of a test body: stop the broker (asserting a clean exit) and remove
 * the config file. */
static void finish(void)
{
    harness_stop(&broker);
    teardown();
}

/* Write `json` to a fresh temporary file; its path is config_path. */
static const char *write_config(const char *json)
{
    snprintf(config_path, sizeof(config_path), "/tmp/sbtest-cfg-XXXXXX");
    int fd = mkstemp(config_path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    size_t len = strlen(json);
    cr_assert_eq(write(fd, json, len), (ssize_t)len);
    close(fd);
    return config_path;
}

/* How a limit is set in a test: by flag, or by the config file. */
enum via { VIA_FLAG, VIA_CONFIG };

/* Start the broker with `flag value` or with {"key": value} in a config
 * file; `more` are extra arguments either way. */
static void start_with(enum via via, const char *flag, const char *key, const char *value,
                       const char *const *more)
{
    const char *args[16];
    size_t n = 0;
    char json[256];
    if (via == VIA_FLAG) {
        args[n++] = flag;
        args[n++] = value;
    } else {
        snprintf(json, sizeof(json), "{\"%s\": %s}", key, value);
        args[n++] = "--config";
        args[n++] = write_config(json);
    }
    for (size_t i = 0; more != NULL && more[i] != NULL; i++) {
        args[n++] = more[i];
    }
    args[n] = NULL;
    int r = harness_start(&broker, false, args);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
}

/* ---- raw frames ----------------------------------------------------------- */

static void send_frame(int fd, uint8_t op, uint32_t sid, const char *subject, const void *payload,
                       size_t payload_len)
{
    size_t subject_len = subject ? strlen(subject) : 0;
    size_t size = frame_encoded_size(subject_len, 0, 0, payload_len);
    uint8_t *buf = malloc(size);
    frame_encode(buf, op, 0, sid, subject, subject_len, NULL, 0, NULL, 0, payload, payload_len);
    harness_write(fd, buf, size);
    free(buf);
}

static uint8_t body[64 * 1024];

/* Read one frame; returns its op and writes its sid. Asserts it came. */
static uint8_t read_op(int fd, uint32_t *sid)
{
    uint8_t hdr[FRAME_HEADER_SIZE];
    long size = harness_read_frame(fd, hdr, body, sizeof(body), HARNESS_IO_MS);
    cr_assert_gt(size, 0, "no frame from the broker");
    *sid = frame_get_u32(hdr + 12);
    return hdr[4];
}

/* PING with `token`, expect its PONG next. */
static void expect_pong(int fd, uint32_t token)
{
    send_frame(fd, FRAME_OP_PING, token, NULL, NULL, 0);
    uint32_t sid;
    uint8_t op = read_op(fd, &sid);
    cr_assert_eq(op, FRAME_OP_PONG, "expected PONG, got op 0x%02x (sid %u)", op, sid);
    cr_assert_eq(sid, token);
}

/* ---- max_frame ------------------------------------------------------------ */

static void check_max_frame(enum via via)
{
    start_with(via, "--max-frame", "max_frame", "8192", NULL);
    sb_client *c = harness_client(&broker, "lib", true);
    cr_assert_eq(sb_max_frame(c), 8192u, "WELCOME announced %u", sb_max_frame(c));

    int fd = harness_raw(&broker, true);
    static uint8_t payload[8192];
    size_t fit = 8192 - FRAME_HEADER_SIZE - strlen("mf");
    send_frame(fd, FRAME_OP_PUB, 0, "mf", payload, fit); /* exactly max_frame: fine */
    expect_pong(fd, 1);
    send_frame(fd, FRAME_OP_PUB, 0, "mf", payload, fit + 1);
    uint32_t code;
    cr_assert_eq(read_op(fd, &code), FRAME_OP_ERR);
    cr_assert_eq(code, FRAME_ERR_TOO_LARGE, "ERR %u", code);
    cr_assert(harness_wait_eof(fd, HARNESS_IO_MS), "ERR 2 is fatal: the broker must close");
    close(fd);

    /* The library refuses to send what the broker would refuse. */
    cr_assert_eq(sb_publish(c, "mf", NULL, payload, fit + 1), -EMSGSIZE);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    sb_close(c);
    finish();
}

Test(limits, max_frame_by_flag)
{
    check_max_frame(VIA_FLAG);
}

Test(limits, max_frame_by_config)
{
    check_max_frame(VIA_CONFIG);
}

/* ---- max_connections ------------------------------------------------------ */

static void check_max_connections(enum via via)
{
    start_with(via, "--max-connections", "max_connections", "3", NULL);
    sb_client *c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = harness_client(&broker, "ok", true);
    }
    sb_client *extra = NULL;
    sb_options o = {.endpoint = broker.socket, .name = "extra"};
    int r = sb_connect(&extra, &o);
    cr_assert_eq(r, SB_E_LIMIT, "the 4th client: %s, expected SB_E_LIMIT", sb_strerror(r));
    cr_assert_null(extra);

    /* The three others keep working. */
    cr_assert_eq(sb_subscribe(c[0], "mc.x", NULL, NULL), 0);
    cr_assert_eq(sb_flush(c[0], HARNESS_IO_MS), 0);
    cr_assert_eq(sb_publish(c[1], "mc.x", NULL, "hi", 2), 0);
    cr_assert_eq(sb_flush(c[1], HARNESS_IO_MS), 0);
    sb_msg m;
    cr_assert_eq(sb_next_msg(c[0], &m, HARNESS_IO_MS), 0);
    cr_assert_eq(m.payload_len, 2);
    cr_assert_eq(sb_flush(c[2], HARNESS_IO_MS), 0);

    /* A slot that frees up is taken again (once the broker has seen the
     * close: bounded retries). */
    sb_close(c[2]);
    int64_t deadline = harness_now_ms() + HARNESS_IO_MS;
    do {
        r = sb_connect(&extra, &o);
    } while (r == SB_E_LIMIT && harness_now_ms() < deadline);
    cr_assert_eq(r, 0, "after a close: %s", sb_strerror(r));
    sb_close(extra);
    sb_close(c[0]);
    sb_close(c[1]);
    finish();
}

Test(limits, max_connections_by_flag)
{
    check_max_connections(VIA_FLAG);
}

Test(limits, max_connections_by_config)
{
    check_max_connections(VIA_CONFIG);
}

/* ---- max_subscriptions ---------------------------------------------------- */

static void check_max_subscriptions(enum via via)
{
    start_with(via, "--max-subscriptions", "max_subscriptions", "4", NULL);
    sb_client *c = harness_client(&broker, "subs", true);
    uint32_t sids[4];
    char pattern[32];
    for (int i = 0; i < 4; i++) {
        snprintf(pattern, sizeof(pattern), "ms.%d", i);
        cr_assert_eq(sb_subscribe(c, pattern, NULL, &sids[i]), 0);
    }
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_subscribe(c, "ms.4", NULL, NULL), 0);
    int r = sb_flush(c, HARNESS_IO_MS);
    cr_assert_eq(r, SB_E_LIMIT, "the 5th SUB: %s", sb_strerror(r));
    cr_assert(strstr(sb_last_error(c), "max_subscriptions (4)") != NULL, "ERR text: %s",
              sb_last_error(c));

    /* Not fatal: PING is answered and the four subscriptions deliver. */
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_publish(c, "ms.3", NULL, "x", 1), 0);
    cr_assert_eq(sb_publish(c, "ms.4", NULL, "y", 1), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    sb_msg m;
    cr_assert_eq(sb_next_msg(c, &m, HARNESS_IO_MS), 0);
    cr_assert_eq(m.sid, sids[3]);
    cr_assert_eq(sb_next_msg(c, &m, 0), -ETIMEDOUT, "ms.4 was never subscribed");

    /* Room again after an UNSUB. */
    cr_assert_eq(sb_unsubscribe(c, sids[0], 0), 0);
    cr_assert_eq(sb_subscribe(c, "ms.5", NULL, NULL), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    sb_close(c);
    finish();
}

Test(limits, max_subscriptions_by_flag)
{
    check_max_subscriptions(VIA_FLAG);
}

Test(limits, max_subscriptions_by_config)
{
    check_max_subscriptions(VIA_CONFIG);
}

/* ---- max_pending ---------------------------------------------------------- */

static void check_max_pending(enum via via)
{
    /* max_pending may not be below max_frame: lower both. */
    const char *const more[] = {"--max-frame", "4096", NULL};
    start_with(via, "--max-pending", "max_pending", "65536", more);
    sb_client *stalled = harness_client(&broker, "stalled", true);
    sb_client *pub = harness_client(&broker, "pub", true);
    cr_assert_eq(sb_subscribe(stalled, "mp.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(stalled, HARNESS_IO_MS), 0);

    /* 10 MB to a subscriber that does not read: far beyond 64 KiB plus what
     * the kernel buffers (the broker's 1 MiB send buffer, which the kernel
     * doubles, and the subscriber's receive buffer). Each batch is flushed,
     * so the broker has handled it before the next. */
    enum { TOTAL = 10000, SIZE = 1000, BATCH = 200 };
    static uint8_t payload[SIZE];
    for (uint32_t i = 0; i < TOTAL; i++) {
        memcpy(payload, &i, sizeof(i));
        cr_assert_eq(sb_publish(pub, "mp.data", NULL, payload, SIZE), 0);
        if ((i + 1) % BATCH == 0) {
            cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
        }
    }
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);

    /* Now read: what arrives plus what DROPPED reports is exactly TOTAL. */
    uint64_t received = 0;
    uint64_t dropped = 0;
    uint32_t last = 0;
    for (;;) {
        sb_msg m;
        int r = sb_next_msg(stalled, &m, 0);
        dropped += sb_take_dropped(stalled);
        if (r == -ETIMEDOUT) {
            if (received + dropped >= TOTAL) {
                break;
            }
            r = sb_next_msg(stalled, &m, HARNESS_IO_MS);
            dropped += sb_take_dropped(stalled);
            if (r == -ETIMEDOUT && received + dropped >= TOTAL) {
                break;
            }
        }
        cr_assert_eq(r, 0, "after %llu + %llu: %s", (unsigned long long)received,
                     (unsigned long long)dropped, sb_strerror(r));
        uint32_t v;
        memcpy(&v, m.payload, sizeof(v));
        cr_assert(received == 0 || v > last, "out of order: %u after %u", v, last);
        last = v;
        received++;
    }
    cr_assert_eq(sb_flush(stalled, HARNESS_IO_MS), 0);
    dropped += sb_take_dropped(stalled);
    cr_assert_eq(received + dropped, TOTAL, "received %llu + dropped %llu",
                 (unsigned long long)received, (unsigned long long)dropped);
    cr_assert_gt(dropped, TOTAL / 2, "only %llu dropped", (unsigned long long)dropped);
    sb_close(pub);
    sb_close(stalled);
    finish();
}

Test(limits, max_pending_by_flag)
{
    check_max_pending(VIA_FLAG);
}

Test(limits, max_pending_by_config)
{
    check_max_pending(VIA_CONFIG);
}

/* ---- max_retained_bytes --------------------------------------------------- */

static int retain(sb_client *c, const char *subject, size_t payload_len)
{
    static uint8_t payload[1024];
    sb_pub p = {
        .subject = subject, .payload = payload, .payload_len = payload_len, .flags = SB_PUB_RETAIN};
    cr_assert_eq(sb_publish_ex(c, &p), 0);
    return sb_flush(c, HARNESS_IO_MS);
}

static void check_max_retained(enum via via)
{
    /* The limit counts heap bytes: each value's frame (16-byte header,
     * subject, payload) in its allocation, and the trie nodes and table its
     * subject needs. */
    start_with(via, "--max-retained-bytes", "max_retained_bytes", "1000", NULL);
    sb_client *c = harness_client(&broker, "retain", true);
    sb_client *live = harness_client(&broker, "live", true);
    cr_assert_eq(sb_subscribe(live, "rt.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(live, HARNESS_IO_MS), 0);

    cr_assert_eq(retain(c, "rt.a", 400), 0); /* about 500 bytes */
    int r = retain(c, "rt.b", 500);          /* about 600 more */
    cr_assert_eq(r, SB_E_LIMIT, "over max_retained_bytes: %s", sb_strerror(r));
    cr_assert(strstr(sb_last_error(c), "max_retained_bytes (1000)") != NULL, "ERR text: %s",
              sb_last_error(c));
    /* Not fatal, and the refused value was still delivered live. */
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    sb_msg m;
    cr_assert_eq(sb_next_msg(live, &m, HARNESS_IO_MS), 0);
    cr_assert_eq(m.payload_len, 400);
    cr_assert_eq(sb_next_msg(live, &m, HARNESS_IO_MS), 0);
    cr_assert_eq(m.payload_len, 500);

    /* A new subscription replays only what was stored. */
    sb_client *late = harness_client(&broker, "late", true);
    cr_assert_eq(sb_subscribe(late, "rt.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(late, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_next_msg(late, &m, HARNESS_IO_MS), 0);
    cr_assert(m.flags & SB_MSG_RETAINED);
    cr_assert_eq(m.subject_len, 4);
    cr_assert(memcmp(m.subject, "rt.a", 4) == 0);
    cr_assert_eq(sb_next_msg(late, &m, 0), -ETIMEDOUT);
    sb_close(late);
    sb_close(live);
    sb_close(c);
    finish();
}

Test(limits, max_retained_bytes_by_flag)
{
    check_max_retained(VIA_FLAG);
}

Test(limits, max_retained_bytes_by_config)
{
    check_max_retained(VIA_CONFIG);
}

/* ---- unix_send_buffer, and the library's send buffer ---------------------- */

/* Bytes waiting in the kernel for `stalled` to read, once `pub` has sent
 * 4 MB to it through the broker: the broker's send buffer is all that may
 * wait there (a Unix stream socket charges them to the sender), the rest
 * stays queued in the broker (max_pending, 8 MiB). Two flushes: the first
 * has the broker handle every PUB, the second ends the loop iteration that
 * wrote to `stalled`. */
static int stalled_inq(void)
{
    sb_client *stalled = harness_client(&broker, "stalled", true);
    sb_client *pub = harness_client(&broker, "pub", true);
    cr_assert_eq(sb_subscribe(stalled, "usb.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(stalled, HARNESS_IO_MS), 0);
    static uint8_t payload[1000];
    for (int i = 0; i < 4000; i++) {
        cr_assert_eq(sb_publish(pub, "usb.data", NULL, payload, sizeof(payload)), 0);
    }
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    int inq = -1;
    cr_assert_eq(ioctl(sb_fd(stalled), FIONREAD, &inq), 0, "FIONREAD: %s", strerror(errno));
    sb_close(pub);
    sb_close(stalled);
    return inq;
}

/* 64 KiB, which the kernel doubles: 128 KiB may wait, plus the one buffer
 * of a write that the kernel lets past its bound (at most 64 KiB here). By
 * default 1 MiB, doubled, or all that net.core.wmem_max allows (at least
 * its stock 208 KiB, doubled): far more than that. */
static void check_unix_send_buffer(enum via via)
{
    start_with(via, "--unix-send-buffer", "unix_send_buffer", "65536", NULL);
    int inq = stalled_inq();
    cr_assert(inq > 32 * 1024 && inq <= 192 * 1024, "%d bytes wait for the subscriber", inq);
    finish();

    cr_assert_eq(harness_start(&broker, false, NULL), 0);
    inq = stalled_inq();
    cr_assert_gt(inq, 256 * 1024, "by default only %d bytes wait for the subscriber", inq);
    finish();
}

Test(limits, unix_send_buffer_by_flag)
{
    check_unix_send_buffer(VIA_FLAG);
}

Test(limits, unix_send_buffer_by_config)
{
    check_unix_send_buffer(VIA_CONFIG);
}

/* net.core.wmem_max: the most SO_SNDBUF the kernel grants. */
static long wmem_max(void)
{
    long v = 0;
    FILE *f = fopen("/proc/sys/net/core/wmem_max", "r");
    cr_assert_not_null(f, "/proc/sys/net/core/wmem_max: %s", strerror(errno));
    cr_assert_eq(fscanf(f, "%ld", &v), 1);
    fclose(f);
    return v;
}

/* The library's end of a Unix connection has the same send buffer (as the
 * kernel sets it: doubled, within net.core.wmem_max), so that a client
 * may have as much in flight to the broker as over TCP loopback, whose
 * buffers grow by themselves. */
Test(limits, the_library_sets_the_send_buffer_of_its_unix_socket)
{
    cr_assert_eq(harness_start(&broker, false, NULL), 0);
    long cap = wmem_max();
    long want = 2 * (cap < 1024 * 1024 ? cap : 1024 * 1024);
    sb_client *c = harness_client(&broker, "lib", true);
    int sndbuf = 0;
    socklen_t len = sizeof(sndbuf);
    cr_assert_eq(getsockopt(sb_fd(c), SOL_SOCKET, SO_SNDBUF, &sndbuf, &len), 0);
    cr_assert_eq(sndbuf, want, "SO_SNDBUF %d, expected %ld", sndbuf, want);
    sb_close(c);
    finish();
}

/* ---- unix_send_buffer above net.core.wmem_max ------------------------------ */

#define SNDBUF_MAX      (64L * 1024 * 1024) /* BROKER_UNIX_SEND_BUFFER_MAX */
#define SNDBUF_CAPPED   "warning: unix_send_buffer is "
#define SNDBUF_LOG_SIZE (64 * 1024)

/* How many times `needle` is in `haystack`. */
static int count_of(const char *haystack, const char *needle)
{
    int n = 0;
    for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle)) {
        n++;
    }
    return n;
}

/* Two clients connect and are welcomed: the broker has set the send
 * buffer of both (at accept, before it read their HELLO), and logged what
 * it logs about it. The broker's log into log[SNDBUF_LOG_SIZE]. */
static void two_clients_then_log(char *log)
{
    sb_client *a = harness_client(&broker, "sndbuf-a", true);
    sb_client *b = harness_client(&broker, "sndbuf-b", true);
    cr_assert_eq(sb_flush(a, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_flush(b, HARNESS_IO_MS), 0);
    sb_close(a);
    sb_close(b);
    harness_read_log(&broker, log, SNDBUF_LOG_SIZE);
}

/* A unix_send_buffer above net.core.wmem_max, within the setting's range:
 * twice the cap, at most 64 MiB; 0 if the cap is at the top already. */
static long sndbuf_above_cap(long cap)
{
    if (cap >= SNDBUF_MAX) {
        return 0;
    }
    long v = 2 * cap < SNDBUF_MAX ? 2 * cap : SNDBUF_MAX;
    return v < 4096 ? 4096 : v;
}

/* The line for `asked` names the setting, what the kernel granted (the
 * cap), the cap's name and the sysctl that would grant it. */
static void assert_capped_line(const char *log, long asked, long cap)
{
    char want[160];
    snprintf(want, sizeof(want),
             SNDBUF_CAPPED "%ld bytes, but the kernel grants Unix connections "
                           "only %ld (its cap, net.core.wmem_max)",
             asked, cap);
    cr_assert_not_null(strstr(log, want), "no \"%s\" in the log:\n%s", want, log);
    snprintf(want, sizeof(want), "sysctl -w net.core.wmem_max=%ld", asked);
    cr_assert_not_null(strstr(log, want), "no \"%s\" in the log:\n%s", want, log);
}

/* The kernel caps SO_SNDBUF at net.core.wmem_max without a word: the
 * broker says so, once, however many clients connect. */
Test(limits, unix_send_buffer_above_wmem_max_is_logged_once)
{
    long cap = wmem_max();
    long asked = sndbuf_above_cap(cap);
    if (asked == 0) {
        cr_skip_test("net.core.wmem_max is %ld, at or above the largest unix_send_buffer "
                     "(64 MiB): the kernel grants every value, there is no cap to see",
                     cap);
    }
    char value[32];
    snprintf(value, sizeof(value), "%ld", asked);
    start_with(VIA_FLAG, "--unix-send-buffer", "unix_send_buffer", value, NULL);
    static char log[SNDBUF_LOG_SIZE];
    two_clients_then_log(log);
    two_clients_then_log(log);
    cr_assert_eq(count_of(log, SNDBUF_CAPPED), 1, "not one line about the cap:\n%s", log);
    assert_capped_line(log, asked, cap);
    finish();
}

/* A send buffer the kernel grants in full: nothing to say. */
Test(limits, unix_send_buffer_within_wmem_max_is_not_logged)
{
    long cap = wmem_max();
    long asked = cap < 65536 ? cap : 65536;
    if (asked < 4096) {
        cr_skip_test("net.core.wmem_max is %ld, below the smallest unix_send_buffer (4096)", cap);
    }
    char value[32];
    snprintf(value, sizeof(value), "%ld", asked);
    start_with(VIA_CONFIG, "--unix-send-buffer", "unix_send_buffer", value, NULL);
    static char log[SNDBUF_LOG_SIZE];
    two_clients_then_log(log);
    cr_assert_null(strstr(log, SNDBUF_CAPPED), "a line about the cap for %ld:\n%s", asked, log);
    cr_assert_null(strstr(log, "wmem_max"), "a line about the cap for %ld:\n%s", asked, log);
    finish();
}

/* Rewrite the config file as a deployment would (beside it, renamed) and
 * have the broker reload it: the `nth` reload is logged once it is done. */
static void reload_sndbuf(long value, int nth)
{
    char json[64];
    char tmp[80];
    snprintf(json, sizeof(json), "{\"unix_send_buffer\": %ld}", value);
    snprintf(tmp, sizeof(tmp), "%s.new", config_path);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f);
    cr_assert(fputs(json, f) >= 0);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(rename(tmp, config_path), 0);
    cr_assert_eq(kill(broker.pid, SIGHUP), 0);
    char log[SNDBUF_LOG_SIZE];
    int64_t until = harness_now_ms() + HARNESS_IO_MS;
    for (;;) {
        harness_read_log(&broker, log, sizeof(log));
        if (count_of(log, "SIGHUP: config ") >= nth) {
            break;
        }
        cr_assert_lt(harness_now_ms(), until, "reload %d was not logged:\n%s", nth, log);
        struct pollfd none = {.fd = -1};
        poll(&none, 0, 10);
    }
}

/* A reload to another value above the cap says so again, for that value;
 * back to the first value, not again. */
Test(limits, unix_send_buffer_reloaded_above_wmem_max_is_logged_once_per_value)
{
    long cap = wmem_max();
    long first = sndbuf_above_cap(cap);
    if (first == 0 || first - cap < 2) {
        cr_skip_test("net.core.wmem_max is %ld: no two values of unix_send_buffer above it", cap);
    }
    long second = cap + (first - cap) / 2;
    char value[32];
    snprintf(value, sizeof(value), "%ld", first);
    start_with(VIA_CONFIG, "--unix-send-buffer", "unix_send_buffer", value, NULL);
    static char log[SNDBUF_LOG_SIZE];
    two_clients_then_log(log);
    cr_assert_eq(count_of(log, SNDBUF_CAPPED), 1, "not one line about the cap:\n%s", log);

    reload_sndbuf(second, 1);
    two_clients_then_log(log);
    cr_assert_eq(count_of(log, SNDBUF_CAPPED), 2, "not a second line about the cap:\n%s", log);
    assert_capped_line(log, second, cap);

    reload_sndbuf(first, 2);
    two_clients_then_log(log);
    cr_assert_eq(count_of(log, SNDBUF_CAPPED), 2, "the first value again logged again:\n%s", log);
    finish();
}

/* ---- max_subscription_bytes ----------------------------------------------- */

/* `subscription_bytes` of client `id` in $SYS.CLIENTS, asked by `asker`. */
static long long subscription_bytes(sb_client *asker, uint64_t id)
{
    sb_msg reply;
    int r = sb_request(asker, "$SYS.CLIENTS", NULL, 0, &reply, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "$SYS.CLIENTS: %s", sb_strerror(r));
    json_tokener *tok = json_tokener_new();
    json_object *page = json_tokener_parse_ex(tok, reply.payload, (int)reply.payload_len);
    json_tokener_free(tok);
    json_object *list = NULL;
    cr_assert(json_object_is_type(page, json_type_object) &&
                  json_object_object_get_ex(page, "clients", &list) &&
                  json_object_is_type(list, json_type_array),
              "$SYS.CLIENTS: not a page of clients");
    long long bytes = -1;
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *c = json_object_array_get_idx(list, i);
        json_object *v;
        if (json_object_object_get_ex(c, "id", &v) && (uint64_t)json_object_get_int64(v) == id) {
            cr_assert(json_object_object_get_ex(c, "subscription_bytes", &v),
                      "no subscription_bytes in a client object");
            bytes = json_object_get_int64(v);
        }
    }
    json_object_put(page);
    cr_assert_geq(bytes, 0, "client %llu not in $SYS.CLIENTS", (unsigned long long)id);
    return bytes;
}

static void check_max_subscription_bytes(enum via via)
{
    start_with(via, "--max-subscription-bytes", "max_subscription_bytes", "5000", NULL);
    sb_client *c = harness_client(&broker, "subs", true);
    sb_client *asker = harness_client(&broker, "asker", true);
    uint64_t id = sb_client_id(c);
    cr_assert_eq(subscription_bytes(asker, id), 0);

    /* Subscriptions of one shape cost the same: count how many fit. */
    uint32_t sids[64];
    char pattern[32];
    int n = 0;
    int r = 0;
    long long each = 0;
    for (; n < 64; n++) {
        snprintf(pattern, sizeof(pattern), "msb.%02d.x", n);
        cr_assert_eq(sb_subscribe(c, pattern, NULL, &sids[n]), 0);
        r = sb_flush(c, HARNESS_IO_MS);
        if (r != 0) {
            break;
        }
        if (n == 0) {
            each = subscription_bytes(asker, id);
        }
    }
    cr_assert_eq(r, SB_E_LIMIT, "SUB %d: %s", n, sb_strerror(r));
    cr_assert(strstr(sb_last_error(c), "max_subscription_bytes (5000)") != NULL, "ERR text: %s",
              sb_last_error(c));
    cr_assert(strstr(sb_last_error(c), "cannot subscribe to 'msb.") != NULL, "ERR text: %s",
              sb_last_error(c));
    /* Charged in real heap bytes: a few hundred per small subscription,
     * far more than its 9 bytes of pattern. */
    fprintf(stderr, "limits: a subscription to '%s' is charged %lld bytes; %d fit in 5000\n",
            "msb.NN.x", each, n);
    cr_assert(each > 100 && each < 2000, "charged %lld", each);
    cr_assert_eq(n, 5000 / each, "%d fit at %lld each", n, each);
    cr_assert_eq(subscription_bytes(asker, id), n * each);

    /* Not fatal, and refunded exactly on UNSUB: room for one again. */
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_unsubscribe(c, sids[0], 0), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    cr_assert_eq(subscription_bytes(asker, id), (n - 1) * each);
    cr_assert_eq(sb_subscribe(c, "msb.99.x", NULL, NULL), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    cr_assert_eq(subscription_bytes(asker, id), n * each);
    for (int i = 1; i < n; i++) {
        cr_assert_eq(sb_unsubscribe(c, sids[i], 0), 0);
    }
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    cr_assert_eq(subscription_bytes(asker, id), each, "only msb.99.x left");
    sb_close(asker);
    sb_close(c);
    finish();
}

Test(limits, max_subscription_bytes_by_flag)
{
    check_max_subscription_bytes(VIA_FLAG);
}

Test(limits, max_subscription_bytes_by_config)
{
    check_max_subscription_bytes(VIA_CONFIG);
}

/* ---- the config file ------------------------------------------------------ */

/* Run the broker with a config file holding `json`; expect it to exit 2
 * with exactly one line on stderr that names the file and contains each
 * of `want` (NULL-terminated). */
static void expect_config_error(const char *json, const char *const *want)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    char path[160];
    snprintf(path, sizeof(path), "%s/broker.json", broker.dir);
    if (json != NULL) {
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs(json, f);
        fclose(f);
    }
    const char *const args[] = {"--socket", broker.socket, "--config", path, NULL};
    int status = harness_run_broker(&broker, args, HARNESS_IO_MS);
    char log[2048];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert_eq(status, 2, "exit %d for %s; log: %s", status, json ? json : "(no file)", log);
    char *nl = strchr(log, '\n');
    cr_assert(nl != NULL && nl[1] == '\0', "expected exactly one line, got: %s", log);
    cr_assert(strstr(log, path) != NULL, "the line does not name %s: %s", path, log);
    for (size_t i = 0; want[i] != NULL; i++) {
        cr_assert(strstr(log, want[i]) != NULL, "expected \"%s\" in: %s", want[i], log);
    }
    struct stat st;
    cr_assert(stat(broker.socket, &st) < 0, "a broker that failed left its socket behind");
    harness_cleanup(&broker);
}

Test(limits, config_unknown_key_is_named)
{
    const char *const want[] = {"unknown key \"max_frams\"", "known keys: socket,", NULL};
    expect_config_error("{\"max_frame\": 8192, \"max_frams\": 8192}", want);
}

Test(limits, config_wrong_type_is_named)
{
    const char *const want[] = {"\"max_connections\" must be an integer", "not a string", NULL};
    expect_config_error("{\"max_connections\": \"10\"}", want);
    const char *const want2[] = {"\"mode\" must be octal", NULL};
    expect_config_error("{\"mode\": true}", want2);
    const char *const want3[] = {"\"acl\" must be an array", NULL};
    expect_config_error("{\"acl\": {\"uid\": 0}}", want3);
}

Test(limits, config_out_of_range_is_named)
{
    const char *const want[] = {"\"max_frame\" must be an integer from 4096", "not 100", NULL};
    expect_config_error("{\"max_frame\": 100}", want);
    const char *const want2[] = {"\"max_subscriptions\"", "not -1", NULL};
    expect_config_error("{\"max_subscriptions\": -1}", want2);
    const char *const want3[] = {"\"max_connections\"", "not 0", NULL};
    expect_config_error("{\"max_connections\": 0}", want3);
}

/* ---- sizes with units ------------------------------------------------------ */

/* A size may be written with a unit, on the command line and in the
 * file; WELCOME says what the broker took. */
Test(limits, sizes_take_units_by_flag)
{
    start_with(VIA_FLAG, "--max-frame", NULL, "16k", NULL);
    sb_client *c = harness_client(&broker, "units", true);
    cr_assert_eq(sb_max_frame(c), 16384u, "WELCOME announced %u", sb_max_frame(c));
    sb_close(c);
    finish();
}

Test(limits, sizes_take_units_by_config)
{
    start_with(VIA_CONFIG, NULL, "max_frame", "\"32KiB\"", NULL);
    sb_client *c = harness_client(&broker, "units", true);
    cr_assert_eq(sb_max_frame(c), 32768u, "WELCOME announced %u", sb_max_frame(c));
    sb_close(c);
    finish();
}

/* Run the broker with `args` after its --socket; expect it to exit 2 with
 * exactly one line on stderr that contains each of `want`. */
static void expect_flag_error(const char *const *args, const char *const *want)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    const char *argv[8] = {"--socket", broker.socket};
    size_t n = 2;
    for (size_t i = 0; args[i] != NULL && n < 7; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    int status = harness_run_broker(&broker, argv, HARNESS_IO_MS);
    char log[2048];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert_eq(status, 2, "exit %d; log: %s", status, log);
    char *nl = strchr(log, '\n');
    cr_assert(nl != NULL && nl[1] == '\0', "expected exactly one line, got: %s", log);
    for (size_t i = 0; want[i] != NULL; i++) {
        cr_assert(strstr(log, want[i]) != NULL, "expected \"%s\" in: %s", want[i], log);
    }
    harness_cleanup(&broker);
}

Test(limits, a_size_that_is_not_one_is_named_with_the_units_to_use)
{
    const char *const args[] = {"--max-pending", "16q", NULL};
    const char *const want[] = {"--max-pending '16q'", "k, m or g for KiB, MiB or GiB", NULL};
    expect_flag_error(args, want);
    /* In range only: 1 GiB is more than a frame may be. */
    const char *const args2[] = {"--max-frame", "1g", NULL};
    const char *const want2[] = {"--max-frame '1g'", "from 4096 to 268435456 bytes", NULL};
    expect_flag_error(args2, want2);
    const char *const want3[] = {"\"max_pending\" must be a size", "\"8m\"", "not \"16x\"", NULL};
    expect_config_error("{\"max_pending\": \"16x\"}", want3);
    /* A count is not a size: no units there. */
    const char *const want4[] = {"\"max_connections\" must be an integer", NULL};
    expect_config_error("{\"max_connections\": \"16k\"}", want4);
}

Test(limits, config_invalid_json_is_reported)
{
    const char *const want[] = {"invalid JSON at line 3", NULL};
    expect_config_error("{\n  \"max_frame\": 8192,\n  \"max_pending\" 1\n}\n", want);
    const char *const want2[] = {"invalid JSON", "unexpected end of file", NULL};
    expect_config_error("{\"max_frame\": 8192", want2);
    const char *const want3[] = {"expected a JSON object", NULL};
    expect_config_error("[1, 2]", want3);
}

Test(limits, config_missing_file_is_reported)
{
    const char *const want[] = {"cannot open it: No such file or directory", NULL};
    expect_config_error(NULL, want);
}

Test(limits, flags_override_the_config_file)
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"socket\": \"/nonexistent/elsewhere.sock\", \"max_frame\": 8192, "
             "\"max_subscriptions\": 2, \"mode\": \"0660\", \"log\": \"quiet\"}");
    const char *const args[] = {"--config", write_config(json), "--max-frame", "16384", "-v", NULL};
    /* --socket (from the harness) wins over "socket". */
    int r = harness_start(&broker, false, args);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    sb_client *c = harness_client(&broker, "over", true);
    cr_assert_eq(sb_max_frame(c), 16384u, "the flag must win over the file");
    /* What the flags do not set comes from the file. */
    cr_assert_eq(sb_subscribe(c, "a", NULL, NULL), 0);
    cr_assert_eq(sb_subscribe(c, "b", NULL, NULL), 0);
    cr_assert_eq(sb_subscribe(c, "c", NULL, NULL), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), SB_E_LIMIT);
    struct stat st;
    cr_assert_eq(stat(broker.socket, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0660, "mode %o", st.st_mode & 0777);
    sb_close(c);
    /* -v beat "log": "quiet". */
    char log[8192];
    int64_t deadline = harness_now_ms() + HARNESS_IO_MS;
    do {
        harness_read_log(&broker, log, sizeof(log));
    } while (strstr(log, "disconnected") == NULL && harness_now_ms() < deadline);
    cr_assert(strstr(log, "connected") != NULL, "no verbose lines in: %s", log);
    finish();
}

/* ---- file descriptors ----------------------------------------------------- */

/* Start sockbusd with RLIMIT_NOFILE soft/hard set before exec, like a
 * service manager would. */
static void start_with_nofile(rlim_t soft, rlim_t hard, const char *const *extra)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    const char *argv[16];
    size_t n = 0;
    argv[n++] = getenv("SOCKBUSD");
    cr_assert_not_null(argv[0], "SOCKBUSD is not set: run the tests with meson test");
    argv[n++] = "--socket";
    argv[n++] = broker.socket;
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {.rlim_cur = soft, .rlim_max = hard};
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            _exit(126);
        }
        int fd = open(broker.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    broker.pid = pid;
    /* Ready when the socket accepts a connection (bounded). */
    int64_t deadline = harness_now_ms() + HARNESS_READY_MS;
    for (;;) {
        int status;
        cr_assert_neq(waitpid(pid, &status, WNOHANG), pid, "sockbusd exited at start");
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", broker.socket);
        bool ok = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
        close(fd);
        if (ok) {
            /* Its start-up warnings come before this line. */
            cr_assert(harness_wait_logged(&broker, "listening on"),
                      "sockbusd never logged 'listening on'");
            return;
        }
        cr_assert_lt(harness_now_ms(), deadline, "sockbusd did not become ready");
        poll(NULL, 0, 5);
    }
}

/* The broker's soft RLIMIT_NOFILE, from /proc. */
static long broker_nofile_soft(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/limits", (int)broker.pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[256];
    long soft = -1;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "Max open files %ld", &soft) == 1) {
            break;
        }
    }
    fclose(f);
    return soft;
}

/* The soft limit is raised to max_connections + max_unwelcomed + max_fds
 * + 64: the descriptors of the welcomed clients, of those waiting for their
 * HELLO, of the messages in flight, and the broker's own. */
static void check_nofile_raised(const char *const *extra, long want)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)want) {
        cr_skip_test("the hard RLIMIT_NOFILE (%llu) is too low for this test",
                     (unsigned long long)rl.rlim_max);
    }
    start_with_nofile(256, rl.rlim_max, extra);
    cr_assert_eq(broker_nofile_soft(), want);
    char log[4096];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert(strstr(log, "RLIMIT_NOFILE") == NULL, "unexpected warning: %s", log);
    finish();
}

Test(limits, nofile_soft_limit_is_raised_for_max_connections)
{
    /* max_unwelcomed defaults to a quarter of max_connections. */
    const char *const extra[] = {"--max-connections", "1000", NULL};
    check_nofile_raised(extra, 1000 + 250 + 4096 + 64);
}

Test(limits, nofile_soft_limit_is_raised_for_max_unwelcomed)
{
    const char *const extra[] = {
        "--max-connections", "1000", "--max-unwelcomed", "700", "--max-fds", "100", NULL};
    check_nofile_raised(extra, 1000 + 700 + 100 + 64);
}

Test(limits, nofile_hard_limit_too_low_is_said_once)
{
    start_with_nofile(64, 64, NULL);
    cr_assert_eq(broker_nofile_soft(), 64);
    char log[4096];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert_eq(count_of(log, "RLIMIT_NOFILE allows 64 descriptors"), 1, "log: %s", log);
    cr_assert(strstr(log, "max_connections is 4096 and max_unwelcomed 1024") != NULL, "log: %s",
              log);
    finish();
}

/* Connect, send HELLO and read the first frame: 1 for WELCOME, 0 for
 * ERR 5 (then the broker closes), -1 for anything else. *fd_out keeps the
 * socket. */
static int hello_outcome(int *fd_out)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0, "the test ran out of descriptors: %s", strerror(errno));
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", broker.socket);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0, "connect: %s",
                 strerror(errno));
    static const char json[] = "{\"protocol\":1}";
    uint8_t hello[64];
    size_t n = frame_encode(hello, FRAME_OP_HELLO, 0, 0, NULL, 0, NULL, 0, NULL, 0, json,
                            sizeof(json) - 1);
    /* A refused client may be closed before its HELLO is sent (EPIPE); its
     * ERR is still there to read. */
    ssize_t w = send(fd, hello, n, MSG_NOSIGNAL);
    cr_assert(w == (ssize_t)n || (w < 0 && errno == EPIPE), "send HELLO: %s", strerror(errno));
    *fd_out = fd;
    uint8_t hdr[FRAME_HEADER_SIZE];
    long size = harness_read_frame(fd, hdr, body, sizeof(body), HARNESS_IO_MS);
    if (size > 0 && hdr[4] == FRAME_OP_WELCOME) {
        return 1;
    }
    if (size > 0 && hdr[4] == FRAME_OP_ERR && frame_get_u32(hdr + 12) == FRAME_ERR_LIMIT) {
        return 0;
    }
    return -1;
}

Test(limits, emfile_at_accept_refuses_with_err_5_logs_once_and_recovers)
{
    start_with_nofile(64, 64, NULL);
    enum { ATTEMPTS = 150 };
    int fds[ATTEMPTS];
    bool in[ATTEMPTS];
    int welcomed = 0;
    int refused = 0;
    for (int i = 0; i < ATTEMPTS; i++) {
        int r = hello_outcome(&fds[i]);
        cr_assert_geq(r, 0, "attempt %d: neither WELCOME nor ERR 5", i);
        in[i] = r == 1;
        if (r == 1) {
            welcomed++;
        } else {
            refused++;
        }
    }
    fprintf(stderr, "limits: RLIMIT_NOFILE 64: %d clients in, %d refused with ERR 5\n", welcomed,
            refused);
    cr_assert_gt(welcomed, 20, "only %d clients fit in 64 descriptors", welcomed);
    cr_assert_gt(refused, 50, "only %d refused", refused);

    /* The library reports the refusal as a limit. */
    sb_client *c = NULL;
    sb_options o = {.endpoint = broker.socket, .name = "late"};
    int r = sb_connect(&c, &o);
    cr_assert_eq(r, SB_E_LIMIT, "sb_connect: %s", sb_strerror(r));

    /* The clients that got in are served as before. */
    int served = 0;
    for (int i = 0; i < ATTEMPTS; i++) {
        if (in[i]) {
            expect_pong(fds[i], 7);
            served++;
        } else {
            cr_assert(harness_wait_eof(fds[i], HARNESS_IO_MS), "a refused client stays open");
        }
    }
    cr_assert_eq(served, welcomed);

    /* Logged once, not once per refused client. */
    char log[16384];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert_eq(count_of(log, "Too many open files"), 1, "log: %s", log);
    cr_assert(strstr(log, "refusing new clients with ERR 5") != NULL, "log: %s", log);
    fprintf(stderr, "limits: broker log:\n%s", log);

    /* Descriptors free up: a new client gets in (bounded retries while the
     * broker notices the closes). */
    for (int i = 0; i < ATTEMPTS; i++) {
        close(fds[i]);
    }
    int64_t deadline = harness_now_ms() + HARNESS_IO_MS;
    do {
        r = sb_connect(&c, &o);
    } while (r == SB_E_LIMIT && harness_now_ms() < deadline);
    cr_assert_eq(r, 0, "after the others closed: %s", sb_strerror(r));
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    sb_close(c);
    finish();
}
