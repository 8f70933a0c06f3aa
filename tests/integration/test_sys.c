/*
 * test_sys.c - broker introspection: $SYS.STATS, $SYS.CLIENTS and the
 * CONNECT/DISCONNECT events.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct harness_broker broker;
/* A second broker, for a test that needs other limits. */
static struct harness_broker small;

static void setup(void)
{
    int r = harness_start(&broker, true, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
}

static void teardown(void)
{
    harness_cleanup(&small);
    harness_cleanup(&broker);
}

TestSuite(sys, .init = setup, .fini = teardown, .timeout = 60);

/* Ask the broker; the caller owns the returned JSON. */
static json_object *ask(sb_client *c, const char *subject)
{
    sb_msg reply;
    int r = sb_request(c, subject, NULL, 0, &reply, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "%s: %s", subject, sb_strerror(r));
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, reply.payload, (int)reply.payload_len);
    json_tokener_free(tok);
    cr_assert_not_null(o, "%s answered invalid JSON", subject);
    return o;
}

static int64_t field(json_object *o, const char *key)
{
    json_object *v;
    cr_assert(json_object_object_get_ex(o, key, &v), "missing key %s", key);
    return json_object_get_int64(v);
}

Test(sys, stats_have_every_key_and_count_exactly)
{
    sb_client *a = harness_client(&broker, "a", true);
    sb_client *sub = harness_client(&broker, "sub", true);
    cr_assert_eq(sb_subscribe(sub, "count.>", NULL, NULL), 0);
    cr_assert_eq(sb_subscribe(sub, "count.*", NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);

    json_object *before = ask(a, "$SYS.STATS");
    static const char *keys[] = {"uptime_s", "connections",   "subscriptions", "msgs_in",
                                 "msgs_out", "bytes_in",      "bytes_out",     "dropped",
                                 "retained", "retained_bytes"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        field(before, keys[i]);
    }
    cr_assert_eq(field(before, "connections"), 2);

    /* 10 publishes of a 16 + 7 + 5 = 28-byte frame, each matching two
     * subscriptions. */
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(sb_publish(a, "count.x", NULL, "hello", 5), 0);
    }
    cr_assert_eq(sb_flush(a, HARNESS_IO_MS), 0);
    json_object *after = ask(a, "$SYS.STATS");
    /* The $SYS request itself is one message in (16 + 10 + reply) and one
     * answer out; count only what differs by our publishes. */
    int64_t req_in = field(after, "msgs_in") - field(before, "msgs_in") - 10;
    cr_assert_eq(req_in, 1, "msgs_in moved by %lld beyond the 10 publishes", (long long)req_in);
    int64_t out = field(after, "msgs_out") - field(before, "msgs_out");
    cr_assert_eq(out, 20 + 1, "msgs_out moved by %lld", (long long)out); /* + the answer */
    cr_assert_eq(field(after, "subscriptions") - field(before, "subscriptions"), 0);
    cr_assert_eq(field(after, "dropped"), 0);
    json_object_put(before);
    json_object_put(after);
    sb_close(sub);
    sb_close(a);
    harness_stop(&broker);
}

