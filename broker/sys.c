/*
 * sys.c - broker introspection on $SYS. subjects.
 *
 * Answers are JSON built with json-c and published by the broker like any
 * other message (router_publish_local()), so they reach whoever subscribes
 * to the reply subject. Nothing here is on the message hot path.
 */
#include "sys.h"

#include "broker.h"
#include "conn.h"
#include "frame.h"
#include "router.h"

#include <errno.h>
#include <json-c/json.h>
#include <string.h>

#define SYS_STATS            "$SYS.STATS"
#define SYS_CLIENTS          "$SYS.CLIENTS"
#define SYS_EVENT_CONNECT    "$SYS.EVENT.CONNECT"
#define SYS_EVENT_DISCONNECT "$SYS.EVENT.DISCONNECT"

bool sys_subject(const void *subject, size_t len)
{
    /* Asked for every publish: decide on the first byte when it can. */
    const char *s = subject;
    return len >= strlen(SYS_PREFIX) && s[0] == '$' &&
           memcmp(s, SYS_PREFIX, strlen(SYS_PREFIX)) == 0;
}

static bool subject_is(const struct frame *f, const char *name)
{
    return f->subject_len == strlen(name) && memcmp(f->subject, name, f->subject_len) == 0;
}

static json_object *u64(uint64_t v)
{
    return json_object_new_uint64(v);
}

static json_object *sys_stats(const struct broker *b)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "uptime_s", u64((uv_now(b->loop) - b->start_ms) / 1000));
    json_object_object_add(o, "connections", u64(b->nclients));
    json_object_object_add(o, "unwelcomed", u64(b->unwelcomed.len));
    json_object_object_add(o, "subscriptions", u64(b->nsubs));
    json_object_object_add(o, "msgs_in", u64(b->stats.msgs_in));
    json_object_object_add(o, "msgs_out", u64(b->stats.msgs_out));
    json_object_object_add(o, "bytes_in", u64(b->stats.bytes_in));
    json_object_object_add(o, "bytes_out", u64(b->stats.bytes_out));
    json_object_object_add(o, "dropped", u64(b->stats.dropped));
    json_object_object_add(o, "denied", u64(b->stats.denied));
    json_object_object_add(o, "retained", u64(b->retained.count));
    json_object_object_add(o, "retained_bytes", u64(b->retained.bytes));
    return o;
}

static json_object *sys_client(const struct conn *c)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", u64(c->id));
    json_object_object_add(o, "name", c->name ? json_object_new_string(c->name) : NULL);
    json_object_object_add(o, "transport",
                           json_object_new_string(c->transport == CONN_UNIX ? "unix" : "tcp"));
    json_object_object_add(o, "pid", c->has_cred ? json_object_new_int64(c->pid) : NULL);
    json_object_object_add(o, "uid", c->has_cred ? u64(c->uid) : NULL);
    json_object_object_add(o, "gid", c->has_cred ? u64(c->gid) : NULL);
    json_object_object_add(o, "subscriptions", u64(c->subs.len));
    json_object_object_add(o, "subscription_bytes", u64(c->sub_bytes));
    json_object_object_add(o, "pending_bytes", u64(conn_pending(c)));
    json_object_object_add(o, "msgs_in", u64(c->msgs_in));
    json_object_object_add(o, "msgs_out", u64(c->msgs_out));
    json_object_object_add(o, "dropped", u64(c->dropped));
    return o;
}

static json_object *sys_clients(const struct broker *b)
{
    json_object *a = json_object_new_array();
    for (const struct conn *c = b->conns; c != NULL; c = c->next) {
        if (c->hello_done && !c->closing && !c->draining) {
            json_object_array_add(a, sys_client(c));
        }
    }
    return a;
}

/* Publish `o` (consumed) on subject, as the broker. */
static int sys_publish(struct broker *b, const char *subject, size_t subject_len, json_object *o)
{
    size_t len;
    const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
    /* Building the answer is work for whoever asked, delivered or not:
     * it counts toward the asker's slice of this iteration (CONN_SLICE). */
    b->work += len;
    int r = router_publish_local(b, subject, subject_len, s, len);
    json_object_put(o);
    return r;
}

int sys_handle(struct broker *b, struct conn *c, const struct frame *f)
{
    (void)c;
    if (f->reply_len == 0) {
        return -EACCES;
    }
    json_object *o;
    if (subject_is(f, SYS_STATS)) {
        o = sys_stats(b);
    } else if (subject_is(f, SYS_CLIENTS)) {
        o = sys_clients(b);
    } else {
        return -EACCES;
    }
    int r = sys_publish(b, (const char *)f->reply, f->reply_len, o);
    /* An answer larger than max_frame (thousands of clients against a
     * small max_frame) is refused as a limit. */
    return r == -EMSGSIZE ? -E2BIG : r;
}

void sys_event(struct broker *b, struct conn *c, bool connected)
{
    const char *subject = connected ? SYS_EVENT_CONNECT : SYS_EVENT_DISCONNECT;
    sys_publish(b, subject, strlen(subject), sys_client(c));
}
