/*
 * test_protocol.c - the broker's side of the wire contract (DESIGN §4),
 * driven over raw sockets with frames built by hand.
 *
 * Every malformed input must earn its sender an ERR with the right code in
 * the sid field; fatal codes (1, 2, 8, 10) are followed by EOF, non-fatal
 * ones (3, 7) leave the connection answering PING with PONG. After each bad
 * case a separate, healthy library client completes a publish -> subscribe
 * round trip through the same broker: one bad client must never take the
 * broker down or block anybody else.
 *
 * Waiting is always bounded: frames are read with a timeout, EOF is awaited
 * with a timeout, and "nothing else arrived" is made exact by a PING/PONG
 * (or sb_flush) barrier rather than by sleeping.
 */
#include "harness.h"

#include "frame.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_MAX_FRAME 1114112u

/* Largest frame any test reads back (a MSG of max_frame bytes). */
#define READ_CAP (DEFAULT_MAX_FRAME + 64u)

static struct harness_broker broker;
/* A second broker some tests start with other options; stopped by
 * teardown() even when the test fails half way. */
static struct harness_broker other;

static void setup(void)
{
    int r = harness_start(&broker, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
}

/* End of every test body: stop the brokers, asserting that they exit 0
 * and that their logs hold no sanitizer report (harness_stop()). */
static void finish(void)
{
    if (other.dir[0] != '\0') {
        harness_stop(&other);
    }
    harness_stop(&broker);
}

/* A test that failed half way: clean up, asserting nothing. */
static void teardown(void)
{
    harness_cleanup(&other);
    harness_cleanup(&broker);
}

TestSuite(protocol, .init = setup, .fini = teardown, .timeout = 60);

/* ---- frames ------------------------------------------------------------- */

/* A frame read back from the broker. */
struct rframe {
    uint8_t hdr[FRAME_HEADER_SIZE];
    uint8_t *body; /* READ_CAP bytes */
    long size;
    uint8_t op;
    uint8_t flags;
    uint16_t subject_len;
    uint16_t reply_len;
    uint32_t sid;
    const uint8_t *subject;
    const uint8_t *payload;
    size_t payload_len;
};

static uint8_t read_body[READ_CAP];

static const char *op_name(uint8_t op)
{
    return frame_op_name(op);
}

/* Read the next frame or fail the test (EOF and timeout both fail). */
static struct rframe read_frame(int fd, const char *what)
{
    struct rframe f = {.body = read_body};
    f.size = harness_read_frame(fd, f.hdr, f.body, READ_CAP, HARNESS_IO_MS);
    cr_assert(f.size > 0, "expected %s, got %s", what, f.size == 0 ? "EOF" : "nothing in time");
    f.op = f.hdr[4];
    f.flags = f.hdr[5];
    f.subject_len = frame_get_u16(f.hdr + 6);
    f.reply_len = frame_get_u16(f.hdr + 8);
    uint16_t header_len = frame_get_u16(f.hdr + 10);
    f.sid = frame_get_u32(f.hdr + 12);
    f.subject = f.body;
    f.payload = f.body + f.subject_len + f.reply_len + header_len;
    f.payload_len = (size_t)f.size - FRAME_HEADER_SIZE - f.subject_len - f.reply_len - header_len;
    return f;
}

/* Text of an ERR frame, for failure messages. */
static const char *err_text(const struct rframe *f)
{
    static char text[512];
    size_t n = f->payload_len < sizeof(text) - 1 ? f->payload_len : sizeof(text) - 1;
    memcpy(text, f->payload, n);
    text[n] = '\0';
    return text;
}

/* A growable buffer of frames, so that several go out in one write. */
struct wbuf {
    uint8_t *data;
    size_t len;
};

static void wbuf_frame(struct wbuf *w, uint8_t op, uint8_t flags, uint32_t sid, const void *subject,
                       size_t subject_len, const void *reply, size_t reply_len, const void *payload,
                       size_t payload_len)
{
    size_t n = frame_encoded_size(subject_len, reply_len, 0, payload_len);
    w->data = realloc(w->data, w->len + n);
    cr_assert_not_null(w->data);
    w->len += frame_encode(w->data + w->len, op, flags, sid, subject, subject_len, reply, reply_len,
                           NULL, 0, payload, payload_len);
}

static void wbuf_send(int fd, struct wbuf *w)
{
    harness_write(fd, w->data, w->len);
    free(w->data);
    *w = (struct wbuf){0};
}

static void send_frame(int fd, uint8_t op, uint32_t sid, const char *subject, const char *reply,
                       const void *payload, size_t payload_len)
{
    struct wbuf w = {0};
    wbuf_frame(&w, op, 0, sid, subject, subject ? strlen(subject) : 0, reply,
               reply ? strlen(reply) : 0, payload, payload_len);
    wbuf_send(fd, &w);
}

static void send_hello(int fd, const char *json)
{
    send_frame(fd, FRAME_OP_HELLO, 0, NULL, NULL, json, strlen(json));
}

/* ---- expectations ------------------------------------------------------- */

/* The next frame is ERR `code`; if `subject` is not NULL, the ERR's
 * subject field is exactly those subject_len bytes. */
static void expect_err(int fd, uint32_t code, const void *subject, size_t subject_len)
{
    struct rframe f = read_frame(fd, "ERR");
    cr_assert_eq(f.op, FRAME_OP_ERR, "expected ERR %u, got %s (sid %u, subject '%.*s')", code,
                 op_name(f.op), f.sid, (int)f.subject_len, (const char *)f.subject);
    cr_assert_eq(f.sid, code, "expected ERR %u, got ERR %u: %s", code, f.sid, err_text(&f));
    cr_assert(f.payload_len > 0, "ERR %u carries no message", code);
    if (subject != NULL) {
        cr_assert_eq(f.subject_len, subject_len,
                     "ERR %u echoes a subject of %u bytes, the offending one has %zu", code,
                     f.subject_len, subject_len);
        cr_assert(memcmp(f.subject, subject, subject_len) == 0,
                  "ERR %u echoes '%.*s', not the offending subject", code, (int)f.subject_len,
                  (const char *)f.subject);
    }
}

/* A fatal error: ERR `code`, then the broker closes the connection. */
static void expect_fatal(int fd, uint32_t code)
{
    expect_err(fd, code, NULL, 0);
    cr_assert(harness_wait_eof(fd, HARNESS_IO_MS), "no EOF after fatal ERR %u", code);
}

/* The connection still works: a PING gets a PONG with the same token,
 * and nothing else comes first. */
static void expect_alive(int fd, uint32_t token)
{
    send_frame(fd, FRAME_OP_PING, token, NULL, NULL, NULL, 0);
    struct rframe f = read_frame(fd, "PONG");
    cr_assert_eq(f.op, FRAME_OP_PONG, "expected PONG %u, got %s (sid %u)", token, op_name(f.op),
                 f.sid);
    cr_assert_eq(f.sid, token, "PONG carries token %u, the PING had %u", f.sid, token);
}

static void expect_pong(int fd, uint32_t token)
{
    struct rframe f = read_frame(fd, "PONG");
    cr_assert_eq(f.op, FRAME_OP_PONG, "expected PONG %u, got %s (sid %u)", token, op_name(f.op),
                 f.sid);
    cr_assert_eq(f.sid, token);
}

/* A separate, healthy library client completes a publish -> subscribe
 * round trip through `b`: the broker is up and nobody blocks it. */
static void assert_serves(const struct harness_broker *b)
{
    sb_client *sub = harness_client(b, "healthy-sub", true);
    sb_client *pub = harness_client(b, "healthy-pub", true);
    uint32_t sid;
    cr_assert_eq(sb_subscribe(sub, "health.check", NULL, &sid), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0, "healthy subscriber: no PONG");
    cr_assert_eq(sb_publish(pub, "health.check", NULL, "ok", 2), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0, "healthy publisher: no PONG");
    sb_msg m;
    int r = sb_next_msg(sub, &m, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "healthy round trip failed: %s", sb_strerror(r));
    cr_assert_str_eq(m.subject, "health.check");
    cr_assert_eq(m.sid, sid);
    cr_assert_eq(m.payload_len, 2);
    cr_assert_eq(memcmp(m.payload, "ok", 2), 0);
    sb_close(pub);
    sb_close(sub);
}

static void assert_broker_serves(void)
{
    assert_serves(&broker);
}

/* Send `bytes` on a fresh connection (after HELLO if `hello`), expect the
 * fatal ERR `code` and EOF, then check the broker still serves others. */
static void fatal_case(bool hello, const void *bytes, size_t len, uint32_t code)
{
    int fd = harness_raw(&broker, hello);
    harness_write(fd, bytes, len);
    expect_fatal(fd, code);
    close(fd);
    assert_broker_serves();
}

/* The ERR code the first 4 bytes of `p` earn as a size field. */
static uint32_t size_err_code(const uint8_t *p, uint32_t max_frame)
{
    uint32_t size = frame_get_u32(p);
    if (size < FRAME_MIN_SIZE) {
        return FRAME_ERR_PROTOCOL;
    }
    cr_assert(size > max_frame, "test bug: %u is a valid size", size);
    return FRAME_ERR_TOO_LARGE;
}

/* ---- sizes -------------------------------------------------------------- */

Test(protocol, size_below_16_is_a_protocol_error)
{
    const uint32_t sizes[] = {0, 1, 15};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t four[4];
        frame_put_u32(four, sizes[i]);
        /* Judged from the 4 size bytes alone, before and after HELLO. */
        fatal_case(true, four, sizeof(four), FRAME_ERR_PROTOCOL);
        fatal_case(false, four, sizeof(four), FRAME_ERR_PROTOCOL);
        /* And in a whole 16-byte header (a PING), which must not be read
         * as the frame it claims to be. */
        uint8_t hdr[FRAME_HEADER_SIZE];
        frame_encode_header(hdr, sizes[i], FRAME_OP_PING, 0, 0, 0, 0, 7);
        fatal_case(true, hdr, sizeof(hdr), FRAME_ERR_PROTOCOL);
    }
    finish();
}