Test(sys, clients_lists_each_connection_with_credentials)
{
    sb_client *named = harness_client(&broker, "the-name", true);
    cr_assert_eq(sb_subscribe(named, "x", NULL, NULL), 0);
    cr_assert_eq(sb_flush(named, HARNESS_IO_MS), 0);
    sb_options o = {.endpoint = broker.tcp, .name = "over-tcp"};
    sb_client *tcp;
    cr_assert_eq(sb_connect(&tcp, &o), 0);

    json_object *page = ask(named, "$SYS.CLIENTS");
    cr_assert(json_object_is_type(page, json_type_object));
    cr_assert_eq(field(page, "offset"), 0);
    cr_assert_eq(field(page, "total"), 2);
    json_object *more;
    cr_assert(json_object_object_get_ex(page, "more", &more));
    cr_assert(json_object_is_type(more, json_type_boolean) && !json_object_get_boolean(more));
    json_object *list;
    cr_assert(json_object_object_get_ex(page, "clients", &list));
    cr_assert(json_object_is_type(list, json_type_array));
    cr_assert_eq(json_object_array_length(list), 2);
    bool saw_unix = false;
    bool saw_tcp = false;
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *c = json_object_array_get_idx(list, i);
        json_object *name;
        json_object *pid;
        json_object_object_get_ex(c, "name", &name);
        const char *n = json_object_get_string(name);
        if (strcmp(n, "the-name") == 0) {
            saw_unix = true;
            cr_assert_eq((uint64_t)field(c, "id"), sb_client_id(named));
            cr_assert_eq(field(c, "pid"), getpid());
            cr_assert_eq(field(c, "uid"), getuid());
            cr_assert_eq(field(c, "gid"), getgid());
            cr_assert_eq(field(c, "subscriptions"), 2, "x and the inbox");
            json_object *t;
            json_object_object_get_ex(c, "transport", &t);
            cr_assert_str_eq(json_object_get_string(t), "unix");
        } else {
            cr_assert_str_eq(n, "over-tcp");
            saw_tcp = true;
            cr_assert(json_object_object_get_ex(c, "pid", &pid));
            cr_assert_null(pid, "pid is null on TCP");
            field(c, "pending_bytes");
            field(c, "msgs_in");
            field(c, "msgs_out");
            field(c, "dropped");
        }
    }
    cr_assert(saw_unix && saw_tcp);
    json_object_put(page);
    sb_close(tcp);
    sb_close(named);
    harness_stop(&broker);
}

static json_object *next_event(sb_client *c, const char *subject)
{
    sb_msg m;
    int r = sb_next_msg(c, &m, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "waiting for %s: %s", subject, sb_strerror(r));
    cr_assert_str_eq(m.subject, subject);
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, m.payload, (int)m.payload_len);
    json_tokener_free(tok);
    cr_assert_not_null(o);
    return o;
}

Test(sys, connect_and_disconnect_events_carry_pid_and_uid)
{
    sb_client *watch = harness_client(&broker, "watch", true);
    /* Not "$SYS.EVENT.>": subscriptions are announced too (test_interest.c). */
    cr_assert_eq(sb_subscribe(watch, "$SYS.EVENT.CONNECT", NULL, NULL), 0);
    cr_assert_eq(sb_subscribe(watch, "$SYS.EVENT.DISCONNECT", NULL, NULL), 0);
    cr_assert_eq(sb_flush(watch, HARNESS_IO_MS), 0);

    sb_client *guest = harness_client(&broker, "guest", true);
    uint64_t id = sb_client_id(guest);
    json_object *ev = next_event(watch, "$SYS.EVENT.CONNECT");
    cr_assert_eq((uint64_t)field(ev, "id"), id);
    cr_assert_eq(field(ev, "pid"), getpid());
    cr_assert_eq(field(ev, "uid"), getuid());
    json_object_put(ev);

    sb_close(guest);
    ev = next_event(watch, "$SYS.EVENT.DISCONNECT");
    cr_assert_eq((uint64_t)field(ev, "id"), id);
    cr_assert_eq(field(ev, "pid"), getpid());
    json_object_put(ev);
    sb_close(watch);
    harness_stop(&broker);
}

