/*
 * router.h - subscriptions and the routing of published messages.
 *
 * A subscription belongs to one connection (its sid map) and sits in the
 * broker's subject trie. router_publish() matches a PUB against the trie
 * and queues one MSG per matching subscription.
 *
 * Functions return 0 or a negative errno that conn.c turns into an ERR:
 * -EINVAL (invalid subject or pattern, ERR 3), -EEXIST / -ENOENT (sid in use
 * or unknown, ERR 7), -EDQUOT or -ENOSPC (a limit, ERR 5), -EACCES (ERR 4),
 * -ENOMEM.
 * With an ACL (acl.h), a SUB whose pattern is not covered by the
 * connection's rule gets -EACCES, and so does a PUB on a subject it may not
 * publish on; a PUB whose reply subject is neither its own inbox nor
 * publishable by it gets -EPERM (ERR 4 as well), and so does, ACL or not,
 * a PUB whose reply subject is a $SYS. subject.
 */
#ifndef SOCKBUS_ROUTER_H
#define SOCKBUS_ROUTER_H

#include "subtrie.h"

#include <stddef.h>
#include <stdint.h>

struct broker;
struct conn;
struct frame;

struct sub {
    struct subtrie_sub entry; /* its place in the trie (sub_of() goes back) */
    struct conn *conn;
    uint32_t sid;
    uint32_t remaining; /* deliveries left before auto-unsubscribe; 0: no limit */
    uint32_t cost;      /* bytes charged to conn->sub_bytes (router_sub_cost()) */
    uint16_t pattern_len;
    uint16_t queue_len;
    char strings[]; /* pattern NUL queue NUL */
};

static inline struct sub *sub_of(struct subtrie_sub *entry)
{
    return (struct sub *)(void *)((char *)entry - offsetof(struct sub, entry));
}

static inline const char *sub_pattern(const struct sub *s)
{
    return s->strings;
}

static inline const char *sub_queue(const struct sub *s)
{
    return s->strings + s->pattern_len + 1;
}

/* SUB frame: subscribe `f->sid` to pattern f->subject, queue group f->reply.
 * -EDQUOT: max_subscriptions reached; -ENOSPC: max_subscription_bytes. */
int router_subscribe(struct broker *b, struct conn *c, const struct frame *f);

/*
 * What one subscription to `pattern` in a queue group of queue_len bytes
 * (0: none) is charged against max_subscription_bytes: its own allocation,
 * its slot in the connection's sid map, and an upper bound of the trie
 * memory it can add (subtrie_cost()), all in heap bytes (mem_footprint()).
 */
size_t router_sub_cost(const char *pattern, size_t pattern_len, size_t queue_len);

/* UNSUB: remove `sid` now (max_msgs == 0) or after max_msgs more messages. */
int router_unsubscribe(struct broker *b, struct conn *c, uint32_t sid, uint32_t max_msgs);

/* Remove every subscription of `c` (it is closing). */
void router_remove_conn(struct broker *b, struct conn *c);

/*
 * PUB frame from `c`: queue a MSG to every matching subscription; store it
 * first when flagged RETAIN; answer NO_RESPONDERS to a request nobody
 * receives; hand $SYS. subjects to sys.c. Returns 0, -EINVAL, -EACCES (the
 * ACL forbids the subject), -EPERM (a $SYS. reply subject, or one the ACL
 * forbids),
 * -EDQUOT when a RETAIN value did not fit max_retained_bytes (it was still
 * delivered live), -E2BIG when a $SYS answer exceeds max_frame, or
 * -ENOMEM.
 */
int router_publish(struct broker *b, struct conn *c, const struct frame *f);

/* Publish a message from the broker itself (no reply, no headers).
 * Returns 0, -EMSGSIZE when it exceeds max_frame, -ENOMEM or -EBUSY (called
 * while routing). */
int router_publish_local(struct broker *b, const char *subject, size_t subject_len,
                         const void *payload, size_t payload_len);

#endif /* SOCKBUS_ROUTER_H */