Test(protocol, size_above_max_frame_is_judged_from_four_bytes)
{
    const uint32_t sizes[] = {DEFAULT_MAX_FRAME + 1, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t four[4];
        frame_put_u32(four, sizes[i]);
        /* Only 4 bytes: the broker must not wait for the rest. */
        fatal_case(true, four, sizeof(four), FRAME_ERR_TOO_LARGE);
        fatal_case(false, four, sizeof(four), FRAME_ERR_TOO_LARGE);
    }
    finish();
}

Test(protocol, size_split_across_writes_is_still_judged)
{
    uint8_t four[4];
    frame_put_u32(four, 0xFFFFFFFFu);
    int fd = harness_raw(&broker, true);
    harness_write(fd, four, 2);
    /* Whatever the broker has read of it by now, it must not answer
     * before the size is whole, and the others go on meanwhile. */
    assert_broker_serves();
    harness_write(fd, four + 2, 2);
    expect_fatal(fd, FRAME_ERR_TOO_LARGE);
    close(fd);
    assert_broker_serves();
    finish();
}

Test(protocol, max_frame_itself_is_accepted)
{
    /* A PUB of exactly max_frame bytes goes through to a subscriber on the
     * same connection (echo on), byte for byte. */
    int fd = harness_raw(&broker, true);
    send_frame(fd, FRAME_OP_SUB, 1, "big", NULL, NULL, 0);
    size_t payload_len = DEFAULT_MAX_FRAME - FRAME_HEADER_SIZE - 3;
    uint8_t *payload = malloc(payload_len);
    for (size_t i = 0; i < payload_len; i++) {
        payload[i] = (uint8_t)(i * 13 + 1);
    }
    send_frame(fd, FRAME_OP_PUB, 0, "big", NULL, payload, payload_len);
    struct rframe f = read_frame(fd, "MSG");
    cr_assert_eq(f.op, FRAME_OP_MSG, "got %s %u", op_name(f.op), f.sid);
    cr_assert_eq(f.size, (long)DEFAULT_MAX_FRAME);
    cr_assert_eq(f.payload_len, payload_len);
    cr_assert_eq(memcmp(f.payload, payload, payload_len), 0);
    free(payload);
    expect_alive(fd, 5);
    close(fd);
    finish();
}

