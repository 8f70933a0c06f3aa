/*
 * test_pubsub.c - publish/subscribe through the library against a real
 * broker: routing, wildcards, echo, unsubscribe, order, payload sizes,
 * and the event-loop API.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct harness_broker broker;

static void setup(void)
{
    int r = harness_start(&broker, true, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
}

static void teardown(void)
{
    harness_cleanup(&broker);
}

TestSuite(pubsub, .init = setup, .fini = teardown, .timeout = 60);

Test(pubsub, publish_reaches_subscriber)
{
    sb_client *sub = harness_client(&broker, "sub", true);
    sb_client *pub = harness_client(&broker, "pub", true);
    uint32_t sid;
    cr_assert_eq(sb_subscribe(sub, "demo.x", NULL, &sid), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_publish(pub, "demo.x", "reply.here", "hello", 5), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    sb_msg m = harness_expect_msg(sub);
    cr_assert_str_eq(m.subject, "demo.x");
    cr_assert_str_eq(m.reply, "reply.here");
    cr_assert_eq(m.payload_len, 5);
    cr_assert_eq(memcmp(m.payload, "hello", 5), 0);
    cr_assert_eq(m.sid, sid);
    sb_close(pub);
    sb_close(sub);
    harness_stop(&broker);
}

Test(pubsub, wildcards_route_by_token)
{
    sb_client *sub = harness_client(&broker, "sub", true);
    sb_client *pub = harness_client(&broker, "pub", true);
    uint32_t star;
    uint32_t gt;
    cr_assert_eq(sb_subscribe(sub, "a.*.c", NULL, &star), 0);
    cr_assert_eq(sb_subscribe(sub, "a.>", NULL, &gt), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    const char *subjects[] = {"a.b.c", "a.b", "a.b.c.d", "x.b.c", "a"};
    for (size_t i = 0; i < 5; i++) {
        cr_assert_eq(sb_publish(pub, subjects[i], NULL, subjects[i], strlen(subjects[i])), 0);
    }
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    /* a.b.c matches both (one MSG per subscription), a.b and a.b.c.d only
     * a.>, x.b.c and a nothing. */
    struct {
        const char *subject;
        uint32_t sid;
    } want[] = {{"a.b.c", 0}, {"a.b.c", 0}, {"a.b", gt}, {"a.b.c.d", gt}};
    uint32_t seen_abc = 0;
    for (size_t i = 0; i < 4; i++) {
        sb_msg m = harness_expect_msg(sub);
        cr_assert_str_eq(m.subject, want[i].subject);
        if (want[i].sid != 0) {
            cr_assert_eq(m.sid, want[i].sid);
        } else {
            seen_abc |= m.sid == star ? 1u : m.sid == gt ? 2u : 4u;
        }
    }
    cr_assert_eq(seen_abc, 3u, "a.b.c must arrive once for each subscription");
    harness_expect_none(sub);
    sb_close(pub);
    sb_close(sub);
    harness_stop(&broker);
}

