/*
 * test_reconnect.c - a library client that reconnects (sb_options.reconnect,
 * docs/protocol.md "Reconnecting") across a broker that goes away by
 * SIGTERM (ERR 9), by SIGKILL (end of file), or for a while (killed, its
 * socket refusing, a new one started on the same path): subscriptions are
 * replayed exactly (sids, queue groups, what is left of an auto-unsubscribe
 * count), the publishes held meanwhile arrive after the replay and in
 * order, requests in flight fail with SB_E_DISCONNECTED, the state
 * callback reports the gap, reconnect_max_ms and reconnect_buffer bound
 * it; and the same through an event loop (sb_fd() changes, sb_timeout_ms()).
 * Every wait is bounded; the broker is restarted by the harness.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

TestSuite(reconnect, .init = setup, .fini = teardown, .timeout = 90);

/* What the state callback saw. */
struct states {
    int n;
    sb_state_change seen[16];
};

static void on_state(sb_client *c, const sb_state_change *change, void *arg)
{
    (void)c;
    struct states *s = arg;
    if (s->n < 16) {
        s->seen[s->n] = *change;
    }
    s->n++;
}

static sb_client *reconnecting(const char *name, struct states *states, int max_ms, size_t buffer)
{
    sb_options o = {.endpoint = broker.socket,
                    .name = name,
                    .reconnect = true,
                    .reconnect_max_ms = max_ms,
                    .reconnect_buffer = buffer};
    sb_client *c = NULL;
    int r = sb_connect(&c, &o);
    cr_assert_eq(r, 0, "connect: %s", sb_strerror(r));
    if (states != NULL) {
        sb_set_state_cb(c, on_state, states);
    }
    return c;
}

static int64_t ts_ms(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000 + t->tv_nsec / 1000000;
}

static int64_t realtime_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return ts_ms(&t);
}

/* Call sb_next_msg() until the client notices the loss (bounded). */
static void notice_loss(sb_client *c)
{
    int64_t deadline = harness_now_ms() + HARNESS_IO_MS;
    while (sb_state(c) == SB_STATE_CONNECTED && harness_now_ms() < deadline) {
        sb_msg m;
        int r = sb_next_msg(c, &m, 50);
        cr_assert(r == -ETIMEDOUT || r == 0, "next_msg while losing the broker: %s",
                  sb_strerror(r));
    }
    cr_assert_eq(sb_state(c), SB_STATE_DISCONNECTED);
    cr_assert_eq(sb_fd(c), -1);
    cr_assert_eq(sb_events(c), 0);
}