/* ---- inner lengths and ops ---------------------------------------------- */

/* A frame of `size` bytes whose header claims the given inner lengths. */
static void overrun_case(uint32_t size, uint16_t subject_len, uint16_t reply_len,
                         uint16_t header_len)
{
    uint8_t *frame = calloc(1, size);
    frame_encode_header(frame, size, FRAME_OP_PUB, 0, subject_len, reply_len, header_len, 0);
    memset(frame + FRAME_HEADER_SIZE, 'a', size - FRAME_HEADER_SIZE);
    fatal_case(true, frame, size, FRAME_ERR_PROTOCOL);
    free(frame);
}

Test(protocol, inner_lengths_overrunning_the_frame)
{
    overrun_case(20, 5, 0, 0);                /* subject alone */
    overrun_case(20, 2, 2, 1);                /* the sum, each part fits */
    overrun_case(16, 0, 0, 1);                /* headers in an empty body */
    overrun_case(16, 0, 1, 0);                /* reply in an empty body */
    overrun_case(26, 0xFFFF, 0xFFFF, 0xFFFF); /* a sum that would wrap 16 bits */
    overrun_case(1000, 999, 0, 0);
    finish();
}

Test(protocol, inner_lengths_overrun_in_hello)
{
    /* Overrun is judged before anything else, HELLO or not. */
    uint8_t frame[24];
    frame_encode_header(frame, sizeof(frame), FRAME_OP_HELLO, 0, 9, 0, 0, 0);
    memset(frame + FRAME_HEADER_SIZE, '{', sizeof(frame) - FRAME_HEADER_SIZE);
    fatal_case(false, frame, sizeof(frame), FRAME_ERR_PROTOCOL);
    finish();
}

Test(protocol, unknown_ops)
{
    const uint8_t ops[] = {0x00, 0x7F, 0x03, 0x13, 0xFF};
    for (size_t i = 0; i < sizeof(ops); i++) {
        uint8_t hdr[FRAME_HEADER_SIZE];
        frame_encode_header(hdr, sizeof(hdr), ops[i], 0, 0, 0, 0, 1);
        fatal_case(true, hdr, sizeof(hdr), FRAME_ERR_PROTOCOL);
        fatal_case(false, hdr, sizeof(hdr), FRAME_ERR_PROTOCOL);
    }
    finish();
}

Test(protocol, broker_to_client_ops_from_a_client)
{
    /* Known ops, wrong direction: a client has no business sending them. */
    const uint8_t ops[] = {FRAME_OP_WELCOME, FRAME_OP_MSG, FRAME_OP_DROPPED, FRAME_OP_PONG,
                           FRAME_OP_ERR};
    for (size_t i = 0; i < sizeof(ops); i++) {
        uint8_t hdr[FRAME_HEADER_SIZE];
        frame_encode_header(hdr, sizeof(hdr), ops[i], 0, 0, 0, 0, 1);
        fatal_case(true, hdr, sizeof(hdr), FRAME_ERR_PROTOCOL);
    }
    finish();
}

/* ---- HELLO -------------------------------------------------------------- */

Test(protocol, frames_before_hello)
{
    const uint8_t ops[] = {FRAME_OP_PUB, FRAME_OP_SUB, FRAME_OP_UNSUB, FRAME_OP_PING};
    for (size_t i = 0; i < sizeof(ops); i++) {
        uint8_t frame[32];
        size_t n = frame_encode(frame, ops[i], 0, 1, "a", 1, NULL, 0, NULL, 0, "x", 1);
        fatal_case(false, frame, n, FRAME_ERR_HELLO_REQUIRED);
    }
    finish();
}

