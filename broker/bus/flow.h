/*
 * flow.h - what happens to a client that does not keep up: the drop,
 * pause and resume policy of slow consumers.
 *
 * Three rules keep one client from hurting the others (docs/protocol.md,
 * Slow consumers and DROPPED; Backpressure; Lossless subscriptions):
 *
 * - MSGs are dropped, never waited for. A MSG that would take a peer's
 *   queued output past max_pending is dropped for that peer only, counted
 *   (its `dropped`, $SYS.STATS "dropped"), and reported to it with DROPPED
 *   at its next write (conn_note_dropped()). The publisher never waits for
 *   a subscriber. Since the broker does not start with max_pending below
 *   max_frame, every MSG fits into an empty queue.
 * - Replies are never dropped; the asker is paused instead. WELCOME, PONG,
 *   ERR and DROPPED are queued past max_pending (conn_queue_frame()), and a
 *   connection whose own output is over max_pending handles no more of its
 *   frames and is not read from until writes bring it back under
 *   (net->backlog_max, which flow_init() sets; net/conn.c pauses and
 *   resumes). Only the client that does not read its own replies is slowed.
 * - A lossless subscription is the exception to the first rule: its MSG is
 *   queued past max_pending, and the publisher waits instead
 *   (flow_queue_lossless()): it is paused (conn_pause()) on that one
 *   subscriber, and resumed when the subscriber's queue has fallen to
 *   max_pending/2 (conn_watch_drain(), flow_drained()). A subscriber whose
 *   queue does not get there within lossless_stall_ms of going over is cut
 *   with ERR 6, and its waiting publishers resume.
 */
#ifndef SOCKBUS_FLOW_H
#define SOCKBUS_FLOW_H

#include "bus.h"
#include "config.h"
#include "conn.h"
#include "frame.h"
#include "peer.h"

#include <stdbool.h>
#include <stdint.h>

/* Ends a subscriber that stalled past lossless_stall_ms (with ERR 6). */
typedef void flow_cut_fn(struct peer *p);

/* Apply the policy to the bus's connections (the pause threshold, the
 * drain mark) and start the stall timer, which calls `cut`. Does not
 * allocate. */
void flow_init(struct bus *b, flow_cut_fn *cut);

/* Apply the configuration again (after a reload): the pause threshold,
 * the drain mark and the stall bound, for the stalls that start from now
 * on. */
void flow_apply(struct bus *b);

/* Close the stall timer (every peer has ended). */
void flow_close(struct bus *b);

/* Out of memory (or over budget, for a lossy subscription): lost, counted
 * and reported (flow_queue()). */
void flow_drop(struct bus *b, struct peer *p);

/* `sub`'s queue is over max_pending for a lossless subscription: its stall
 * clock runs, and `pub` waits for it (flow_queue()). */
void flow_hold(struct bus *b, struct peer *pub, struct peer *sub);

/* `msgs` MSGs of `bytes` in all were queued to `p`: its counters and the
 * broker's. */
static inline void flow_count_out(struct bus *b, struct peer *p, uint64_t msgs, size_t bytes)
{
    p->msgs_out += msgs;
    p->bytes_out += bytes;
    b->stats.msgs_out += msgs;
    b->stats.bytes_out += bytes;
}

/*
 * The one path of every MSG: charged to the slice of whoever caused it,
 * dropped (counted, reported) when `p` cannot take it, else queued and
 * counted; past the budget a lossless one is queued anyway and holds its
 * publisher back. `meta` NULL: a plain MSG (from `body` if given). Always
 * inlined, so that each entry point keeps only its own branches; here, in
 * the header, so that the hot one (flow_queue_msg()) is inlined into the
 * router's loop. The rare ends are out of line: flow_drop(), flow_hold().
 */