Test(sys, wildcards_do_not_see_broker_subjects)
{
    sb_client *all = harness_client(&broker, "all", true);
    cr_assert_eq(sb_subscribe(all, ">", NULL, NULL), 0);
    cr_assert_eq(sb_subscribe(all, "*.EVENT.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(all, HARNESS_IO_MS), 0);
    sb_client *guest = harness_client(&broker, "guest", true);
    cr_assert_eq(sb_publish(guest, "plain", NULL, "p", 1), 0);
    cr_assert_eq(sb_flush(guest, HARNESS_IO_MS), 0);
    sb_close(guest);
    /* Only "plain" arrives: no CONNECT/DISCONNECT events through '>'. */
    sb_msg m;
    cr_assert_eq(sb_next_msg(all, &m, HARNESS_IO_MS), 0);
    cr_assert_str_eq(m.subject, "plain");
    cr_assert_eq(sb_flush(all, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_next_msg(all, &m, 0), -ETIMEDOUT);
    sb_close(all);
    harness_stop(&broker);
}

Test(sys, clients_may_not_publish_on_sys)
{
    sb_client *c = harness_client(&broker, "c", true);
    cr_assert_eq(sb_publish(c, "$SYS.EVENT.CONNECT", NULL, "{}", 2), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), SB_E_PERMISSION);
    /* Unknown $SYS requests are refused too, and the connection goes on. */
    cr_assert_eq(sb_publish(c, "$SYS.NOPE", "reply.x", "", 0), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), SB_E_PERMISSION);
    json_object *stats = ask(c, "$SYS.STATS");
    cr_assert_geq(field(stats, "denied"), 2);
    json_object_put(stats);
    sb_close(c);
    harness_stop(&broker);
}

Test(sys, refused_request_fails_at_once)
{
    sb_client *c = harness_client(&broker, "c", true);
    sb_msg reply;
    int64_t start = harness_now_ms();
    int r = sb_request(c, "$SYS.NOPE", NULL, 0, &reply, 10000);
    cr_assert_eq(r, SB_E_PERMISSION, "got %s", sb_strerror(r));
    cr_assert_lt(harness_now_ms() - start, 2000, "the refusal must not wait for the timeout");
    /* The connection goes on, and the next request is answered. */
    cr_assert_eq(sb_request(c, "$SYS.STATS", NULL, 0, &reply, HARNESS_IO_MS), 0);
    sb_close(c);
    harness_stop(&broker);
}

/* A request whose reply subject is the broker's would have the broker
 * publish its answer there itself: a "DISCONNECT event" whose payload the
 * requester shaped through its name. */
Test(sys, no_answer_onto_a_sys_reply_subject)
{
    sb_client *watch = harness_client(&broker, "watch", true);
    /* Not "$SYS.EVENT.>": subscriptions are announced too (test_interest.c). */
    cr_assert_eq(sb_subscribe(watch, "$SYS.EVENT.CONNECT", NULL, NULL), 0);
    cr_assert_eq(sb_subscribe(watch, "$SYS.EVENT.DISCONNECT", NULL, NULL), 0);
    cr_assert_eq(sb_flush(watch, HARNESS_IO_MS), 0);
    sb_client *attacker =
        harness_client(&broker, "{\"id\":1,\"name\":\"admin\",\"uid\":0} forged", true);
    /* Its CONNECT event, which is genuine. */
    sb_msg m = harness_expect_msg(watch);
    cr_assert_str_eq(m.subject, "$SYS.EVENT.CONNECT");

    static const char *const subjects[] = {"$SYS.CLIENTS", "$SYS.STATS", "plain.request"};
    sb_client *responder = harness_client(&broker, "responder", true);
    cr_assert_eq(sb_subscribe(responder, "plain.request", NULL, NULL), 0);
    cr_assert_eq(sb_flush(responder, HARNESS_IO_MS), 0);
    m = harness_expect_msg(watch);
    cr_assert_str_eq(m.subject, "$SYS.EVENT.CONNECT");
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(sb_publish(attacker, subjects[i], "$SYS.EVENT.DISCONNECT", "", 0), 0);
        cr_assert_eq(sb_flush(attacker, HARNESS_IO_MS), SB_E_PERMISSION, "PUB %s", subjects[i]);
        const char *text = sb_last_error(attacker);
        cr_assert(strstr(text, "'$SYS.EVENT.DISCONNECT'") != NULL, "ERR text: %s", text);
    }
    /* Nothing reached the watcher, nor the responder. */
    harness_expect_none(watch);
    harness_expect_none(responder);

    json_object *stats = ask(attacker, "$SYS.STATS");
    cr_assert_geq(field(stats, "denied"), 3);
    json_object_put(stats);
    sb_close(responder);
    sb_close(attacker);
    sb_close(watch);
    harness_stop(&broker);
}

/* ---- $SYS.CLIENTS a page at a time ---- */

/* The broker's largest page (docs/protocol.md). */
#define PAGE_MAX 250

/* Ask for a page with `payload` (NULL: none); the caller owns the answer. */
static json_object *ask_page(sb_client *c, const char *payload)
{
    sb_msg reply;
    size_t len = payload ? strlen(payload) : 0;
    int r = sb_request(c, "$SYS.CLIENTS", payload, len, &reply, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "$SYS.CLIENTS with [%s]: %s (%s)", payload ? payload : "", sb_strerror(r),
                 sb_last_error(c));
    cr_assert_leq(reply.payload_len + 16 + reply.subject_len, sb_max_frame(c));
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, reply.payload, (int)reply.payload_len);
    json_tokener_free(tok);
    cr_assert(o != NULL && json_object_is_type(o, json_type_object), "not a page: %.*s",
              (int)reply.payload_len, (const char *)reply.payload);
    return o;
}