Test(protocol, pub_before_hello_is_not_delivered)
{
    sb_client *sub = harness_client(&broker, "sub", true);
    cr_assert_eq(sb_subscribe(sub, "early", NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    uint8_t frame[32];
    size_t n = frame_encode(frame, FRAME_OP_PUB, 0, 0, "early", 5, NULL, 0, NULL, 0, "x", 1);
    fatal_case(false, frame, n, FRAME_ERR_HELLO_REQUIRED);
    sb_msg m;
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_next_msg(sub, &m, 0), -ETIMEDOUT, "a PUB before HELLO was routed");
    sb_close(sub);
    finish();
}

Test(protocol, second_hello)
{
    int fd = harness_raw(&broker, true);
    send_hello(fd, "{\"protocol\":1}");
    expect_fatal(fd, FRAME_ERR_PROTOCOL);
    close(fd);
    assert_broker_serves();
    finish();
}

static void bad_hello_case(const char *json, uint32_t code)
{
    int fd = harness_raw(&broker, false);
    send_hello(fd, json);
    struct rframe f = read_frame(fd, "ERR");
    /* The broker's first frame is WELCOME or a fatal ERR: here, the ERR. */
    cr_assert_eq(f.op, FRAME_OP_ERR, "HELLO %s: got %s, expected ERR %u", json, op_name(f.op),
                 code);
    cr_assert_eq(f.sid, code, "HELLO %s: got ERR %u (%s), expected %u", json, f.sid, err_text(&f),
                 code);
    cr_assert(harness_wait_eof(fd, HARNESS_IO_MS), "HELLO %s: no EOF after ERR %u", json, code);
    close(fd);
    assert_broker_serves();
}

Test(protocol, hello_invalid_json)
{
    bad_hello_case("{\"protocol\":1", FRAME_ERR_PROTOCOL);
    bad_hello_case("protocol=1", FRAME_ERR_PROTOCOL);
    bad_hello_case("", FRAME_ERR_PROTOCOL);
    bad_hello_case("{\"protocol\":1}garbage", FRAME_ERR_PROTOCOL);
    finish();
}

Test(protocol, hello_not_an_object)
{
    bad_hello_case("[1]", FRAME_ERR_PROTOCOL);
    bad_hello_case("[{\"protocol\":1}]", FRAME_ERR_PROTOCOL);
    bad_hello_case("1", FRAME_ERR_PROTOCOL);
    bad_hello_case("\"protocol\"", FRAME_ERR_PROTOCOL);
    bad_hello_case("null", FRAME_ERR_PROTOCOL);
    finish();
}

Test(protocol, hello_without_protocol)
{
    bad_hello_case("{}", FRAME_ERR_PROTOCOL);
    bad_hello_case("{\"name\":\"x\",\"echo\":true}", FRAME_ERR_PROTOCOL);
    bad_hello_case("{\"protocol\":\"1\"}", FRAME_ERR_PROTOCOL);
    bad_hello_case("{\"protocol\":null}", FRAME_ERR_PROTOCOL);
    finish();
}

Test(protocol, hello_unsupported_version)
{
    bad_hello_case("{\"protocol\":2}", FRAME_ERR_VERSION);
    bad_hello_case("{\"protocol\":0}", FRAME_ERR_VERSION);
    bad_hello_case("{\"protocol\":4294967297}", FRAME_ERR_VERSION);
    finish();
}

Test(protocol, hello_with_every_option)
{
    int fd = harness_raw(&broker, false);
    send_hello(fd, "{\"protocol\":1,\"name\":\"full\",\"echo\":false}");
    struct rframe f = read_frame(fd, "WELCOME");
    cr_assert_eq(f.op, FRAME_OP_WELCOME, "got %s %u: %s", op_name(f.op), f.sid, err_text(&f));
    /* echo false: its own publish does not come back. */
    send_frame(fd, FRAME_OP_SUB, 1, "self", NULL, NULL, 0);
    send_frame(fd, FRAME_OP_PUB, 0, "self", NULL, "x", 1);
    expect_alive(fd, 3);
    close(fd);
    finish();
}

/* ---- WELCOME ------------------------------------------------------------ */

/* Connect raw, say HELLO, and return WELCOME's JSON (caller puts it). */
static json_object *welcome_of(const struct harness_broker *b, int *fd_out)
{
    int fd = harness_raw(b, false);
    send_hello(fd, "{\"protocol\":1,\"name\":\"welcome\"}");
    struct rframe f = read_frame(fd, "WELCOME");
    cr_assert_eq(f.op, FRAME_OP_WELCOME, "got %s %u: %s", op_name(f.op), f.sid, err_text(&f));
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, (const char *)f.payload, (int)f.payload_len);
    cr_assert_not_null(o, "WELCOME payload is not JSON: %.*s", (int)f.payload_len,
                       (const char *)f.payload);
    cr_assert_eq(json_tokener_get_parse_end(tok), f.payload_len, "WELCOME has trailing bytes");
    json_tokener_free(tok);
    cr_assert(json_object_is_type(o, json_type_object), "WELCOME is not a JSON object");
    if (fd_out != NULL) {
        *fd_out = fd;
    } else {
        close(fd);
    }
    return o;
}

static json_object *key_of(json_object *o, const char *key, json_type type)
{
    json_object *v;
    cr_assert(json_object_object_get_ex(o, key, &v), "WELCOME has no \"%s\": %s", key,
              json_object_to_json_string(o));
    cr_assert(json_object_is_type(v, type), "WELCOME \"%s\" has the wrong type: %s", key,
              json_object_to_json_string(o));
    return v;
}

