/*
 * test_client_io.c - the client's input and output paths
 * (libclient/client_io.c) without a broker.
 *
 * Each test makes a client with client_new() on one end of a socketpair
 * and plays the broker on the other end, with frames crafted by
 * frame_encode(). Input is driven through the calls the API is built on:
 * client_read_some() (one recv()), client_scan() (control frames handled,
 * MSGs left in place, tombstones between them) and client_take_msg()
 * (messages handed out in order). What is checked: control frames between
 * messages keep the order of the messages; a stream cut at every byte
 * boundary, or read a byte at a time, gives the same result; PONG, DROPPED
 * and ERR do what docs/protocol.md says, fatal or not, before WELCOME or
 * after, for a request in flight; a MSG larger than the initial read
 * buffer; the limit on input kept unconsumed (-ENOBUFS); and on output,
 * that frames coalesce into one write. Writes are counted on a
 * SOCK_SEQPACKET pair, where every send() is one record for the reader.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "frame.h"

/* ---- the fake broker ---------------------------------------------------- */

struct fake {
    sb_client *c;
    int broker; /* the test's end of the pair */
};

static void set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    cr_assert(flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0);
}

/* A welcomed client on a socketpair of `type`, its broker end blocking. */
static struct fake fake_new_type(int type)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv), 0);
    struct fake f = {.broker = sv[1]};
    cr_assert_eq(client_new(&f.c), 0);
    set_nonblocking(sv[0]);
    f.c->fd = sv[0];
    f.c->welcomed = true;
    strcpy(f.c->inbox_prefix, "_INBOX.9.");
    return f;
}

static struct fake fake_new(void)
{
    return fake_new_type(SOCK_STREAM);
}

static void fake_free(struct fake *f)
{
    sb_close(f->c);
    close(f->broker);
}

/* The broker's side of the stream: frames appended one after another. */
struct stream {
    uint8_t *buf;
    size_t len;
    size_t cap;
};

static uint8_t *stream_room(struct stream *s, size_t n)
{
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2;
        s->buf = realloc(s->buf, s->cap);
        cr_assert_not_null(s->buf);
    }
    return s->buf + s->len;
}

static void put_frame(struct stream *s, uint8_t op, uint8_t flags, uint32_t sid,
                      const char *subject, const char *reply, const void *payload, size_t len)
{
    size_t sl = subject ? strlen(subject) : 0;
    size_t rl = reply ? strlen(reply) : 0;
    uint8_t *p = stream_room(s, frame_encoded_size(sl, rl, 0, len));
    s->len += frame_encode(p, op, flags, sid, subject, sl, reply, rl, NULL, 0, payload, len);
}

static void put_msg(struct stream *s, uint32_t sid, const char *subject, const char *payload)
{
    put_frame(s, FRAME_OP_MSG, 0, sid, subject, NULL, payload, strlen(payload));
}

static void put_pong(struct stream *s, uint32_t token)
{
    put_frame(s, FRAME_OP_PONG, 0, token, NULL, NULL, NULL, 0);
}

static void put_dropped(struct stream *s, uint64_t count)
{
    uint8_t n[8];
    frame_put_u64(n, count);
    put_frame(s, FRAME_OP_DROPPED, 0, 0, NULL, NULL, n, sizeof(n));
}

static void put_err(struct stream *s, uint32_t code, const char *subject, const char *text)
{
    put_frame(s, FRAME_OP_ERR, 0, code, subject, NULL, text, strlen(text));
}

/* Send bytes to the client (they fit in the socket buffer). */
static void feed(struct fake *f, const void *bytes, size_t len)
{
    while (len > 0) {
        ssize_t n = send(f->broker, bytes, len, MSG_NOSIGNAL);
        cr_assert_gt(n, 0, "send to the client: %s", strerror(errno));
        bytes = (const uint8_t *)bytes + n;
        len -= (size_t)n;
    }
}

/* One read and one scan, as sb_process() does them. */
static int read_scan(struct fake *f)
{
    int r = client_read_some(f->c);
    if (r < 0) {
        return r;
    }
    int s = client_scan(f->c);
    return s < 0 ? s : r;
}

/* Send more than the socket holds: the client reads and scans while the
 * broker's end is full, as a client does while it waits. */
static void feed_big(struct fake *f, const void *bytes, size_t len)
{
    set_nonblocking(f->broker);
    while (len > 0) {
        ssize_t n = send(f->broker, bytes, len, MSG_NOSIGNAL);
        if (n > 0) {
            bytes = (const uint8_t *)bytes + n;
            len -= (size_t)n;
            continue;
        }
        cr_assert(n < 0 && errno == EAGAIN, "send to the client: %s", strerror(errno));
        cr_assert_geq(read_scan(f), 0);
    }
    while (read_scan(f) > 0) {
    }
}

/* ---- what the client hands out ------------------------------------------ */

/* A message as taken, copied out of the client's buffers. */
struct got {
    uint32_t sid;
    char subject[64];
    char payload[256];
};

struct got_list {
    struct got items[16];
    size_t n;
};

static void take_all(struct fake *f, struct got_list *out)
{
    sb_msg m;
    while (client_take_msg(f->c, &m)) {
        cr_assert_lt(out->n, 16);
        struct got *g = &out->items[out->n++];
        cr_assert_lt(m.subject_len, sizeof(g->subject));
        cr_assert_lt(m.payload_len, sizeof(g->payload));
        cr_assert_eq(strlen(m.subject), m.subject_len, "subject NUL terminated at its length");
        g->sid = m.sid;
        memcpy(g->subject, m.subject, m.subject_len + 1);
        memcpy(g->payload, m.payload, m.payload_len);
        g->payload[m.payload_len] = '\0';
    }
}

