/*
 * bus.h - the state of the bus: what every module of bus/ shares.
 *
 * One struct bus per broker, on the loop thread. It holds the settings
 * (read-only), the connections' net (bus/ sits on net/: each client is a
 * struct peer embedding a struct conn), the subscription trie and its
 * reused result vector, the retained store, the clients $SYS.CLIENTS
 * lists, the connections waiting for their HELLO, and the counters of
 * $SYS.STATS. The modules that act on it are router.c (subscriptions and
 * routing), flow.c (what a slow consumer loses), sys.c ($SYS), proto.c
 * (the ops of the protocol) and session.c (a client's life); bus.c only
 * sets it up and tears it down.
 */
#ifndef SOCKBUS_BUS_H
#define SOCKBUS_BUS_H

#include "deadline.h"
#include "retain.h"
#include "subtrie.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Freed subscriptions and retained values worth this many bytes since the
 * last bus_give_back() make it hand free heap pages back to the system
 * (mem_give_back()). */
#define BUS_GIVE_BACK_MIN (1024u * 1024u)

struct broker_config;
struct net;
struct peer;
struct sub;

/* The longest subject whose match the next publish may reuse: consecutive
 * publishes on one subject are the common case, and their subjects are
 * short. */
#define BUS_REPEAT_SUBJECT_MAX 128

/* The most frames in a run to one subscriber on changing subjects (struct
 * run): the sids it keeps for them. */
#define BUS_RUN_SIDS_MAX 256

/* How many frames ahead of the one matched the router starts loading what
 * a match will read (router.c, router_look_ahead()); a power of two. */
#define BUS_AHEAD 8

struct bus_stats {
    uint64_t msgs_in;
    uint64_t msgs_out;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t dropped;
    uint64_t denied; /* PUB and SUB refused by permissions */
    /* Publishers paused for a lossless queue; lossless subscribers cut
     * with ERR 6 (flow.c). */
    uint64_t stalls;
    uint64_t slow_consumers;
};

struct bus {
    const struct broker_config *cfg;
    struct net *net;

    /* Routing. */
    struct subtrie *subs;
    struct subtrie_result match; /* reused by every publish */
    /* What `match` holds, for the next publish on the same subject
     * (router.c, router_route()): len 0 when it holds nothing reusable. */
    struct {
        const struct peer *origin; /* the publisher its echo filter skipped */
        uint16_t len;
        /* Every match is a plain subscription: no flags, no UNSUB count,
         * no queue group (a run may be queued in one copy). */
        bool plain;
        /* Does every match belong to a connection of its own? Asked once per
         * match, by the first run on it (router.c, router_run_starts()). */
        enum { BUS_PEERS_UNKNOWN, BUS_PEERS_DISTINCT, BUS_PEERS_SHARED } peers;
        char subject[BUS_REPEAT_SUBJECT_MAX];
    } repeat;
    uint64_t peer_mark; /* the last struct peer.mark given out */
    /* The frames ahead in the read being handled whose matches are being
     * prefetched (router.c, router_look_ahead()): the next one to start
     * (NULL between reads), and the last ones started with their hashes,
     * which their matches take instead of hashing again. */
    struct {
        const uint8_t *next;
        uint32_t seq;
        const uint8_t *frame[BUS_AHEAD];
        uint64_t hash[BUS_AHEAD];
    } ahead;
    /* PUB frames, one behind the other in one read, from one publisher, not
     * yet queued: router_publish_deferred() notes them, router_flush()
     * queues them. count 0: none. Either all on the subject of `repeat`,
     * to each subscription of `match` (`to` NULL), or each to a single
     * subscription, sids[k] for frame k, all on connection `to`. */
    struct run {
        struct peer *origin;
        struct peer *to;
        const uint8_t *start; /* the first frame */
        const uint8_t *end;   /* right behind the last */
        uint32_t count;
        uint32_t sids[BUS_RUN_SIDS_MAX];
    } run;
    uint64_t nsubs;
    bool routing; /* `match` is being walked */
    struct retain_store retained;
    /* Heap bytes of subscriptions freed since memory was last given back
     * (the retained store counts its own). */
    uint64_t freed_bytes;

    /* Frames the broker sends itself ($SYS, NO_RESPONDERS) are built here. */
    uint8_t *scratch;
    size_t scratch_cap;

    /* The peers $SYS.CLIENTS lists (welcomed, not ending), in an array so
     * that a page starts at its offset in O(1) (sys.c). */
    struct peer **listed;
    uint32_t nlisted;
    size_t listed_cap;

    uint32_t nclients; /* peers past HELLO: what $SYS.STATS counts */
    /* Peers accepted and waiting for their HELLO (session.c), in accept
     * order, each expiring hello_timeout_ms after it came. */
    struct deadline_list unwelcomed;
    /* Peers whose queue went over max_pending for a lossless subscription
     * and has not yet fallen below half of it, in that order, each cut
     * lossless_stall_ms after it went over (flow.c). */
    struct deadline_list stalled;
    void (*cut_stalled)(struct peer *p); /* ends one with ERR 6 (session.c) */
    /* The peer whose frame is being handled when the broker publishes its
     * own message in answer to it ($SYS, HELLO's event): the one paused if
     * the answer fills a lossless queue. NULL otherwise. */
    struct peer *cause;

    struct bus_stats stats;
    uint64_t start_ms;

    /* Told of every subscription that starts (`added`) or ends, before it
     * is freed; NULL: nobody. Set by session_init() (interest.c), so that
     * the router needs to know nothing of $SYS.EVENT.SUBSCRIBE. */
    void (*sub_event)(struct bus *b, const struct sub *s, bool added);
    /* Events built while a publish was being routed, published by
     * `events_idle` once it is over, or before the next event
     * (interest.c). */
    char *events;
    size_t events_len;
    size_t events_cap;
    uv_idle_t events_idle;
};

/*
 * Set up the bus's data over `net` with the settings `cfg` (which must
 * outlive it): an empty trie and store. Returns 0 or -ENOMEM. What the
 * peers' life needs besides (their HELLO deadline, the flow policy) is set
 * up by session_init(), which calls this.
 */
int bus_init(struct bus *b, struct net *net, const struct broker_config *cfg);

/* Release what the bus holds (after every peer is gone). */
void bus_deinit(struct bus *b);

/* After clients dropped many subscriptions or values, hand the free heap
 * pages back (at most once per call, when enough was freed). */
void bus_give_back(struct bus *b);

#endif /* SOCKBUS_BUS_H */
