/*
 * test_router.c - the bus without sockets: subscribing, unsubscribing,
 * routing, queue groups, NO_RESPONDERS, auto-unsubscribe, echo, the
 * limits a SUB is held to, retained values, ACL refusals, and the ERR a
 * refusal becomes.
 *
 * Each client is a real peer (peer_new()) on a real net and bus, but its
 * connection is never opened: what the bus queues for it stays in its
 * output buffer, where the test reads it back as frames. Frames reach the
 * bus through the same entry net uses (conn_ops.frame), or straight
 * through router_*() to see the codes they return. At the end every peer
 * is closed through net_close(), as at a broker's stop.
 */
#include "acl.h"
#include "acl_config.h"
#include "bus.h"
#include "config.h"
#include "conn.h"
#include "frame.h"
#include "matchcache.h"
#include "hash.h"
#include "peer.h"
#include "proto.h"
#include "router.h"
#include "session.h"
#include "sockbus.h"
#include "transport.h"

#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uv_loop_t loop;
static struct net net; /* large: its read chunk */
static struct bus bus;
static struct broker_config cfg;

static void setup(void)
{
    cr_assert_eq(uv_loop_init(&loop), 0);
    hash_seed_fixed(9);
    config_init(&cfg);
    config_finish(&cfg);
}

/* Start the bus with `cfg` as the test has set it. */
static void start(void)
{
    net_init(&net, &loop, &session_conn_ops, cfg.max_frame);
    cr_assert_eq(session_init(&bus, &net, &cfg), 0);
}

static void on_net_closed(struct net *n)
{
    (void)n;
    session_close(&bus);
}

static void teardown(void)
{
    net_close(&net, on_net_closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(net.nconns, 0u);
    cr_assert_eq(bus.nsubs, 0u, "subscriptions left: %llu", (unsigned long long)bus.nsubs);
    session_deinit(&bus);
    net_deinit(&net);
    cr_assert_eq(uv_loop_close(&loop), 0);
    acl_free(cfg.acl);
    cfg.acl = NULL;
}

TestSuite(router, .init = setup, .fini = teardown, .timeout = 60);

/* ---- building frames ---------------------------------------------------- */

static uint8_t frame_buf[64 * 1024];

/* Encode a frame into frame_buf and parse it back. */
static struct frame make(uint8_t op, uint8_t flags, uint32_t sid, const char *subject,
                         const char *reply, const char *payload)
{
    size_t sl = subject ? strlen(subject) : 0;
    size_t rl = reply ? strlen(reply) : 0;
    size_t pl = payload ? strlen(payload) : 0;
    size_t size =
        frame_encode(frame_buf, op, flags, sid, subject, sl, reply, rl, NULL, 0, payload, pl);
    struct frame f;
    cr_assert_eq(frame_parse(frame_buf, size, UINT32_MAX, &f), 0);
    return f;
}

/* A welcomed client named `name`, with "echo" as given. */
static struct peer *client(const char *name, bool echo)
{
    struct peer *p;
    cr_assert_eq(peer_new(&bus, &net, &transport_unix, &p), 0);
    char hello[128];
    snprintf(hello, sizeof(hello), "{\"protocol\":1,\"name\":\"%s\",\"echo\":%s}", name,
             echo ? "true" : "false");
    struct frame f = make(FRAME_OP_HELLO, 0, 0, NULL, NULL, hello);
    session_conn_ops.frame(&p->conn, &f);
    cr_assert(p->hello_done, "HELLO refused");
    connbuf_clear(&p->conn.out); /* the WELCOME */
    return p;
}

static int sub(struct peer *p, uint32_t sid, const char *pattern, const char *queue)
{
    struct frame f = make(FRAME_OP_SUB, 0, sid, pattern, queue, NULL);
    return router_subscribe(&bus, p, &f);
}

/* Subscribe `p` to "<prefix>.<i>" for each i < n, with sid first_sid + i. */
static void sub_numbered(struct peer *p, const char *prefix, uint32_t n, uint32_t first_sid)
{
    for (uint32_t i = 0; i < n; i++) {
        char subject[32];
        snprintf(subject, sizeof(subject), "%s.%u", prefix, i);
        cr_assert_eq(sub(p, first_sid + i, subject, NULL), 0, "SUB %s", subject);
    }
}

static int pub(struct peer *p, const char *subject, const char *reply, const char *payload)
{
    struct frame f = make(FRAME_OP_PUB, 0, 0, subject, reply, payload);
    return router_publish(&bus, p, &f);
}

static int unsub(struct peer *p, uint32_t sid, uint32_t max)
{
    return router_unsubscribe(&bus, p, sid, max);
}

/* Hand a frame to the bus as net would. */
static void send_frame(struct peer *p, uint8_t op, uint8_t flags, uint32_t sid, const char *subject,
                       const char *reply, const char *payload)
{
    struct frame f = make(op, flags, sid, subject, reply, payload);
    session_conn_ops.frame(&p->conn, &f);
    session_conn_ops.frames_done(&p->conn); /* frame_buf is reused */
}

/* ---- reading what a client was sent ------------------------------------- */

struct sent {
    uint8_t op;
    uint8_t flags;
    uint32_t sid;
    char subject[256];
    char payload[512];
};

/* Take every frame queued to `p` (its own bytes and shared bodies, in
 * order) into out[], at most `max`; the queue is emptied. Returns how
 * many. */
static size_t take(struct peer *p, struct sent *out, size_t max)
{
    struct conn_buf *q = &p->conn.out;
    size_t total = q->len + q->seg_bytes;
    uint8_t *flat = malloc(total ? total : 1);
    cr_assert_not_null(flat);
    size_t at = 0;
    size_t pos = 0;
    for (size_t i = 0; i <= q->nsegs; i++) {
        size_t end = i < q->nsegs ? q->segs[i].at : q->len;
        memcpy(flat + at, q->data + pos, end - pos);
        at += end - pos;
        if (i < q->nsegs) {
            memcpy(flat + at, q->segs[i].body->data, q->segs[i].body->len);
            at += q->segs[i].body->len;
        }
        pos = end;
    }
    size_t n = 0;
    for (size_t off = 0; off < total;) {
        struct frame f = {0};
        cr_assert_eq(frame_parse(flat + off, total - off, UINT32_MAX, &f), 0);
        cr_assert_lt(n, max, "more than %zu frames queued", max);
        struct sent *s = &out[n++];
        s->op = f.op;
        s->flags = f.flags;
        s->sid = f.sid;
        snprintf(s->subject, sizeof(s->subject), "%.*s", (int)f.subject_len,
                 (const char *)f.subject);
        snprintf(s->payload, sizeof(s->payload), "%.*s", (int)f.payload_len,
                 (const char *)f.payload);
        off += f.size;
    }
    free(flat);
    connbuf_clear(q);
    return n;
}

/* The one frame queued to `p`; fails unless there is exactly one. */
static struct sent take_one(struct peer *p)
{
    struct sent s[8];
    size_t n = take(p, s, 8);
    cr_assert_eq(n, 1, "%zu frames queued, expected 1", n);
    return s[0];
}

static size_t count(struct peer *p)
{
    struct sent s[64];
    return take(p, s, 64);
}

/* ---- subscribe, publish, unsubscribe ------------------------------------ */

Test(router, a_message_reaches_each_matching_subscription_once)
{
    start();
    struct peer *a = client("a", true);
    struct peer *b = client("b", true);
    cr_assert_eq(sub(a, 1, "sensors.temp", NULL), 0);
    cr_assert_eq(sub(a, 2, "sensors.*", NULL), 0);
    cr_assert_eq(sub(a, 3, "sensors.>", NULL), 0);
    cr_assert_eq(sub(a, 4, "other.>", NULL), 0);
    cr_assert_eq(bus.nsubs, 4u);

    cr_assert_eq(pub(b, "sensors.temp", NULL, "21.5"), 0);
    struct sent s[8];
    cr_assert_eq(take(a, s, 8), 3);
    bool seen[5] = {false};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(s[i].op, FRAME_OP_MSG);
        cr_assert_str_eq(s[i].subject, "sensors.temp");
        cr_assert_str_eq(s[i].payload, "21.5");
        cr_assert_lt(s[i].sid, 5u);
        cr_assert(!seen[s[i].sid], "sid %u twice", s[i].sid);
        seen[s[i].sid] = true;
    }
    cr_assert(seen[1] && seen[2] && seen[3] && !seen[4]);
    cr_assert_eq(count(b), 0, "the publisher has no subscription");

    /* '*' is one token, '>' one or more. */
    cr_assert_eq(pub(b, "sensors.temp.inside", NULL, "x"), 0);
    struct sent one = take_one(a);
    cr_assert_eq(one.sid, 3u);
    cr_assert_eq(pub(b, "sensors", NULL, "x"), 0);
    cr_assert_eq(count(a), 0);
    cr_assert_eq(a->msgs_out, 4u);
    cr_assert_eq(b->msgs_in, 3u);
}