static void expect_got(const struct got_list *l, size_t i, uint32_t sid, const char *subject,
                       const char *payload)
{
    cr_assert_lt(i, l->n, "message %zu of %zu", i, l->n);
    cr_expect_eq(l->items[i].sid, sid, "message %zu: sid %u", i, l->items[i].sid);
    cr_expect_str_eq(l->items[i].subject, subject, "message %zu", i);
    cr_expect_str_eq(l->items[i].payload, payload, "message %zu", i);
}

/* What the callbacks saw. */
struct seen {
    uint64_t dropped_calls;
    uint64_t dropped_sum;
    int errors;
    int last_err;
    char last_subject[SB_SUBJECT_MAX + 1];
    char last_text[CLIENT_ERRTEXT_MAX];
};

static void on_dropped(sb_client *c, uint64_t count, void *arg)
{
    struct seen *s = arg;
    s->dropped_calls++;
    s->dropped_sum += count;
}

static void on_error(sb_client *c, int err, const char *subject, const char *text, void *arg)
{
    struct seen *s = arg;
    s->errors++;
    s->last_err = err;
    snprintf(s->last_subject, sizeof(s->last_subject), "%s", subject);
    snprintf(s->last_text, sizeof(s->last_text), "%s", text);
}

/* ---- control frames between messages ------------------------------------ */

Test(client_io, control_frames_between_messages_keep_their_order)
{
    struct fake f = fake_new();
    struct seen seen = {0};
    sb_set_dropped_cb(f.c, on_dropped, &seen);
    sb_set_error_cb(f.c, on_error, &seen);
    struct stream s = {0};
    put_pong(&s, 1); /* at the head: simply consumed */
    size_t head = s.len;
    put_msg(&s, 1, "a.one", "m1");
    size_t second_pong = s.len;
    put_pong(&s, 2); /* between messages: a tombstone */
    put_msg(&s, 2, "a.two", "m2");
    put_dropped(&s, 5);
    put_err(&s, FRAME_ERR_SUBJECT, "bad..subject", "invalid subject");
    put_msg(&s, 1, "a.three", "m3");
    put_pong(&s, 3);
    feed(&f, s.buf, s.len);

    cr_assert_eq(read_scan(&f), (int)s.len);
    cr_expect_eq(f.c->rhead, head, "the PONG ahead of every message is consumed");
    cr_expect_eq(f.c->rbuf[second_pong + 4], 0, "the PONG between messages is a tombstone");
    cr_expect_eq(f.c->pong_seen, 3);
    cr_expect_eq(seen.dropped_calls, 1);
    cr_expect_eq(seen.dropped_sum, 5);
    cr_expect_eq(sb_take_dropped(f.c), 5);
    cr_expect_eq(sb_take_dropped(f.c), 0);
    cr_expect_eq(seen.errors, 1);
    cr_expect_eq(seen.last_err, SB_E_SUBJECT);
    cr_expect_str_eq(seen.last_subject, "bad..subject");
    cr_expect_str_eq(seen.last_text, "invalid subject");
    cr_expect_str_eq(sb_last_error(f.c), "invalid subject");
    cr_expect_eq(f.c->pending_err, SB_E_SUBJECT);
    cr_expect_eq(f.c->closed_err, 0, "a non-fatal ERR keeps the connection");
    cr_expect(client_have_msg(f.c));

    struct got_list got = {0};
    take_all(&f, &got);
    cr_assert_eq(got.n, 3);
    expect_got(&got, 0, 1, "a.one", "m1");
    expect_got(&got, 1, 2, "a.two", "m2");
    expect_got(&got, 2, 1, "a.three", "m3");
    cr_expect_not(client_have_msg(f.c));
    cr_expect_eq(f.c->rhead, f.c->rtail, "everything consumed");
    free(s.buf);
    fake_free(&f);
}

/* ---- frames cut anywhere ------------------------------------------------- */

/* A stream of every kind of frame a client receives, with what it should
 * give. */
