/*
 * flow.c - the slow-consumer policy (see flow.h).
 *
 * Every MSG the broker queues, live, replayed from the retained store or
 * built by the broker itself, goes through flow_queue_msg(): the budget
 * check and the counting are here, the bytes are queued by net/conn.c.
 * What a message costs the slice of whoever caused it (schedule.h) is counted
 * here too, queued or dropped: the bytes queued, or a header's worth.
 */
#include "flow.h"

#include "bus.h"
#include "config.h"
#include "conn.h"
#include "frame.h"
#include "peer.h"

void flow_init(struct bus *b)
{
    b->net->backlog_max = b->cfg->max_pending;
}

bool flow_queue_msg(struct bus *b, struct peer *p, uint32_t sid, uint8_t flags,
                    const struct frame *pub, struct conn_shared *body)
{
    struct conn *c = &p->conn;
    if (!conn_takes_output(c)) {
        return false;
    }
    schedule_charge(&b->net->schedule, body ? FRAME_HEADER_SIZE : pub->size);
    if (conn_pending(c) + pub->size > b->cfg->max_pending ||
        conn_queue_msg(c, sid, flags, pub, body) < 0) {
        p->dropped++;
        b->stats.dropped++;
        conn_note_dropped(c);
        return false;
    }
    p->msgs_out++;
    p->bytes_out += pub->size;
    b->stats.msgs_out++;
    b->stats.bytes_out += pub->size;
    return true;
}

bool flow_queue_msg_meta(struct bus *b, struct peer *p, uint32_t sid, uint8_t flags,
                         const struct frame *pub, const uint8_t *meta, struct conn_fds *set)
{
    struct conn *c = &p->conn;
    if (!conn_takes_output(c)) {
        return false;
    }
    size_t size = (size_t)pub->size + FRAME_META_SIZE;
    schedule_charge(&b->net->schedule, size);
    if ((set != NULL && !c->transport->fds) || conn_pending(c) + size > b->cfg->max_pending ||
        conn_queue_msg_meta(c, sid, flags, pub, meta, set) < 0) {
        p->dropped++;
        b->stats.dropped++;
        conn_note_dropped(c);
        return false;
    }
    p->msgs_out++;
    p->bytes_out += size;
    b->stats.msgs_out++;
    b->stats.bytes_out += size;
    return true;
}