Test(router, unsubscribe_stops_delivery_and_unknown_sids_are_refused)
{
    start();
    struct peer *a = client("a", true);
    cr_assert_eq(sub(a, 7, "t", NULL), 0);
    cr_assert_gt(a->sub_bytes, 0u);
    cr_assert_eq(unsub(a, 7, 0), 0);
    cr_assert_eq(a->sub_bytes, 0u, "the subscription's charge is refunded");
    cr_assert_eq(bus.nsubs, 0u);
    cr_assert_eq(pub(a, "t", NULL, "x"), 0);
    cr_assert_eq(count(a), 0);
    cr_assert_eq(unsub(a, 7, 0), ROUTER_E_SID_UNKNOWN);
    cr_assert_eq(unsub(a, 8, 3), ROUTER_E_SID_UNKNOWN);
}

Test(router, sids_patterns_and_subjects_are_checked)
{
    start();
    struct peer *a = client("a", true);
    cr_assert_eq(sub(a, 0, "t", NULL), ROUTER_E_SID_IN_USE);
    cr_assert_eq(sub(a, 1, "t", NULL), 0);
    cr_assert_eq(sub(a, 1, "u", NULL), ROUTER_E_SID_IN_USE);
    cr_assert_eq(sub(a, 2, "a..b", NULL), ROUTER_E_PATTERN_INVALID);
    cr_assert_eq(sub(a, 2, "a.>.b", NULL), ROUTER_E_PATTERN_INVALID);
    cr_assert_eq(sub(a, 2, "a", "bad queue"), ROUTER_E_PATTERN_INVALID);
    cr_assert_eq(pub(a, "a.*", NULL, "x"), ROUTER_E_SUBJECT_INVALID);
    cr_assert_eq(pub(a, "t", "bad reply", "x"), ROUTER_E_SUBJECT_INVALID);
    cr_assert_eq(count(a), 0, "nothing delivered for a refused PUB");
    cr_assert_eq(bus.nsubs, 1u);
}

/* ---- a run of publishes on one subject ---------------------------------- */

/* Consecutive publishes on one subject reuse one match (router_match()):
 * every change between them must still be seen. */
Test(router, a_run_of_publishes_on_one_subject_sees_every_change)
{
    start();
    struct peer *pubr = client("pub", true);
    struct peer *a = client("a", true);
    struct peer *b = client("b", true);
    cr_assert_eq(sub(a, 1, "run.t", NULL), 0);
    cr_assert_eq(pub(pubr, "run.t", NULL, "1"), 0);
    cr_assert_eq(count(a), 1);

    /* A subscription added between two publishes gets the second. */
    cr_assert_eq(sub(b, 1, "run.*", NULL), 0);
    cr_assert_eq(pub(pubr, "run.t", NULL, "2"), 0);
    cr_assert_eq(count(a), 1);
    cr_assert_eq(count(b), 1, "a new subscription is part of the next match");

    /* One ended between them does not (and is not touched: ASan). */
    cr_assert_eq(unsub(a, 1, 0), 0);
    cr_assert_eq(pub(pubr, "run.t", NULL, "3"), 0);
    cr_assert_eq(count(a), 0, "an ended subscription is not part of the next match");
    cr_assert_eq(count(b), 1);

    /* A peer gone: its subscriptions with it. */
    router_remove_peer(&bus, b);
    cr_assert_eq(pub(pubr, "run.t", NULL, "4"), 0);
    cr_assert_eq(count(b), 0);
    cr_assert_eq(bus.stats.msgs_out, 4u);

    /* Two publishers without echo on one subject: each is left out of its
     * own match only. */
    struct peer *q1 = client("q1", false);
    struct peer *q2 = client("q2", false);
    cr_assert_eq(sub(q1, 1, "run.q", NULL), 0);
    cr_assert_eq(sub(q2, 1, "run.q", NULL), 0);
    cr_assert_eq(pub(q1, "run.q", NULL, "x"), 0);
    cr_assert_eq(pub(q2, "run.q", NULL, "x"), 0);
    cr_assert_eq(pub(q2, "run.q", NULL, "x"), 0);
    cr_assert_eq(pub(q1, "run.q", NULL, "x"), 0);
    cr_assert_eq(count(q1), 2, "q2's two");
    cr_assert_eq(count(q2), 2, "q1's two");
}

/* Subjects that differ in one byte, at every place the comparison of
 * bytes_same() looks, and across the longest subject it keeps,
 * never share a match. */
Test(router, subjects_that_differ_in_one_byte_do_not_share_a_match)
{
    start();
    struct peer *pubr = client("pub", true);
    struct peer *a = client("a", true);
    static const size_t lens[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 127, 128, 129, 200};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t len = lens[i];
        for (size_t at = 0; at < len; at++) {
            char one[256];
            char other[256];
            memset(one, 'a', len);
            one[len] = '\0';
            memcpy(other, one, len + 1);
            other[at] = 'b';
            uint32_t sid = (uint32_t)(i * 1000 + at + 1);
            cr_assert_eq(sub(a, sid, one, NULL), 0);
            cr_assert_eq(pub(pubr, one, NULL, "x"), 0);
            cr_assert_eq(pub(pubr, other, NULL, "x"), 0);
            cr_assert_eq(pub(pubr, one, NULL, "x"), 0);
            cr_assert_eq(count(a), 2, "len %zu, differing at %zu", len, at);
            cr_assert_eq(unsub(a, sid, 0), 0);
        }
    }
}

/* ---- runs: PUBs one behind the other in one read ------------------------ */

/* A read's worth of frames, one behind the other, as net hands them up. */
static uint8_t read_buf[256 * 1024];

struct reading {
    size_t len;
    size_t n;
    struct frame f[1024];
};

static void read_add_op(struct reading *r, uint8_t op, uint8_t flags, uint32_t sid,
                        const char *subject, const char *reply, const char *payload)
{
    size_t sl = subject ? strlen(subject) : 0;
    size_t rl = reply ? strlen(reply) : 0;
    size_t pl = payload ? strlen(payload) : 0;
    cr_assert_lt(r->n, sizeof(r->f) / sizeof(r->f[0]));
    uint8_t *at = read_buf + r->len;
    size_t size = frame_encode(at, op, flags, sid, subject, sl, reply, rl, NULL, 0, payload, pl);
    cr_assert_eq(frame_parse(at, size, UINT32_MAX, &r->f[r->n]), 0);
    r->len += size;
    r->n++;
}

