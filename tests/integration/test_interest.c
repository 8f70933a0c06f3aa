/*
 * test_interest.c - who listens (docs/protocol.md, Who listens):
 * $SYS.INTEREST, the SUBSCRIBE and UNSUBSCRIBE events, and "subs" in
 * $SYS.CLIENTS. The commands built on them are in test_wait.c.
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
#include <sys/wait.h>
#include <unistd.h>

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

TestSuite(interest, .init = setup, .fini = teardown, .timeout = 120);

static json_object *parse(const void *data, size_t len)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, data, (int)len);
    cr_assert(o != NULL && json_tokener_get_parse_end(tok) == len, "invalid JSON: %.*s", (int)len,
              (const char *)data);
    json_tokener_free(tok);
    return o;
}

static json_object *get(json_object *o, const char *key)
{
    json_object *v = NULL;
    cr_assert(json_object_object_get_ex(o, key, &v), "no \"%s\" in %s", key,
              json_object_to_json_string(o));
    return v;
}

/* $SYS.INTEREST for `subject`: the count, after checking the answer's
 * shape. */
static int64_t interest(sb_client *c, const char *subject)
{
    sb_msg reply;
    int r = sb_request(c, "$SYS.INTEREST", subject, strlen(subject), &reply, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "$SYS.INTEREST %s: %s", subject, sb_strerror(r));
    json_object *o = parse(reply.payload, reply.payload_len);
    cr_assert_str_eq(json_object_get_string(get(o, "subject")), subject);
    int64_t n = json_object_get_int64(get(o, "subscriptions"));
    json_object_put(o);
    return n;
}

