/*
 * peer.h - one client of the bus: its connection and what the bus knows
 * of it.
 *
 * A struct peer embeds the net layer's struct conn (first, so that the
 * callbacks net makes with a conn find their peer with peer_of()), and
 * adds the bus's state of the client: its HELLO (name, echo), its rule in
 * the ACL, its subscriptions by sid and what they are charged, its place
 * in $SYS.CLIENTS and on the list of those waiting for a HELLO, and its
 * counters. The peer is allocated by peer_new() and freed by peer_free(),
 * which only the connection's close path calls (session.c, from
 * conn_ops.closed): net decides when the memory may go, as libuv does for
 * a handle.
 */
#ifndef SOCKBUS_PEER_H
#define SOCKBUS_PEER_H

#include "conn.h"
#include "deadline.h"
#include "sidmap.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct acl_rule;
struct bus;

struct peer {
    struct conn conn; /* first: peer_of() */
    struct bus *bus;

    char *name; /* from HELLO; NULL if none */
    bool hello_done;
    bool echo; /* receives its own messages ("echo" in HELLO) */
    /* The ACL rule that decides for this peer, resolved once at accept
     * (acl.h); NULL: none applies. Used only when the broker has an ACL. */
    const struct acl_rule *acl_rule;

    struct sidmap subs; /* sid -> struct sub (router.h) */
    /* What its subscriptions are charged (router_sub_cost()), against
     * max_subscription_bytes. */
    uint64_t sub_bytes;

    /* 1 + its index in bus->listed while $SYS.CLIENTS lists it; 0 when
     * not listed (sys_list()). */
    uint32_t listed_slot;

    /* bus->peer_mark when a walk of a match last met it (router.c). */
    uint64_t mark;

    uint64_t msgs_in;
    uint64_t msgs_out;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t dropped;

    /* On bus->unwelcomed from its accept until its HELLO is handled or it
     * ends. */
    struct deadline_link wait;

    /* Lossless subscriptions (flow.c). */
    uint32_t lossless;          /* how many of its subscriptions are */
    struct peer *paused_on;     /* the subscriber it waits for; NULL: none */
    struct list_link waiting;   /* on paused_on->waiters */
    struct list_link waiters;   /* publishers waiting for this one's queue */
    struct deadline_link stall; /* on bus->stalled while its queue is over */
    /* Text mode (textmode.c): the last sid the broker gave one of its SUBs,
     * its inbox subscription's sid (0: none yet), the last request token. */
    struct {
        uint32_t last_sid;
        uint32_t inbox_sid;
        uint64_t last_req;
    } text;
};

static inline struct peer *peer_of(struct conn *c)
{
    return (struct peer *)(void *)c;
}

/*
 * A new peer of `bus`, its connection initialized on `net` over
 * `transport` (conn_init()) but not open. Returns 0 and *out, or a
 * negative errno (nothing allocated). From 0 on, the peer is freed only
 * through its connection's close path.
 */
int peer_new(struct bus *bus, struct net *net, const struct transport_ops *transport,
             struct peer **out);

/* Free what the peer holds and the peer (its connection is closed, its
 * subscriptions gone). Accepts NULL. */
void peer_free(struct peer *p);

#endif /* SOCKBUS_PEER_H */