static void read_add(struct reading *r, uint8_t flags, const char *subject, const char *reply,
                     const char *payload)
{
    read_add_op(r, FRAME_OP_PUB, flags, 0, subject, reply, payload);
}

/* Hand the frames of `r` from `p` to the bus as net does: each through
 * conn_ops.frame, then conn_ops.frames_done. */
static void read_deliver(struct peer *p, const struct reading *r)
{
    p->conn.frames_end = read_buf + r->len; /* what the router may look ahead in */
    for (size_t i = 0; i < r->n; i++) {
        session_conn_ops.frame(&p->conn, &r->f[i]);
    }
    p->conn.frames_end = NULL;
    session_conn_ops.frames_done(&p->conn);
}

Test(router, a_run_reaches_every_subscription_with_its_own_sid_in_order)
{
    start();
    struct peer *pubr = client("pub", true);
    struct peer *a = client("a", true);
    struct peer *b = client("b", true);
    cr_assert_eq(sub(a, 7, "run.t", NULL), 0);
    cr_assert_eq(sub(b, 9, "run.*", NULL), 0);
    cr_assert_eq(sub(b, 11, "run.>", NULL), 0);
    static struct reading r;
    memset(&r, 0, sizeof(r));
    for (int i = 0; i < 200; i++) {
        char payload[16];
        snprintf(payload, sizeof(payload), "%d", i);
        read_add(&r, 0, "run.t", NULL, payload);
    }
    read_deliver(pubr, &r);
    static struct sent got[512];
    cr_assert_eq(take(a, got, 512), 200);
    for (int i = 0; i < 200; i++) {
        char payload[16];
        snprintf(payload, sizeof(payload), "%d", i);
        cr_assert_eq(got[i].op, FRAME_OP_MSG);
        cr_assert_eq(got[i].flags, 0);
        cr_assert_eq(got[i].sid, 7u);
        cr_assert_str_eq(got[i].subject, "run.t");
        cr_assert_str_eq(got[i].payload, payload, "message %d out of order", i);
    }
    cr_assert_eq(take(b, got, 512), 400);
    size_t by_sid[12] = {0};
    for (int i = 0; i < 400; i++) {
        cr_assert(got[i].sid == 9 || got[i].sid == 11);
        by_sid[got[i].sid]++;
    }
    cr_assert_eq(by_sid[9], 200);
    cr_assert_eq(by_sid[11], 200);
    cr_assert_eq(pubr->msgs_in, 200u);
    cr_assert_eq(a->msgs_out, 200u);
    cr_assert_eq(b->msgs_out, 400u);
    cr_assert_eq(bus.stats.msgs_out, 600u);
}

/* Whatever breaks a run (another subject, a reply subject, a flag, a
 * frame that is not a PUB) goes after what came before it. */
Test(router, a_run_is_queued_before_whatever_breaks_it)
{
    start();
    struct peer *pubr = client("pub", true);
    cr_assert_eq(sub(pubr, 1, "run.>", NULL), 0);
    static struct reading r;
    memset(&r, 0, sizeof(r));
    read_add(&r, 0, "run.a", NULL, "1");
    read_add(&r, 0, "run.a", NULL, "2");
    read_add(&r, 0, "run.b", NULL, "3");
    read_add(&r, 0, "run.b", "run.reply", "4");
    read_add(&r, 0, "run.b", NULL, "5");
    read_add(&r, FRAME_PUB_RETAIN, "run.b", NULL, "6");
    read_add(&r, 0, "run.b", NULL, "7");
    read_add(&r, 0, "run.b", NULL, "8");
    /* A PING: its PONG comes after the MSGs of the PUBs before it. */
    read_add_op(&r, FRAME_OP_PING, 0, 42, NULL, NULL, NULL);
    read_add(&r, 0, "run.b", NULL, "9");
    read_deliver(pubr, &r);
    struct sent got[16];
    size_t n = take(pubr, got, 16);
    cr_assert_eq(n, 10);
    for (size_t i = 0; i < 8; i++) {
        char payload[4];
        snprintf(payload, sizeof(payload), "%zu", i + 1);
        cr_assert_eq(got[i].op, FRAME_OP_MSG, "frame %zu", i);
        cr_assert_eq(got[i].flags, 0, "frame %zu: a live MSG has no flag", i);
        cr_assert_str_eq(got[i].payload, payload, "frame %zu", i);
    }
    cr_assert_eq(got[8].op, FRAME_OP_PONG);
    cr_assert_eq(got[8].sid, 42u);
    cr_assert_eq(got[9].op, FRAME_OP_MSG);
    cr_assert_str_eq(got[9].payload, "9");
    /* The RETAIN in the middle of the run was stored. */
    struct peer *late = client("late", true);
    cr_assert_eq(sub(late, 1, "run.b", NULL), 0);
    struct sent kept = take_one(late);
    cr_assert_str_eq(kept.payload, "6");
    cr_assert_eq(kept.flags, FRAME_MSG_RETAINED);
}

/* Only frames one right behind the other make a run: the bytes between
 * two that are not are no part of it. */
Test(router, frames_apart_in_the_buffer_are_not_one_run)
{
    start();
    struct peer *pubr = client("pub", true);
    struct peer *a = client("a", true);
    struct peer *b = client("b", true);
    cr_assert_eq(sub(a, 1, "run.a", NULL), 0);
    cr_assert_eq(sub(b, 1, "run.b", NULL), 0);
    static struct reading r;
    memset(&r, 0, sizeof(r));
    read_add(&r, 0, "run.a", NULL, "1");
    read_add(&r, 0, "run.a", NULL, "2");
    read_add(&r, 0, "run.b", NULL, "never handed up");
    read_add(&r, 0, "run.a", NULL, "3");
    session_conn_ops.frame(&pubr->conn, &r.f[0]);
    session_conn_ops.frame(&pubr->conn, &r.f[1]);
    session_conn_ops.frame(&pubr->conn, &r.f[3]);
    session_conn_ops.frames_done(&pubr->conn);
    struct sent got[8];
    cr_assert_eq(take(a, got, 8), 3);
    cr_assert_str_eq(got[2].payload, "3");
    cr_assert_eq(count(b), 0);
}

/* A run that does not fit a subscriber's max_pending is queued message
 * by message: as many as fit, the rest dropped, counted and reported,
 * exactly as router_publish() would. */
Test(router, a_run_over_max_pending_drops_what_one_by_one_would)
{
    cfg.max_pending = 64 * 1024;
    start();
    struct peer *pubr = client("pub", true);
    struct peer *a = client("a", true);
    cr_assert_eq(sub(a, 1, "big", NULL), 0);
    static struct reading r;
    memset(&r, 0, sizeof(r));
    static char payload[1000];
    memset(payload, 'p', sizeof(payload) - 1);
    for (int i = 0; i < 100; i++) {
        read_add(&r, 0, "big", NULL, payload);
    }
    size_t size = r.f[0].size;
    size_t fit = cfg.max_pending / size;
    cr_assert_lt(fit, 100u, "the test needs a run that does not fit");
    read_deliver(pubr, &r);
    cr_assert_eq(a->msgs_out, fit);
    cr_assert_eq(a->dropped, 100 - fit);
    cr_assert_eq(bus.stats.dropped, 100 - fit);
    cr_assert_eq(a->conn.dropped_unreported, 100 - fit, "reported with the next write");
}

/* A connection whose subscriptions match a run several times receives
 * each message's MSGs back to back, and its budget keeps or drops each of
 * them as one by one would (docs/protocol.md, "One MSG per matching
 * subscription"): a run is not queued subscription after subscription
 * into one connection. */
