/*
 * router.c - subscriptions and message routing.
 *
 * A subscription is allocated once at SUB time with its pattern and queue
 * group stored inline, indexed twice: by sid in its connection's sid map
 * (for UNSUB and disconnect) and by pattern in the broker's trie (for
 * routing). Publishing allocates nothing: the trie fills a result vector
 * that the broker reuses, and each MSG is copied into its subscriber's
 * output buffer.
 */
#include "router.h"

#include "broker.h"
#include "conn.h"
#include "frame.h"
#include "sockbus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void sub_free(struct broker *b, struct sub *s)
{
    subtrie_remove(b->subs, sub_pattern(s), s->pattern_len, sub_queue(s), s->queue_len, s);
    b->nsubs--;
    free(s);
}

int router_subscribe(struct broker *b, struct conn *c, const struct frame *f)
{
    const char *pattern = (const char *)f->subject;
    const char *queue = (const char *)f->reply;
    if (f->sid == 0 || sidmap_find(&c->subs, f->sid) != NULL) {
        return -EEXIST;
    }
    if (!sb_pattern_valid(pattern, f->subject_len) ||
        (f->reply_len > 0 && !sb_subject_valid(queue, f->reply_len))) {
        return -EINVAL;
    }
    if (c->subs.len >= b->cfg.max_subscriptions) {
        return -EDQUOT;
    }
    struct sub *s = malloc(sizeof(*s) + f->subject_len + f->reply_len + 2u);
    if (s == NULL) {
        return -ENOMEM;
    }
    s->conn = c;
    s->sid = f->sid;
    s->remaining = 0;
    s->pattern_len = f->subject_len;
    s->queue_len = f->reply_len;
    memcpy(s->strings, pattern, f->subject_len);
    s->strings[f->subject_len] = '\0';
    memcpy(s->strings + f->subject_len + 1, queue, f->reply_len);
    s->strings[f->subject_len + 1 + f->reply_len] = '\0';

    int r = sidmap_insert(&c->subs, s->sid, s);
    if (r < 0) {
        free(s);
        return r;
    }
    r = subtrie_add(b->subs, sub_pattern(s), s->pattern_len, sub_queue(s), s->queue_len, s);
    if (r < 0) {
        sidmap_remove(&c->subs, s->sid);
        free(s);
        return r;
    }
    b->nsubs++;
    return 0;
}

int router_unsubscribe(struct broker *b, struct conn *c, uint32_t sid, uint32_t max_msgs)
{
    struct sub *s = sidmap_find(&c->subs, sid);
    if (s == NULL) {
        return -ENOENT;
    }
    if (max_msgs > 0) {
        s->remaining = max_msgs;
        return 0;
    }
    sidmap_remove(&c->subs, sid);
    sub_free(b, s);
    return 0;
}

void router_remove_conn(struct broker *b, struct conn *c)
{
    uint32_t sid;
    void *v;
    for (size_t i = 0; sidmap_next(&c->subs, &i, &sid, &v);) {
        sub_free(b, v);
    }
    sidmap_deinit(&c->subs);
    sidmap_init(&c->subs);
}

int router_publish(struct broker *b, struct conn *c, const struct frame *f)
{
    const char *subject = (const char *)f->subject;
    if (!sb_subject_valid(subject, f->subject_len) ||
        (f->reply_len > 0 && !sb_subject_valid((const char *)f->reply, f->reply_len))) {
        return -EINVAL;
    }
    int r = subtrie_match(b->subs, subject, f->subject_len, &b->match);
    if (r < 0) {
        return r;
    }
    for (size_t i = 0; i < b->match.len; i++) {
        struct sub *s = b->match.items[i];
        if (s->conn == c && !c->echo) {
            continue;
        }
        conn_queue_msg(s->conn, s->sid, 0, f);
        if (s->remaining > 0 && --s->remaining == 0) {
            /* Auto-unsubscribe: each sub appears once in the result, so
             * freeing it here cannot leave a dangling entry behind. */
            sidmap_remove(&s->conn->subs, s->sid);
            sub_free(b, s);
        }
    }
    return 0;
}