static struct stream mixed_stream(size_t *msg_ends, size_t *nmsgs)
{
    char big[200];
    memset(big, 'p', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct stream s = {0};
    size_t n = 0;
    put_msg(&s, 1, "a.b", "hello");
    msg_ends[n++] = s.len;
    put_pong(&s, 7);
    put_msg(&s, 2, "c", big);
    msg_ends[n++] = s.len;
    put_dropped(&s, 2);
    put_err(&s, FRAME_ERR_LIMIT, "x.y", "limit reached");
    put_msg(&s, 3, "d.e.f", "");
    msg_ends[n++] = s.len;
    put_pong(&s, 8);
    put_msg(&s, 1, "a.b", "bye");
    msg_ends[n++] = s.len;
    *nmsgs = n;
    return s;
}

static void expect_mixed(struct fake *f, const struct got_list *got)
{
    char big[200];
    memset(big, 'p', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(got->n, 4);
    expect_got(got, 0, 1, "a.b", "hello");
    expect_got(got, 1, 2, "c", big);
    expect_got(got, 2, 3, "d.e.f", "");
    expect_got(got, 3, 1, "a.b", "bye");
    cr_expect_eq(f->c->pong_seen, 8);
    cr_expect_eq(f->c->dropped, 2);
    cr_expect_eq(f->c->pending_err, SB_E_LIMIT);
    cr_expect_eq(f->c->closed_err, 0);
}

Test(client_io, a_stream_cut_at_every_byte_gives_the_same_messages)
{
    size_t ends[8];
    size_t nmsgs;
    struct stream s = mixed_stream(ends, &nmsgs);
    for (size_t cut = 1; cut < s.len; cut++) {
        struct fake f = fake_new();
        struct got_list got = {0};
        feed(&f, s.buf, cut);
        cr_assert_eq(read_scan(&f), (int)cut);
        take_all(&f, &got);
        /* Only the messages whole in the first part, and nothing else. */
        size_t whole = 0;
        while (whole < nmsgs && ends[whole] <= cut) {
            whole++;
        }
        cr_assert_eq(got.n, whole, "cut at %zu: %zu messages, expected %zu", cut, got.n, whole);
        feed(&f, s.buf + cut, s.len - cut);
        cr_assert_eq(read_scan(&f), (int)(s.len - cut));
        take_all(&f, &got);
        expect_mixed(&f, &got);
        fake_free(&f);
    }
    free(s.buf);
}

Test(client_io, a_stream_read_a_byte_at_a_time_gives_the_same_messages)
{
    size_t ends[8];
    size_t nmsgs;
    struct stream s = mixed_stream(ends, &nmsgs);
    struct fake f = fake_new();
    struct got_list got = {0};
    for (size_t i = 0; i < s.len; i++) {
        feed(&f, s.buf + i, 1);
        cr_assert_eq(read_scan(&f), 1);
        take_all(&f, &got);
    }
    expect_mixed(&f, &got);
    free(s.buf);
    fake_free(&f);
}

/* ---- PONG, DROPPED, ERR -------------------------------------------------- */

Test(client_io, dropped_notices_add_up)
{
    struct fake f = fake_new();
    struct seen seen = {0};
    sb_set_dropped_cb(f.c, on_dropped, &seen);
    struct stream s = {0};
    put_dropped(&s, 3);
    put_dropped(&s, 4);
    /* A notice too short to hold a count is ignored. */
    put_frame(&s, FRAME_OP_DROPPED, 0, 0, NULL, NULL, "1234567", 7);
    feed(&f, s.buf, s.len);
    cr_assert_geq(read_scan(&f), 0);
    cr_expect_eq(seen.dropped_calls, 2);
    cr_expect_eq(seen.dropped_sum, 7);
    cr_expect_eq(sb_take_dropped(f.c), 7);
    cr_expect_eq(sb_take_dropped(f.c), 0);
    cr_expect_eq(f.c->closed_err, 0);
    free(s.buf);
    fake_free(&f);
}

Test(client_io, pong_records_the_latest_token)
{
    struct fake f = fake_new();
    f.c->ping_sent = 2;
    struct stream s = {0};
    put_pong(&s, 1);
    feed(&f, s.buf, s.len);
    cr_assert_geq(read_scan(&f), 0);
    cr_expect_eq(f.c->pong_seen, 1);
    s.len = 0;
    put_pong(&s, 2);
    feed(&f, s.buf, s.len);
    /* sb_flush() sends PING 2 and waits for its PONG, already there. */
    f.c->ping_sent = 1;
    cr_expect_eq(sb_flush(f.c, 1000), 0);
    cr_expect_eq(f.c->pong_seen, 2);
    free(s.buf);
    fake_free(&f);
}

Test(client_io, non_fatal_errors_wait_for_the_flush)
{
    struct fake f = fake_new();
    struct seen seen = {0};
    sb_set_error_cb(f.c, on_error, &seen);
    struct stream s = {0};
    put_err(&s, FRAME_ERR_PERMISSION, "secret.x", "permission denied");
    put_err(&s, FRAME_ERR_SID, NULL, "unknown sid");
    put_err(&s, 42, NULL, "a code from the future");
    feed(&f, s.buf, s.len);
    cr_assert_geq(read_scan(&f), 0);
    cr_expect_eq(seen.errors, 3);
    cr_expect_eq(seen.last_err, SB_E_BROKER_BASE - 42);
    cr_expect_str_eq(seen.last_subject, "");
    cr_expect_str_eq(sb_last_error(f.c), "a code from the future");
    cr_expect_eq(f.c->pending_err, SB_E_PERMISSION, "the first one is kept");
    cr_expect_eq(f.c->closed_err, 0);
    cr_expect_eq(sb_publish(f.c, "still.open", NULL, "x", 1), 0);
    free(s.buf);
    fake_free(&f);
}

Test(client_io, a_long_error_text_and_subject_are_cut)
{
    struct fake f = fake_new();
    struct seen seen = {0};
    sb_set_error_cb(f.c, on_error, &seen);
    char text[1000];
    memset(text, 't', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    char subject[SB_SUBJECT_MAX + 11];
    memset(subject, 's', sizeof(subject) - 1);
    subject[sizeof(subject) - 1] = '\0';
    struct stream s = {0};
    put_err(&s, FRAME_ERR_SUBJECT, subject, text);
    feed(&f, s.buf, s.len);
    cr_assert_geq(read_scan(&f), 0);
    cr_expect_eq(strlen(sb_last_error(f.c)), CLIENT_ERRTEXT_MAX - 1);
    cr_expect_eq(strlen(seen.last_subject), SB_SUBJECT_MAX);
    free(s.buf);
    fake_free(&f);
}

Test(client_io, fatal_errors_close_the_connection)
{
    static const uint32_t fatal[] = {FRAME_ERR_PROTOCOL,      FRAME_ERR_TOO_LARGE,
                                     FRAME_ERR_SLOW_CONSUMER, FRAME_ERR_HELLO_REQUIRED,
                                     FRAME_ERR_SHUTDOWN,      FRAME_ERR_VERSION};
    for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++) {
        struct fake f = fake_new();
        struct stream s = {0};
        put_err(&s, fatal[i], NULL, "bye");
        put_msg(&s, 1, "after", "never scanned");
        feed(&f, s.buf, s.len);
        int want = SB_E_BROKER_BASE - (int)fatal[i];
        cr_expect_eq(read_scan(&f), want, "ERR %u", fatal[i]);
        cr_expect_eq(f.c->closed_err, want);
        cr_expect_eq(f.c->pending_err, 0);
        /* Sticky: every call says so from now on. */
        cr_expect_eq(client_scan(f.c), want);
        cr_expect_eq(sb_publish(f.c, "x", NULL, "x", 1), want);
        cr_expect_eq(sb_flush(f.c, 0), want);
        free(s.buf);
        fake_free(&f);
    }
}

Test(client_io, an_error_before_welcome_is_a_refusal)
{
    struct fake f = fake_new();
    f.c->welcomed = false;
    struct stream s = {0};
    put_err(&s, FRAME_ERR_LIMIT, NULL, "max_connections (4) reached; try again later");
    feed(&f, s.buf, s.len);
    cr_expect_eq(read_scan(&f), SB_E_LIMIT, "ERR 5 is not fatal, but it ends a handshake");
    cr_expect_eq(f.c->refusal, SB_E_LIMIT);
    cr_expect_eq(f.c->closed_err, SB_E_LIMIT);
    free(s.buf);
    fake_free(&f);
}

Test(client_io, an_error_on_a_request_subject_fails_that_request)
{
    struct fake f = fake_new();
    sb_pub req = {.subject = "svc.denied", .payload = "q", .payload_len = 1};
    uint32_t token;
    cr_assert_eq(sb_request_send(f.c, &req, &token), 0);
    struct stream s = {0};
    put_err(&s, FRAME_ERR_PERMISSION, "svc.denied", "permission denied");
    feed(&f, s.buf, s.len);
    sb_msg reply;
    cr_expect_eq(sb_request_wait(f.c, token, &reply, 1000), SB_E_PERMISSION);
    cr_expect_eq(f.c->nrequests, 0, "the request is forgotten");
    free(s.buf);
    fake_free(&f);
}

Test(client_io, replies_are_taken_out_of_the_stream)
{
    struct fake f = fake_new();
    sb_pub req = {.subject = "svc.echo", .payload = "q", .payload_len = 1};
    uint32_t token;
    cr_assert_eq(sb_request_send(f.c, &req, &token), 0);
    uint32_t inbox = f.c->inbox_sid;
    cr_assert_neq(inbox, 0);
    char subject[64];
    snprintf(subject, sizeof(subject), "_INBOX.9.%u", token);
    struct stream s = {0};
    put_msg(&s, 5, "before", "m1");
    put_msg(&s, inbox, subject, "the reply");
    put_msg(&s, inbox, "_INBOX.9.x", "not a reply: a message");
    put_msg(&s, 5, "after", "m2");
    feed(&f, s.buf, s.len);
    sb_msg reply;
    cr_assert_eq(sb_request_wait(f.c, token, &reply, 1000), 0);
    cr_expect_eq(reply.payload_len, 9);
    cr_expect(memcmp(reply.payload, "the reply", 9) == 0);
    cr_expect_str_eq(reply.subject, subject);
    struct got_list got = {0};
    take_all(&f, &got);
    cr_assert_eq(got.n, 3, "the reply is not a message");
    expect_got(&got, 0, 5, "before", "m1");
    expect_got(&got, 1, inbox, "_INBOX.9.x", "not a reply: a message");
    expect_got(&got, 2, 5, "after", "m2");
    free(s.buf);
    fake_free(&f);
}

Test(client_io, a_frame_the_client_cannot_take_is_a_protocol_error)
{
    /* A size below 16, and a MSG subject longer than a subject can be. */
    struct fake f = fake_new();
    uint8_t tiny[16];
    frame_encode_header(tiny, 15, FRAME_OP_PONG, 0, 0, 0, 0, 0);
    feed(&f, tiny, sizeof(tiny));
    cr_expect_eq(read_scan(&f), -EPROTO);
    cr_expect_eq(f.c->closed_err, -EPROTO);
    fake_free(&f);

    f = fake_new();
    char subject[SB_SUBJECT_MAX + 2];
    memset(subject, 's', sizeof(subject) - 1);
    subject[sizeof(subject) - 1] = '\0';
    struct stream s = {0};
    put_msg(&s, 1, subject, "x");
    feed(&f, s.buf, s.len);
    cr_expect_eq(read_scan(&f), -EPROTO);
    free(s.buf);
    fake_free(&f);
}

/* ---- big input ----------------------------------------------------------- */

Test(client_io, a_message_larger_than_the_read_buffer)
{
    struct fake f = fake_new();
    f.c->max_frame = 4u << 20;
    size_t big = 3 * CLIENT_RBUF_SIZE + 123;
    uint8_t *payload = malloc(big);
    cr_assert_not_null(payload);
    for (size_t i = 0; i < big; i++) {
        payload[i] = (uint8_t)(i * 7 + i / 251);
    }
    struct stream s = {0};
    put_msg(&s, 1, "small.before", "m1");
    put_frame(&s, FRAME_OP_MSG, 0, 2, "big", "reply.to", payload, big);
    put_pong(&s, 4);
    put_msg(&s, 1, "small.after", "m2");
    feed_big(&f, s.buf, s.len);
    cr_expect_geq(f.c->rcap, big, "the buffer grew to hold the frame");
    cr_expect_eq(f.c->pong_seen, 4);

    sb_msg m;
    cr_assert(client_take_msg(f.c, &m));
    cr_expect_str_eq(m.subject, "small.before");
    cr_assert(client_take_msg(f.c, &m));
    cr_expect_str_eq(m.subject, "big");
    cr_expect_str_eq(m.reply, "reply.to");
    cr_expect_eq(m.sid, 2);
    cr_assert_eq(m.payload_len, big);
    cr_expect(memcmp(m.payload, payload, big) == 0, "the payload arrives intact");
    cr_assert(client_take_msg(f.c, &m));
    cr_expect_str_eq(m.subject, "small.after");
    cr_expect_not(client_take_msg(f.c, &m));
    free(payload);
    free(s.buf);
    fake_free(&f);
}

Test(client_io, input_kept_is_bounded)
{
    /* A frame claiming more than the client keeps: refused before a byte
     * of it is buffered, and the connection is over. */
    struct fake f = fake_new();
    f.c->max_frame = UINT32_MAX;
    size_t rcap = f.c->rcap;
    uint8_t hdr[FRAME_HEADER_SIZE];
    frame_encode_header(hdr, CLIENT_RBUF_MAX + 1, FRAME_OP_MSG, 0, 0, 0, 0, 1);
    feed(&f, hdr, sizeof(hdr));
    cr_assert_eq(read_scan(&f), (int)sizeof(hdr));
    cr_expect_eq(client_read_some(f.c), -ENOBUFS);
    cr_expect_eq(f.c->closed_err, -ENOBUFS);
    cr_expect_eq(f.c->rcap, rcap, "nothing allocated for it");
    sb_msg m;
    cr_expect_eq(sb_next_msg(f.c, &m, 0), -ENOBUFS, "sticky");
    cr_expect_eq(sb_publish(f.c, "x", NULL, "x", 1), -ENOBUFS);
    fake_free(&f);

    /* The bound counts the messages not taken yet too: 1 MiB of them and
     * a frame that alone would fit, but not beside them. */
    f = fake_new();
    f.c->max_frame = UINT32_MAX;
    struct stream s = {0};
    char payload[1024];
    memset(payload, 'm', sizeof(payload) - 1);
    payload[sizeof(payload) - 1] = '\0';
    for (int i = 0; i < 1024; i++) {
        put_msg(&s, 1, "kept", payload);
    }
    size_t kept = s.len;
    uint8_t *p = stream_room(&s, FRAME_HEADER_SIZE);
    frame_encode_header(p, (uint32_t)(CLIENT_RBUF_MAX - kept + 1), FRAME_OP_MSG, 0, 0, 0, 0, 1);
    s.len += FRAME_HEADER_SIZE;
    set_nonblocking(f.broker);
    size_t sent = 0;
    int r = 0;
    for (int i = 0; i < 100000 && r >= 0; i++) {
        ssize_t n = send(f.broker, s.buf + sent, s.len - sent, MSG_NOSIGNAL);
        sent += n > 0 ? (size_t)n : 0;
        r = read_scan(&f);
        if (r == 0 && sent == s.len) {
            r = client_read_some(f.c);
        }
    }
    cr_expect_eq(r, -ENOBUFS);
    cr_expect_eq(sent, s.len);
    cr_expect_lt(f.c->rcap, (size_t)CLIENT_RBUF_MAX, "refused before growing to it");
    free(s.buf);
    fake_free(&f);
}

/* ---- output batching ----------------------------------------------------- */

/* The broker's end of a SOCK_SEQPACKET pair, read by a thread: every
 * record is one send() or sendmsg() of the client. */
struct recorder {
    int fd;
    size_t want; /* stop after this many bytes */
    size_t bytes;
    size_t records;
    size_t sizes[64];
    uint8_t *data;
};

static void *record(void *arg)
{
    struct recorder *rec = arg;
    uint8_t *buf = malloc(1u << 20);
    cr_assert_not_null(buf);
    while (rec->bytes < rec->want) {
        ssize_t n = recv(rec->fd, buf, 1u << 20, 0);
        if (n <= 0) {
            break;
        }
        if (rec->records < 64) {
            rec->sizes[rec->records] = (size_t)n;
        }
        memcpy(rec->data + rec->bytes, buf, (size_t)n);
        __atomic_add_fetch(&rec->records, 1, __ATOMIC_SEQ_CST);
        rec->bytes += (size_t)n;
    }
    free(buf);
    return NULL;
}

/* Check that data[0..len) is `count` PUB frames on `subject`, and return
 * the payload length of the last one. */
static size_t expect_pubs(const uint8_t *data, size_t len, size_t count, const char *subject)
{
    size_t at = 0;
    size_t last = 0;
    for (size_t i = 0; i < count; i++) {
        struct frame fr;
        cr_assert_eq(frame_parse(data + at, len - at, UINT32_MAX, &fr), 0, "frame %zu", i);
        cr_assert_eq(fr.op, FRAME_OP_PUB);
        cr_assert_eq(fr.subject_len, strlen(subject));
        cr_assert(memcmp(fr.subject, subject, fr.subject_len) == 0);
        last = fr.payload_len;
        at += fr.size;
    }
    cr_assert_eq(at, len);
    return last;
}

Test(client_io, publishes_coalesce_into_one_write)
{
    struct fake f = fake_new_type(SOCK_SEQPACKET);
    enum { N = 1000 };
    uint8_t payload[32];
    memset(payload, 'x', sizeof(payload));
    size_t frame = frame_encoded_size(7, 0, 0, sizeof(payload));
    struct recorder rec = {.fd = f.broker, .want = N * frame, .data = malloc(N * frame)};
    cr_assert_not_null(rec.data);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, record, &rec), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(sb_publish(f.c, "bench.x", NULL, payload, sizeof(payload)), 0);
    }
    cr_expect_eq(f.c->wlen, N * frame, "buffered, not written");
    cr_expect_eq(__atomic_load_n(&rec.records, __ATOMIC_SEQ_CST), 0, "nothing written yet");
    cr_expect_eq(sb_events(f.c) & POLLOUT, POLLOUT, "output is pending");