Test(router, a_run_keeps_the_msgs_of_one_message_to_one_connection_together)
{
    start();
    struct peer *pubr = client("pub", true);
    struct peer *b = client("b", true);
    cr_assert_eq(sub(b, 9, "two.*", NULL), 0);
    cr_assert_eq(sub(b, 11, "two.>", NULL), 0);
    static struct reading r;
    memset(&r, 0, sizeof(r));
    for (int i = 0; i < 50; i++) {
        char payload[16];
        snprintf(payload, sizeof(payload), "%d", i);
        read_add(&r, 0, "two.t", NULL, payload);
    }
    cr_assert_eq(pub(pubr, "two.t", NULL, "first"), 0); /* the match, for the run to reuse */
    static struct sent got[256];
    cr_assert_eq(take(b, got, 256), 2);
    read_deliver(pubr, &r);
    cr_assert_eq(take(b, got, 256), 100);
    for (int i = 0; i < 50; i++) {
        char payload[16];
        snprintf(payload, sizeof(payload), "%d", i);
        cr_assert_str_eq(got[2 * i].payload, payload, "MSG %d is not message %d's", 2 * i, i);
        cr_assert_str_eq(got[2 * i + 1].payload, payload, "MSG %d is not message %d's", 2 * i + 1,
                         i);
        cr_assert_neq(got[2 * i].sid, got[2 * i + 1].sid);
    }
}

Test(router, a_run_to_one_connection_twice_over_max_pending_drops_what_one_by_one_would)
{
    cfg.max_pending = 64 * 1024;
    start();
    struct peer *pubr = client("pub", true);
    struct peer *b = client("b", true);
    cr_assert_eq(sub(b, 1, "big", NULL), 0);
    cr_assert_eq(sub(b, 2, ">", NULL), 0);
    static struct reading r;
    memset(&r, 0, sizeof(r));
    static char payload[1000];
    memset(payload, 'p', sizeof(payload) - 1);
    cr_assert_eq(pub(pubr, "big", NULL, "first"), 0); /* the match, for the run to reuse */
    static struct sent got[256];
    cr_assert_eq(take(b, got, 256), 2);
    for (int i = 0; i < 40; i++) {
        read_add(&r, 0, "big", NULL, payload);
    }
    size_t fit = cfg.max_pending / r.f[0].size;
    cr_assert_lt(fit, 80u, "the test needs a run that does not fit twice");
    read_deliver(pubr, &r);
    /* One by one: the first fit/2 messages reach both subscriptions. */
    cr_assert_eq(b->msgs_out, 2 + fit);
    size_t n = take(b, got, 256);
    cr_assert_eq(n, fit);
    for (size_t i = 0; i + 1 < n; i += 2) {
        cr_assert_neq(got[i].sid, got[i + 1].sid, "MSGs %zu and %zu", i, i + 1);
    }
}

/* ---- a run to one subscriber, on subjects that change ------------------- */

/* A subscriber holding one subscription per subject, and a publisher
 * cycling over those subjects: each frame joins the run to that one
 * connection with its own subscription's sid, in order, past the most
 * sids a run keeps (BUS_RUN_SIDS_MAX) and with repeats in between. */
Test(router, a_run_to_one_subscriber_keeps_each_frame_s_sid_and_the_order)
{
    start();
    struct peer *pubr = client("pub", false);
    struct peer *a = client("a", true);
    sub_numbered(a, "cyc", 10, 100);
    static struct reading r;
    memset(&r, 0, sizeof(r));
    const int n = 700;
    for (int i = 0; i < n; i++) {
        char subject[16], payload[16];
        snprintf(subject, sizeof(subject), "cyc.%d", (i / (i % 7 == 0 ? 1 : 2)) % 10);
        snprintf(payload, sizeof(payload), "%d", i);
        read_add(&r, 0, subject, NULL, payload);
    }
    cr_assert_gt(n, 2 * BUS_RUN_SIDS_MAX, "the test needs runs that fill up");
    read_deliver(pubr, &r);
    static struct sent got[1024];
    cr_assert_eq(take(a, got, 1024), (size_t)n);
    for (int i = 0; i < n; i++) {
        char payload[16];
        snprintf(payload, sizeof(payload), "%d", i);
        cr_assert_eq(got[i].op, FRAME_OP_MSG);
        cr_assert_eq(got[i].flags, 0);
        cr_assert_str_eq(got[i].payload, payload, "message %d out of order", i);
        const char *subject = (const char *)r.f[i].subject;
        cr_assert_eq(strncmp(got[i].subject, subject, r.f[i].subject_len), 0, "message %d", i);
        cr_assert_eq(got[i].sid, 100u + (uint32_t)(got[i].subject[4] - '0'),
                     "message %d on %s has sid %u", i, got[i].subject, got[i].sid);
    }
    cr_assert_eq(pubr->msgs_in, (uint64_t)n);
    cr_assert_eq(a->msgs_out, (uint64_t)n);
    cr_assert_eq(bus.stats.msgs_out, (uint64_t)n);
}

/* With enough subscriptions for the index (MATCHCACHE_INDEX_MIN_SUBS), the
 * router starts loading the matches of the frames ahead in the read
 * (router_look_ahead()): it reads only within the read, whatever the
 * bytes after the last whole frame claim, and the frames go out as
 * without it. The read here is a heap block of its exact size, so that
 * ASan sees a byte read past it. */
Test(router, a_run_through_the_index_looks_ahead_only_within_the_read)
{
    cfg.max_subscriptions = 1000;
    start();
    struct peer *pubr = client("pub", false);
    struct peer *a = client("a", true);
    enum { SUBJECTS = 600, FRAMES = 300 };
    sub_numbered(a, "dev", SUBJECTS, 1);
    static const uint8_t tails[][16] = {
        {0xff, 0xff, 0xff, 0xff, FRAME_OP_PUB, 0, 0xff, 0xff}, /* a frame larger than the read */
        {16, 0, 0, 0, FRAME_OP_PUB, 0, 0xff, 0xff},            /* a subject past the frame */
        {3, 0, 0, 0},                                          /* a size below the header */
    };
    const size_t tail_len[] = {16, 16, 4, 9};
    for (size_t t = 0; t < 4; t++) {
        static struct reading r;
        memset(&r, 0, sizeof(r));
        for (int i = 0; i < FRAMES; i++) {
            char subject[16];
            snprintf(subject, sizeof(subject), "dev.%d", (i * 7 + (int)t) % SUBJECTS);
            read_add(&r, 0, subject, NULL, "x");
        }
        size_t len = r.len + tail_len[t];
        uint8_t *buf = malloc(len);
        cr_assert_not_null(buf);
        memcpy(buf, read_buf, r.len);
        memcpy(buf + r.len, t < 3 ? tails[t] : read_buf, tail_len[t]); /* 3: a cut header */
        pubr->conn.frames_end = buf + len;
        for (size_t off = 0, i = 0; i < r.n; off += r.f[i].size, i++) {
            struct frame f;
            cr_assert_eq(frame_parse(buf + off, len - off, UINT32_MAX, &f), 0);
            session_conn_ops.frame(&pubr->conn, &f);
        }
        pubr->conn.frames_end = NULL;
        session_conn_ops.frames_done(&pubr->conn);
        free(buf);
        static struct sent got[512];
        cr_assert_eq(take(a, got, 512), FRAMES, "tail %zu", t);
        for (int i = 0; i < FRAMES; i++) {
            uint32_t k = (uint32_t)((i * 7 + (int)t) % SUBJECTS);
            cr_assert_eq(got[i].sid, 1 + k, "tail %zu, message %d", t, i);
        }
    }
}

