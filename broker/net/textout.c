/*
 * textout.c - frames written as text (see textout.h).
 *
 * A text-mode connection is a person at a terminal or a script in a pipe:
 * what it costs is not worth a second queue format. So its queue holds
 * frames like every other, and conn_flush() hands it here once per write:
 * the frames (own bytes and shared bodies, made one run of bytes first when
 * there are shared bodies) are rewritten as lines into a new buffer, which
 * replaces the old one. The payload of a MSG goes out byte for byte, after
 * a line that gives its length, so any byte can be delivered; the headers
 * of a MSG are not shown.
 */
#include "textout.h"

#include "frame.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int put(struct conn_buf *out, const void *p, size_t len)
{
    if (len == 0) {
        return 0;
    }
    if (connbuf_reserve(out, len) < 0) {
        return -ENOMEM;
    }
    memcpy(out->data + out->len, p, len);
    out->len += len;
    return 0;
}

static int put_str(struct conn_buf *out, const char *s)
{
    return put(out, s, strlen(s));
}

static int put_msg(struct conn_buf *out, const struct frame *f)
{
    /* The broker's own finding is told in the answer to REQ (textmode.c);
     * one that comes here was relayed from elsewhere (a PUB with
     * NO_RESPONDERS, e.g. from a bridge). */
    if (f->flags & FRAME_MSG_NO_RESPONDERS) {
        return put_str(out, "-ERR 0 no responders\r\n");
    }
    char num[48];
    int r = put(out, "MSG ", 4);
    r = r ? r : put(out, f->subject, f->subject_len);
    snprintf(num, sizeof(num), " %" PRIu32 " ", f->sid);
    r = r ? r : put_str(out, num);
    if (f->reply_len > 0) {
        r = r ? r : put(out, f->reply, f->reply_len);
        r = r ? r : put(out, " ", 1);
    }
    snprintf(num, sizeof(num), "%" PRIu32 "\r\n", f->payload_len);
    r = r ? r : put_str(out, num);
    r = r ? r : put(out, f->payload, f->payload_len);
    return r ? r : put(out, "\r\n", 2);
}

static int put_frame(struct conn_buf *out, const struct frame *f)
{
    char line[64];
    switch (f->op) {
    case TEXTOUT_OP_LINE:
        return put(out, f->payload, f->payload_len);
    case FRAME_OP_MSG:
        return put_msg(out, f);
    case FRAME_OP_PONG:
        return put(out, "PONG\r\n", 6);
    case FRAME_OP_DROPPED:
        snprintf(line, sizeof(line), "DROPPED %" PRIu64 "\r\n",
                 f->payload_len >= 8 ? frame_get_u64(f->payload) : 0);
        return put_str(out, line);
    case FRAME_OP_ERR: {
        /* The text is escaped already (conn_queue_err_text()): one line. */
        snprintf(line, sizeof(line), "-ERR %" PRIu32 " ", f->sid);
        int r = put_str(out, line);
        r = r ? r : put(out, f->payload, f->payload_len);
        return r ? r : put(out, "\r\n", 2);
    }
    default:
        return 0; /* WELCOME and the like: nothing a text client needs */
    }
}

/* Parse the broker's own frames: the op byte is not checked against the
 * wire's ops (TEXTOUT_OP_LINE is none of them), the lengths are. */
static int parse(const uint8_t *buf, size_t len, struct frame *f)
{
    if (len < FRAME_HEADER_SIZE) {
        return -EPROTO;
    }
    uint32_t size = frame_get_u32(buf);
    uint16_t sl = frame_get_u16(buf + 6);
    uint16_t rl = frame_get_u16(buf + 8);
    uint16_t hl = frame_get_u16(buf + 10);
    if (size < FRAME_HEADER_SIZE || size > len || (size_t)sl + rl + hl > size - FRAME_HEADER_SIZE) {
        return -EPROTO;
    }
    frame_fill(buf, size, f);
    return 0;
}

int textout_frames(const uint8_t *buf, size_t len, struct conn_buf *out)
{
    size_t off = 0;
    struct frame f;
    while (off < len && parse(buf + off, len - off, &f) == 0) {
        if (put_frame(out, &f) < 0) {
            return -ENOMEM;
        }
        off += f.size;
    }
    return 0;
}

int textout_encode(struct conn_buf *b)
{
    size_t total = b->len + b->seg_bytes;
    if (total == 0) {
        return 0;
    }
    const uint8_t *src = b->data;
    uint8_t *flat = NULL;
    if (b->nsegs > 0) {
        /* Own bytes and shared bodies as one run, in stream order. */
        flat = malloc(total);
        if (flat == NULL) {
            return -ENOMEM;
        }
        size_t at = 0;
        size_t done = 0;
        for (size_t i = 0; i < b->nsegs; i++) {
            memcpy(flat + done, b->data + at, b->segs[i].at - at);
            done += b->segs[i].at - at;
            at = b->segs[i].at;
            memcpy(flat + done, b->segs[i].body->data, b->segs[i].body->len);
            done += b->segs[i].body->len;
        }
        memcpy(flat + done, b->data + at, b->len - at);
        src = flat;
    }
    struct conn_buf text = {0};
    int r = textout_frames(src, total, &text);
    free(flat);
    if (r < 0) {
        connbuf_free(&text);
        return r;
    }
    connbuf_free(b);
    *b = text;
    return 0;
}