    cr_assert_eq(sb_process(f.c), 0);
    pthread_join(t, NULL);
    cr_expect_eq(rec.records, 1, "%zu frames left in %zu writes", (size_t)N, rec.records);
    cr_expect_eq(rec.bytes, N * frame);
    expect_pubs(rec.data, rec.bytes, N, "bench.x");
    cr_expect_eq(sb_events(f.c) & POLLOUT, 0);
    free(rec.data);
    fake_free(&f);
}

Test(client_io, a_full_buffer_leaves_in_one_write_and_a_big_frame_in_its_own)
{
    struct fake f = fake_new_type(SOCK_SEQPACKET);
    enum { N = 5000 };
    uint8_t payload[100];
    memset(payload, 'y', sizeof(payload));
    size_t frame = frame_encoded_size(7, 0, 0, sizeof(payload));
    size_t big_len = CLIENT_DIRECT_MIN + 1000;
    uint8_t *big = calloc(1, big_len);
    cr_assert_not_null(big);
    size_t big_frame = frame_encoded_size(7, 0, 0, big_len);
    size_t total = N * frame + big_frame;

    struct recorder rec = {.fd = f.broker, .want = total, .data = malloc(total)};
    cr_assert_not_null(rec.data);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, record, &rec), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(sb_publish(f.c, "bench.y", NULL, payload, sizeof(payload)), 0);
    }
    /* A frame of CLIENT_DIRECT_MIN or more: what is buffered leaves first,
     * then the frame with one sendmsg() of its parts. */
    cr_assert_eq(sb_publish(f.c, "bench.y", NULL, big, big_len), 0);
    cr_expect_eq(f.c->wlen, 0, "nothing of it was buffered");
    pthread_join(t, NULL);

    size_t per_write = CLIENT_WBUF_SIZE / frame; /* frames a full buffer holds */
    size_t writes = (N + per_write - 1) / per_write;
    cr_expect_eq(rec.records, writes + 1, "%zu records for %zu buffers and one big frame",
                 rec.records, writes);
    for (size_t i = 0; i + 1 < writes && i < 64; i++) {
        cr_expect_eq(rec.sizes[i], per_write * frame, "write %zu: a full buffer", i);
    }
    cr_expect_eq(rec.sizes[writes], big_frame, "the big frame in a write of its own");
    cr_expect_eq(rec.bytes, total);
    cr_expect_eq(expect_pubs(rec.data, rec.bytes, N + 1, "bench.y"), big_len);
    free(rec.data);
    free(big);
    fake_free(&f);
}