/* Through the index, a subject known to match one subscription takes a
 * short way (subtrie_match_one()): it must still leave out the
 * publisher's own subscription when it said no echo, leave subscriptions
 * with flags or an UNSUB count to the whole path, and never let a later
 * frame reuse a match it did not make (a subject seen two frames back is
 * not the last one matched). */
Test(router, a_run_through_the_index_keeps_echo_flags_counts_and_sids)
{
    cfg.max_subscriptions = 1000;
    start();
    struct peer *pubr = client("pub", false);
    struct peer *a = client("a", true);
    enum { SUBJECTS = 600 };
    sub_numbered(a, "dev", SUBJECTS, 1);
    cr_assert_eq(sub(pubr, 1, "own.0", NULL), 0); /* its own, without echo */
    cr_assert_eq(sub(a, 1001, "counted.0", NULL), 0);
    cr_assert_eq(unsub(a, 1001, 3), 0);
    struct frame lossless = make(FRAME_OP_SUB, FRAME_SUB_LOSSLESS, 1002, "lossless.0", NULL, NULL);
    cr_assert_eq(router_subscribe(&bus, a, &lossless), 0);
    /* X Y X Z ...: each subject comes back one frame after another one. */
    /* own.0 also comes after a frame that ends a run, where it would
     * start one. */
    const char *cycle[] = {"dev.1", "dev.2",      "dev.1",     "own.0",     "dev.1",
                           "dev.3", "dev.3",      "dev.7",     "counted.0", "own.0",
                           "dev.4", "lossless.0", "own.0",     "dev.4",     "dev.5",
                           "dev.6", "dev.5",      "counted.0", "dev.6",     "counted.0"};
    const uint32_t want[] = {2, 3,    2, 0, 2, 4, 4, 8,    1001, 0,
                             5, 1002, 0, 5, 6, 7, 6, 1001, 7,    1001};
    enum { N = sizeof(cycle) / sizeof(cycle[0]) };
    for (int pass = 0; pass < 3; pass++) { /* the walk, then the index */
        static struct reading r;
        memset(&r, 0, sizeof(r));
        for (int k = 0; k < 20; k++) {
            for (int i = 0; i < N; i++) {
                char payload[16];
                snprintf(payload, sizeof(payload), "%d", k * N + i);
                read_add(&r, 0, cycle[i], NULL, payload);
            }
        }
        read_deliver(pubr, &r);
        static struct sent got[512];
        size_t n = take(a, got, 512);
        size_t at = 0;
        uint32_t counted = 0;
        for (int k = 0; k < 20; k++) {
            for (int i = 0; i < N; i++) {
                if (want[i] == 0 || (want[i] == 1001 && counted == 3)) {
                    continue;
                }
                counted += want[i] == 1001;
                char payload[16];
                snprintf(payload, sizeof(payload), "%d", k * N + i);
                cr_assert_lt(at, n, "pass %d: %zu MSGs, missing %s", pass, n, payload);
                cr_assert_eq(got[at].sid, want[i], "pass %d, message %s", pass, payload);
                cr_assert_str_eq(got[at].payload, payload, "pass %d", pass);
                cr_assert_str_eq(got[at].subject, cycle[i], "pass %d", pass);
                at++;
            }
        }
        cr_assert_eq(at, n, "pass %d: %zu MSGs, %zu expected", pass, n, at);
        cr_assert_eq(count(pubr), 0, "pass %d: no echo", pass);
        cr_assert_eq(sub(a, 1001, "counted.0", NULL), 0); /* again, for the next pass */
        cr_assert_eq(unsub(a, 1001, 3), 0);
    }
}

/* The look-ahead's hashes are of the frames of the read being handled: a
 * later read in the same buffer has other subjects at the same addresses,
 * and a match must not take the hash an earlier frame there had (it would
 * walk, and keep the subject in the index under that other hash, where a
 * match of it never finds it). */
Test(router, a_read_does_not_take_the_hashes_of_the_read_before_it)
{
    cfg.max_subscriptions = 1000;
    start();
    struct peer *pubr = client("pub", false);
    struct peer *a = client("a", true);
    enum { SUBJECTS = 600, FRAMES = 6 };
    sub_numbered(a, "dev", SUBJECTS, 1);
    for (int pass = 0; pass < 2; pass++) {
        static struct reading r;
        memset(&r, 0, sizeof(r));
        /* The first frame starts no look-ahead: its reply sends it on its
         * own, in the size of the frame it stands for. */
        read_add(&r, 0, pass == 0 ? "dev.100" : "dev.1", pass == 0 ? NULL : "xy", "x");
        for (int i = 1; i < FRAMES; i++) {
            char subject[16];
            snprintf(subject, sizeof(subject), "dev.%d", 100 * (pass + 1) + i);
            read_add(&r, 0, subject, NULL, "x");
        }
        read_deliver(pubr, &r);
        static struct sent got[16];
        cr_assert_eq(take(a, got, 16), FRAMES, "read %d", pass);
        for (int i = 1; i < FRAMES; i++) {
            cr_assert_eq(got[i].sid, 1u + 100u * (uint32_t)(pass + 1) + (uint32_t)i);
        }
    }
    const struct matchcache *cache = subtrie_cache(bus.subs);
    cr_assert(matchcache_indexed(cache));
    for (int i = 1; i < FRAMES; i++) {
        char subject[16];
        int len = snprintf(subject, sizeof(subject), "dev.%d", 200 + i);
        cr_assert_not_null(
            matchcache_index_find(cache, hash_subject(subject, (size_t)len), subject, (size_t)len),
            "%s is not in the index under its own hash", subject);
    }
}

/* Whatever cannot join a run to one subscriber is published on its own,
 * after the run before it: a subject of another connection, of nobody,
 * of two subscriptions, of a queue group, of a subscription with an UNSUB
 * count, of a lossless one; an invalid subject, refused with its ERR; and
 * the publisher's own UNSUB between two frames. */
Test(router, a_run_to_one_subscriber_is_queued_before_whatever_cannot_join_it)
{
    start();
    struct peer *pubr = client("pub", true);
    struct peer *a = client("a", true);
    struct peer *b = client("b", true);
    cr_assert_eq(sub(a, 1, "to.a1", NULL), 0);
    cr_assert_eq(sub(a, 2, "to.a2", NULL), 0);
    cr_assert_eq(sub(b, 1, "to.b", NULL), 0);
    cr_assert_eq(sub(a, 3, "to.both", NULL), 0);
    cr_assert_eq(sub(b, 3, "to.both", NULL), 0);
    cr_assert_eq(sub(a, 4, "to.group", "g"), 0);
    cr_assert_eq(sub(a, 5, "to.counted", NULL), 0);
    cr_assert_eq(unsub(a, 5, 2), 0);
    struct frame lossless = make(FRAME_OP_SUB, FRAME_SUB_LOSSLESS, 6, "to.lossless", NULL, NULL);
    cr_assert_eq(router_subscribe(&bus, a, &lossless), 0);
    cr_assert_eq(sub(pubr, 9, "to.own", NULL), 0);
    static struct reading r;
    memset(&r, 0, sizeof(r));
    const char *subjects[] = {"to.a1",      "to.a2",   "to.b",        "to.a1",    "to.nobody",
                              "to.a2",      "to.both", "to.a1",       "to.group", "to.a2",
                              "to..bad",    "to.a1",   "to.counted",  "to.a2",    "to.counted",
                              "to.counted", "to.a1",   "to.lossless", "to.own",   "to.own"};
    size_t nsubjects = sizeof(subjects) / sizeof(subjects[0]);
    for (size_t i = 0; i < nsubjects; i++) {
        char payload[16];
        snprintf(payload, sizeof(payload), "%zu", i);
        read_add(&r, 0, subjects[i], NULL, payload);
        if (i == nsubjects - 2) {
            read_add_op(&r, FRAME_OP_UNSUB, 0, 9, NULL, NULL, NULL); /* before the last */
        }
    }
    read_deliver(pubr, &r);
    /* a: each message of its subjects in order, the counted one twice. */
    static struct sent got[64];
    size_t n = take(a, got, 64);
    const size_t want_a[] = {0, 1, 3, 5, 6, 7, 8, 9, 11, 12, 13, 14, 16, 17};
    const uint32_t sid_a[] = {1, 2, 1, 2, 3, 1, 4, 2, 1, 5, 2, 5, 1, 6};
    cr_assert_eq(n, sizeof(want_a) / sizeof(want_a[0]));
    for (size_t i = 0; i < n; i++) {
        char payload[16];
        snprintf(payload, sizeof(payload), "%zu", want_a[i]);
        cr_assert_str_eq(got[i].payload, payload, "a's MSG %zu", i);
        cr_assert_eq(got[i].sid, sid_a[i], "a's MSG %zu", i);
    }
    n = take(b, got, 64);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(got[0].payload, "2");
    cr_assert_eq(got[0].sid, 1u);
    cr_assert_str_eq(got[1].payload, "6");
    cr_assert_eq(got[1].sid, 3u);
    /* The publisher: the ERR for the invalid subject, its own message
     * before its UNSUB, none after. */
    n = take(pubr, got, 64);
    cr_assert_eq(n, 2);
    cr_assert_eq(got[0].op, FRAME_OP_ERR);
    cr_assert_eq(got[0].sid, FRAME_ERR_SUBJECT);
    cr_assert_eq(got[1].op, FRAME_OP_MSG);
    cr_assert_str_eq(got[1].payload, "18");
    cr_assert_eq(pubr->msgs_in, nsubjects, "every PUB counted, as one by one");
}

