/*
 * flow.h - what happens to a client that does not keep up: the drop,
 * pause and resume policy of slow consumers.
 *
 * Two rules keep one client from hurting the others (docs/protocol.md,
 * Slow consumers and DROPPED; Backpressure):
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
 *
 * This is also where a lossless subscription would go: one that pauses
 * the publisher (its conn, through the same backlog mechanism) instead of
 * dropping for the subscriber.
 */
#ifndef SOCKBUS_FLOW_H
#define SOCKBUS_FLOW_H

#include <stdbool.h>
#include <stdint.h>

struct bus;
struct conn_fds;
struct conn_shared;
struct frame;
struct peer;

/* Apply the policy to the bus's connections (the pause threshold). */
void flow_init(struct bus *b);

/*
 * Queue a MSG to `p` for subscription `sid`, built from the PUB frame
 * `pub` (a copy of its body behind a new header, or a reference to `body`,
 * its shared copy, when given). Returns true when it was queued; false
 * when it was dropped (counted and reported as above) or `p` is ending.
 */
bool flow_queue_msg(struct bus *b, struct peer *p, uint32_t sid, uint8_t flags,
                    const struct frame *pub, struct conn_shared *body);

/*
 * flow_queue_msg() for a MSG with the meta block (`meta`, encoded) and,
 * when `set` is given, the message's descriptors. A peer whose transport
 * cannot take descriptors does not receive such a message: it is counted
 * as dropped for it (docs/protocol.md, "File descriptors").
 */
bool flow_queue_msg_meta(struct bus *b, struct peer *p, uint32_t sid, uint8_t flags,
                         const struct frame *pub, const uint8_t *meta, struct conn_fds *set);

#endif /* SOCKBUS_FLOW_H */