/* ---- the per-message paths ---------------------------------------------- */

/* A valid subject of `len` bytes: tokens of letters, a dot every 5th byte. */
static void make_subject(char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        s[i] = (i % 5 == 4 && i + 1 < len) ? '.' : (char)('a' + (i * 7) % 26);
    }
    s[len] = '\0';
}

/* The frames in the write buffer are exactly those frame_encode() makes
 * for `subjects`, in order, each with `payload`. */
static void expect_buffered(const sb_client *c, char subjects[][80], size_t n,
                            const uint8_t *payload, size_t pl)
{
    uint8_t want[256];
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t sl = strlen(subjects[i]);
        size_t size =
            frame_encode(want, FRAME_OP_PUB, 0, 0, subjects[i], sl, NULL, 0, NULL, 0, payload, pl);
        cr_assert_leq(at + size, c->wlen, "frame %zu", i);
        cr_expect(memcmp(c->wbuf + at, want, size) == 0, "frame %zu (subject \"%s\")", i,
                  subjects[i]);
        at += size;
    }
    cr_expect_eq(at, c->wlen);
}

Test(client_io, a_subject_that_changes_after_a_valid_one_is_checked_again)
{
    struct fake f = fake_new();
    /* Every length the short compare treats apart (below 8, 8 to 16, 17
     * to 32, above), each subject first valid, then made invalid in place
     * one byte at a time, keeping its length. */
    static const char bad[] = {'.', '*', '>', ' ', '\x7f', '\x01', '\xff'};
    for (size_t len = 1; len <= 40; len++) {
        char s[80];
        make_subject(s, len);
        cr_assert_eq(sb_publish(f.c, s, NULL, "x", 1), 0, "\"%s\"", s);
        cr_assert_eq(sb_publish(f.c, s, NULL, "x", 1), 0, "\"%s\" again", s);
        for (size_t at = 0; at < len; at++) {
            for (size_t k = 0; k < sizeof(bad); k++) {
                char t[80];
                memcpy(t, s, len + 1);
                if (t[at] == '.' && bad[k] == '.') {
                    continue; /* the same subject */
                }
                if (bad[k] == '.' && at > 0 && at + 1 < len && t[at - 1] != '.' &&
                    t[at + 1] != '.') {
                    continue; /* a dot between two tokens: valid */
                }
                t[at] = bad[k];
                cr_expect_eq(sb_publish(f.c, t, NULL, "x", 1), -EINVAL, "\"%s\" after \"%s\"", t,
                             s);
                /* The valid one is still taken after the refusal. */
                cr_expect_eq(sb_publish(f.c, s, NULL, "x", 1), 0, "\"%s\"", s);
            }
        }
        f.c->wlen = 0; /* nothing goes out: the buffer is only looked at */
    }
    /* The caller's own buffer changed in place between two publishes. */
    char buf[] = "orders.eu.new";
    cr_expect_eq(sb_publish(f.c, buf, NULL, "x", 1), 0);
    buf[6] = '*';
    cr_expect_eq(sb_publish(f.c, buf, NULL, "x", 1), -EINVAL);
    buf[6] = '.';
    buf[12] = '\0';
    cr_expect_eq(sb_publish(f.c, buf, NULL, "x", 1), 0, "a shorter valid one");
    buf[11] = '.';
    cr_expect_eq(sb_publish(f.c, buf, NULL, "x", 1), -EINVAL, "a trailing dot");
    cr_expect_eq(sb_publish(f.c, "", NULL, "x", 1), -EINVAL);
    cr_expect_eq(sb_publish(f.c, NULL, NULL, "x", 1), -EINVAL);
    /* A valid subject with an invalid reply, or a payload without data. */
    cr_expect_eq(sb_publish(f.c, "orders.eu", "a..b", "x", 1), -EINVAL);
    cr_expect_eq(sb_publish(f.c, "orders.eu", NULL, NULL, 1), -EINVAL);
    fake_free(&f);
}