/* A run to one subscriber that does not fit its max_pending is queued
 * message by message, each under its own sid: as many as fit, the rest
 * dropped, counted and reported. */
Test(router, a_run_to_one_subscriber_over_max_pending_drops_what_one_by_one_would)
{
    cfg.max_pending = 64 * 1024;
    start();
    struct peer *pubr = client("pub", true);
    struct peer *a = client("a", true);
    sub_numbered(a, "big", 4, 10);
    static struct reading r;
    memset(&r, 0, sizeof(r));
    static char payload[1000];
    memset(payload, 'p', sizeof(payload) - 1);
    for (int i = 0; i < 100; i++) {
        char subject[16];
        snprintf(subject, sizeof(subject), "big.%d", i % 4);
        read_add(&r, 0, subject, NULL, payload);
    }
    size_t fit = cfg.max_pending / r.f[0].size;
    cr_assert_lt(fit, 100u, "the test needs a run that does not fit");
    read_deliver(pubr, &r);
    cr_assert_eq(a->msgs_out, fit);
    cr_assert_eq(a->dropped, 100 - fit);
    cr_assert_eq(a->conn.dropped_unreported, 100 - fit, "reported with the next write");
    static struct sent got[128];
    cr_assert_eq(take(a, got, 128), fit);
    for (size_t i = 0; i < fit; i++) {
        cr_assert_eq(got[i].sid, 10u + (uint32_t)(i % 4), "MSG %zu", i);
    }
}

/* What a read of `r` from `p` costs its slice, counted as net counts it
 * (conn_process_frames()): each frame's size and the work charged while
 * it is handled. */
static uint64_t read_slice(struct peer *p, const struct reading *r)
{
    uint64_t used = 0;
    p->conn.frames_end = read_buf + r->len;
    for (size_t i = 0; i < r->n; i++) {
        uint64_t work = net.schedule.work;
        session_conn_ops.frame(&p->conn, &r->f[i]);
        used += r->f[i].size + (net.schedule.work - work);
    }
    p->conn.frames_end = NULL;
    session_conn_ops.frames_done(&p->conn);
    return used;
}

/* One by one, each MSG costs the publisher's slice its size, queued or
 * dropped alike. So does a run's: charged once when its frames arrive,
 * not again when the run, over max_pending, is queued message by message
 * by a frame that cannot join it. */
Test(router, a_run_over_max_pending_costs_the_slice_what_one_by_one_would)
{
    cfg.max_pending = 64 * 1024;
    start();
    struct peer *pubr = client("pub", true);
    struct peer *a = client("a", true);
    struct peer *b = client("b", true);
    cr_assert_eq(sub(a, 1, "slice.one", NULL), 0);
    sub_numbered(b, "slice", 4, 10);
    static char payload[1000];
    memset(payload, 'p', sizeof(payload) - 1);
    for (int to_one = 0; to_one < 2; to_one++) {
        struct peer *target = to_one ? b : a;
        static struct reading r;
        memset(&r, 0, sizeof(r));
        for (int i = 0; i < 40; i++) {
            char subject[16];
            if (to_one) {
                snprintf(subject, sizeof(subject), "slice.%d", i % 4);
            } else {
                snprintf(subject, sizeof(subject), "slice.one");
            }
            read_add(&r, 0, subject, NULL, payload);
        }
        read_add_op(&r, FRAME_OP_PING, 0, 1, NULL, NULL, NULL); /* flushes the run */
        cr_assert_lt(40 * r.f[0].size, cfg.max_pending, "the test needs a read that fits");
        cr_assert_gt(80 * r.f[0].size, cfg.max_pending, "and two that do not");
        uint64_t fits = read_slice(pubr, &r);
        uint64_t over = read_slice(pubr, &r);
        cr_assert_gt(target->dropped, 0, "the second read went over max_pending");
        cr_assert_eq(over, fits, "%s: a read over max_pending cost %llu, one that fits %llu",
                     to_one ? "to one" : "on one subject", (unsigned long long)over,
                     (unsigned long long)fits);
        connbuf_clear(&target->conn.out);
        connbuf_clear(&pubr->conn.out);
    }
}

/* The event that announces the end of a subscription is published before
 * the subscription leaves the trie (it may be one of its receivers): the
 * match made for it is not kept past the removal, so that the broker's
 * next message on that subject reaches only the subscriptions left. */
Test(router, the_match_of_an_unsubscribe_event_is_not_kept_past_the_removal)
{
    start();
    struct peer *w = client("watcher", true);
    struct peer *x = client("x", true);
    cr_assert_eq(sub(w, 1, "$SYS.EVENT.UNSUBSCRIBE", NULL), 0);
    cr_assert_eq(sub(x, 2, "$SYS.EVENT.UNSUBSCRIBE", NULL), 0);
    connbuf_clear(&w->conn.out); /* x's SUBSCRIBE event, if any */
    cr_assert_eq(unsub(x, 2, 0), 0);
    cr_assert_eq(count(w), 1, "the watcher hears x's UNSUB");
    connbuf_clear(&x->conn.out);
    const char *subject = "$SYS.EVENT.UNSUBSCRIBE";
    cr_assert_eq(router_publish_local(&bus, subject, strlen(subject), "{}", 2), 0);
    cr_assert_eq(count(w), 1);
    cr_assert_eq(count(x), 0, "x's subscription ended");
}

/* ---- queue groups, echo, auto-unsubscribe ------------------------------- */

Test(router, a_queue_group_takes_turns_beside_plain_subscriptions)
{
    start();
    struct peer *w[3];
    for (int i = 0; i < 3; i++) {
        char name[8];
        snprintf(name, sizeof(name), "w%d", i);
        w[i] = client(name, true);
        cr_assert_eq(sub(w[i], 10, "work", "q"), 0);
    }
    struct peer *watcher = client("watcher", true);
    cr_assert_eq(sub(watcher, 1, "work", NULL), 0);
    struct peer *boss = client("boss", true);
    for (int i = 0; i < 9; i++) {
        cr_assert_eq(pub(boss, "work", NULL, "job"), 0);
    }
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(count(w[i]), 3, "member %d: its share, in turn", i);
    }
    cr_assert_eq(count(watcher), 9, "a plain subscription gets everything");
}