static json_object *page_clients(json_object *page)
{
    json_object *a;
    cr_assert(json_object_object_get_ex(page, "clients", &a) &&
              json_object_is_type(a, json_type_array));
    return a;
}

static bool page_more(json_object *page)
{
    json_object *m;
    cr_assert(json_object_object_get_ex(page, "more", &m) &&
              json_object_is_type(m, json_type_boolean));
    return json_object_get_boolean(m);
}

/*
 * Walk every page with `limit` (0: none given) and count how often each
 * client id (below `max_id`) is listed into seen[]. Returns the number of
 * pages; checks each page's offset, total and size on the way.
 */
static int walk_pages(sb_client *c, uint32_t limit, int64_t want_total, int *seen, size_t max_id)
{
    int64_t offset = 0;
    int pages = 0;
    for (;;) {
        char payload[64];
        snprintf(payload, sizeof(payload),
                 limit ? "{\"offset\":%lld,\"limit\":%u}" : "{\"offset\":%lld}", (long long)offset,
                 limit);
        json_object *page = ask_page(c, payload);
        pages++;
        cr_assert_eq(field(page, "offset"), offset);
        cr_assert_eq(field(page, "total"), want_total);
        json_object *list = page_clients(page);
        size_t n = json_object_array_length(list);
        uint32_t asked = limit == 0 ? 100 : limit > PAGE_MAX ? PAGE_MAX : limit;
        cr_assert_leq(n, asked, "a page of %zu clients for a limit of %u", n, limit);
        for (size_t i = 0; i < n; i++) {
            int64_t id = field(json_object_array_get_idx(list, i), "id");
            cr_assert(id > 0 && (size_t)id < max_id, "id %lld", (long long)id);
            seen[id]++;
        }
        offset += (int64_t)n;
        bool more = page_more(page);
        cr_assert_eq(more, offset < want_total, "more is %d at %lld of %lld", more,
                     (long long)offset, (long long)want_total);
        json_object_put(page);
        if (!more) {
            return pages;
        }
        cr_assert_gt(n, 0, "an empty page with more to come");
    }
}

Test(sys, clients_pages_list_each_client_once)
{
    enum { N = 30 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof(name), "pager-%02d", i);
        fds[i] = harness_raw_named(&broker, name);
    }
    sb_client *c = harness_client(&broker, "reader", true);
    const int64_t total = N + 1;

    /* Without a payload: the first page, of the default size. */
    json_object *page = ask_page(c, NULL);
    cr_assert_eq(field(page, "offset"), 0);
    cr_assert_eq(field(page, "total"), total);
    cr_assert_eq(json_object_array_length(page_clients(page)), (size_t)total);
    cr_assert_not(page_more(page));
    json_object_put(page);

    static const uint32_t limits[] = {1, 2, 7, 30, 31, 100, PAGE_MAX, 100000, 0};
    for (size_t k = 0; k < sizeof(limits) / sizeof(limits[0]); k++) {
        int seen[256] = {0};
        int pages = walk_pages(c, limits[k], total, seen, 256);
        int listed = 0;
        for (int id = 0; id < 256; id++) {
            cr_assert_leq(seen[id], 1, "limit %u: client %d listed %d times", limits[k], id,
                          seen[id]);
            listed += seen[id];
        }
        cr_assert_eq(listed, total, "limit %u: %d clients listed", limits[k], listed);
        uint32_t per = limits[k] == 0 ? 100 : limits[k];
        cr_assert_eq(pages, (int)((total + per - 1) / per), "limit %u: %d pages", limits[k], pages);
    }

    /* Past the end: an empty last page. */
    page = ask_page(c, "{\"offset\":1000,\"limit\":5}");
    cr_assert_eq(json_object_array_length(page_clients(page)), 0);
    cr_assert_not(page_more(page));
    cr_assert_eq(field(page, "total"), total);
    json_object_put(page);

    /* One that leaves is no longer listed. */
    close(fds[0]);
    for (int64_t want = total - 1;;) {
        page = ask_page(c, NULL);
        int64_t got = field(page, "total");
        json_object_put(page);
        if (got == want) {
            break;
        }
        cr_assert_eq(got, total, "total %lld", (long long)got);
        cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0); /* the close is on its way */
    }
    for (int i = 1; i < N; i++) {
        close(fds[i]);
    }
    sb_close(c);
    harness_stop(&broker);
}

