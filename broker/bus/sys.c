/*
 * sys.c - broker introspection on $SYS. subjects.
 *
 * Answers are JSON built with json-c and published by the broker like any
 * other message (router_publish_local()), so they reach whoever subscribes
 * to the reply subject. Nothing here is on the message hot path.
 *
 * $SYS.CLIENTS is answered a page at a time, so that one request costs the
 * broker a bounded amount of work and one answer fits max_frame however
 * many clients there are. The peers it lists are kept in an array
 * (bus->listed), each knowing its own index: a page starts at its offset
 * without a walk, a welcomed client is appended, and one that ends is
 * replaced by the last (swap-remove). The price of O(1) removal is what a
 * reader paging while clients come and go sees: nobody twice, newcomers at
 * the end, but a client that was listed all along may be missed when one
 * listed on an earlier page leaves meanwhile (the last moves into its
 * place). docs/protocol.md states this.
 */
#include "sys.h"

#include "array.h"
#include "bus.h"
#include "config.h"
#include "conn.h"
#include "frame.h"
#include "interest.h"
#include "peer.h"
#include "router.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYS_STATS            "$SYS.STATS"
#define SYS_CLIENTS          "$SYS.CLIENTS"
#define SYS_EVENT_CONNECT    "$SYS.EVENT.CONNECT"
#define SYS_EVENT_DISCONNECT "$SYS.EVENT.DISCONNECT"

static bool subject_is(const struct frame *f, const char *name)
{
    return f->subject_len == strlen(name) && memcmp(f->subject, name, f->subject_len) == 0;
}

static json_object *u64(uint64_t v)
{
    return json_object_new_uint64(v);
}

static json_object *sys_stats(const struct bus *b)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "uptime_s", u64((uv_now(b->net->loop) - b->start_ms) / 1000));
    json_object_object_add(o, "connections", u64(b->nclients));
    json_object_object_add(o, "unwelcomed", u64(b->unwelcomed.len));
    json_object_object_add(o, "subscriptions", u64(b->nsubs));
    json_object_object_add(o, "msgs_in", u64(b->stats.msgs_in));
    json_object_object_add(o, "msgs_out", u64(b->stats.msgs_out));
    json_object_object_add(o, "bytes_in", u64(b->stats.bytes_in));
    json_object_object_add(o, "bytes_out", u64(b->stats.bytes_out));
    json_object_object_add(o, "dropped", u64(b->stats.dropped));
    json_object_object_add(o, "denied", u64(b->stats.denied));
    json_object_object_add(o, "stalls", u64(b->stats.stalls));
    json_object_object_add(o, "slow_consumers", u64(b->stats.slow_consumers));
    json_object_object_add(o, "retained", u64(b->retained.count));
    json_object_object_add(o, "retained_bytes", u64(b->retained.bytes));
    return o;
}

/* "subs" of a client object: its subscriptions, at most
 * SYS_CLIENT_SUBS_MAX and within `room` bytes of JSON; *more is set when
 * some are left out. */
static json_object *sys_client_subs(const struct peer *p, size_t room, bool *more)
{
    json_object *a = json_object_new_array();
    size_t used = 2;
    uint32_t sid;
    void *v;
    *more = false;
    for (size_t i = 0; sidmap_next(&p->subs, &i, &sid, &v);) {
        const struct sub *s = v;
        /* Its JSON, at most: every byte of pattern and queue escaped to
         * two, the keys and the numbers. */
        size_t size = 2 * (s->pattern_len + s->queue_len) + 96;
        if (json_object_array_length(a) >= SYS_CLIENT_SUBS_MAX || used + size > room) {
            *more = true;
            break;
        }
        used += size;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "sid", u64(s->sid));
        json_object_object_add(o, "pattern",
                               json_object_new_string_len(sub_pattern(s), s->pattern_len));
        json_object_object_add(
            o, "queue",
            s->queue_len > 0 ? json_object_new_string_len(sub_queue(s), s->queue_len) : NULL);
        json_object_object_add(o, "lossless",
                               json_object_new_boolean((s->flags & FRAME_SUB_LOSSLESS) != 0));
        json_object_object_add(o, "sender", json_object_new_boolean(false));
        json_object_array_add(a, o);
    }
    return a;
}

