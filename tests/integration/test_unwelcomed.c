/*
 * test_unwelcomed.c - connections that have not said HELLO (protocol.md,
 * "Handshake"): idle sockets, over Unix and TCP, must not lock real
 * clients out. They count against max_unwelcomed, not max_connections;
 * the one over max_unwelcomed gets ERR 5 at once; each gets ERR 8 when
 * hello_timeout_ms has passed; $SYS.STATS counts them as `unwelcomed`;
 * max_connections bounds the clients past HELLO, and is applied at HELLO.
 *
 * "Idle" comes in two kinds: a socket that sends nothing, and one that
 * sends the first byte of a frame header and stops. Waits are bounded: a
 * count in $SYS.STATS is polled until it is what it must be, and an ERR is
 * read with a timeout of HARNESS_IO_MS, far beyond the 300 ms timeout the
 * broker is given.
 */
#include "harness.h"

#include "frame.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The HELLO timeout given to the broker where a test waits it out. */
#define HELLO_TIMEOUT_MS "300"

/* Idle connections per kind (Unix or TCP, silent or one byte). */
#define IDLE_PER_KIND 16
#define IDLE_TOTAL    (4 * IDLE_PER_KIND)

static struct harness_broker broker;
static char config_path[64];
static int idle[IDLE_TOTAL + 8];
static size_t nidle;

static void teardown(void)
{
    for (size_t i = 0; i < nidle; i++) {
        close(idle[i]);
    }
    nidle = 0;
    harness_cleanup(&broker);
    if (config_path[0] != '\0') {
        unlink(config_path);
        config_path[0] = '\0';
    }
}

TestSuite(unwelcomed, .fini = teardown, .timeout = 120);

static void finish(void)
{
    for (size_t i = 0; i < nidle; i++) {
        close(idle[i]);
    }
    nidle = 0;
    harness_stop(&broker);
    teardown();
}

static void start(const char *const *args)
{
    int r = harness_start(&broker, true, args);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
}

/* ---- idle sockets ------------------------------------------------------- */

static int unix_connect(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", broker.socket);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0, "connect %s: %s",
                 broker.socket, strerror(errno));
    return fd;
}

static int tcp_connect(void)
{
    const char *port = strrchr(broker.tcp, ':');
    cr_assert_not_null(port, "no TCP endpoint: '%s'", broker.tcp);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port + 1))};
    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&in, sizeof(in)), 0, "connect %s: %s", broker.tcp,
                 strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* An idle connection: silent, or the first byte of a header and no more. */
static int open_idle(bool tcp, bool one_byte)
{
    int fd = tcp ? tcp_connect() : unix_connect();
    if (one_byte) {
        uint8_t byte = 64; /* the low byte of a plausible size */
        harness_write(fd, &byte, 1);
    }
    cr_assert_lt(nidle, sizeof(idle) / sizeof(idle[0]));
    idle[nidle++] = fd;
    return fd;
}

/* IDLE_PER_KIND of each kind: Unix and TCP, silent and one byte. */
static void open_idle_mix(void)
{
    for (int i = 0; i < IDLE_PER_KIND; i++) {
        open_idle(false, false);
        open_idle(false, true);
        open_idle(true, false);
        open_idle(true, true);
    }
}

/* The next frame on fd is ERR `code`, followed by EOF. Returns nothing;
 * writes the ERR text into text (NUL terminated) if given. */
static void expect_err_then_eof(int fd, uint32_t code, char *text, size_t text_len)
{
    uint8_t hdr[FRAME_HEADER_SIZE];
    uint8_t body[1024];
    long size = harness_read_frame(fd, hdr, body, sizeof(body), HARNESS_IO_MS);
    cr_assert(size > 0, "got %s instead of ERR %u", size == 0 ? "EOF" : "nothing", code);
    cr_assert_eq(hdr[4], FRAME_OP_ERR, "got %s, expected ERR %u", frame_op_name(hdr[4]), code);
    cr_assert_eq(frame_get_u32(hdr + 12), code, "got ERR %u, expected ERR %u",
                 frame_get_u32(hdr + 12), code);
    if (text != NULL) {
        size_t n = (size_t)size - FRAME_HEADER_SIZE - frame_get_u16(hdr + 6);
        n = n < text_len - 1 ? n : text_len - 1;
        memcpy(text, body + frame_get_u16(hdr + 6), n);
        text[n] = '\0';
    }
    cr_assert(harness_wait_eof(fd, HARNESS_IO_MS), "no EOF after ERR %u", code);
}

/* ---- $SYS.STATS --------------------------------------------------------- */

static int64_t stats_field(sb_client *c, const char *key)
{
    sb_msg reply;
    int r = sb_request(c, "$SYS.STATS", NULL, 0, &reply, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "$SYS.STATS: %s", sb_strerror(r));
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, reply.payload, (int)reply.payload_len);
    json_tokener_free(tok);
    cr_assert_not_null(o, "$SYS.STATS answered invalid JSON");
    json_object *v;
    cr_assert(json_object_object_get_ex(o, key, &v), "$SYS.STATS has no \"%s\": %.*s", key,
              (int)reply.payload_len, (const char *)reply.payload);
    int64_t n = json_object_get_int64(v);
    json_object_put(o);
    return n;
}