__attribute__((always_inline)) static inline bool
flow_queue(struct bus *b, struct peer *origin, struct peer *p, uint32_t sid, uint8_t flags,
           bool lossless, const struct frame *pub, struct conn_shared *body, const uint8_t *meta,
           struct conn_fds *set)
{
    struct conn *c = &p->conn;
    if (!conn_takes_output(c)) {
        return false;
    }
    size_t size = meta != NULL ? (size_t)pub->size + FRAME_META_SIZE : pub->size;
    schedule_charge(&b->net->schedule, body != NULL ? FRAME_HEADER_SIZE : size);
    bool over = conn_pending(c) + size > b->cfg->max_pending;
    /* Descriptors reach Unix connections only, and not one in text mode,
     * whose lines could not carry them. */
    bool unfit = (set != NULL && (!c->transport->fds || c->text)) || (over && !lossless);
    if (unfit || (meta != NULL ? conn_queue_msg_meta(c, sid, flags, pub, meta, set)
                               : conn_queue_msg(c, sid, flags, pub, body)) < 0) {
        flow_drop(b, p);
        return false;
    }
    flow_count_out(b, p, 1, size);
    if (over) {
        flow_hold(b, origin != NULL ? origin : b->cause, p);
    }
    return true;
}

/*
 * Queue a MSG to `p` for subscription `sid`, built from the PUB frame
 * `pub` (a copy of its body behind a new header, or a reference to `body`,
 * its shared copy, when given). Returns true when it was queued; false
 * when it was dropped (counted and reported as above) or `p` is ending.
 */
__attribute__((always_inline)) static inline bool flow_queue_msg(struct bus *b, struct peer *p,
                                                                 uint32_t sid, uint8_t flags,
                                                                 const struct frame *pub,
                                                                 struct conn_shared *body)
{
    return flow_queue(b, NULL, p, sid, flags, false, pub, body, NULL, NULL);
}

/*
 * The same for a lossless subscription: queued even past max_pending
 * (false only for memory, counted as a drop, or when `p` is ending). When
 * it went past, `origin` (the publisher; NULL: the broker's own message,
 * which holds back bus->cause if set) is paused until p's queue has
 * drained, unless it is p itself or waits already, and p's stall clock
 * starts if it was not running.
 */
bool flow_queue_lossless(struct bus *b, struct peer *origin, struct peer *p, uint32_t sid,
                         uint8_t flags, const struct frame *pub, struct conn_shared *body);

/*
 * Queue `count` plain PUB frames pubs[0..bytes) (flag-less, no reply
 * subject, one behind the other) as MSGs to `p`, frame k for subscription
 * sids[k * stride] (stride 0: all for sids[0]), in one copy, when they all
 * fit its budget; their work was charged when they arrived (router.c).
 * Returns false, queueing nothing, when they do not fit or `p` is ending:
 * the caller then queues them one by one with flow_queue_msg(), which
 * drops what must be dropped.
 */
static inline bool flow_queue_run(struct bus *b, struct peer *p, const uint32_t *sids,
                                  size_t stride, const uint8_t *pubs, size_t bytes, uint32_t count)
{
    struct conn *c = &p->conn;
    if (!conn_takes_output(c) || conn_pending(c) + bytes > b->cfg->max_pending ||
        conn_queue_msgs(c, sids, stride, pubs, bytes) < 0) {
        return false;
    }
    flow_count_out(b, p, count, bytes);
    return true;
}

/* conn_ops.drained: `c`'s queue has fallen to max_pending/2: its stall
 * ends and the publishers waiting for it resume. */
void flow_drained(struct conn *c);

/* `p` is ending or closing: it no longer stalls, and whoever waits for it
 * resumes; it no longer waits for anyone. */
void flow_forget(struct bus *b, struct peer *p);

/*
 * flow_queue_msg() for a MSG with the meta block (`meta`, encoded) and,
 * when `set` is given, the message's descriptors; with `lossless`, as
 * flow_queue_lossless() (queued past max_pending, `origin` held back). A
 * peer whose transport cannot take descriptors does not receive such a
 * message: it is counted as dropped for it (docs/protocol.md, "File
 * descriptors").
 */
bool flow_queue_msg_meta(struct bus *b, struct peer *origin, struct peer *p, uint32_t sid,
                         uint8_t flags, bool lossless, const struct frame *pub, const uint8_t *meta,
                         struct conn_fds *set);

#endif /* SOCKBUS_FLOW_H */