static json_object *sys_client(const struct peer *p)
{
    json_object *o = json_object_new_object();
    const struct conn *c = &p->conn;
    json_object_object_add(o, "id", u64(c->id));
    json_object_object_add(o, "name", p->name ? json_object_new_string(p->name) : NULL);
    json_object_object_add(o, "transport", json_object_new_string(c->transport->name));
    json_object_object_add(o, "pid", c->has_cred ? json_object_new_int64(c->cred.pid) : NULL);
    json_object_object_add(o, "uid", c->has_cred ? u64(c->cred.uid) : NULL);
    json_object_object_add(o, "gid", c->has_cred ? u64(c->cred.gid) : NULL);
    json_object_object_add(o, "subscriptions", u64(p->subs.len));
    json_object_object_add(o, "subscription_bytes", u64(p->sub_bytes));
    json_object_object_add(o, "pending_bytes", u64(conn_pending(c)));
    json_object_object_add(o, "msgs_in", u64(p->msgs_in));
    json_object_object_add(o, "msgs_out", u64(p->msgs_out));
    json_object_object_add(o, "dropped", u64(p->dropped));
    json_object_object_add(o, "paused", json_object_new_boolean(p->paused_on != NULL));
    json_object_object_add(o, "lossless", u64(p->lossless));
    size_t room = p->bus->cfg->max_frame / 8;
    bool more;
    json_object_object_add(
        o, "subs",
        sys_client_subs(p, room < SYS_CLIENT_SUBS_BYTES ? room : SYS_CLIENT_SUBS_BYTES, &more));
    json_object_object_add(o, "subs_more", json_object_new_boolean(more));
    return o;
}

int sys_stats_json(const struct bus *b, char **json, size_t *len)
{
    json_object *o = sys_stats(b);
    size_t n;
    const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n);
    char *copy = s != NULL ? strdup(s) : NULL;
    json_object_put(o);
    if (copy == NULL) {
        return -ENOMEM;
    }
    *json = copy;
    *len = n;
    return 0;
}

/* Publish `o` (consumed) on subject, as the broker. */
static int sys_publish(struct bus *b, const char *subject, size_t subject_len, json_object *o)
{
    size_t len;
    const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
    /* Building the answer is work for whoever asked, delivered or not:
     * it counts toward the asker's slice of this iteration (CONN_SLICE). */
    schedule_charge(&b->net->schedule, len);
    int r = router_publish_local(b, subject, subject_len, s, len);
    json_object_put(o);
    return r;
}

/* ---- $SYS.CLIENTS, a page at a time ------------------------------------- */

int sys_list(struct bus *b, struct peer *p)
{
    if (array_reserve(b->listed, b->listed_cap, b->nlisted, 1, 64) < 0) {
        return -ENOMEM;
    }
    b->listed[b->nlisted++] = p;
    p->listed_slot = b->nlisted;
    return 0;
}

void sys_unlist(struct bus *b, struct peer *p)
{
    if (p->listed_slot == 0) {
        return;
    }
    uint32_t i = p->listed_slot - 1;
    struct peer *last = b->listed[--b->nlisted];
    b->listed[i] = last;
    last->listed_slot = i + 1;
    p->listed_slot = 0;
}

/* The page a $SYS.CLIENTS request asks for. */
struct sys_page {
    uint64_t offset;
    uint32_t limit;
};

/*
 * Parse a $SYS.CLIENTS request's payload: empty, or one JSON object with
 * "offset" (an integer >= 0, default 0) and "limit" (an integer >= 1,
 * default SYS_CLIENTS_LIMIT_DEFAULT, at most SYS_CLIENTS_LIMIT_MAX: more is
 * cut to it), nothing else. Returns 0 and fills *page, or -EINVAL with a
 * reason in why[len].
 */
static int sys_page_parse(const uint8_t *payload, size_t len, struct sys_page *page, char *why,
                          size_t why_len)
{
    struct sys_page p = {.offset = 0, .limit = SYS_CLIENTS_LIMIT_DEFAULT};
    if (len == 0) {
        *page = p;
        return 0;
    }
    json_object *o = NULL;
    json_tokener *tok = len <= INT_MAX ? json_tokener_new() : NULL;
    if (tok != NULL) {
        o = json_tokener_parse_ex(tok, (const char *)payload, (int)len);
        if (o != NULL && json_tokener_get_parse_end(tok) != len) {
            json_object_put(o); /* something after the object */
            o = NULL;
        }
        json_tokener_free(tok);
    }
    int r = 0;
    if (o == NULL || !json_object_is_type(o, json_type_object)) {
        snprintf(why, why_len, "the payload is not one JSON object");
        r = -EINVAL;
    } else {
        json_object_object_foreach(o, key, val)
        {
            bool is_int = val != NULL && json_object_is_type(val, json_type_int);
            /* json-c clamps what does not fit an int64; a page past
             * UINT32_MAX clients is as empty as one at it. */
            int64_t v = is_int ? json_object_get_int64(val) : 0;
            if (strcmp(key, "offset") == 0 && is_int && v >= 0) {
                p.offset = (uint64_t)v;
            } else if (strcmp(key, "limit") == 0 && is_int && v >= 1) {
                p.limit = v > SYS_CLIENTS_LIMIT_MAX ? SYS_CLIENTS_LIMIT_MAX : (uint32_t)v;
            } else if (strcmp(key, "offset") == 0) {
                snprintf(why, why_len, "\"offset\" must be an integer >= 0");
                r = -EINVAL;
                break;
            } else if (strcmp(key, "limit") == 0) {
                snprintf(why, why_len, "\"limit\" must be an integer >= 1");
                r = -EINVAL;
                break;
            } else {
                snprintf(why, why_len, "unknown key \"%.32s\"", key);
                r = -EINVAL;
                break;
            }
        }
    }
    json_object_put(o);
    if (r == 0) {
        *page = p;
    }
    return r;
}