static void restart(void)
{
    int r = harness_restart(&broker, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start again: %s", strerror(-r));
}

/* The next message on c, which must be on `sid` with this payload. */
static void expect_payload(sb_client *c, uint32_t sid, const char *payload)
{
    sb_msg m = harness_expect_msg(c);
    cr_assert_eq(m.sid, sid, "sid %u, expected %u", m.sid, sid);
    cr_assert_eq(m.payload_len, strlen(payload));
    cr_assert_eq(memcmp(m.payload, payload, m.payload_len), 0, "payload %.*s, expected %s",
                 (int)m.payload_len, (const char *)m.payload, payload);
}

/*
 * The whole replay, after a SIGTERM (ERR 9): a plain subscription, one in
 * a queue group, one with an auto-unsubscribe count partly used, one made
 * while disconnected, one ended while disconnected; then the publishes
 * held meanwhile, which reach the client's own replayed subscription (so
 * they came after it), in order.
 */
Test(reconnect, sigterm_replays_subscriptions_then_held_publishes)
{
    struct states st = {0};
    sb_client *c = reconnecting("replayed", &st, 0, 0);
    uint32_t all;
    uint32_t queued;
    uint32_t counted;
    uint32_t ended;
    cr_assert_eq(sb_subscribe(c, "a.>", NULL, &all), 0);
    cr_assert_eq(sb_subscribe(c, "q.x", "workers", &queued), 0);
    cr_assert_eq(sb_subscribe(c, "c.x", NULL, &counted), 0);
    cr_assert_eq(sb_subscribe(c, "e.x", NULL, &ended), 0);
    cr_assert_eq(sb_unsubscribe(c, counted, 5), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    sb_client *p = harness_client(&broker, "pub", true);
    cr_assert_eq(sb_publish(p, "c.x", NULL, "1", 1), 0);
    cr_assert_eq(sb_publish(p, "c.x", NULL, "2", 1), 0);
    cr_assert_eq(sb_flush(p, HARNESS_IO_MS), 0);
    expect_payload(c, counted, "1");
    expect_payload(c, counted, "2");
    sb_close(p);
    uint64_t first_id = sb_client_id(c);

    cr_assert_eq(harness_kill(&broker, SIGTERM), 0);
    notice_loss(c);
    cr_assert_eq(st.n, 1);
    cr_assert_eq(st.seen[0].state, SB_STATE_DISCONNECTED);
    cr_assert_eq(st.seen[0].err, SB_E_SHUTDOWN, "lost by %s", sb_strerror(st.seen[0].err));
    cr_assert_eq(st.seen[0].fd, -1);
    cr_assert_eq(sb_timeout_ms(c) >= 0 && sb_timeout_ms(c) <= 1000, true);

    /* While disconnected: publishes are held, subscriptions wait. */
    char buf[32];
    for (int i = 0; i < 100; i++) {
        int n = snprintf(buf, sizeof(buf), "held %d", i);
        cr_assert_eq(sb_publish(c, "a.held", NULL, buf, (size_t)n), 0);
    }
    uint32_t later;
    cr_assert_eq(sb_subscribe(c, "d.x", NULL, &later), 0);
    cr_assert_eq(sb_unsubscribe(c, ended, 0), 0);
    cr_assert_eq(sb_state(c), SB_STATE_DISCONNECTED);

    int64_t before_restart = realtime_ms();
    restart();
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_state(c), SB_STATE_CONNECTED);
    cr_assert_neq(sb_fd(c), -1);
    (void)first_id; /* a new broker may give the same id again */
    cr_assert_eq(st.n, 2);
    cr_assert_eq(st.seen[1].state, SB_STATE_RECONNECTED);
    cr_assert_eq(st.seen[1].fd, sb_fd(c));
    cr_assert_eq(ts_ms(&st.seen[1].lost_at), ts_ms(&st.seen[0].lost_at));
    cr_assert_leq(ts_ms(&st.seen[1].lost_at), before_restart);
    cr_assert_geq(ts_ms(&st.seen[1].back_at), before_restart);
    cr_assert_leq(ts_ms(&st.seen[1].back_at), realtime_ms());

    /* The held publishes, in order, to the replayed subscription. */
    for (int i = 0; i < 100; i++) {
        snprintf(buf, sizeof(buf), "held %d", i);
        expect_payload(c, all, buf);
    }
    harness_expect_none(c);

    /* The queue group: a second member shares the messages. */
    sb_client *other = harness_client(&broker, "other", true);
    uint32_t other_sid;
    cr_assert_eq(sb_subscribe(other, "q.x", "workers", &other_sid), 0);
    cr_assert_eq(sb_flush(other, HARNESS_IO_MS), 0);
    p = harness_client(&broker, "pub", true);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(sb_publish(p, "q.x", NULL, "q", 1), 0);
    }
    /* The count: 3 of its 5 are left. */
    for (int i = 0; i < 6; i++) {
        snprintf(buf, sizeof(buf), "%d", i);
        cr_assert_eq(sb_publish(p, "c.x", NULL, buf, strlen(buf)), 0);
    }
    cr_assert_eq(sb_publish(p, "d.x", NULL, "d", 1), 0);
    cr_assert_eq(sb_publish(p, "e.x", NULL, "e", 1), 0);
    cr_assert_eq(sb_flush(p, HARNESS_IO_MS), 0);
    int mine = 0;
    int counted_got = 0;
    int later_got = 0;
    for (;;) {
        sb_msg m;
        cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
        if (sb_next_msg(c, &m, 0) != 0) {
            break;
        }
        cr_assert_neq(m.sid, ended, "a subscription ended while disconnected was replayed");
        if (m.sid == queued) {
            mine++;
        } else if (m.sid == counted) {
            cr_assert_eq(m.payload_len, 1);
            cr_assert_eq(((const char *)m.payload)[0], '0' + counted_got);
            counted_got++;
        } else if (m.sid == later) {
            later_got++;
        } else {
            cr_assert_fail("unexpected message on sid %u (%s)", m.sid, m.subject);
        }
    }
    int theirs = 0;
    sb_msg m;
    cr_assert_eq(sb_flush(other, HARNESS_IO_MS), 0);
    while (sb_next_msg(other, &m, 0) == 0) {
        theirs++;
    }
    cr_assert_eq(mine + theirs, 10, "the queue group took %d + %d of 10", mine, theirs);
    cr_assert(mine > 0 && theirs > 0, "the queue group was not replayed: %d and %d", mine, theirs);
    cr_assert_eq(counted_got, 3, "the auto-unsubscribe count was replayed as %d, not 3",
                 counted_got);
    cr_assert_eq(later_got, 1);
    sb_close(other);
    sb_close(p);
    sb_close(c);
    harness_stop(&broker);
}