Test(protocol, welcome_contents)
{
    int fd;
    json_object *o = welcome_of(&broker, &fd);
    cr_assert_eq(json_object_get_int64(key_of(o, "protocol", json_type_int)), 1);
    cr_assert_str_eq(json_object_get_string(key_of(o, "server", json_type_string)), "sockbusd");
    const char *version = json_object_get_string(key_of(o, "version", json_type_string));
    cr_assert(version[0] != '\0', "empty version");
    char version_copy[64];
    snprintf(version_copy, sizeof(version_copy), "%s", version);
    int64_t id = json_object_get_int64(key_of(o, "client_id", json_type_int));
    cr_assert(id > 0, "client_id %lld", (long long)id);
    cr_assert_eq(json_object_get_int64(key_of(o, "max_frame", json_type_int)),
                 (int64_t)DEFAULT_MAX_FRAME);
    char inbox[64];
    snprintf(inbox, sizeof(inbox), "_INBOX.%lld.", (long long)id);
    cr_assert_str_eq(json_object_get_string(key_of(o, "inbox_prefix", json_type_string)), inbox);
    json_object_put(o);

    /* client_id is per connection, and the library reads the same value. */
    json_object *o2 = welcome_of(&broker, NULL);
    int64_t id2 = json_object_get_int64(key_of(o2, "client_id", json_type_int));
    cr_assert_neq(id2, id, "two connections got client_id %lld", (long long)id);
    json_object_put(o2);
    sb_client *c = harness_client(&broker, "lib", true);
    cr_assert(sb_client_id(c) != (uint64_t)id && sb_client_id(c) != (uint64_t)id2);
    cr_assert_eq(sb_max_frame(c), DEFAULT_MAX_FRAME);
    cr_assert_str_eq(sb_server_version(c), version_copy);
    sb_close(c);
    close(fd);
    finish();
}

Test(protocol, max_frame_option_is_announced_and_enforced)
{
    const char *const extra[] = {"--max-frame", "4096", NULL};
    int r = harness_start(&other, false, extra);
    cr_assert_eq(r, 0, "sockbusd --max-frame 4096 did not start: %s", strerror(-r));

    int fd;
    json_object *o = welcome_of(&other, &fd);
    cr_assert_eq(json_object_get_int64(key_of(o, "max_frame", json_type_int)), 4096);
    json_object_put(o);

    sb_client *c = harness_client(&other, "lib", true);
    cr_assert_eq(sb_max_frame(c), 4096u);
    sb_close(c);

    /* Exactly 4096 passes (and comes back as a 4096-byte MSG). */
    send_frame(fd, FRAME_OP_SUB, 1, "mf", NULL, NULL, 0);
    static uint8_t payload[4096];
    size_t fit = 4096 - FRAME_HEADER_SIZE - 2;
    send_frame(fd, FRAME_OP_PUB, 0, "mf", NULL, payload, fit);
    struct rframe f = read_frame(fd, "MSG");
    cr_assert_eq(f.op, FRAME_OP_MSG, "a 4096-byte frame got %s %u: %s", op_name(f.op), f.sid,
                 err_text(&f));
    cr_assert_eq(f.size, 4096);
    expect_alive(fd, 1);

    /* max_frame bounds what the broker sends too: an ERR naming a subject
     * of 4000 bytes (too long to be valid) still fits in 4096. */
    static char long_subject[4000];
    memset(long_subject, 's', sizeof(long_subject));
    struct wbuf w = {0};
    wbuf_frame(&w, FRAME_OP_PUB, 0, 0, long_subject, sizeof(long_subject), NULL, 0, NULL, 0);
    wbuf_send(fd, &w);
    f = read_frame(fd, "ERR");
    cr_assert_eq(f.op, FRAME_OP_ERR, "got %s", op_name(f.op));
    cr_assert_eq(f.sid, FRAME_ERR_SUBJECT);
    cr_assert(f.size <= 4096, "an ERR of %ld bytes exceeds max_frame 4096", f.size);
    cr_assert(f.subject_len > 0 && memcmp(f.subject, long_subject, f.subject_len) == 0);
    expect_alive(fd, 2);

    /* 4097 is refused: ERR 2, then EOF. */
    send_frame(fd, FRAME_OP_PUB, 0, "mf", NULL, payload, fit + 1);
    expect_fatal(fd, FRAME_ERR_TOO_LARGE);
    close(fd);

    /* Judged from the size bytes alone, too. */
    fd = harness_raw(&other, true);
    uint8_t four[4];
    frame_put_u32(four, 4097);
    harness_write(fd, four, sizeof(four));
    expect_fatal(fd, FRAME_ERR_TOO_LARGE);
    close(fd);
    assert_serves(&other);
    finish();
}

/* ---- ordering ----------------------------------------------------------- */

