/*
 * flow.c - the slow-consumer policy (see flow.h).
 *
 * Every MSG the broker queues, live, replayed from the retained store or
 * built by the broker itself, goes through flow_queue() (by way of
 * flow_queue_msg(), flow_queue_lossless() or flow_queue_msg_meta()): the
 * budget check, the drop and the counting are there, once; the bytes are
 * queued by net/conn.c. The one exception is a run of plain PUBs to one
 * subscriber (router.c: on one subject, or each frame for a subscription
 * of its own), which flow_queue_run() queues in one copy when all of it
 * fits, and hands back to flow_queue_msg() otherwise. What a message
 * costs the slice of whoever caused it (schedule.h) is counted there too,
 * queued or dropped: the bytes queued, or a header's worth.
 *
 * Lossless subscriptions. A MSG that does not fit a lossless subscriber's
 * budget is queued anyway, and its publisher is paused: net stops handling
 * its frames at the next frame boundary and stops reading from it, so its
 * socket fills and its writes wait. A paused publisher waits for one
 * subscriber at a time: one intrusive link (peer.waiting) on that
 * subscriber's list of waiters, so pausing and resuming each cost O(1) and
 * nothing is ever scanned. A publisher whose message goes to several full
 * lossless queues waits for the first; it is paused again at its next
 * message to any queue that is still full. The subscriber asks net to say
 * when its queue has fallen to max_pending/2 (conn_watch_drain()); then
 * every waiter resumes, from the ready list, in the next loop iteration.
 *
 * The bound: a publisher handles no frame after the one that went past the
 * budget, so while a queue is over max_pending each publisher adds to it at
 * most one message per matching subscription each time it is resumed, and
 * it is resumed (by another queue's drain) at most once before it waits
 * for this one. In the common case, one frame (at most max_frame) per
 * stalled publisher. Publishers whose messages do not go to the full queue
 * are not touched.
 *
 * No publisher waits forever: a subscriber whose queue went over
 * max_pending and has not come down to half of it lossless_stall_ms later
 * is cut with ERR 6, and its waiters resume. The stalled subscribers are a
 * FIFO with one timer (deadline.h), since they all get the same bound. A
 * subscriber that publishes to its own lossless subscription is not paused
 * on itself: net already holds a connection whose own output is over
 * max_pending (backlog_max), and the stall bound covers it too.
 */
#include "flow.h"

#include "bus.h"
#include "config.h"
#include "conn.h"
#include "frame.h"
#include "peer.h"

/* A subscriber stayed over for lossless_stall_ms: counted, and cut by
 * the caller of flow_init() (ERR 6; its end calls flow_forget(), which
 * resumes its waiters). What is queued and not yet being written is
 * dropped first, so that the ERR goes out right behind the write in
 * progress. */
static void flow_stall_expired(struct deadline_link *stall, void *data)
{
    struct bus *b = data;
    struct peer *p = list_entry(stall, struct peer, stall);
    b->stats.slow_consumers++;
    conn_discard_output(&p->conn);
    b->cut_stalled(p);
}

void flow_apply(struct bus *b)
{
    b->net->backlog_max = b->cfg->max_pending;
    b->net->drain_mark = b->cfg->max_pending / 2;
    b->stalled.timeout_ms = b->cfg->lossless_stall_ms;
}

void flow_init(struct bus *b, flow_cut_fn *cut)
{
    b->cut_stalled = cut;
    deadline_list_init(&b->stalled, b->net->loop, b->cfg->lossless_stall_ms, flow_stall_expired, b);
    flow_apply(b);
}

void flow_drop(struct bus *b, struct peer *p)
{
    p->dropped++;
    b->stats.dropped++;
    conn_note_dropped(&p->conn);
}

void flow_hold(struct bus *b, struct peer *pub, struct peer *sub)
{
    if (!deadline_linked(&sub->stall)) {
        deadline_list_add(&b->stalled, &sub->stall);
        conn_watch_drain(&sub->conn);
    }
    if (pub == NULL || pub == sub || pub->paused_on != NULL || !conn_takes_output(&pub->conn)) {
        return;
    }
    pub->paused_on = sub;
    list_append(&sub->waiters, &pub->waiting);
    conn_pause(&pub->conn);
    b->stats.stalls++;
}

bool flow_queue_lossless(struct bus *b, struct peer *origin, struct peer *p, uint32_t sid,
                         uint8_t flags, const struct frame *pub, struct conn_shared *body)
{
    return flow_queue(b, origin, p, sid, flags, true, pub, body, NULL, NULL);
}

bool flow_queue_msg_meta(struct bus *b, struct peer *origin, struct peer *p, uint32_t sid,
                         uint8_t flags, bool lossless, const struct frame *pub, const uint8_t *meta,
                         struct conn_fds *set)
{
    return flow_queue(b, origin, p, sid, flags, lossless, pub, NULL, meta, set);
}

/* Everyone waiting for `sub` goes on. */
static void flow_release(struct peer *sub)
{
    struct list_link *l;
    while ((l = list_first(&sub->waiters)) != NULL) {
        struct peer *w = list_entry(l, struct peer, waiting);
        list_unlink(l);
        w->paused_on = NULL;
        conn_unpause(&w->conn);
    }
}

void flow_drained(struct conn *c)
{
    struct peer *p = peer_of(c);
    deadline_list_remove(&p->stall);
    flow_release(p);
}

void flow_forget(struct bus *b, struct peer *p)
{
    (void)b;
    deadline_list_remove(&p->stall);
    p->conn.watched = false;
    flow_release(p);
    if (p->paused_on != NULL) {
        list_unlink(&p->waiting);
        p->paused_on = NULL;
    }
}

void flow_close(struct bus *b)
{
    deadline_list_close(&b->stalled);
}