Test(router, a_publisher_without_echo_is_skipped_and_passes_its_turn)
{
    start();
    struct peer *quiet = client("quiet", false);
    struct peer *other = client("other", true);
    cr_assert_eq(sub(quiet, 1, "t", NULL), 0);
    cr_assert_eq(sub(quiet, 2, "t", "g"), 0);
    cr_assert_eq(sub(other, 1, "t", "g"), 0);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(pub(quiet, "t", NULL, "x"), 0);
    }
    cr_assert_eq(count(quiet), 0, "no echo: neither plain nor group");
    cr_assert_eq(count(other), 4, "the group's turn passes to the other member");
    /* Its messages from others still arrive. */
    cr_assert_eq(pub(other, "t", NULL, "x"), 0);
    cr_assert_eq(count(quiet), 2, "the plain one, and the group's turn");
}

Test(router, an_unsub_count_ends_the_subscription_after_that_many_messages)
{
    start();
    struct peer *a = client("a", true);
    struct peer *b = client("b", true);
    cr_assert_eq(sub(a, 5, "t", NULL), 0);
    cr_assert_eq(unsub(a, 5, 2), 0);
    cr_assert_eq(bus.nsubs, 1u, "still there until its messages are through");
    cr_assert_eq(pub(b, "t", NULL, "1"), 0);
    cr_assert_eq(pub(b, "t", NULL, "2"), 0);
    cr_assert_eq(pub(b, "t", NULL, "3"), 0);
    struct sent s[8];
    cr_assert_eq(take(a, s, 8), 2);
    cr_assert_str_eq(s[0].payload, "1");
    cr_assert_str_eq(s[1].payload, "2");
    cr_assert_eq(bus.nsubs, 0u);
    cr_assert_eq(a->subs.len, 0u);
    cr_assert_eq(a->sub_bytes, 0u);
    cr_assert_eq(unsub(a, 5, 0), ROUTER_E_SID_UNKNOWN);
}

/* ---- request/reply ------------------------------------------------------ */

Test(router, a_request_nobody_receives_is_answered_no_responders)
{
    start();
    struct peer *asker = client("asker", true);
    cr_assert_eq(sub(asker, 3, "_INBOX.asker.>", NULL), 0);
    cr_assert_eq(pub(asker, "service.none", "_INBOX.asker.1", "q"), 0);
    struct sent s = take_one(asker);
    cr_assert_eq(s.op, FRAME_OP_MSG);
    cr_assert(s.flags & FRAME_MSG_NO_RESPONDERS);
    cr_assert_eq(s.sid, 3u, "under its own subscription to the reply subject");
    cr_assert_str_eq(s.subject, "_INBOX.asker.1");
    cr_assert_str_eq(s.payload, "");

    /* Without a subscription to the reply subject: sid 0. */
    struct peer *bare = client("bare", true);
    cr_assert_eq(pub(bare, "service.none", "_INBOX.bare.1", "q"), 0);
    s = take_one(bare);
    cr_assert(s.flags & FRAME_MSG_NO_RESPONDERS);
    cr_assert_eq(s.sid, 0u);

    /* A request someone receives gets no such answer. */
    struct peer *server = client("server", true);
    cr_assert_eq(sub(server, 1, "service.echo", NULL), 0);
    cr_assert_eq(pub(asker, "service.echo", "_INBOX.asker.2", "q"), 0);
    cr_assert_eq(count(asker), 0);
    cr_assert_eq(count(server), 1);
}

Test(router, sys_subjects_are_not_routed)
{
    start();
    struct peer *a = client("a", true);
    /* By name, not "$SYS.>": its own subscription would be announced on
     * $SYS.EVENT.SUBSCRIBE to it (test_interest.c). */
    cr_assert_eq(sub(a, 1, "$SYS.STATS", NULL), 0);
    cr_assert_eq(sub(a, 2, "$SYS.EVENT.CONNECT", NULL), 0);
    cr_assert_eq(pub(a, "$SYS.STATS", "_INBOX.a.1", ""), ROUTER_SYS);
    cr_assert_eq(pub(a, "$SYS.EVENT.CONNECT", NULL, "{}"), ROUTER_SYS);
    cr_assert_eq(count(a), 0, "a $SYS. subject never reaches subscribers from a client");
    cr_assert_eq(pub(a, "t", "$SYS.EVENT.DISCONNECT", "x"), ROUTER_E_REPLY_SYS);
}

/* ---- limits ------------------------------------------------------------- */

Test(router, max_subscriptions_and_max_subscription_bytes_are_held)
{
    cfg.max_subscriptions = 2;
    start();
    struct peer *a = client("a", true);
    cr_assert_eq(sub(a, 1, "a", NULL), 0);
    cr_assert_eq(sub(a, 2, "b", NULL), 0);
    cr_assert_eq(sub(a, 3, "c", NULL), ROUTER_E_SUB_LIMIT);
    cr_assert_eq(unsub(a, 1, 0), 0);
    cr_assert_eq(sub(a, 3, "c", NULL), 0, "a slot freed is a slot");
    cr_assert_eq(a->sub_bytes, router_sub_cost("b", 1, 0) + router_sub_cost("c", 1, 0));
}

Test(router, max_subscription_bytes_counts_what_subscriptions_cost)
{
    cfg.max_subscription_bytes = router_sub_cost("a.b", 3, 0) * 2;
    start();
    struct peer *a = client("a", true);
    cr_assert_eq(sub(a, 1, "a.b", NULL), 0);
    cr_assert_eq(sub(a, 2, "a.c", NULL), 0);
    cr_assert_eq(sub(a, 3, "a.d", NULL), ROUTER_E_SUB_BYTES);
    cr_assert_eq(a->sub_bytes, cfg.max_subscription_bytes);
}

/* ---- retained values ---------------------------------------------------- */

Test(router, retained_values_are_replayed_to_new_subscriptions)
{
    start();
    struct peer *a = client("a", true);
    struct frame f = make(FRAME_OP_PUB, FRAME_PUB_RETAIN, 0, "state.door", NULL, "open");
    cr_assert_eq(router_publish(&bus, a, &f), 0);
    cr_assert_eq(bus.retained.count, 1u);
    cr_assert_eq(sub(a, 4, "state.*", NULL), 0);
    struct sent s = take_one(a);
    cr_assert(s.flags & FRAME_MSG_RETAINED);
    cr_assert_eq(s.sid, 4u);
    cr_assert_str_eq(s.subject, "state.door");
    cr_assert_str_eq(s.payload, "open");
}

Test(router, a_value_over_max_retained_bytes_is_delivered_but_not_kept)
{
    cfg.max_retained_bytes = 64;
    start();
    struct peer *a = client("a", true);
    cr_assert_eq(sub(a, 1, "big", NULL), 0);
    char payload[200];
    memset(payload, 'x', sizeof(payload) - 1);
    payload[sizeof(payload) - 1] = '\0';
    struct frame f = make(FRAME_OP_PUB, FRAME_PUB_RETAIN, 0, "big", NULL, payload);
    cr_assert_eq(router_publish(&bus, a, &f), ROUTER_E_RETAIN_FULL);
    cr_assert_eq(count(a), 1, "delivered live all the same");
    cr_assert_eq(bus.retained.count, 0u);
}

/* ---- access control ----------------------------------------------------- */