/* Poll $SYS.STATS until `key` is `want` (the broker accepts what waits in
 * its backlogs over a few loop iterations); asserts it gets there. */
static void expect_stat(sb_client *c, const char *key, int64_t want)
{
    int64_t deadline = harness_now_ms() + HARNESS_IO_MS;
    int64_t n = stats_field(c, key);
    while (n != want && harness_now_ms() < deadline) {
        poll(NULL, 0, 10);
        n = stats_field(c, key);
    }
    cr_assert_eq(n, want, "$SYS.STATS %s is %lld, expected %lld", key, (long long)n,
                 (long long)want);
}

static sb_client *client_at(const char *endpoint, const char *name)
{
    sb_client *c = NULL;
    sb_options o = {.endpoint = endpoint, .name = name};
    int r = sb_connect(&c, &o);
    cr_assert_eq(r, 0, "sb_connect(%s) as %s: %s", endpoint, name, sb_strerror(r));
    return c;
}

/* A round trip from `pub` to `sub` on a fresh subject. */
static void assert_round_trip(sb_client *sub, sb_client *pub, const char *subject)
{
    cr_assert_eq(sb_subscribe(sub, subject, NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_publish(pub, subject, NULL, "hi", 2), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    sb_msg m = harness_expect_msg(sub);
    cr_assert_eq(m.payload_len, 2);
}

static size_t count_of(const char *haystack, const char *needle)
{
    size_t n = 0;
    for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle)) {
        n++;
    }
    return n;
}

/* ---- tests -------------------------------------------------------------- */

Test(unwelcomed, idle_sockets_do_not_lock_out_clients)
{
    /* A long HELLO timeout: here the idle sockets stay for the whole test. */
    const char *const args[] = {
        "--max-connections", "4", "--max-unwelcomed", "100", "--hello-timeout-ms", "600000", NULL};
    start(args);
    /* The watcher is the first welcomed client; then the idle sockets. */
    sb_client *watcher = client_at(broker.socket, "watcher");
    open_idle_mix();
    expect_stat(watcher, "unwelcomed", IDLE_TOTAL);
    cr_assert_eq(stats_field(watcher, "connections"), 1);

    /* Real clients, over both transports, still get in and work: the 64
     * idle sockets do not count against max_connections (4). */
    sb_client *sub = client_at(broker.socket, "sub");
    sb_client *pub = client_at(broker.tcp, "pub");
    assert_round_trip(sub, pub, "idle.check");
    sb_client *fourth = client_at(broker.tcp, "fourth");
    assert_round_trip(fourth, sub, "idle.fourth");
    cr_assert_eq(stats_field(watcher, "connections"), 4);
    cr_assert_eq(stats_field(watcher, "unwelcomed"), IDLE_TOTAL);

    /* max_connections bounds the clients past HELLO, and is applied at
     * HELLO: a fifth is refused with ERR 5, on either transport. */
    const char *const endpoints[] = {broker.socket, broker.tcp};
    for (size_t i = 0; i < 2; i++) {
        sb_client *fifth = NULL;
        sb_options o = {.endpoint = endpoints[i], .name = "fifth"};
        int r = sb_connect(&fifth, &o);
        cr_assert_eq(r, SB_E_LIMIT, "a fifth client over %s: %s, expected SB_E_LIMIT", endpoints[i],
                     sb_strerror(r));
    }
    int raw = unix_connect();
    static const char json[] = "{\"protocol\":1}";
    uint8_t hello[64];
    size_t n = frame_encode(hello, FRAME_OP_HELLO, 0, 0, NULL, 0, NULL, 0, NULL, 0, json,
                            sizeof(json) - 1);
    harness_write(raw, hello, n);
    char text[256];
    expect_err_then_eof(raw, FRAME_ERR_LIMIT, text, sizeof(text));
    cr_assert_not_null(strstr(text, "max_connections (4) reached"), "ERR text: %s", text);
    close(raw);

    /* A client that leaves makes room for the next one (once the broker
     * has seen it go: bounded retries). */
    sb_close(fourth);
    sb_client *again = NULL;
    sb_options o = {.endpoint = broker.socket, .name = "again"};
    int64_t deadline = harness_now_ms() + HARNESS_IO_MS;
    int r;
    do {
        r = sb_connect(&again, &o);
    } while (r == SB_E_LIMIT && harness_now_ms() < deadline);
    cr_assert_eq(r, 0, "after a client left: %s", sb_strerror(r));
    assert_round_trip(again, pub, "idle.again");
    cr_assert_eq(stats_field(watcher, "unwelcomed"), IDLE_TOTAL);

    sb_close(again);
    sb_close(pub);
    sb_close(sub);
    sb_close(watcher);
    finish();
}