Test(protocol, frames_right_behind_hello_are_processed)
{
    int fd = harness_raw(&broker, false);
    struct wbuf w = {0};
    static const char hello[] = "{\"protocol\":1}";
    wbuf_frame(&w, FRAME_OP_HELLO, 0, 0, NULL, 0, NULL, 0, hello, sizeof(hello) - 1);
    wbuf_frame(&w, FRAME_OP_SUB, 0, 7, "pipe", 4, NULL, 0, NULL, 0);
    wbuf_frame(&w, FRAME_OP_PUB, 0, 0, "pipe", 4, NULL, 0, "x", 1);
    wbuf_frame(&w, FRAME_OP_PING, 0, 99, NULL, 0, NULL, 0, NULL, 0);
    wbuf_send(fd, &w); /* one write */

    struct rframe f = read_frame(fd, "WELCOME");
    cr_assert_eq(f.op, FRAME_OP_WELCOME, "first frame is %s %u: %s", op_name(f.op), f.sid,
                 err_text(&f));
    f = read_frame(fd, "MSG");
    cr_assert_eq(f.op, FRAME_OP_MSG, "got %s %u: %s", op_name(f.op), f.sid, err_text(&f));
    cr_assert_eq(f.sid, 7);
    cr_assert_eq(f.subject_len, 4);
    cr_assert_eq(memcmp(f.subject, "pipe", 4), 0);
    cr_assert_eq(f.payload_len, 1);
    expect_pong(fd, 99);
    close(fd);
    finish();
}