Test(client_io, publishes_encode_every_subject_length_exactly)
{
    struct fake f = fake_new();
    uint8_t payload[40];
    for (size_t i = 0; i < sizeof(payload); i++) {
        payload[i] = (uint8_t)(i * 13 + 1);
    }
    for (size_t pl = 0; pl <= sizeof(payload); pl += 20) {
        char subjects[80][80];
        size_t n = 0;
        for (size_t len = 1; len <= 40; len++) {
            make_subject(subjects[n], len);
            /* Twice: validated, then compared with the subject kept. */
            cr_assert_eq(sb_publish(f.c, subjects[n], NULL, pl ? payload : NULL, pl), 0);
            n++;
            memcpy(subjects[n], subjects[n - 1], sizeof(subjects[n]));
            cr_assert_eq(sb_publish(f.c, subjects[n], NULL, pl ? payload : NULL, pl), 0);
            n++;
        }
        expect_buffered(f.c, subjects, n, payload, pl);
        f.c->wlen = 0;
    }
    /* Headers, a reply and flags go the general way, encoded the same. */
    sb_pub pub = {.subject = "a.b",
                  .reply = "r.s",
                  .headers = "hh",
                  .headers_len = 2,
                  .payload = "pp",
                  .payload_len = 2,
                  .flags = SB_PUB_RETAIN};
    cr_assert_eq(sb_publish_ex(f.c, &pub), 0);
    uint8_t want[64];
    size_t size =
        frame_encode(want, FRAME_OP_PUB, SB_PUB_RETAIN, 0, "a.b", 3, "r.s", 3, "hh", 2, "pp", 2);
    cr_assert_eq(f.c->wlen, size);
    cr_expect(memcmp(f.c->wbuf, want, size) == 0);
    fake_free(&f);
}

