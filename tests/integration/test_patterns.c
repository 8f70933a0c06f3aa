/*
 * test_patterns.c - messaging patterns through the library against a real
 * broker: request/reply, NO_RESPONDERS, queue groups, auto-unsubscribe,
 * retained values and headers.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
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

TestSuite(patterns, .init = setup, .fini = teardown, .timeout = 60);

static bool payload_is(const sb_msg *m, const char *text)
{
    return m->payload_len == strlen(text) && memcmp(m->payload, text, m->payload_len) == 0;
}

/* Answer `n` requests on `responder` with the request's payload prefixed. */
static void serve(sb_client *responder, int n)
{
    for (int i = 0; i < n; i++) {
        sb_msg m = harness_expect_msg(responder);
        cr_assert_gt(m.reply_len, 0, "a request has a reply subject");
        char out[256];
        int len =
            snprintf(out, sizeof(out), "re:%.*s", (int)m.payload_len, (const char *)m.payload);
        char reply[SB_SUBJECT_MAX + 1];
        memcpy(reply, m.reply, m.reply_len + 1);
        cr_assert_eq(sb_publish(responder, reply, NULL, out, (size_t)len), 0);
    }
    cr_assert_eq(sb_flush(responder, HARNESS_IO_MS), 0);
}

Test(patterns, request_gets_reply)
{
    sb_client *svc = harness_client(&broker, "svc", true);
    sb_client *cli = harness_client(&broker, "cli", true);
    cr_assert_eq(sb_subscribe(svc, "svc.echo", NULL, NULL), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);

    uint32_t token;
    sb_pub req = {.subject = "svc.echo", .payload = "ping", .payload_len = 4};
    cr_assert_eq(sb_request_send(cli, &req, &token), 0);
    cr_assert_eq(sb_flush(cli, HARNESS_IO_MS), 0);
    serve(svc, 1);
    sb_msg reply;
    cr_assert_eq(sb_request_wait(cli, token, &reply, HARNESS_IO_MS), 0);
    cr_assert(payload_is(&reply, "re:ping"));
    /* Replies never show up as ordinary messages. */
    harness_expect_none(cli);
    sb_close(cli);
    sb_close(svc);
    harness_stop(&broker);
}

