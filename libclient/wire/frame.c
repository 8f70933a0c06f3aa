/*
 * frame.c - encoding sockbus frames, and the names of ops (see frame.h).
 *
 * The decoder, frame_parse(), is inline in frame.h, since it runs once per
 * message. It never trusts a length it has not checked against what is in
 * the buffer: it reads the 16-byte header, judges `size` against
 * max_frame, waits for the whole frame, then checks that the three inner
 * lengths fit.
 */
#include "frame.h"

#include <errno.h>

const char *frame_op_name(uint8_t op)
{
    switch (op) {
    case FRAME_OP_HELLO:
        return "HELLO";
    case FRAME_OP_WELCOME:
        return "WELCOME";
    case FRAME_OP_PUB:
        return "PUB";
    case FRAME_OP_SUB:
        return "SUB";
    case FRAME_OP_UNSUB:
        return "UNSUB";
    case FRAME_OP_MSG:
        return "MSG";
    case FRAME_OP_DROPPED:
        return "DROPPED";
    case FRAME_OP_PING:
        return "PING";
    case FRAME_OP_PONG:
        return "PONG";
    case FRAME_OP_ERR:
        return "ERR";
    default:
        return "?";
    }
}

static uint8_t *put_bytes(uint8_t *p, const void *src, size_t len)
{
    if (len > 0) {
        memcpy(p, src, len);
    }
    return p + len;
}

size_t frame_encode(uint8_t *out, uint8_t op, uint8_t flags, uint32_t sid, const void *subject,
                    size_t subject_len, const void *reply, size_t reply_len, const void *headers,
                    size_t header_len, const void *payload, size_t payload_len)
{
    size_t size = frame_encoded_size(subject_len, reply_len, header_len, payload_len);
    frame_encode_header(out, (uint32_t)size, op, flags, (uint16_t)subject_len, (uint16_t)reply_len,
                        (uint16_t)header_len, sid);
    uint8_t *p = out + FRAME_HEADER_SIZE;
    p = put_bytes(p, subject, subject_len);
    p = put_bytes(p, reply, reply_len);
    p = put_bytes(p, headers, header_len);
    put_bytes(p, payload, payload_len);
    return size;
}

int frame_meta_parse(const struct frame *f, struct frame_meta *m)
{
    if (f->op != FRAME_OP_MSG || !(f->flags & FRAME_MSG_META) || f->payload_len < FRAME_META_SIZE) {
        return -EPROTO;
    }
    /* The block comes first in what frame_parse() calls the payload. */
    frame_meta_decode(f->payload, m);
    return 0;
}