Test(protocol, hello_sub_ping_in_one_write)
{
    int fd = harness_raw(&broker, false);
    struct wbuf w = {0};
    static const char hello[] = "{\"protocol\":1}";
    wbuf_frame(&w, FRAME_OP_HELLO, 0, 0, NULL, 0, NULL, 0, hello, sizeof(hello) - 1);
    wbuf_frame(&w, FRAME_OP_SUB, 0, 1, "one.write", 9, NULL, 0, NULL, 0);
    wbuf_frame(&w, FRAME_OP_PING, 0, 42, NULL, 0, NULL, 0, NULL, 0);
    wbuf_send(fd, &w);
    struct rframe f = read_frame(fd, "WELCOME");
    cr_assert_eq(f.op, FRAME_OP_WELCOME, "first frame is %s %u", op_name(f.op), f.sid);
    expect_pong(fd, 42);
    /* The SUB took effect: a message from another client arrives. */
    sb_client *pub = harness_client(&broker, "pub", true);
    cr_assert_eq(sb_publish(pub, "one.write", NULL, "y", 1), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    f = read_frame(fd, "MSG");
    cr_assert_eq(f.op, FRAME_OP_MSG);
    cr_assert_eq(f.sid, 1);
    sb_close(pub);
    close(fd);
    finish();
}

Test(protocol, errors_and_pongs_come_in_frame_order)
{
    int fd = harness_raw(&broker, true);
    struct wbuf w = {0};
    wbuf_frame(&w, FRAME_OP_SUB, 0, 1, "a.>.b", 5, NULL, 0, NULL, 0);
    wbuf_frame(&w, FRAME_OP_PING, 0, 1, NULL, 0, NULL, 0, NULL, 0);
    wbuf_frame(&w, FRAME_OP_SUB, 0, 0, "ok", 2, NULL, 0, NULL, 0);
    wbuf_frame(&w, FRAME_OP_PING, 0, 2, NULL, 0, NULL, 0, NULL, 0);
    wbuf_frame(&w, FRAME_OP_UNSUB, 0, 77, NULL, 0, NULL, 0, NULL, 0);
    wbuf_frame(&w, FRAME_OP_PING, 0, 3, NULL, 0, NULL, 0, NULL, 0);
    wbuf_frame(&w, FRAME_OP_PUB, 0, 0, "a..b", 4, NULL, 0, NULL, 0);
    wbuf_frame(&w, FRAME_OP_PING, 0, 4, NULL, 0, NULL, 0, NULL, 0);
    wbuf_send(fd, &w);
    expect_err(fd, FRAME_ERR_SUBJECT, "a.>.b", 5);
    expect_pong(fd, 1);
    expect_err(fd, FRAME_ERR_SID, "ok", 2);
    expect_pong(fd, 2);
    expect_err(fd, FRAME_ERR_SID, NULL, 0);
    expect_pong(fd, 3);
    expect_err(fd, FRAME_ERR_SUBJECT, "a..b", 4);
    expect_pong(fd, 4);
    close(fd);
    assert_broker_serves();
    finish();
}

/* ---- subjects and patterns (non-fatal) ---------------------------------- */

static void bad_pub_case(int fd, const char *subject, size_t len, uint32_t token)
{
    struct wbuf w = {0};
    wbuf_frame(&w, FRAME_OP_PUB, 0, 0, subject, len, NULL, 0, "p", 1);
    wbuf_send(fd, &w);
    expect_err(fd, FRAME_ERR_SUBJECT, subject, len);
    /* Nothing was routed (the connection listens on patterns that would
     * catch it), and it lives. */
    expect_alive(fd, token);
    assert_broker_serves();
}

Test(protocol, pub_invalid_subject)
{
    int fd = harness_raw(&broker, true);
    /* Patterns that would catch the bad subjects if they were routed, but
     * not the healthy clients' two-token "health.check". */
    send_frame(fd, FRAME_OP_SUB, 1, "*", NULL, NULL, 0);
    send_frame(fd, FRAME_OP_SUB, 2, "a.>", NULL, NULL, 0);
    expect_alive(fd, 100);
    bad_pub_case(fd, "a.*", 3, 1);
    bad_pub_case(fd, "a..b", 4, 2);
    bad_pub_case(fd, "a.>", 3, 3);
    bad_pub_case(fd, "", 0, 4);
    bad_pub_case(fd, "a b", 3, 5);
    bad_pub_case(fd, ".a", 2, 6);
    bad_pub_case(fd, "a.", 2, 7);
    close(fd);
    finish();
}

Test(protocol, pub_subject_of_1025_bytes)
{
    int fd = harness_raw(&broker, true);
    send_frame(fd, FRAME_OP_SUB, 1, "*", NULL, NULL, 0);
    char subject[1025];
    memset(subject, 'a', sizeof(subject));
    /* 1024 bytes is the largest valid subject... */
    struct wbuf w = {0};
    wbuf_frame(&w, FRAME_OP_PUB, 0, 0, subject, 1024, NULL, 0, "p", 1);
    wbuf_send(fd, &w);
    struct rframe f = read_frame(fd, "MSG");
    cr_assert_eq(f.op, FRAME_OP_MSG, "a 1024-byte subject got %s %u: %s", op_name(f.op), f.sid,
                 err_text(&f));
    cr_assert_eq(f.subject_len, 1024);
    /* ...1025 is refused, and the ERR names it in full. */
    bad_pub_case(fd, subject, sizeof(subject), 1);
    close(fd);
    finish();
}

Test(protocol, pub_invalid_reply_subject)
{
    int fd = harness_raw(&broker, true);
    send_frame(fd, FRAME_OP_SUB, 1, ">", NULL, NULL, 0);
    send_frame(fd, FRAME_OP_PUB, 0, "fine", "bad..reply", "p", 1);
    expect_err(fd, FRAME_ERR_SUBJECT, NULL, 0);
    send_frame(fd, FRAME_OP_PUB, 0, "fine", "wild.*", "p", 1);
    expect_err(fd, FRAME_ERR_SUBJECT, NULL, 0);
    expect_alive(fd, 1);
    close(fd);
    assert_broker_serves();
    finish();
}

static void bad_sub_case(int fd, const char *pattern, uint32_t sid)
{
    size_t len = strlen(pattern);
    struct wbuf w = {0};
    wbuf_frame(&w, FRAME_OP_SUB, 0, sid, pattern, len, NULL, 0, NULL, 0);
    wbuf_send(fd, &w);
    expect_err(fd, FRAME_ERR_SUBJECT, pattern, len);
    expect_alive(fd, sid);
    assert_broker_serves();
}

Test(protocol, sub_invalid_pattern)
{
    int fd = harness_raw(&broker, true);
    const char *patterns[] = {"a.>.b", "a*", "*x", "", ">.a", "a.**", "a..b", "a >", ".", "a.>>"};
    for (uint32_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
        bad_sub_case(fd, patterns[i], 10 + i);
    }
    /* A refused SUB does not take its sid: the same sid works now. */
    send_frame(fd, FRAME_OP_SUB, 10, "a.*.b", NULL, NULL, 0);
    send_frame(fd, FRAME_OP_PUB, 0, "a.x.b", NULL, "m", 1);
    struct rframe f = read_frame(fd, "MSG");
    cr_assert_eq(f.op, FRAME_OP_MSG, "got %s %u: %s", op_name(f.op), f.sid, err_text(&f));
    cr_assert_eq(f.sid, 10);
    expect_alive(fd, 1);
    close(fd);
    finish();
}

Test(protocol, sub_invalid_queue_group)
{
    int fd = harness_raw(&broker, true);
    send_frame(fd, FRAME_OP_SUB, 1, "q", "bad group", NULL, 0);
    expect_err(fd, FRAME_ERR_SUBJECT, "q", 1);
    send_frame(fd, FRAME_OP_SUB, 2, "q", "wild.*", NULL, 0);
    expect_err(fd, FRAME_ERR_SUBJECT, "q", 1);
    expect_alive(fd, 1);
    close(fd);
    assert_broker_serves();
    finish();
}

/* ---- sids (non-fatal) --------------------------------------------------- */

Test(protocol, sub_with_sid_zero)
{
    int fd = harness_raw(&broker, true);
    send_frame(fd, FRAME_OP_SUB, 0, "zero", NULL, NULL, 0);
    expect_err(fd, FRAME_ERR_SID, "zero", 4);
    expect_alive(fd, 1);
    /* Not subscribed: a publish on it reaches nobody here. */
    send_frame(fd, FRAME_OP_PUB, 0, "zero", NULL, "z", 1);
    expect_alive(fd, 2);
    close(fd);
    assert_broker_serves();
    finish();
}

Test(protocol, sub_with_duplicate_sid)
{
    int fd = harness_raw(&broker, true);
    send_frame(fd, FRAME_OP_SUB, 5, "dup.a", NULL, NULL, 0);
    expect_alive(fd, 1); /* accepted: PONG, no ERR */
    send_frame(fd, FRAME_OP_SUB, 5, "dup.b", NULL, NULL, 0);
    expect_err(fd, FRAME_ERR_SID, "dup.b", 5);
    expect_alive(fd, 2);
    /* The first subscription is intact, the second never existed. */
    send_frame(fd, FRAME_OP_PUB, 0, "dup.b", NULL, "b", 1);
    send_frame(fd, FRAME_OP_PUB, 0, "dup.a", NULL, "a", 1);
    struct rframe f = read_frame(fd, "MSG");
    cr_assert_eq(f.op, FRAME_OP_MSG, "got %s %u: %s", op_name(f.op), f.sid, err_text(&f));
    cr_assert_eq(f.sid, 5);
    cr_assert_eq(f.subject_len, 5);
    cr_assert_eq(memcmp(f.subject, "dup.a", 5), 0, "the duplicate SUB replaced the first");
    expect_alive(fd, 3);
    close(fd);
    assert_broker_serves();
    finish();
}

Test(protocol, unsub_unknown_sid)
{
    int fd = harness_raw(&broker, true);
    send_frame(fd, FRAME_OP_UNSUB, 42, NULL, NULL, NULL, 0);
    expect_err(fd, FRAME_ERR_SID, NULL, 0);
    expect_alive(fd, 1);
    send_frame(fd, FRAME_OP_UNSUB, 0, NULL, NULL, NULL, 0);
    expect_err(fd, FRAME_ERR_SID, NULL, 0);
    expect_alive(fd, 2);
    /* An sid that was subscribed once and is gone now is unknown too. */
    send_frame(fd, FRAME_OP_SUB, 3, "u", NULL, NULL, 0);
    send_frame(fd, FRAME_OP_UNSUB, 3, NULL, NULL, NULL, 0);
    expect_alive(fd, 3);
    send_frame(fd, FRAME_OP_UNSUB, 3, NULL, NULL, NULL, 0);
    expect_err(fd, FRAME_ERR_SID, NULL, 0);
    expect_alive(fd, 4);
    close(fd);
    assert_broker_serves();
    finish();
}

/* ---- people and programs that do not speak the protocol ----------------- */

/* Text at the start of a connection is text mode (test_text.c); after a
 * HELLO the connection speaks frames, and text is a frame it cannot be. */
static void text_case(const char *text)
{
    uint32_t code = size_err_code((const uint8_t *)text, DEFAULT_MAX_FRAME);
    fatal_case(true, text, strlen(text), code);
}

Test(protocol, text_after_hello_is_a_frame_error)
{
    text_case("hello broker\n");
    text_case("{\"protocol\":1}\n");
    text_case("PING\r\n");
    text_case("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    finish();
}

Test(protocol, tiny_binary_garbage)
{
    /* Little-endian sizes below 16 read from "\x01\x00\x00\x00..." */
    fatal_case(false, "\x01\x00\x00\x00garbage", 11, FRAME_ERR_PROTOCOL);
    finish();
}

Test(protocol, stalled_half_frames_block_no_one)
{
    /* A: subscribed, then half a PUB (header and part of the body). */
    int a = harness_raw(&broker, true);
    send_frame(a, FRAME_OP_SUB, 1, "half", NULL, NULL, 0);
    expect_alive(a, 1);
    uint8_t frame[64];
    size_t n = frame_encode(frame, FRAME_OP_PUB, 0, 0, "half", 4, NULL, 0, NULL, 0,
                            "0123456789abcdef", 16);
    harness_write(a, frame, n / 2);

    /* B: two bytes of a HELLO. */
    int b = harness_raw(&broker, false);
    uint8_t hello[64];
    size_t hn = frame_encode(hello, FRAME_OP_HELLO, 0, 0, NULL, 0, NULL, 0, NULL, 0,
                             "{\"protocol\":1}", 14);
    harness_write(b, hello, 2);

    /* C: a header announcing max_frame bytes, and the subject. */
    int c = harness_raw(&broker, true);
    send_frame(c, FRAME_OP_SUB, 9, "huge", NULL, NULL, 0);
    expect_alive(c, 1);
    size_t big_payload = DEFAULT_MAX_FRAME - FRAME_HEADER_SIZE - 4;
    uint8_t *big = malloc(DEFAULT_MAX_FRAME);
    frame_encode(big, FRAME_OP_PUB, 0, 0, "huge", 4, NULL, 0, NULL, 0, NULL, 0);
    frame_put_u32(big, DEFAULT_MAX_FRAME);
    memset(big + FRAME_HEADER_SIZE + 4, 'h', big_payload);
    harness_write(c, big, FRAME_HEADER_SIZE + 4);

    /* While all three stall, everybody else is served. */
    assert_broker_serves();
    assert_broker_serves();

    /* Each finishes its frame and gets exactly what it asked for. */
    harness_write(a, frame + n / 2, n - n / 2);
    struct rframe f = read_frame(a, "MSG");
    cr_assert_eq(f.op, FRAME_OP_MSG, "got %s %u: %s", op_name(f.op), f.sid, err_text(&f));
    cr_assert_eq(f.payload_len, 16);
    cr_assert_eq(memcmp(f.payload, "0123456789abcdef", 16), 0);
    expect_alive(a, 2);

    harness_write(b, hello + 2, hn - 2);
    f = read_frame(b, "WELCOME");
    cr_assert_eq(f.op, FRAME_OP_WELCOME);
    expect_alive(b, 3);

    harness_write(c, big + FRAME_HEADER_SIZE + 4, big_payload);
    f = read_frame(c, "MSG");
    cr_assert_eq(f.op, FRAME_OP_MSG, "got %s %u: %s", op_name(f.op), f.sid, err_text(&f));
    cr_assert_eq(f.size, (long)DEFAULT_MAX_FRAME);
    cr_assert_eq(memcmp(f.payload, big + FRAME_HEADER_SIZE + 4, big_payload), 0);
    expect_alive(c, 4);
    free(big);

    close(a);
    close(b);
    close(c);
    assert_broker_serves();
    finish();
}

Test(protocol, client_vanishing_mid_frame)
{
    int fd = harness_raw(&broker, true);
    uint8_t hdr[FRAME_HEADER_SIZE];
    frame_encode_header(hdr, 1000, FRAME_OP_PUB, 0, 1, 0, 0, 0);
    harness_write(fd, hdr, sizeof(hdr));
    harness_write(fd, "x", 1);
    close(fd);
    assert_broker_serves();
    finish();
}