static void load_acl(const char *json)
{
    json_object *o = json_tokener_parse(json);
    cr_assert_not_null(o);
    char err[256];
    cr_assert_eq(acl_parse(o, "test.json", &cfg.acl, err, sizeof(err)), 0, "%s", err);
    json_object_put(o);
}

Test(router, the_acl_refuses_subjects_patterns_and_reply_subjects)
{
    load_acl("[{\"default\": true, \"publish\": [\"out.>\"], \"subscribe\": [\"in.*\"]}]");
    start();
    struct peer *a = client("a", true);
    a->acl_rule = acl_find(cfg.acl, &(struct acl_peer){.has_cred = false});
    cr_assert_not_null(a->acl_rule);
    cr_assert_eq(sub(a, 1, "in.x", NULL), 0);
    cr_assert_eq(sub(a, 2, "in.>", NULL), ROUTER_E_SUB_DENIED);
    char inbox[64];
    snprintf(inbox, sizeof(inbox), "_INBOX.%llu.>", (unsigned long long)a->conn.id);
    cr_assert_eq(sub(a, 3, inbox, NULL), 0, "its own inbox is always its own");
    cr_assert_eq(pub(a, "out.x", NULL, "x"), 0);
    cr_assert_eq(pub(a, "in.x", NULL, "x"), ROUTER_E_PUB_DENIED);
    cr_assert_eq(pub(a, "out.x", "other.reply", "x"), ROUTER_E_REPLY_DENIED);
}

/* A run reuses a match another publisher made: it starts only for a
 * publisher the ACL lets publish on the subject. */
Test(router, a_run_asks_the_acl_for_its_own_publisher)
{
    load_acl("[{\"uid\": 1, \"publish\": [\"open.>\"], \"subscribe\": [\">\"]},"
             "{\"default\": true, \"publish\": [\"other.>\"], \"subscribe\": [\">\"]}]");
    start();
    struct peer *ok = client("ok", true);
    ok->acl_rule = acl_find(cfg.acl, &(struct acl_peer){.has_cred = true, .uid = 1, .gid = 1});
    struct peer *no = client("no", true);
    no->acl_rule = acl_find(cfg.acl, &(struct acl_peer){.has_cred = false});
    cr_assert_neq(ok->acl_rule, no->acl_rule);
    struct peer *a = client("a", true);
    a->acl_rule = ok->acl_rule;
    cr_assert_eq(sub(a, 1, "open.t", NULL), 0);
    static struct reading r;
    memset(&r, 0, sizeof(r));
    for (int i = 0; i < 3; i++) {
        read_add(&r, 0, "open.t", NULL, "x");
    }
    read_deliver(ok, &r);
    cr_assert_eq(count(a), 3);
    read_deliver(no, &r);
    cr_assert_eq(count(a), 0, "the match is there, the right to publish is not");
    struct sent got[8];
    cr_assert_eq(take(no, got, 8), 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(got[i].op, FRAME_OP_ERR);
        cr_assert_eq(got[i].sid, FRAME_ERR_PERMISSION);
    }
}

/* ---- what a refusal looks like on the wire ------------------------------- */

Test(router, refusals_become_their_err_code_and_text)
{
    cfg.max_subscriptions = 1;
    start();
    struct peer *a = client("a", true);
    send_frame(a, FRAME_OP_SUB, 0, 1, "t", NULL, NULL);
    cr_assert_eq(count(a), 0, "a SUB is not acknowledged");

    send_frame(a, FRAME_OP_SUB, 0, 1, "u", NULL, NULL);
    struct sent s = take_one(a);
    cr_assert_eq(s.op, FRAME_OP_ERR);
    cr_assert_eq(s.sid, FRAME_ERR_SID, "the ERR code rides in the sid field");
    cr_assert_str_eq(s.subject, "u");
    cr_assert_str_eq(s.payload, "cannot subscribe to 'u': sid 1 is zero or in use");

    send_frame(a, FRAME_OP_SUB, 0, 2, "v", NULL, NULL);
    s = take_one(a);
    cr_assert_eq(s.sid, FRAME_ERR_LIMIT);
    cr_assert_str_eq(s.payload, "cannot subscribe to 'v': max_subscriptions (1) reached");

    send_frame(a, FRAME_OP_UNSUB, 0, 9, NULL, NULL, NULL);
    s = take_one(a);
    cr_assert_eq(s.sid, FRAME_ERR_SID);
    cr_assert_str_eq(s.subject, "");
    cr_assert_str_eq(s.payload, "cannot unsubscribe: unknown sid 9");

    send_frame(a, FRAME_OP_PUB, 0, 0, "t", "$SYS.X", "x");
    s = take_one(a);
    cr_assert_eq(s.sid, FRAME_ERR_PERMISSION);
    cr_assert_str_eq(s.subject, "t", "a refused reply subject names the PUB's subject");
    cr_assert_str_eq(s.payload, "permission denied: cannot use '$SYS.X' as a reply subject: "
                                "$SYS. subjects are the broker's own");
    cr_assert_eq(bus.stats.denied, 1u);

    send_frame(a, FRAME_OP_PUB, 0, 0, "$SYS.CLIENTS", "_INBOX.a.1", "[]");
    s = take_one(a);
    cr_assert_eq(s.sid, FRAME_ERR_REQUEST);
    cr_assert_str_eq(s.payload, "invalid $SYS.CLIENTS request: the payload is not one JSON "
                                "object; send nothing, or {\"offset\":N,\"limit\":M} with N >= 0 "
                                "and M >= 1");

    send_frame(a, FRAME_OP_PING, 0, 42, NULL, NULL, NULL);
    s = take_one(a);
    cr_assert_eq(s.op, FRAME_OP_PONG);
    cr_assert_eq(s.sid, 42u);

    /* An op only the broker sends ends the connection. */
    send_frame(a, FRAME_OP_MSG, 0, 0, "t", NULL, "x");
    s = take_one(a);
    cr_assert_eq(s.sid, FRAME_ERR_PROTOCOL);
    cr_assert_str_eq(s.payload, "a client may not send MSG (op 0x20)");
    cr_assert(a->conn.draining);
    cr_assert_eq(bus.nsubs, 0u, "an ending peer leaves the routing table at once");
}

Test(router, a_frame_before_hello_ends_the_connection)
{
    start();
    struct peer *p;
    cr_assert_eq(peer_new(&bus, &net, &transport_unix, &p), 0);
    send_frame(p, FRAME_OP_SUB, 0, 1, "t", NULL, NULL);
    struct sent s = take_one(p);
    cr_assert_eq(s.sid, FRAME_ERR_HELLO_REQUIRED);
    cr_assert_str_eq(s.payload, "HELLO required before any other frame");
    cr_assert(p->conn.draining);
}

/* ---- a peer's end ------------------------------------------------------- */

Test(router, removing_a_peer_frees_its_subscriptions_and_their_charge)
{
    start();
    struct peer *a = client("a", true);
    struct peer *b = client("b", true);
    for (uint32_t sid = 1; sid <= 50; sid++) {
        char pattern[32];
        snprintf(pattern, sizeof(pattern), "p.%u.>", sid);
        cr_assert_eq(sub(a, sid, pattern, sid % 2 ? "g" : NULL), 0);
    }
    cr_assert_eq(sub(b, 1, "p.1.x", NULL), 0);
    cr_assert_eq(bus.nsubs, 51u);
    router_remove_peer(&bus, a);
    cr_assert_eq(bus.nsubs, 1u);
    cr_assert_eq(a->subs.len, 0u);
    cr_assert_eq(a->sub_bytes, 0u);
    cr_assert_eq(pub(b, "p.1.x", NULL, "x"), 0);
    cr_assert_eq(count(a), 0);
    cr_assert_eq(count(b), 1);
}
