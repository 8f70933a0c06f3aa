/*
 * conn_meta.c - queueing a MSG that carries the meta block, and the file
 * descriptors that go with it (docs/protocol.md, "Sender credentials",
 * "File descriptors").
 *
 * Apart from conn_queue_msg() (conn.h), which stays as it was for the
 * messages that need neither: no branch on the hot path of an ordinary
 * subscription. A MSG with the meta block is always copied whole into the
 * queue (the block sits between the headers and the payload, so a shared
 * body cannot be spliced in as it is); a message with descriptors is
 * usually small (the descriptors are the data), and a subscription asks
 * for the block only where it wants to know the sender.
 */
#include "conn.h"

#include "frame.h"

#include <errno.h>
#include <string.h>

int conn_queue_msg_meta(struct conn *c, uint32_t sid, uint8_t flags, const struct frame *pub,
                        const uint8_t *meta, struct conn_fds *set)
{
    size_t head = FRAME_HEADER_SIZE + (size_t)pub->subject_len + pub->reply_len + pub->header_len;
    size_t size = (size_t)pub->size + FRAME_META_SIZE;
    if (connbuf_reserve(&c->out, size) < 0) {
        return -ENOMEM;
    }
    /* The mark first, where the MSG is about to start: its descriptors go
     * with the write that begins with its first byte. */
    if (set != NULL && connbuf_add_fds(&c->out, set) < 0) {
        return -ENOMEM;
    }
    uint8_t *p = c->out.data + c->out.len;
    frame_encode_header(p, (uint32_t)size, FRAME_OP_MSG, flags | FRAME_MSG_META, pub->subject_len,
                        pub->reply_len, pub->header_len, sid);
    memcpy(p + FRAME_HEADER_SIZE, pub->subject, head - FRAME_HEADER_SIZE);
    memcpy(p + head, meta, FRAME_META_SIZE);
    frame_put_u16(p + head + 22, set != NULL ? (uint16_t)set->n : 0);
    if (pub->payload_len > 0) {
        memcpy(p + head + FRAME_META_SIZE, pub->payload, pub->payload_len);
    }
    c->out.len += size;
    conn_mark_dirty(c);
    return 0;
}