Test(client_io, messages_of_every_subject_length_with_and_without_a_reply)
{
    struct fake f = fake_new();
    struct stream s = {0};
    char subjects[40][80];
    for (size_t len = 1; len <= 40; len++) {
        make_subject(subjects[len - 1], len);
        /* Every third with a reply, so that one without follows one with. */
        const char *reply = len % 3 == 0 ? subjects[len / 3 - 1] : NULL;
        put_frame(&s, FRAME_OP_MSG, 0, (uint32_t)len, subjects[len - 1], reply, "pl", 2);
    }
    feed(&f, s.buf, s.len);
    cr_assert_gt(read_scan(&f), 0);
    for (size_t len = 1; len <= 40; len++) {
        sb_msg m;
        cr_assert(client_take_msg(f.c, &m), "message %zu", len);
        cr_expect_eq(m.sid, len);
        cr_expect_eq(m.subject_len, len);
        cr_expect_str_eq(m.subject, subjects[len - 1]);
        const char *reply = len % 3 == 0 ? subjects[len / 3 - 1] : "";
        cr_expect_str_eq(m.reply, reply, "message %zu", len);
        cr_expect_eq(m.reply_len, strlen(reply));
        cr_expect_eq(m.headers_len, 0);
        cr_expect_eq(m.payload_len, 2);
        cr_expect(memcmp(m.payload, "pl", 2) == 0);
        cr_expect_eq(m.flags, 0);
    }
    sb_msg m;
    cr_expect_not(client_take_msg(f.c, &m));
    free(s.buf);
    fake_free(&f);
}

/* Good MSGs, then one frame with its header bent as `bend` says. */
static int scan_after_good_msgs(uint32_t max_frame, void (*bend)(uint8_t *hdr), size_t *taken)
{
    struct fake f = fake_new();
    f.c->max_frame = max_frame;
    struct stream s = {0};
    put_msg(&s, 1, "a.b", "one");
    put_msg(&s, 2, "a.c", "two");
    size_t at = s.len;
    put_msg(&s, 3, "a.d", "three");
    bend(s.buf + at);
    feed(&f, s.buf, s.len);
    int r = read_scan(&f);
    struct got_list got = {0};
    take_all(&f, &got);
    *taken = got.n;
    free(s.buf);
    fake_free(&f);
    return r;
}

static void bend_nothing(uint8_t *hdr)
{
    (void)hdr;
}

static void bend_size_small(uint8_t *hdr)
{
    frame_put_u32(hdr, 15);
}