/* SIGKILL: the client sees end of file; a request in flight fails with
 * SB_E_DISCONNECTED; after the reconnect, requests work again, on the
 * inbox of the new client id. */
Test(reconnect, sigkill_fails_requests_in_flight_and_replays_the_inbox)
{
    struct states st = {0};
    sb_client *c = reconnecting("asker", &st, 0, 0);
    sb_client *svc = reconnecting("svc", NULL, 0, 0);
    uint32_t svc_sid;
    cr_assert_eq(sb_subscribe(svc, "svc.echo", NULL, &svc_sid), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);

    /* One request answered, so the inbox exists before the loss. */
    uint32_t token;
    sb_pub req = {.subject = "svc.echo", .payload = "one", .payload_len = 3};
    cr_assert_eq(sb_request_send(c, &req, &token), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    sb_msg m = harness_expect_msg(svc);
    cr_assert_eq(sb_publish(svc, m.reply, NULL, "ONE", 3), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
    sb_msg reply;
    cr_assert_eq(sb_request_wait(c, token, &reply, HARNESS_IO_MS), 0);

    /* A second one is in flight (its responder does not answer) when the
     * broker dies. */
    cr_assert_eq(sb_request_send(c, &req, &token), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    m = harness_expect_msg(svc);
    cr_assert_eq(harness_kill(&broker, SIGKILL), 128 + SIGKILL);
    int r = sb_request_wait(c, token, &reply, HARNESS_IO_MS);
    cr_assert_eq(r, SB_E_DISCONNECTED, "a request in flight gave %s", sb_strerror(r));
    cr_assert_eq(st.n, 1);
    cr_assert_eq(st.seen[0].err, SB_E_CLOSED, "lost by %s", sb_strerror(st.seen[0].err));
    /* A request while disconnected cannot be sent. */
    cr_assert_eq(sb_request_send(c, &req, &token), SB_E_DISCONNECTED);
    uint64_t first_id = sb_client_id(c);
    notice_loss(svc);

    restart();
    /* The responder is back first, so the asker's new client id (and
     * inbox prefix) differs from its old one. */
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0); /* its subscription is back */
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    cr_assert_neq(sb_client_id(c), first_id);
    cr_assert_eq(sb_request_send(c, &req, &token), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    m = harness_expect_msg(svc);
    cr_assert_eq(m.sid, svc_sid);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "_INBOX.%llu.", (unsigned long long)sb_client_id(c));
    cr_assert_eq(strncmp(m.reply, prefix, strlen(prefix)), 0, "reply subject %s", m.reply);
    cr_assert_eq(sb_publish(svc, m.reply, NULL, "TWO", 3), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
    r = sb_request_wait(c, token, &reply, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "a request after the reconnect: %s", sb_strerror(r));
    cr_assert_eq(reply.payload_len, 3);
    cr_assert_eq(memcmp(reply.payload, "TWO", 3), 0);
    sb_close(svc);
    sb_close(c);
    harness_stop(&broker);
}

/* The socket refuses for a while (the broker killed, its file still
 * there): many attempts fail, the callback still fires once each way, and
 * the gap it reports covers the wait. */
Test(reconnect, a_refusing_socket_is_retried_until_a_broker_is_back)
{
    struct states st = {0};
    sb_client *c = reconnecting("patient", &st, 0, 0);
    uint32_t sid;
    cr_assert_eq(sb_subscribe(c, "r.x", NULL, &sid), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    cr_assert_eq(harness_kill(&broker, SIGKILL), 128 + SIGKILL);
    int64_t t0 = harness_now_ms();
    sb_msg m;
    /* Several backoff rounds against the refusing socket. */
    while (harness_now_ms() - t0 < 400) {
        int r = sb_next_msg(c, &m, 100);
        cr_assert_eq(r, -ETIMEDOUT, "while the socket refuses: %s", sb_strerror(r));
    }
    cr_assert_eq(sb_state(c), SB_STATE_DISCONNECTED);
    cr_assert_eq(sb_flush(c, 50), -ETIMEDOUT);
    restart();
    sb_client *p = harness_client(&broker, "pub", true);
    /* The subscriber comes back within a backoff (at most 1 s) of its own. */
    int64_t deadline = harness_now_ms() + HARNESS_IO_MS;
    int got = -ETIMEDOUT;
    while (got != 0 && harness_now_ms() < deadline) {
        cr_assert_eq(sb_publish(p, "r.x", NULL, "back", 4), 0);
        cr_assert_eq(sb_flush(p, HARNESS_IO_MS), 0);
        got = sb_next_msg(c, &m, 100);
    }
    cr_assert_eq(got, 0);
    cr_assert_eq(m.sid, sid);
    cr_assert_eq(st.n, 2, "the callback fired %d times", st.n);
    cr_assert_eq(st.seen[0].state, SB_STATE_DISCONNECTED);
    cr_assert_eq(st.seen[1].state, SB_STATE_RECONNECTED);
    int64_t gap = ts_ms(&st.seen[1].back_at) - ts_ms(&st.seen[1].lost_at);
    cr_assert_geq(gap, 400, "a gap of %lld ms", (long long)gap);
    cr_assert_leq(gap, harness_now_ms() - t0 + 1000, "a gap of %lld ms", (long long)gap);
    sb_close(p);
    sb_close(c);
    harness_stop(&broker);
}

/* reconnect_max_ms: the client gives up and every call returns the error
 * that lost the connection, as without reconnect. */
Test(reconnect, reconnect_max_gives_up_with_the_connection_error)
{
    struct states st = {0};
    sb_client *c = reconnecting("brief", &st, 300, 0);
    cr_assert_eq(harness_kill(&broker, SIGTERM), 0);
    int64_t t0 = harness_now_ms();
    sb_msg m;
    int r = sb_next_msg(c, &m, 10 * HARNESS_IO_MS);
    cr_assert_eq(r, SB_E_SHUTDOWN, "gave %s", sb_strerror(r));
    cr_assert_lt(harness_now_ms() - t0, 5 * HARNESS_IO_MS);
    cr_assert_eq(sb_state(c), SB_STATE_CLOSED);
    cr_assert_eq(st.n, 2);
    cr_assert_eq(st.seen[1].state, SB_STATE_CLOSED);
    cr_assert_eq(st.seen[1].err, SB_E_SHUTDOWN);
    cr_assert_eq(sb_publish(c, "x", NULL, "x", 1), SB_E_SHUTDOWN);
    cr_assert_eq(sb_flush(c, 100), SB_E_SHUTDOWN);
    cr_assert_eq(sb_timeout_ms(c), -1);
    restart(); /* too late: it stays closed */
    cr_assert_eq(sb_next_msg(c, &m, 100), SB_E_SHUTDOWN);
    sb_close(c);
    harness_stop(&broker);
}

/* Without sb_options.reconnect (the default), nothing changes: the loss
 * is final. */
Test(reconnect, off_by_default)
{
    sb_client *c = harness_client(&broker, "plain", true);
    cr_assert_eq(harness_kill(&broker, SIGTERM), 0);
    sb_msg m;
    cr_assert_eq(sb_next_msg(c, &m, HARNESS_IO_MS), SB_E_SHUTDOWN);
    cr_assert_eq(sb_state(c), SB_STATE_CLOSED);
    restart();
    cr_assert_eq(sb_flush(c, 100), SB_E_SHUTDOWN);
    sb_close(c);
    harness_stop(&broker);
}

/* reconnect_buffer: a publish that does not fit fails, the ones before it
 * are delivered, in order. */
Test(reconnect, a_full_reconnect_buffer_fails_the_publish)
{
    sb_client *c = reconnecting("buffered", NULL, 0, 4096);
    uint32_t sid;
    cr_assert_eq(sb_subscribe(c, "b.x", NULL, &sid), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    cr_assert_eq(harness_kill(&broker, SIGKILL), 128 + SIGKILL);
    notice_loss(c);
    char payload[100];
    int accepted = 0;
    int r;
    for (;;) {
        memset(payload, 'a' + accepted % 26, sizeof(payload));
        r = sb_publish(c, "b.x", NULL, payload, sizeof(payload));
        if (r != 0) {
            break;
        }
        accepted++;
        cr_assert_lt(accepted, 100, "the reconnect buffer holds more than 4096 bytes");
    }
    cr_assert_eq(r, SB_E_DISCONNECTED, "gave %s", sb_strerror(r));
    /* 16 + 3 + 100 bytes each: 34 fit in 4096. */
    cr_assert_eq(accepted, 4096 / (16 + 3 + 100));
    restart();
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    for (int i = 0; i < accepted; i++) {
        sb_msg m = harness_expect_msg(c);
        cr_assert_eq(m.payload_len, sizeof(payload));
        cr_assert_eq(((const char *)m.payload)[0], 'a' + i % 26);
    }
    harness_expect_none(c);
    /* Connected again: publishing is not bounded by the reconnect buffer. */
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(sb_publish(c, "b.x", NULL, payload, sizeof(payload)), 0);
    }
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    sb_close(c);
    harness_stop(&broker);
}

/* The event-loop use: sb_fd() goes to -1, sb_timeout_ms() says when to
 * call sb_process(), the callback gives the new socket. */
struct loop {
    struct states states;
    int received;
};

static void on_loop_state(sb_client *c, const sb_state_change *change, void *arg)
{
    struct loop *l = arg;
    on_state(c, change, &l->states);
    if (change->state == SB_STATE_RECONNECTED) {
        cr_assert_eq(change->fd, sb_fd(c));
    }
}

static void on_loop_msg(sb_client *c, const sb_msg *m, void *arg)
{
    (void)c;
    (void)m;
    struct loop *l = arg;
    l->received++;
}

/* One turn of an application's loop: poll what the library asks for. */
static int loop_turn(sb_client *c)
{
    struct pollfd p = {.fd = sb_fd(c), .events = sb_events(c)};
    int timeout = sb_timeout_ms(c);
    cr_assert(p.fd >= 0 || timeout >= 0, "nothing to wait for: fd %d, timeout %d", p.fd, timeout);
    poll(&p, 1, timeout < 0 || timeout > 100 ? 100 : timeout);
    return sb_process(c);
}

Test(reconnect, event_loop_learns_the_new_socket)
{
    struct loop l = {0};
    sb_client *c = reconnecting("looped", NULL, 0, 0);
    sb_set_state_cb(c, on_loop_state, &l);
    sb_set_msg_cb(c, on_loop_msg, &l);
    uint32_t sid;
    cr_assert_eq(sb_subscribe(c, "l.x", NULL, &sid), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    int old_fd = sb_fd(c);
    cr_assert_eq(sb_timeout_ms(c), -1);

    cr_assert_eq(harness_kill(&broker, SIGKILL), 128 + SIGKILL);
    int64_t deadline = harness_now_ms() + HARNESS_IO_MS;
    while (l.states.n == 0 && harness_now_ms() < deadline) {
        cr_assert_eq(loop_turn(c), 0);
    }
    cr_assert_eq(l.states.n, 1);
    cr_assert_eq(sb_fd(c), -1);
    int t = sb_timeout_ms(c);
    cr_assert(t >= 0 && t <= 1000, "sb_timeout_ms() %d", t);
    /* A few rounds with the socket refusing: still disconnected, no error. */
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(loop_turn(c), 0);
    }
    cr_assert_eq(sb_state(c), SB_STATE_DISCONNECTED);

    restart();
    deadline = harness_now_ms() + HARNESS_IO_MS;
    while (l.states.n < 2 && harness_now_ms() < deadline) {
        cr_assert_eq(loop_turn(c), 0);
    }
    cr_assert_eq(l.states.n, 2);
    cr_assert_eq(l.states.seen[1].state, SB_STATE_RECONNECTED);
    cr_assert_neq(sb_fd(c), -1);
    (void)old_fd; /* the number may be reused; the callback named the new one */
    sb_client *p = harness_client(&broker, "pub", true);
    /* The replay leaves with the next sb_process(); publish until it is in. */
    deadline = harness_now_ms() + HARNESS_IO_MS;
    while (l.received == 0 && harness_now_ms() < deadline) {
        cr_assert_eq(sb_publish(p, "l.x", NULL, "x", 1), 0);
        cr_assert_eq(sb_flush(p, HARNESS_IO_MS), 0);
        cr_assert_eq(loop_turn(c), 0);
    }
    cr_assert_gt(l.received, 0);
    sb_close(p);
    sb_close(c);
    harness_stop(&broker);
}

/* More subscriptions than the write buffer holds at once (128 KiB): the
 * replay is written while it is made, reading meanwhile, and every one of
 * them comes back, counts included. */
Test(reconnect, a_replay_larger_than_the_write_buffer)
{
    enum { N = 6000 };
    sb_client *c = reconnecting("many", NULL, 0, 0);
    static uint32_t sids[N];
    char pattern[64];
    for (int i = 0; i < N; i++) {
        snprintf(pattern, sizeof(pattern), "many.subscriptions.number.%d", i);
        cr_assert_eq(sb_subscribe(c, pattern, NULL, &sids[i]), 0);
        if (i % 2 == 0) {
            cr_assert_eq(sb_unsubscribe(c, sids[i], 2), 0);
        }
    }
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    cr_assert_eq(harness_kill(&broker, SIGKILL), 128 + SIGKILL);
    notice_loss(c);
    restart();
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    sb_client *p = harness_client(&broker, "pub", true);
    /* Three to each of a sample: the counted ones take two. */
    for (int i = 0; i < N; i += 97) {
        snprintf(pattern, sizeof(pattern), "many.subscriptions.number.%d", i);
        for (int k = 0; k < 3; k++) {
            cr_assert_eq(sb_publish(p, pattern, NULL, "x", 1), 0);
        }
        cr_assert_eq(sb_flush(p, HARNESS_IO_MS), 0);
        for (int k = 0; k < (i % 2 == 0 ? 2 : 3); k++) {
            sb_msg m = harness_expect_msg(c);
            cr_assert_eq(m.sid, sids[i]);
        }
        harness_expect_none(c);
    }
    sb_close(p);
    sb_close(c);
    harness_stop(&broker);
}

/* A flush whose barrier the broker can no longer answer fails with
 * SB_E_DISCONNECTED; the publish buffered before it, which the dead socket
 * never took, is kept and sent after the replay. */
Test(reconnect, a_flush_in_flight_fails_and_unwritten_publishes_are_kept)
{
    struct states st = {0};
    sb_client *c = reconnecting("flusher", &st, 0, 0);
    uint32_t sid;
    cr_assert_eq(sb_subscribe(c, "f.x", NULL, &sid), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    cr_assert_eq(harness_kill(&broker, SIGKILL), 128 + SIGKILL);
    cr_assert_eq(sb_publish(c, "f.x", NULL, "kept", 4), 0); /* buffered, not yet written */
    cr_assert_eq(sb_state(c), SB_STATE_CONNECTED);          /* nothing noticed yet */
    int r = sb_flush(c, HARNESS_IO_MS);
    cr_assert_eq(r, SB_E_DISCONNECTED, "the flush gave %s", sb_strerror(r));
    cr_assert_eq(st.n, 1);
    restart();
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    expect_payload(c, sid, "kept");
    harness_expect_none(c);
    sb_close(c);
    harness_stop(&broker);
}

/* The subscription's flags come back with it: a lossless one is lossless
 * on the new broker ($SYS.CLIENTS counts it). */
static int64_t client_field(sb_client *probe, uint64_t id, const char *key)
{
    sb_msg reply;
    int r = sb_request(probe, "$SYS.CLIENTS", NULL, 0, &reply, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "$SYS.CLIENTS: %s", sb_strerror(r));
    char *text = strndup(reply.payload, reply.payload_len);
    cr_assert_not_null(text);
    json_object *all = json_tokener_parse(text);
    free(text);
    cr_assert_not_null(all);
    json_object *list;
    cr_assert(json_object_object_get_ex(all, "clients", &list));
    int64_t value = -1;
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *o = json_object_array_get_idx(list, i);
        json_object *v;
        if (json_object_object_get_ex(o, "id", &v) && (uint64_t)json_object_get_int64(v) == id &&
            json_object_object_get_ex(o, key, &v)) {
            value = json_object_get_int64(v);
        }
    }
    json_object_put(all);
    return value;
}

Test(reconnect, flags_are_replayed)
{
    sb_client *c = reconnecting("lossless", NULL, 0, 0);
    uint32_t sid;
    cr_assert_eq(sb_subscribe_ex(c, "ll.x", NULL, SB_SUB_LOSSLESS, &sid), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    sb_client *probe = harness_client(&broker, "probe", true);
    cr_assert_eq(client_field(probe, sb_client_id(c), "lossless"), 1);
    sb_close(probe);
    cr_assert_eq(harness_kill(&broker, SIGKILL), 128 + SIGKILL);
    notice_loss(c);
    restart();
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    probe = harness_client(&broker, "probe", true);
    cr_assert_eq(client_field(probe, sb_client_id(c), "subscriptions"), 1);
    cr_assert_eq(client_field(probe, sb_client_id(c), "lossless"), 1,
                 "the subscription came back without its flag");
    sb_close(probe);
    sb_close(c);
    harness_stop(&broker);
}