Test(patterns, several_requests_in_flight_answered_in_any_order)
{
    sb_client *svc = harness_client(&broker, "svc", true);
    sb_client *cli = harness_client(&broker, "cli", true);
    cr_assert_eq(sb_subscribe(svc, "svc.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
    enum { N = 10 };
    uint32_t tokens[N];
    for (int i = 0; i < N; i++) {
        char body[8];
        int len = snprintf(body, sizeof(body), "%d", i);
        sb_pub req = {.subject = "svc.n", .payload = body, .payload_len = (size_t)len};
        cr_assert_eq(sb_request_send(cli, &req, &tokens[i]), 0);
    }
    cr_assert_eq(sb_flush(cli, HARNESS_IO_MS), 0);
    serve(svc, N);
    /* Wait for them backwards: each reply finds its own request. */
    for (int i = N - 1; i >= 0; i--) {
        sb_msg reply;
        cr_assert_eq(sb_request_wait(cli, tokens[i], &reply, HARNESS_IO_MS), 0);
        char want[16];
        snprintf(want, sizeof(want), "re:%d", i);
        cr_assert(payload_is(&reply, want), "request %d got '%.*s'", i, (int)reply.payload_len,
                  (const char *)reply.payload);
    }
    cr_assert_eq(sb_request_wait(cli, tokens[0], NULL, 0), -ENOENT);
    sb_close(cli);
    sb_close(svc);
    harness_stop(&broker);
}

Test(patterns, no_responders_fails_fast)
{
    sb_client *cli = harness_client(&broker, "cli", true);
    sb_msg reply;
    int64_t start = harness_now_ms();
    int r = sb_request(cli, "nobody.home", "x", 1, &reply, 10000);
    int64_t took = harness_now_ms() - start;
    cr_assert_eq(r, SB_E_NO_RESPONDERS, "got %s", sb_strerror(r));
    cr_assert_lt(took, 2000, "NO_RESPONDERS took %lld ms against a 10 s timeout", (long long)took);
    /* A plain publish with a reply subject gets the flagged empty MSG. */
    uint32_t sid;
    cr_assert_eq(sb_subscribe(cli, "my.reply", NULL, &sid), 0);
    cr_assert_eq(sb_publish(cli, "nobody.home", "my.reply", "x", 1), 0);
    sb_msg m = harness_expect_msg(cli);
    cr_assert_str_eq(m.subject, "my.reply");
    cr_assert_eq(m.sid, sid);
    cr_assert_eq(m.flags & SB_MSG_NO_RESPONDERS, SB_MSG_NO_RESPONDERS);
    cr_assert_eq(m.payload_len, 0);
    sb_close(cli);
    harness_stop(&broker);
}

/* A responder (a bridge) that learned elsewhere that nobody answered says
 * so with PUB flag NO_RESPONDERS: the requester fails fast, as if the
 * broker had found nobody. */
Test(patterns, relayed_no_responders_fails_the_request)
{
    sb_client *relay = harness_client(&broker, "relay", true);
    sb_client *cli = harness_client(&broker, "cli", true);
    cr_assert_eq(sb_subscribe(relay, "far.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(relay, HARNESS_IO_MS), 0);

    uint32_t token;
    sb_pub req = {.subject = "far.svc", .payload = "x", .payload_len = 1};
    cr_assert_eq(sb_request_send(cli, &req, &token), 0);
    cr_assert_eq(sb_flush(cli, HARNESS_IO_MS), 0);
    sb_msg m = harness_expect_msg(relay);
    char reply[SB_SUBJECT_MAX + 1];
    memcpy(reply, m.reply, m.reply_len + 1);
    sb_pub none = {.subject = reply, .flags = SB_PUB_NO_RESPONDERS};
    cr_assert_eq(sb_publish_ex(relay, &none), 0);
    cr_assert_eq(sb_flush(relay, HARNESS_IO_MS), 0);

    sb_msg r;
    int64_t start = harness_now_ms();
    int rc = sb_request_wait(cli, token, &r, 10000);
    cr_assert_eq(rc, SB_E_NO_RESPONDERS, "got %s", sb_strerror(rc));
    cr_assert_lt(harness_now_ms() - start, 2000, "the relayed NO_RESPONDERS was not taken at once");

    /* An ordinary subscriber sees the flag on the MSG. */
    uint32_t sid;
    cr_assert_eq(sb_subscribe(cli, "plain.reply", NULL, &sid), 0);
    cr_assert_eq(sb_flush(cli, HARNESS_IO_MS), 0);
    sb_pub again = {.subject = "plain.reply", .flags = SB_PUB_NO_RESPONDERS};
    cr_assert_eq(sb_publish_ex(relay, &again), 0);
    cr_assert_eq(sb_flush(relay, HARNESS_IO_MS), 0);
    sb_msg p = harness_expect_msg(cli);
    cr_assert_eq(p.sid, sid);
    cr_assert_eq(p.flags & SB_MSG_NO_RESPONDERS, SB_MSG_NO_RESPONDERS);
    sb_close(cli);
    sb_close(relay);
    harness_stop(&broker);
}

Test(patterns, request_timeout_then_late_reply_is_dropped)
{
    sb_client *svc = harness_client(&broker, "svc", true);
    sb_client *cli = harness_client(&broker, "cli", true);
    cr_assert_eq(sb_subscribe(svc, "slow.svc", NULL, NULL), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
    sb_msg reply;
    cr_assert_eq(sb_request(cli, "slow.svc", "a", 1, &reply, 100), -ETIMEDOUT);
    serve(svc, 1); /* too late */
    /* The late reply is neither a message nor the answer to the next one. */
    harness_expect_none(cli);
    uint32_t token;
    sb_pub req = {.subject = "slow.svc", .payload = "b", .payload_len = 1};
    cr_assert_eq(sb_request_send(cli, &req, &token), 0);
    cr_assert_eq(sb_flush(cli, HARNESS_IO_MS), 0);
    serve(svc, 1);
    cr_assert_eq(sb_request_wait(cli, token, &reply, HARNESS_IO_MS), 0);
    cr_assert(payload_is(&reply, "re:b"));
    sb_close(cli);
    sb_close(svc);
    harness_stop(&broker);
}

Test(patterns, queue_group_round_robin_is_balanced)
{
    enum { MEMBERS = 3, MSGS = 300 };
    sb_client *member[MEMBERS];
    for (int i = 0; i < MEMBERS; i++) {
        member[i] = harness_client(&broker, "worker", true);
        cr_assert_eq(sb_subscribe(member[i], "jobs.>", "workers", NULL), 0);
        cr_assert_eq(sb_flush(member[i], HARNESS_IO_MS), 0);
    }
    sb_client *watcher = harness_client(&broker, "watcher", true);
    cr_assert_eq(sb_subscribe(watcher, "jobs.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(watcher, HARNESS_IO_MS), 0);
    sb_client *pub = harness_client(&broker, "pub", true);
    for (int i = 0; i < MSGS; i++) {
        cr_assert_eq(sb_publish(pub, "jobs.run", NULL, &i, sizeof(i)), 0);
    }
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);

    int total = 0;
    for (int i = 0; i < MEMBERS; i++) {
        int got = 0;
        sb_msg m;
        cr_assert_eq(sb_flush(member[i], HARNESS_IO_MS), 0);
        while (sb_next_msg(member[i], &m, 0) == 0) {
            got++;
        }
        cr_assert(got >= MSGS / MEMBERS - 1 && got <= MSGS / MEMBERS + 1, "member %d got %d of %d",
                  i, got, MSGS);
        total += got;
    }
    cr_assert_eq(total, MSGS, "each message goes to exactly one member");
    /* A plain subscription beside the group gets every message. */
    for (int i = 0; i < MSGS; i++) {
        harness_expect_msg(watcher);
    }
    harness_expect_none(watcher);
    for (int i = 0; i < MEMBERS; i++) {
        sb_close(member[i]);
    }
    sb_close(watcher);
    sb_close(pub);
    harness_stop(&broker);
}

Test(patterns, auto_unsubscribe_after_count)
{
    sb_client *sub = harness_client(&broker, "sub", true);
    sb_client *pub = harness_client(&broker, "pub", true);
    uint32_t sid;
    cr_assert_eq(sb_subscribe(sub, "tick", NULL, &sid), 0);
    cr_assert_eq(sb_unsubscribe(sub, sid, 3), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(sb_publish(pub, "tick", NULL, "t", 1), 0);
    }
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    for (int i = 0; i < 3; i++) {
        harness_expect_msg(sub);
    }
    harness_expect_none(sub);
    /* The subscription is gone: unsubscribing it again is an error. */
    cr_assert_eq(sb_unsubscribe(sub, sid, 0), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), SB_E_SID);
    sb_close(sub);
    sb_close(pub);
    harness_stop(&broker);
}

static void publish_retained(sb_client *c, const char *subject, const char *value)
{
    sb_pub p = {
        .subject = subject, .payload = value, .payload_len = strlen(value), .flags = SB_PUB_RETAIN};
    cr_assert_eq(sb_publish_ex(c, &p), 0);
}

Test(patterns, retained_values_come_first_and_can_be_deleted)
{
    sb_client *pub = harness_client(&broker, "pub", true);
    publish_retained(pub, "state.a", "1");
    publish_retained(pub, "state.b", "2");
    publish_retained(pub, "state.a", "3"); /* replaces 1 */
    publish_retained(pub, "other.c", "x");
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);

    sb_client *sub = harness_client(&broker, "sub", true);
    cr_assert_eq(sb_subscribe(sub, "state.*", NULL, NULL), 0);
    cr_assert_eq(sb_publish(pub, "state.live", NULL, "live", 4), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    /* Both retained values, flagged, before the live message. */
    int seen = 0;
    for (int i = 0; i < 2; i++) {
        sb_msg m = harness_expect_msg(sub);
        cr_assert(m.flags & SB_MSG_RETAINED, "retained flag on %s", m.subject);
        if (strcmp(m.subject, "state.a") == 0) {
            cr_assert(payload_is(&m, "3"));
            seen |= 1;
        } else {
            cr_assert_str_eq(m.subject, "state.b");
            cr_assert(payload_is(&m, "2"));
            seen |= 2;
        }
    }
    cr_assert_eq(seen, 3);
    sb_msg m = harness_expect_msg(sub);
    cr_assert_str_eq(m.subject, "state.live");
    cr_assert_eq(m.flags & SB_MSG_RETAINED, 0);

    /* A retained publish is delivered live without the flag; an empty one
     * deletes, and is delivered live as an empty message. */
    publish_retained(pub, "state.b", "");
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    m = harness_expect_msg(sub);
    cr_assert_str_eq(m.subject, "state.b");
    cr_assert_eq(m.payload_len, 0);
    cr_assert_eq(m.flags & SB_MSG_RETAINED, 0);

    sb_client *late = harness_client(&broker, "late", true);
    cr_assert_eq(sb_subscribe(late, "state.b", NULL, NULL), 0);
    cr_assert_eq(sb_subscribe(late, "state.a", "group", NULL), 0);
    m = harness_expect_msg(late);
    cr_assert_str_eq(m.subject, "state.a", "state.b was deleted; queue groups get replays");
    cr_assert(payload_is(&m, "3"));
    harness_expect_none(late);
    sb_close(late);
    sb_close(sub);
    sb_close(pub);
    harness_stop(&broker);
}

Test(patterns, retained_store_is_bounded)
{
    harness_cleanup(&broker);
    /* 150: a stored value also holds the meta block of its publish. */
    const char *const args[] = {"--max-retained-bytes", "150", NULL};
    cr_assert_eq(harness_start(&broker, false, args), 0);
    sb_client *pub = harness_client(&broker, "pub", true);
    sb_client *sub = harness_client(&broker, "sub", true);
    cr_assert_eq(sb_subscribe(sub, "big", NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    char value[101];
    memset(value, 'v', sizeof(value) - 1);
    value[100] = '\0';
    publish_retained(pub, "big", value); /* 3 + 100 bytes and the rest > 150 */
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), SB_E_LIMIT);
    cr_assert(strstr(sb_last_error(pub), "max_retained_bytes") != NULL, "%s", sb_last_error(pub));
    /* Still delivered live, but not stored. */
    sb_msg m = harness_expect_msg(sub);
    cr_assert_eq(m.payload_len, 100);
    sb_client *late = harness_client(&broker, "late", true);
    cr_assert_eq(sb_subscribe(late, "big", NULL, NULL), 0);
    harness_expect_none(late);
    /* Something that fits is stored. */
    publish_retained(pub, "big", "small");
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    sb_client *later = harness_client(&broker, "later", true);
    cr_assert_eq(sb_subscribe(later, "big", NULL, NULL), 0);
    m = harness_expect_msg(later);
    cr_assert(payload_is(&m, "small"));
    sb_close(later);
    sb_close(late);
    sb_close(sub);
    sb_close(pub);
    harness_stop(&broker);
}

Test(patterns, headers_pass_through_both_ways)
{
    sb_client *svc = harness_client(&broker, "svc", true);
    sb_client *cli = harness_client(&broker, "cli", true);
    cr_assert_eq(sb_subscribe(svc, "hdr", NULL, NULL), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
    static const uint8_t hdr[] = {0, 1, 2, 0xff, 'k', '=', 'v', '\n'};
    sb_pub req = {.subject = "hdr",
                  .headers = hdr,
                  .headers_len = sizeof(hdr),
                  .payload = "body",
                  .payload_len = 4};
    uint32_t token;
    cr_assert_eq(sb_request_send(cli, &req, &token), 0);
    cr_assert_eq(sb_flush(cli, HARNESS_IO_MS), 0);
    sb_msg m = harness_expect_msg(svc);
    cr_assert_eq(m.headers_len, sizeof(hdr));
    cr_assert_eq(memcmp(m.headers, hdr, sizeof(hdr)), 0);
    cr_assert(payload_is(&m, "body"));
    static const uint8_t back[] = "status: 200";
    char reply[SB_SUBJECT_MAX + 1];
    memcpy(reply, m.reply, m.reply_len + 1);
    sb_pub rep = {.subject = reply,
                  .headers = back,
                  .headers_len = sizeof(back) - 1,
                  .payload = "ok",
                  .payload_len = 2};
    cr_assert_eq(sb_publish_ex(svc, &rep), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
    sb_msg r;
    cr_assert_eq(sb_request_wait(cli, token, &r, HARNESS_IO_MS), 0);
    cr_assert_eq(r.headers_len, sizeof(back) - 1);
    cr_assert_eq(memcmp(r.headers, back, sizeof(back) - 1), 0);
    cr_assert(payload_is(&r, "ok"));
    sb_close(cli);
    sb_close(svc);
    harness_stop(&broker);
}

Test(patterns, queue_group_skips_publisher_without_echo)
{
    /* The publisher is itself a member and said "echo":false: its turns
     * pass to the other member instead of being lost. */
    sb_client *self = harness_client(&broker, "self", false);
    sb_client *other = harness_client(&broker, "other", true);
    cr_assert_eq(sb_subscribe(self, "work", "g", NULL), 0);
    cr_assert_eq(sb_subscribe(other, "work", "g", NULL), 0);
    cr_assert_eq(sb_flush(self, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_flush(other, HARNESS_IO_MS), 0);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(sb_publish(self, "work", NULL, "w", 1), 0);
    }
    cr_assert_eq(sb_flush(self, HARNESS_IO_MS), 0);
    for (int i = 0; i < 10; i++) {
        harness_expect_msg(other);
    }
    harness_expect_none(other);
    harness_expect_none(self);
    sb_close(other);
    sb_close(self);
    harness_stop(&broker);
}