static void bend_inner_overrun(uint8_t *hdr)
{
    frame_put_u16(hdr + 10, 200); /* headers longer than the frame */
}

static void bend_op_unknown(uint8_t *hdr)
{
    hdr[4] = 0x7e;
}

static void bend_size_over_max(uint8_t *hdr)
{
    frame_put_u32(hdr, SB_MAX_FRAME_DEFAULT + FRAME_META_SIZE + 1); /* the rest never comes */
}

static void bend_meta_too_short(uint8_t *hdr)
{
    hdr[5] |= FRAME_MSG_META; /* a 5-byte payload cannot hold the block */
}

Test(client_io, a_bad_frame_after_good_messages_is_still_a_protocol_error)
{
    size_t n;
    cr_expect_gt(scan_after_good_msgs(SB_MAX_FRAME_DEFAULT, bend_nothing, &n), 0);
    cr_expect_eq(n, 3);
    cr_expect_eq(scan_after_good_msgs(SB_MAX_FRAME_DEFAULT, bend_size_small, &n), -EPROTO);
    cr_expect_eq(scan_after_good_msgs(SB_MAX_FRAME_DEFAULT, bend_inner_overrun, &n), -EPROTO);
    cr_expect_eq(scan_after_good_msgs(SB_MAX_FRAME_DEFAULT, bend_op_unknown, &n), -EPROTO);
    cr_expect_eq(scan_after_good_msgs(SB_MAX_FRAME_DEFAULT, bend_size_over_max, &n), -EPROTO);
    cr_expect_eq(scan_after_good_msgs(SB_MAX_FRAME_DEFAULT, bend_meta_too_short, &n), -EPROTO);
    /* MSGs over max_frame by up to FRAME_META_SIZE are taken, as before
     * (these are 22, 22 and 24 bytes). */
    cr_expect_gt(scan_after_good_msgs(10, bend_nothing, &n), 0);
    cr_expect_eq(n, 3, "taken up to %u over max_frame", FRAME_META_SIZE);
}

/* A payload length no buffer has (a (size_t)-1 from a failed call) is
 * refused, never summed into a small frame size that then copies it. */
Test(client_io, a_payload_length_that_would_wrap_the_frame_size_is_refused)
{
    struct fake f = fake_new();
    char data[8] = "payload";
    /* Each wraps 16 + 3 + len to a size under max_frame. */
    const size_t lens[] = {SIZE_MAX, SIZE_MAX - 15, SIZE_MAX - 18};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        cr_expect_eq(sb_publish(f.c, "a.b", NULL, data, lens[i]), -EMSGSIZE, "length %zu", lens[i]);
        sb_pub pub = {.subject = "a.b",
                      .headers = "h",
                      .headers_len = 1,
                      .payload = data,
                      .payload_len = lens[i] - 1};
        cr_expect_eq(sb_publish_ex(f.c, &pub), -EMSGSIZE, "length %zu", lens[i] - 1);
        int fd = 0;
        pub.headers_len = 0;
        pub.payload_len = lens[i];
        cr_expect_eq(sb_publish_fds(f.c, &pub, &fd, 1), -EMSGSIZE, "length %zu", lens[i]);
    }
    cr_expect_eq(f.c->wlen, 0, "nothing buffered");
    fake_free(&f);
}

/* Send `bytes` with `fd` attached, as the broker sends a MSG that carries
 * a descriptor. */
static void feed_with_fd(struct fake *f, const void *bytes, size_t len, int fd)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct iovec iov = {.iov_base = (void *)bytes, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control.buf,
                        .msg_controllen = sizeof(control.buf)};
    struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &fd, sizeof(int));
    cr_assert_eq(sendmsg(f->broker, &mh, MSG_NOSIGNAL), (ssize_t)len);
}

Test(client_io, a_plain_message_after_one_with_a_descriptor_closes_it)
{
    struct fake f = fake_new();
    /* A MSG with the meta block and one descriptor, then a plain MSG. */
    struct stream s = {0};
    uint8_t body[FRAME_META_SIZE + 4];
    frame_meta_encode(body, &(struct frame_meta){.client_id = 7, .nfds = 1});
    memcpy(body + FRAME_META_SIZE, "with", 4);
    put_frame(&s, FRAME_OP_MSG, FRAME_MSG_META, 1, "a.fd", NULL, body, sizeof(body));
    size_t first = s.len;
    put_msg(&s, 1, "a.plain", "without");
    int p[2];
    cr_assert_eq(pipe(p), 0);
    feed_with_fd(&f, s.buf, first, p[0]);
    feed(&f, s.buf + first, s.len - first);
    close(p[0]);
    while (f.c->rtail < s.len) {
        cr_assert_geq(read_scan(&f), 0);
    }
    cr_assert_eq(client_scan(f.c), 0);
    sb_msg m;
    cr_assert(client_take_msg(f.c, &m));
    const int *fds;
    cr_assert_eq(sb_msg_fds(f.c, &m, &fds), 1);
    int got = fds[0];
    int open_flags = fcntl(got, F_GETFD);
    cr_expect_neq(open_flags, -1, "the descriptor is open while its message is current");
    cr_assert(client_take_msg(f.c, &m));
    cr_expect_str_eq(m.subject, "a.plain");
    cr_expect_eq(sb_msg_fds(f.c, &m, &fds), 0);
    int r = fcntl(got, F_GETFD);
    int err = errno;
    cr_expect(r == -1 && err == EBADF, "closed when the next message is taken (fcntl: %d)", r);
    close(p[1]);
    free(s.buf);
    fake_free(&f);
}
