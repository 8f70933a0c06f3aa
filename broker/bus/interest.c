/*
 * interest.c - who listens (see interest.h).
 *
 * The events cost nothing to a broker nobody watches: before anything is
 * built, the trie is asked whether the event's subject has a subscriber
 * (subtrie_interest() with a bound of 1), which takes a walk of three
 * tokens. Only then is the JSON made and published like any broker
 * message.
 *
 * A subscription can end while a publish is being routed (a SUB with a
 * count reaching it: router_route()), and the broker does not publish
 * while it routes (router_publish_local() says -EBUSY: its match result is
 * in use). Such an event is kept, as its subject's first byte ('S' or
 * 'U') and its JSON, NUL-terminated, in bus->events, and published by an
 * idle handle started for it, once the loop has handled this iteration's
 * input; an event published before that publishes those kept first, so
 * the order holds. The router's loop pays nothing for this: no flag, no
 * test after each publish.
 */
#include "interest.h"

#include "array.h"
#include "bus.h"
#include "conn.h"
#include "frame.h"
#include "peer.h"
#include "router.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int interest_count(struct bus *b, const char *subject, size_t len, size_t *count)
{
    return subtrie_interest(b->subs, subject, len, SIZE_MAX, count);
}

int interest_answer(struct bus *b, const struct frame *f)
{
    const char *subject = (const char *)f->payload;
    size_t n;
    int r = interest_count(b, subject, f->payload_len, &n);
    if (r < 0) {
        return r;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "subject", json_object_new_string_len(subject, (int)f->payload_len));
    json_object_object_add(o, "subscriptions", json_object_new_uint64(n));
    size_t len;
    const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
    r = s == NULL ? -ENOMEM : router_publish_local(b, (const char *)f->reply, f->reply_len, s, len);
    json_object_put(o);
    return r;
}

static bool listened(struct bus *b, const char *subject)
{
    size_t n = 0;
    return subtrie_interest(b->subs, subject, strlen(subject), 1, &n) == 0 && n > 0;
}

static void publish(struct bus *b, const char *subject, const char *json, size_t len)
{
    schedule_charge(&b->net->schedule, len);
    router_publish_local(b, subject, strlen(subject), json, len);
}

/* Publish what was held back while routing, oldest first. A publish may
 * end subscriptions and hold back more: those go in a fresh buffer and
 * out with the nested call. */
static void flush_held(struct bus *b)
{
    char *held = b->events;
    size_t len = b->events_len;
    b->events = NULL;
    b->events_len = 0;
    b->events_cap = 0;
    for (size_t at = 0; at < len;) {
        const char *subject =
            held[at] == 'S' ? INTEREST_EVENT_SUBSCRIBE : INTEREST_EVENT_UNSUBSCRIBE;
        const char *json = held + at + 1;
        size_t n = strlen(json);
        publish(b, subject, json, n);
        at += 1 + n + 1;
    }
    free(held);
}

static void on_events_idle(uv_idle_t *idle)
{
    struct bus *b = idle->data;
    uv_idle_stop(idle);
    if (b->events_len > 0 && !b->routing) {
        flush_held(b);
    }
}

void interest_init(struct bus *b)
{
    uv_idle_init(b->net->loop, &b->events_idle);
    b->events_idle.data = b;
}

void interest_close(struct bus *b)
{
    uv_close((uv_handle_t *)&b->events_idle, NULL);
}

void interest_sub_event(struct bus *b, const struct sub *s, bool added)
{
    if (b->events_len > 0 && !b->routing) {
        flush_held(b); /* older ones first */
    }
    const char *subject = added ? INTEREST_EVENT_SUBSCRIBE : INTEREST_EVENT_UNSUBSCRIBE;
    if (!listened(b, subject)) {
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "client_id", json_object_new_uint64(s->peer->conn.id));
    json_object_object_add(o, "sid", json_object_new_uint64(s->sid));
    json_object_object_add(o, "pattern",
                           json_object_new_string_len(sub_pattern(s), s->pattern_len));
    json_object_object_add(o, "queue",
                           s->queue_len > 0 ? json_object_new_string_len(sub_queue(s), s->queue_len)
                                            : NULL);
    size_t len;
    const char *json = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
    if (json != NULL && !b->routing) {
        publish(b, subject, json, len);
    } else if (json != NULL &&
               array_reserve(b->events, b->events_cap, b->events_len, len + 2, 256) == 0) {
        b->events[b->events_len] = subject[11]; /* 'S' or 'U', after "$SYS.EVENT." */
        memcpy(b->events + b->events_len + 1, json, len);
        b->events[b->events_len + 1 + len] = '\0';
        b->events_len += len + 2;
        uv_idle_start(&b->events_idle, on_events_idle);
    }
    json_object_put(o);
}