Test(pubsub, echo_can_be_turned_off)
{
    sb_client *quiet = harness_client(&broker, "quiet", false);
    sb_client *loud = harness_client(&broker, "loud", true);
    cr_assert_eq(sb_subscribe(quiet, "e", NULL, NULL), 0);
    cr_assert_eq(sb_subscribe(loud, "e", NULL, NULL), 0);
    cr_assert_eq(sb_flush(quiet, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_flush(loud, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_publish(quiet, "e", NULL, "q", 1), 0);
    cr_assert_eq(sb_publish(loud, "e", NULL, "l", 1), 0);
    cr_assert_eq(sb_flush(quiet, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_flush(loud, HARNESS_IO_MS), 0);
    /* quiet gets only loud's message; loud gets both. */
    sb_msg m = harness_expect_msg(quiet);
    cr_assert_eq(((const char *)m.payload)[0], 'l');
    harness_expect_none(quiet);
    m = harness_expect_msg(loud);
    cr_assert_eq(((const char *)m.payload)[0], 'q');
    m = harness_expect_msg(loud);
    cr_assert_eq(((const char *)m.payload)[0], 'l');
    sb_close(quiet);
    sb_close(loud);
    harness_stop(&broker);
}

Test(pubsub, unsubscribe_stops_delivery)
{
    sb_client *sub = harness_client(&broker, "sub", true);
    sb_client *pub = harness_client(&broker, "pub", true);
    uint32_t sid;
    cr_assert_eq(sb_subscribe(sub, "u.>", NULL, &sid), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_publish(pub, "u.1", NULL, "1", 1), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    harness_expect_msg(sub);
    cr_assert_eq(sb_unsubscribe(sub, sid, 0), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_publish(pub, "u.2", NULL, "2", 1), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    harness_expect_none(sub);
    /* A second UNSUB of the same sid is an error the broker reports. */
    cr_assert_eq(sb_unsubscribe(sub, sid, 0), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), SB_E_SID);
    sb_close(pub);
    sb_close(sub);
    harness_stop(&broker);
}

Test(pubsub, hundred_thousand_messages_in_order)
{
    sb_client *sub = harness_client(&broker, "sub", true);
    sb_client *pub = harness_client(&broker, "pub", true);
    cr_assert_eq(sb_subscribe(sub, "seq", NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    enum { TOTAL = 100000, BATCH = 10000 };
    uint32_t next = 0;
    for (uint32_t sent = 0; sent < TOTAL;) {
        /* Lockstep batches keep the subscriber's queue far below its
         * limit whatever the scheduling, so nothing may be dropped. */
        for (uint32_t i = 0; i < BATCH; i++, sent++) {
            cr_assert_eq(sb_publish(pub, "seq", NULL, &sent, sizeof(sent)), 0);
        }
        cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
        for (uint32_t i = 0; i < BATCH; i++, next++) {
            sb_msg m = harness_expect_msg(sub);
            uint32_t v;
            cr_assert_eq(m.payload_len, sizeof(v));
            memcpy(&v, m.payload, sizeof(v));
            cr_assert_eq(v, next, "message %u arrived as %u", next, v);
        }
    }
    cr_assert_eq(sb_take_dropped(sub), 0);
    harness_expect_none(sub);
    sb_close(pub);
    sb_close(sub);
    harness_stop(&broker);
}

static void check_payload_size(const char *endpoint, size_t size)
{
    sb_options o = {.endpoint = endpoint};
    sb_client *sub;
    sb_client *pub;
    cr_assert_eq(sb_connect(&sub, &o), 0);
    cr_assert_eq(sb_connect(&pub, &o), 0);
    cr_assert_eq(sb_subscribe(sub, "size", NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    uint8_t *data = malloc(size + 1);
    for (size_t i = 0; i < size; i++) {
        data[i] = (uint8_t)(i * 31 + 7);
    }
    cr_assert_eq(sb_publish(pub, "size", NULL, data, size), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    sb_msg m = harness_expect_msg(sub);
    cr_assert_eq(m.payload_len, size);
    cr_assert(size == 0 || memcmp(m.payload, data, size) == 0, "payload of %zu differs", size);
    free(data);
    sb_close(pub);
    sb_close(sub);
}

Test(pubsub, payload_sizes_arrive_byte_exact)
{
    size_t sizes[] = {0, 1, 65536, 1024 * 1024};
    for (size_t i = 0; i < 4; i++) {
        check_payload_size(broker.socket, sizes[i]);
        check_payload_size(broker.tcp, sizes[i]);
    }
    harness_stop(&broker);
}

Test(pubsub, oversized_publish_is_refused_locally)
{
    sb_client *pub = harness_client(&broker, "pub", true);
    size_t size = sb_max_frame(pub);
    void *data = calloc(1, size);
    cr_assert_eq(sb_publish(pub, "big", NULL, data, size), -EMSGSIZE);
    cr_assert_eq(sb_publish(pub, "bad..subject", NULL, "x", 1), -EINVAL);
    cr_assert_eq(sb_publish(pub, "wild.*", NULL, "x", 1), -EINVAL);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0, "the connection is still fine");
    free(data);
    sb_close(pub);
    harness_stop(&broker);
}

static void count_msg(sb_client *c, const sb_msg *m, void *arg)
{
    (void)c;
    (void)m;
    (*(int *)arg)++;
}

Test(pubsub, event_loop_api_delivers_through_callback)
{
    sb_client *sub = harness_client(&broker, "sub", true);
    sb_client *pub = harness_client(&broker, "pub", true);
    int got = 0;
    sb_set_msg_cb(sub, count_msg, &got);
    cr_assert_eq(sb_subscribe(sub, "loop.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(sb_publish(pub, "loop.tick", NULL, "t", 1), 0);
    }
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    int64_t deadline = harness_now_ms() + HARNESS_IO_MS;
    while (got < 100 && harness_now_ms() < deadline) {
        struct pollfd p = {.fd = sb_fd(sub), .events = sb_events(sub)};
        cr_assert(poll(&p, 1, 100) >= 0);
        cr_assert_eq(sb_process(sub), 0);
    }
    cr_assert_eq(got, 100);
    sb_close(pub);
    sb_close(sub);
    harness_stop(&broker);
}

Test(pubsub, connect_to_nothing_fails_fast)
{
    sb_client *c = NULL;
    char path[200];
    snprintf(path, sizeof(path), "%s/nothing.sock", broker.dir);
    sb_options o = {.endpoint = path, .timeout_ms = 1000};
    cr_assert_eq(sb_connect(&c, &o), -ENOENT);
    o.endpoint = "tcp://127.0.0.1:1";
    cr_assert_eq(sb_connect(&c, &o), -ECONNREFUSED);
    cr_assert_null(c);
    harness_stop(&broker);
}

/* Large bodies fanned out to several subscribers are shared between their
 * queues: they must still arrive byte-exact, in order, interleaved with
 * small messages, and survive a subscriber that stalls. */
Test(pubsub, large_fanout_is_byte_exact_and_ordered)
{
    enum { SUBS = 3, ROUNDS = 40, BIG = 64 * 1024 };
    sb_client *sub[SUBS];
    for (int i = 0; i < SUBS; i++) {
        sub[i] = harness_client(&broker, "sub", true);
        cr_assert_eq(sb_subscribe(sub[i], "fan.>", NULL, NULL), 0);
        cr_assert_eq(sb_flush(sub[i], HARNESS_IO_MS), 0);
    }
    sb_client *pub = harness_client(&broker, "pub", true);
    static uint8_t big[BIG];
    for (int r = 0; r < ROUNDS; r++) {
        memset(big, 'a' + r % 26, sizeof(big));
        memcpy(big, &r, sizeof(r));
        cr_assert_eq(sb_publish(pub, "fan.big", NULL, big, sizeof(big)), 0);
        cr_assert_eq(sb_publish(pub, "fan.small", NULL, &r, sizeof(r)), 0);
        cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
        for (int i = 0; i < SUBS; i++) {
            sb_msg m = harness_expect_msg(sub[i]);
            cr_assert_str_eq(m.subject, "fan.big");
            cr_assert_eq(m.payload_len, sizeof(big));
            cr_assert_eq(memcmp(m.payload, big, sizeof(big)), 0, "round %d sub %d", r, i);
            m = harness_expect_msg(sub[i]);
            cr_assert_str_eq(m.subject, "fan.small");
            cr_assert_eq(memcmp(m.payload, &r, sizeof(r)), 0);
        }
    }
    for (int i = 0; i < SUBS; i++) {
        cr_assert_eq(sb_take_dropped(sub[i]), 0);
        sb_close(sub[i]);
    }
    sb_close(pub);
    harness_stop(&broker);
}

Test(pubsub, large_fanout_with_a_stalled_subscriber_counts_exactly)
{
    enum { TOTAL = 1200, BIG = 32 * 1024 }; /* 37.5 MiB against 8 MiB queues */
    sb_client *stalled = harness_client(&broker, "stalled", true);
    sb_client *reader = harness_client(&broker, "reader", true);
    sb_client *pub = harness_client(&broker, "pub", true);
    cr_assert_eq(sb_subscribe(stalled, "fan.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(stalled, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_subscribe(reader, "fan.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(reader, HARNESS_IO_MS), 0);
    static uint8_t big[BIG];
    for (uint32_t i = 0; i < TOTAL; i++) {
        memcpy(big, &i, sizeof(i));
        cr_assert_eq(sb_publish(pub, "fan.big", NULL, big, sizeof(big)), 0);
        if (i % 50 == 49) {
            /* Lockstep: the reader never falls behind. */
            cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
            for (uint32_t k = i - 49; k <= i; k++) {
                sb_msg m = harness_expect_msg(reader);
                uint32_t v;
                memcpy(&v, m.payload, sizeof(v));
                cr_assert_eq(v, k);
            }
        }
    }
    cr_assert_eq(sb_take_dropped(reader), 0);
    uint64_t received = 0;
    uint64_t dropped = 0;
    while (received + dropped < TOTAL) {
        sb_msg m;
        int r = sb_next_msg(stalled, &m, HARNESS_IO_MS);
        dropped += sb_take_dropped(stalled);
        if (r == -ETIMEDOUT && received + dropped >= TOTAL) {
            break;
        }
        cr_assert_eq(r, 0, "after %llu + %llu: %s", (unsigned long long)received,
                     (unsigned long long)dropped, sb_strerror(r));
        cr_assert_eq(m.payload_len, sizeof(big));
        received++;
    }
    cr_assert_eq(sb_flush(stalled, HARNESS_IO_MS), 0);
    dropped += sb_take_dropped(stalled);
    cr_assert_eq(received + dropped, TOTAL);
    cr_assert_gt(dropped, 0);
    sb_close(pub);
    sb_close(reader);
    sb_close(stalled);
    harness_stop(&broker);
}