Test(sys, clients_paging_payload_must_be_valid)
{
    sb_client *c = harness_client(&broker, "c", true);
    static const char *const bad[] = {
        "{",
        "[]",
        "null",
        "7",
        "{\"offset\":-1}",
        "{\"offset\":\"3\"}",
        "{\"offset\":1.5}",
        "{\"limit\":0}",
        "{\"limit\":-5}",
        "{\"limit\":null}",
        "{\"ofset\":3}",
        "{\"offset\":0} {}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sb_msg reply;
        int64_t start = harness_now_ms();
        int r = sb_request(c, "$SYS.CLIENTS", bad[i], strlen(bad[i]), &reply, 10000);
        cr_assert_eq(r, SB_E_REQUEST, "payload [%s]: %s", bad[i], sb_strerror(r));
        cr_assert_lt(harness_now_ms() - start, 5000, "the refusal must not wait for the timeout");
        const char *text = sb_last_error(c);
        cr_assert(strstr(text, "invalid $SYS.CLIENTS request") != NULL &&
                      strstr(text, "{\"offset\":N,\"limit\":M}") != NULL,
                  "payload [%s]: ERR text [%s]", bad[i], text);
        cr_assert_eq(sb_flush(c, HARNESS_IO_MS), SB_E_REQUEST);
    }
    /* The connection goes on, and a good request is answered. */
    json_object *page = ask_page(c, " {\"limit\":1, \"offset\":0} ");
    cr_assert_eq(json_object_array_length(page_clients(page)), 1);
    json_object_put(page);
    sb_close(c);
    harness_stop(&broker);
}

/* A 128-byte name of '"' is 258 bytes of JSON: the largest a name gets. */
static int worst_named(const struct harness_broker *b, unsigned i)
{
    char name[2 * 128 + 16];
    size_t n = 0;
    for (int k = 0; k < 128 - 4; k++) {
        name[n++] = '\\';
        name[n++] = '"';
    }
    snprintf(name + n, sizeof(name) - n, "%04u", i % 10000);
    return harness_raw_named(b, name);
}

Test(sys, clients_page_stays_far_below_max_frame)
{
    enum { N = PAGE_MAX };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = worst_named(&broker, (unsigned)i);
    }
    sb_client *c = harness_client(&broker, "reader", true);
    sb_msg reply;
    const char *payload = "{\"limit\":250}";
    cr_assert_eq(sb_request(c, "$SYS.CLIENTS", payload, strlen(payload), &reply, HARNESS_IO_MS), 0);
    /* 250 clients of about 430 bytes each (570 at most, docs/protocol.md). */
    cr_assert_lt(reply.payload_len, 143000, "a full page is %zu bytes", reply.payload_len);
    cr_assert_lt(reply.payload_len, sb_max_frame(c) / 4);
    json_object *page = ask_page(c, payload);
    cr_assert_eq(json_object_array_length(page_clients(page)), PAGE_MAX, "not cut");
    cr_assert(page_more(page), "the reader is the 251st");
    json_object_put(page);
    for (int i = 0; i < N; i++) {
        close(fds[i]);
    }
    sb_close(c);
    harness_stop(&broker);
}

/* With a small max_frame a page is cut to what fits, never refused. */
Test(sys, clients_page_is_cut_to_max_frame)
{
    static const char *const args[] = {"--max-frame", "4096", NULL};
    int r = harness_start(&small, false, args);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    enum { N = 40 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = worst_named(&small, (unsigned)i);
    }
    sb_client *c = harness_client(&small, "reader", true);
    int seen[256] = {0};
    int pages = walk_pages(c, PAGE_MAX, N + 1, seen, 256);
    int listed = 0;
    for (int id = 0; id < 256; id++) {
        cr_assert_leq(seen[id], 1, "client %d listed %d times", id, seen[id]);
        listed += seen[id];
    }
    cr_assert_eq(listed, N + 1);
    /* About 400 bytes per client in 4096: several pages. */
    cr_assert_geq(pages, 4, "%d pages", pages);
    for (int i = 0; i < N; i++) {
        close(fds[i]);
    }
    sb_close(c);
    harness_stop(&small);
    harness_stop(&broker);
}