/* A growing byte buffer for an answer built by pieces. */
struct sys_buf {
    char *data;
    size_t len;
    size_t cap;
};

static int sys_buf_add(struct sys_buf *sb, const char *s, size_t len)
{
    if (array_reserve(sb->data, sb->cap, sb->len, len, 4096) < 0) {
        return -ENOMEM;
    }
    memcpy(sb->data + sb->len, s, len);
    sb->len += len;
    return 0;
}

/*
 * Answer a $SYS.CLIENTS request with one page:
 * {"clients":[...],"offset":N,"total":T,"more":B}. The clients are
 * b->listed[offset ..], at most page->limit of them, and fewer when the
 * next would push the answer past max_frame (room is made for the tail
 * with its largest numbers); "more" says whether any follow.
 */
static int sys_clients_answer(struct bus *b, const struct frame *f, const struct sys_page *page)
{
    /* The tail, at its longest: 20 digits for each number. */
    enum { TAIL_MAX = sizeof("],\"offset\":,\"total\":,\"more\":false}") + 2 * 20 };
    size_t room = b->cfg->max_frame - FRAME_HEADER_SIZE - f->reply_len;
    uint64_t total = b->nlisted;
    uint64_t start = page->offset < total ? page->offset : total;
    uint64_t end = total - start > page->limit ? start + page->limit : total;
    struct sys_buf out = {0};
    int r = sys_buf_add(&out, "{\"clients\":[", strlen("{\"clients\":["));
    uint64_t i = start;
    for (; r == 0 && i < end; i++) {
        json_object *o = sys_client(b->listed[i]);
        size_t len;
        const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
        if (s == NULL) {
            r = -ENOMEM;
        } else if (i > start && out.len + 1 + len + TAIL_MAX > room) {
            json_object_put(o);
            break; /* cut short: the rest comes in the next page */
        } else {
            r = i > start ? sys_buf_add(&out, ",", 1) : 0;
            r = r == 0 ? sys_buf_add(&out, s, len) : r;
        }
        json_object_put(o);
    }
    if (r == 0) {
        char tail[TAIL_MAX];
        int n = snprintf(tail, sizeof(tail), "],\"offset\":%llu,\"total\":%llu,\"more\":%s}",
                         (unsigned long long)page->offset, (unsigned long long)total,
                         i < total ? "true" : "false");
        r = sys_buf_add(&out, tail, (size_t)n);
    }
    if (r == 0) {
        /* Building the page is work for whoever asked, delivered or not:
         * it counts toward the asker's slice of this iteration. */
        schedule_charge(&b->net->schedule, out.len);
        r = router_publish_local(b, (const char *)f->reply, f->reply_len, out.data, out.len);
    }
    free(out.data);
    return r;
}

int sys_handle(struct bus *b, const struct frame *f, char *why, size_t why_len)
{
    if (f->reply_len == 0) {
        return SYS_E_DENIED;
    }
    int r;
    if (subject_is(f, SYS_STATS)) {
        r = sys_publish(b, (const char *)f->reply, f->reply_len, sys_stats(b));
    } else if (subject_is(f, SYS_CLIENTS)) {
        struct sys_page page;
        if (sys_page_parse(f->payload, f->payload_len, &page, why, why_len) < 0) {
            return SYS_E_REQUEST_INVALID;
        }
        r = sys_clients_answer(b, f, &page);
    } else if (subject_is(f, INTEREST_SUBJECT)) {
        r = interest_answer(b, f);
        if (r == -EINVAL) {
            return SYS_E_INTEREST_INVALID;
        }
    } else {
        return SYS_E_DENIED;
    }
    /* An answer larger than max_frame is refused as a limit. */
    return r == -EMSGSIZE ? SYS_E_ANSWER_TOO_LARGE : r;
}

void sys_event(struct bus *b, struct peer *p, bool connected)
{
    const char *subject = connected ? SYS_EVENT_CONNECT : SYS_EVENT_DISCONNECT;
    sys_publish(b, subject, strlen(subject), sys_client(p));
}
