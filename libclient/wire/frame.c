/*
 * frame.c - encoding and decoding of sockbus frames (see frame.h).
 *
 * The decoder never trusts a length it has not checked against what is in
 * the buffer: it reads the 16-byte header, judges `size` against max_frame,
 * waits for the whole frame, then checks that the three inner lengths fit.
 */
#include "frame.h"

#include <errno.h>

bool frame_op_known(uint8_t op)
{
    switch (op) {
    case FRAME_OP_HELLO:
    case FRAME_OP_WELCOME:
    case FRAME_OP_PUB:
    case FRAME_OP_SUB:
    case FRAME_OP_UNSUB:
    case FRAME_OP_MSG:
    case FRAME_OP_DROPPED:
    case FRAME_OP_PING:
    case FRAME_OP_PONG:
    case FRAME_OP_ERR:
        return true;
    default:
        return false;
    }
}

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

int frame_peek_size(const uint8_t *buf, size_t len, uint32_t max_frame, uint32_t *size)
{
    if (len < 4) {
        return FRAME_NEED_MORE;
    }
    uint32_t s = frame_get_u32(buf);
    if (s < FRAME_MIN_SIZE) {
        return -EPROTO;
    }
    if (s > max_frame) {
        return -EMSGSIZE;
    }
    *size = s;
    return 0;
}

int frame_parse(const uint8_t *buf, size_t len, uint32_t max_frame, struct frame *f)
{
    uint32_t size;
    int r = frame_peek_size(buf, len, max_frame, &size);
    if (r != 0) {
        return r;
    }
    if (len < size) {
        return FRAME_NEED_MORE;
    }

    uint16_t subject_len = frame_get_u16(buf + 6);
    uint16_t reply_len = frame_get_u16(buf + 8);
    uint16_t header_len = frame_get_u16(buf + 10);
    /* Each is at most 65535, so the sum cannot overflow 32 bits. */
    uint32_t inner = (uint32_t)subject_len + reply_len + header_len;
    if (inner > size - FRAME_HEADER_SIZE || !frame_op_known(buf[4])) {
        return -EPROTO;
    }

    const uint8_t *body = buf + FRAME_HEADER_SIZE;
    f->size = size;
    f->op = buf[4];
    f->flags = buf[5];
    f->subject_len = subject_len;
    f->reply_len = reply_len;
    f->header_len = header_len;
    f->sid = frame_get_u32(buf + 12);
    f->subject = body;
    f->reply = body + subject_len;
    f->headers = f->reply + reply_len;
    f->payload = f->headers + header_len;
    f->payload_len = size - FRAME_HEADER_SIZE - inner;
    return 0;
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