static void subscribe(sb_client *c, const char *pattern, const char *queue)
{
    cr_assert_eq(sb_subscribe(c, pattern, queue, NULL), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
}

Test(interest, counts_what_a_publish_would_reach)
{
    sb_client *ask = harness_client(&broker, "ask", true);
    cr_assert_eq(interest(ask, "x.y"), 0);
    sb_client *a = harness_client(&broker, "a", true);
    sb_client *g1 = harness_client(&broker, "g1", true);
    sb_client *g2 = harness_client(&broker, "g2", true);
    subscribe(a, "x.*", NULL);
    subscribe(a, "x.y", NULL);
    subscribe(g1, "x.>", "g");
    subscribe(g2, "x.>", "g");
    /* Two plain subscriptions and one group. */
    cr_assert_eq(interest(ask, "x.y"), 3);
    cr_assert_eq(interest(ask, "x.z"), 2);
    cr_assert_eq(interest(ask, "x.y.z"), 1);
    cr_assert_eq(interest(ask, "y"), 0);
    /* The $ rule: a wildcard in front never matches the broker's own. */
    subscribe(a, ">", NULL);
    cr_assert_eq(interest(ask, "$SYS.EVENT.CONNECT"), 0);
    cr_assert_eq(interest(ask, "y"), 1);
    /* A client's end takes its subscriptions with it (the broker sees the
     * close when it sees it: asked until then, with a bound). */
    sb_close(a);
    int64_t until = harness_now_ms() + HARNESS_IO_MS;
    while (interest(ask, "x.y") != 1 && harness_now_ms() < until) {
        poll(NULL, 0, 10);
    }
    cr_assert_eq(interest(ask, "x.y"), 1);
    sb_close(g1);
    sb_close(g2);
    sb_close(ask);
    harness_stop(&broker);
}

/* Counting is not matching: no queue group loses its turn to a question. */
Test(interest, takes_no_turn_from_a_queue_group)
{
    sb_client *pub = harness_client(&broker, "pub", true);
    sb_client *m[2] = {harness_client(&broker, "m0", true), harness_client(&broker, "m1", true)};
    subscribe(m[0], "q.x", "g");
    subscribe(m[1], "q.x", "g");
    for (int round = 0; round < 4; round++) {
        cr_assert_eq(sb_publish(pub, "q.x", NULL, "m", 1), 0);
        cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
        /* Three questions between two messages: an odd number of turns
         * taken would hand the next message to the same member. */
        for (int i = 0; i < 3; i++) {
            cr_assert_eq(interest(pub, "q.x"), 1);
        }
    }
    /* Each member got every other message: two each. */
    for (int k = 0; k < 2; k++) {
        harness_expect_msg(m[k]);
        harness_expect_msg(m[k]);
        harness_expect_none(m[k]);
    }
    sb_close(m[0]);
    sb_close(m[1]);
    sb_close(pub);
    harness_stop(&broker);
}

Test(interest, a_payload_that_is_no_subject_is_refused)
{
    sb_client *c = harness_client(&broker, "c", true);
    static const char *const bad[] = {"", "a.*", "a..b", "x.>"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sb_msg reply;
        int r = sb_request(c, "$SYS.INTEREST", bad[i], strlen(bad[i]), &reply, HARNESS_IO_MS);
        cr_assert_lt(r, 0, "'%s' was answered", bad[i]);
        cr_assert(strstr(sb_last_error(c), "invalid $SYS.INTEREST request") != NULL, "'%s': %s",
                  bad[i], sb_last_error(c));
    }
    cr_assert_eq(interest(c, "fine"), 0);
    sb_close(c);
    harness_stop(&broker);
}

/* The next event on `w`: its subject's last token, and its payload
 * checked against what is expected. */
static void expect_event(sb_client *w, const char *kind, uint64_t client_id, uint32_t sid,
                         const char *pattern, const char *queue)
{
    sb_msg m = harness_expect_msg(w);
    char subject[64];
    snprintf(subject, sizeof(subject), "$SYS.EVENT.%s", kind);
    cr_assert_str_eq(m.subject, subject);
    json_object *o = parse(m.payload, m.payload_len);
    cr_assert_eq(json_object_object_length(o), 4, "%s", json_object_to_json_string(o));
    cr_assert_eq((uint64_t)json_object_get_int64(get(o, "client_id")), client_id);
    cr_assert_eq(json_object_get_int64(get(o, "sid")), sid);
    cr_assert_str_eq(json_object_get_string(get(o, "pattern")), pattern);
    json_object *q = get(o, "queue");
    if (queue == NULL) {
        cr_assert_null(q, "queue: %s", json_object_to_json_string(o));
    } else {
        cr_assert_str_eq(json_object_get_string(q), queue);
    }
    json_object_put(o);
}

Test(interest, subscriptions_are_announced_as_they_start_and_end)
{
    sb_client *w = harness_client(&broker, "watch", true);
    subscribe(w, "$SYS.EVENT.SUBSCRIBE", NULL);
    expect_event(w, "SUBSCRIBE", sb_client_id(w), 1, "$SYS.EVENT.SUBSCRIBE", NULL);
    subscribe(w, "$SYS.EVENT.UNSUBSCRIBE", NULL);
    expect_event(w, "SUBSCRIBE", sb_client_id(w), 2, "$SYS.EVENT.UNSUBSCRIBE", NULL);

    sb_client *c = harness_client(&broker, "c", true);
    uint64_t id = sb_client_id(c);
    uint32_t s1;
    uint32_t s2;
    uint32_t s3;
    cr_assert_eq(sb_subscribe(c, "a.b", "grp", &s1), 0);
    cr_assert_eq(sb_subscribe(c, "a.>", NULL, &s2), 0);
    cr_assert_eq(sb_subscribe(c, "left.open", NULL, &s3), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    expect_event(w, "SUBSCRIBE", id, s1, "a.b", "grp");
    expect_event(w, "SUBSCRIBE", id, s2, "a.>", NULL);
    expect_event(w, "SUBSCRIBE", id, s3, "left.open", NULL);

    /* UNSUB now; UNSUB after one more message, which ends it while that
     * message is being routed; the connection's end. */
    cr_assert_eq(sb_unsubscribe(c, s1, 0), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    expect_event(w, "UNSUBSCRIBE", id, s1, "a.b", "grp");
    cr_assert_eq(sb_unsubscribe(c, s2, 1), 0);
    cr_assert_eq(sb_publish(c, "a.x", NULL, "last", 4), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    expect_event(w, "UNSUBSCRIBE", id, s2, "a.>", NULL);
    sb_close(c);
    expect_event(w, "UNSUBSCRIBE", id, s3, "left.open", NULL);
    harness_expect_none(w);
    sb_close(w);
    harness_stop(&broker);
}

static json_object *client_object(sb_client *c, uint64_t id)
{
    sb_msg reply;
    cr_assert_eq(sb_request(c, "$SYS.CLIENTS", NULL, 0, &reply, HARNESS_IO_MS), 0);
    json_object *page = parse(reply.payload, reply.payload_len);
    json_object *list = get(page, "clients");
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *o = json_object_array_get_idx(list, i);
        if ((uint64_t)json_object_get_int64(get(o, "id")) == id) {
            json_object *copy = json_object_get(o);
            json_object_put(page);
            return copy;
        }
    }
    cr_assert_fail("client %llu is not listed", (unsigned long long)id);
    return NULL;
}

Test(interest, clients_list_their_subscriptions_up_to_a_bound)
{
    sb_client *c = harness_client(&broker, "c", true);
    sb_client *ask = harness_client(&broker, "ask", true); /* its inbox is its own */
    subscribe(c, "one.>", NULL);
    subscribe(c, "two", "workers");
    json_object *o = client_object(ask, sb_client_id(c));
    json_object *subs = get(o, "subs");
    cr_assert_eq(json_object_array_length(subs), 2, "%s", json_object_to_json_string(o));
    cr_assert(!json_object_get_boolean(get(o, "subs_more")));
    bool saw_queue = false;
    for (size_t i = 0; i < 2; i++) {
        json_object *s = json_object_array_get_idx(subs, i);
        const char *p = json_object_get_string(get(s, "pattern"));
        json_object *q = get(s, "queue");
        cr_assert(!json_object_get_boolean(get(s, "lossless")));
        cr_assert(!json_object_get_boolean(get(s, "sender")));
        cr_assert_gt(json_object_get_int64(get(s, "sid")), 0);
        if (strcmp(p, "two") == 0) {
            cr_assert_str_eq(json_object_get_string(q), "workers");
            saw_queue = true;
        } else {
            cr_assert_str_eq(p, "one.>");
            cr_assert_null(q);
        }
    }
    cr_assert(saw_queue);
    json_object_put(o);

    /* Many: the first ones, and "subs_more". */
    for (int i = 0; i < 200; i++) {
        char p[32];
        snprintf(p, sizeof(p), "many.%d", i);
        cr_assert_eq(sb_subscribe(c, p, NULL, NULL), 0);
    }
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    o = client_object(ask, sb_client_id(c));
    cr_assert_eq(json_object_get_int64(get(o, "subscriptions")), 202);
    cr_assert_eq(json_object_array_length(get(o, "subs")), 64);
    cr_assert(json_object_get_boolean(get(o, "subs_more")));
    json_object_put(o);
    sb_close(ask);
    sb_close(c);
    harness_stop(&broker);
}