Test(unwelcomed, idle_sockets_get_err_8_after_the_hello_timeout)
{
    const char *const args[] = {"-v",
                                "--max-connections",
                                "4",
                                "--max-unwelcomed",
                                "100",
                                "--hello-timeout-ms",
                                HELLO_TIMEOUT_MS,
                                NULL};
    start(args);
    sb_client *watcher = client_at(broker.socket, "watcher");
    open_idle_mix();

    /* Every idle socket, silent or mid-header, Unix or TCP, is told ERR 8
     * and closed: within HARNESS_IO_MS, against a timeout of 300 ms. */
    for (size_t i = 0; i < nidle; i++) {
        char text[256];
        expect_err_then_eof(idle[i], FRAME_ERR_HELLO_REQUIRED, text, sizeof(text));
        cr_assert_not_null(strstr(text, "no HELLO within"), "idle %zu: ERR text: %s", i, text);
    }
    cr_assert_eq(stats_field(watcher, "unwelcomed"), 0);

    /* The welcomed client, there all along, is not touched by the HELLO
     * timeout (it hears its own publish: echo is on). */
    assert_round_trip(watcher, watcher, "idle.after");
    cr_assert_eq(stats_field(watcher, "connections"), 1);

    /* -v shows them: accepted, and timed out. */
    static char log[256 * 1024];
    cr_assert(harness_wait_logged(&broker, "no HELLO within"));
    harness_read_log(&broker, log, sizeof(log));
    cr_assert_geq(count_of(log, "accepted: unix"), 2 * IDLE_PER_KIND, "log:\n%s", log);
    cr_assert_geq(count_of(log, "accepted: tcp 127.0.0.1:"), 2 * IDLE_PER_KIND, "log:\n%s", log);
    cr_assert_eq(count_of(log, "no HELLO within hello_timeout_ms (300 ms)"), IDLE_TOTAL, "log:\n%s",
                 log);
    sb_close(watcher);
    finish();
}

/* How max_unwelcomed is set: by flag, or by the config file. */
enum via { VIA_FLAG, VIA_CONFIG };

static void check_max_unwelcomed(enum via via)
{
    const char *args[8];
    size_t n = 0;
    if (via == VIA_FLAG) {
        args[n++] = "--max-unwelcomed";
        args[n++] = "8";
        args[n++] = "--hello-timeout-ms";
        args[n++] = "600000";
    } else {
        snprintf(config_path, sizeof(config_path), "/tmp/sbtest-cfg-XXXXXX");
        int fd = mkstemp(config_path);
        cr_assert(fd >= 0);
        static const char json[] = "{\"max_unwelcomed\": 8, \"hello_timeout_ms\": 600000}";
        cr_assert_eq(write(fd, json, sizeof(json) - 1), (ssize_t)sizeof(json) - 1);
        close(fd);
        args[n++] = "--config";
        args[n++] = config_path;
    }
    args[n] = NULL;
    start(args);
    sb_client *watcher = client_at(broker.socket, "watcher");
    for (int i = 0; i < 8; i++) {
        open_idle(i % 2 == 0, i % 4 < 2);
    }
    expect_stat(watcher, "unwelcomed", 8);

    /* The ninth, on either transport, is refused at once. */
    for (int tcp = 0; tcp < 2; tcp++) {
        int fd = tcp ? tcp_connect() : unix_connect();
        char text[256];
        expect_err_then_eof(fd, FRAME_ERR_LIMIT, text, sizeof(text));
        cr_assert_str_eq(text, "too many connections waiting for HELLO; try again later");
        close(fd);
    }
    sb_client *late = NULL;
    sb_options o = {.endpoint = broker.socket, .name = "late"};
    cr_assert_eq(sb_connect(&late, &o), SB_E_LIMIT);
    cr_assert_eq(stats_field(watcher, "unwelcomed"), 8);

    /* One leaves: room for one more, and a real client gets in. */
    close(idle[--nidle]);
    expect_stat(watcher, "unwelcomed", 7);
    late = client_at(broker.socket, "late");
    assert_round_trip(watcher, late, "idle.late");
    sb_close(late);
    sb_close(watcher);
    finish();
}

Test(unwelcomed, max_unwelcomed_by_flag)
{
    check_max_unwelcomed(VIA_FLAG);
}

Test(unwelcomed, max_unwelcomed_by_config)
{
    check_max_unwelcomed(VIA_CONFIG);
}

Test(unwelcomed, help_names_the_new_limits)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "'%s' --help > '%s' 2>&1", getenv("SOCKBUSD"), broker.log);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    static char out[16384];
    harness_read_log(&broker, out, sizeof(out));
    cr_assert_not_null(strstr(out, "--max-unwelcomed N"), "%s", out);
    cr_assert_not_null(strstr(out, "--hello-timeout-ms MS"), "%s", out);
    cr_assert_not_null(strstr(out, "max_unwelcomed, hello_timeout_ms"), "%s", out);
    harness_cleanup(&broker);
}
