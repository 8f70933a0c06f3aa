/*
 * router.h - subscriptions and the routing of published messages.
 *
 * A subscription belongs to one peer (its sid map) and sits in the bus's
 * subject trie. router_publish() matches a PUB against the trie and queues
 * one MSG per matching subscription (through flow.c).
 *
 * Functions return 0, a positive ROUTER_E_* code for a refusal the client
 * is told about (proto.c maps each to its ERR code and text), or a
 * negative errno for a real failure (-ENOMEM). With an ACL (acl.h), a SUB
 * whose pattern is not covered by the peer's rule, a PUB on a subject it
 * may not publish on, and a PUB whose reply subject is neither its own
 * inbox nor publishable by it are refused; a PUB whose reply subject is a
 * $SYS. subject is refused ACL or not.
 *
 * $SYS. subjects are the broker's own: router_publish() checks a PUB on
 * one like any other and then returns ROUTER_SYS, for the caller to hand
 * it to sys.c, which answers it; it is never routed to subscribers.
 */
#ifndef SOCKBUS_ROUTER_H
#define SOCKBUS_ROUTER_H

#include "subtrie.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The broker's own subjects (docs/protocol.md, Broker introspection). */
#define ROUTER_SYS_PREFIX "$SYS."

/* What a SUB, UNSUB or PUB may be refused for. */
enum router_error {
    ROUTER_E_SUBJECT_INVALID = 1, /* PUB: subject or reply subject not valid */
    ROUTER_E_PATTERN_INVALID,     /* SUB: pattern or queue group not valid */
    ROUTER_E_PUB_DENIED,          /* PUB: the ACL forbids the subject */
    ROUTER_E_REPLY_DENIED,        /* PUB: the ACL forbids the reply subject */
    ROUTER_E_REPLY_SYS,           /* PUB: the reply subject is a $SYS. one */
    ROUTER_E_SUB_DENIED,          /* SUB: the ACL does not cover the pattern */
    ROUTER_E_LOSSLESS_DENIED,     /* SUB: the ACL forbids lossless ones */
    ROUTER_E_SUB_LIMIT,           /* SUB: max_subscriptions reached */
    ROUTER_E_SUB_BYTES,           /* SUB: max_subscription_bytes reached */
    ROUTER_E_SID_IN_USE,          /* SUB: sid 0, or one the peer uses */
    ROUTER_E_SID_UNKNOWN,         /* UNSUB: no such sid */
    ROUTER_E_RETAIN_FULL,         /* PUB: delivered, but not retained
                                   * (max_retained_bytes) */
    ROUTER_E_FDS_TCP,             /* PUB with FDS on a TCP connection (fatal) */
    ROUTER_E_FDS_RETAIN,          /* PUB with both FDS and RETAIN (fatal) */
    ROUTER_E_FDS_COUNT,           /* PUB with FDS: 0 or over max_fds_per_msg (fatal) */
    ROUTER_E_FDS_MISSING,         /* PUB with FDS: more than were received (fatal) */
    ROUTER_E_FDS_LIMIT,           /* PUB with FDS: max_fds held (descriptors closed) */
    ROUTER_SYS,                   /* PUB: not an error; for sys.c */
    ROUTER_E_END                  /* the next module's codes start here */
};

/* Is this subject one of the broker's own? Asked for every publish: it
 * decides on the first byte when it can. */
static inline bool router_subject_is_sys(const void *subject, size_t len)
{
    const char *s = subject;
    return len >= sizeof(ROUTER_SYS_PREFIX) - 1 && s[0] == '$' &&
           memcmp(s, ROUTER_SYS_PREFIX, sizeof(ROUTER_SYS_PREFIX) - 1) == 0;
}

struct bus;
struct frame;
struct peer;

struct sub {
    struct subtrie_sub entry; /* its place in the trie (sub_of() goes back) */
    struct peer *peer;
    uint32_t sid;
    uint32_t remaining; /* deliveries left before auto-unsubscribe; 0: no limit */
    uint32_t cost;      /* bytes charged to peer->sub_bytes (router_sub_cost()) */
    uint16_t pattern_len;
    uint16_t queue_len;
    uint8_t flags;  /* the SUB's FRAME_SUB_SENDER and FRAME_SUB_LOSSLESS */
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

/* SUB frame: subscribe `f->sid` to pattern f->subject, queue group
 * f->reply, lossless with FRAME_SUB_LOSSLESS, and replay the retained
 * values it matches. Returns 0, ROUTER_E_SID_IN_USE,
 * ROUTER_E_PATTERN_INVALID, ROUTER_E_SUB_DENIED, ROUTER_E_LOSSLESS_DENIED,
 * ROUTER_E_SUB_LIMIT, ROUTER_E_SUB_BYTES or -ENOMEM, checked in that
 * order. */
int router_subscribe(struct bus *b, struct peer *p, const struct frame *f);

/*
 * What one subscription to `pattern` in a queue group of queue_len bytes
 * (0: none) is charged against max_subscription_bytes: its own allocation,
 * its slot in the connection's sid map, and an upper bound of the trie
 * memory it can add (subtrie_cost()), all in heap bytes (mem_footprint()).
 */
size_t router_sub_cost(const char *pattern, size_t pattern_len, size_t queue_len);

/* UNSUB: remove `sid` now (max_msgs == 0) or after max_msgs more messages.
 * Returns 0 or ROUTER_E_SID_UNKNOWN. */
int router_unsubscribe(struct bus *b, struct peer *p, uint32_t sid, uint32_t max_msgs);

/* Remove every subscription of `p` (it is ending). */
void router_remove_peer(struct bus *b, struct peer *p);

/*
 * PUB frame from `p`, counted: queue a MSG to every matching subscription; store it
 * first when flagged RETAIN; answer NO_RESPONDERS to a request nobody
 * receives. Returns 0, ROUTER_E_SUBJECT_INVALID, ROUTER_E_REPLY_SYS,
 * ROUTER_E_PUB_DENIED, ROUTER_E_REPLY_DENIED, ROUTER_E_RETAIN_FULL (it was
 * still delivered live), ROUTER_SYS (a $SYS. subject that passed the
 * checks: nothing was delivered), or -ENOMEM.
 */
int router_publish(struct bus *b, struct peer *p, const struct frame *f);

/*
 * router_publish() for a PUB frame whose bytes stay where they are until
 * router_flush(): one that continues a run of plain PUBs from `p`, right
 * behind the previous one in the same buffer, is counted and noted; a run
 * is either on one subject, queued by router_flush() in one copy per
 * subscriber, or on subjects that each match one plain subscription of
 * the same connection, queued to it in one copy with each frame's own
 * sid (with the same outcome, message by message, as router_publish():
 * queued, or dropped over max_pending). Anything else queues the run
 * first and is published as by router_publish(). Returns as
 * router_publish().
 */
int router_publish_deferred(struct bus *b, struct peer *p, const struct frame *f);

/* Queue the run router_publish_deferred() noted, if any. Called before the
 * frames' buffer is reused, and before anything else a publisher sends is
 * handled (every other entry of the router calls it itself). */
void router_flush(struct bus *b);

/* The frames of a read have been handled, and their buffer is about to be
 * reused: router_flush(), and nothing of the read is looked at again. */
void router_read_done(struct bus *b);

/* Publish a message from the broker itself (no reply, no headers).
 * Returns 0, -EMSGSIZE when it exceeds max_frame, -ENOMEM or -EBUSY (called
 * while routing). */
int router_publish_local(struct bus *b, const char *subject, size_t subject_len,
                         const void *payload, size_t payload_len);

#endif /* SOCKBUS_ROUTER_H */
