/*
 * frame.h - the sockbus wire format, protocol version 1.
 *
 * This header is the format. The client library and the broker both use it,
 * so there is one implementation of encoding and decoding.
 *
 * Every frame, in both directions, is a 16-byte header and a body; all
 * integers are little-endian:
 *
 *   offset size field
 *   0      4    size         whole frame length, header included
 *   4      1    op
 *   5      1    flags
 *   6      2    subject_len
 *   8      2    reply_len
 *   10     2    header_len   opaque header block, forwarded verbatim
 *   12     4    sid          subscription id / PING token / ERR code
 *   16     ...  subject reply headers payload
 *
 * A frame is valid when 16 <= size <= max_frame, the three inner lengths fit
 * in size - 16, and op is known. frame_parse() checks all of it; a receiver
 * judges `size` from its first 4 bytes (frame_peek_size()) before it buffers
 * or allocates anything for the rest.
 */
#ifndef SOCKBUS_FRAME_H
#define SOCKBUS_FRAME_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FRAME_HEADER_SIZE 16u
#define FRAME_MIN_SIZE    FRAME_HEADER_SIZE

enum frame_op {
    FRAME_OP_HELLO = 0x01,   /* C->B: payload JSON {"protocol":1,...} */
    FRAME_OP_WELCOME = 0x02, /* B->C: payload JSON */
    FRAME_OP_PUB = 0x10,     /* C->B: subject, reply, headers, payload */
    FRAME_OP_SUB = 0x11,     /* C->B: sid, subject = pattern, reply = queue */
    FRAME_OP_UNSUB = 0x12,   /* C->B: sid, optional u32 payload: max msgs */
    FRAME_OP_MSG = 0x20,     /* B->C: sid, subject, reply, headers, payload */
    FRAME_OP_DROPPED = 0x21, /* B->C: payload u64 count */
    FRAME_OP_PING = 0x30,    /* C->B: sid = token */
    FRAME_OP_PONG = 0x31,    /* B->C: sid = token */
    FRAME_OP_ERR = 0x3F,     /* B->C: sid = code, subject, payload = text */
};

/* PUB flags. */
#define FRAME_PUB_RETAIN 0x01u
#define FRAME_PUB_FDS    0x02u /* descriptors travel with it; sid = their count */
/* An answer relaying "no responders" from elsewhere (a bridge): its MSGs
 * carry FRAME_MSG_NO_RESPONDERS. */
#define FRAME_PUB_NO_RESPONDERS 0x04u
/* SUB flags. */
#define FRAME_SUB_SENDER   0x01u /* every MSG of it carries the meta block */
#define FRAME_SUB_LOSSLESS 0x02u /* never dropped from: the publisher waits */
/* MSG flags. */
#define FRAME_MSG_NO_RESPONDERS 0x01u
#define FRAME_MSG_RETAINED      0x02u
#define FRAME_MSG_META          0x04u /* a meta block follows the headers */

/*
 * The meta block of a MSG with FRAME_MSG_META (docs/protocol.md, "Sender
 * credentials"): FRAME_META_SIZE bytes after the headers, before the
 * payload. pid, uid and gid are the kernel's (SO_PEERCRED at connect);
 * FRAME_META_NONE where there are none (TCP).
 *
 *   0 u64 client_id (0: the broker)   8 u32 pid   12 u32 uid   16 u32 gid
 *   20 u8 transport   21 u8 0   22 u16 nfds   24 u64 0 (reserved)
 */
#define FRAME_META_SIZE 32u
#define FRAME_META_NONE 0xFFFFFFFFu
enum frame_meta_transport {
    FRAME_META_BROKER = 0,
    FRAME_META_UNIX = 1,
    FRAME_META_TCP = 2,
};
/* The most descriptors one frame may carry (the kernel's SCM_MAX_FD). */
#define FRAME_FDS_MAX 253u

struct frame_meta {
    uint64_t client_id;
    uint32_t pid;
    uint32_t uid;
    uint32_t gid;
    uint8_t transport;
    uint16_t nfds;
};

/* Text mode (docs/protocol.md, Text mode): a connection whose first four
 * bytes are all printable ASCII speaks lines, not frames. No binary frame
 * can begin so: its size field would be at least 0x20202020 (514 MiB),
 * above FRAME_MAX_FRAME_CAP, the largest max_frame a broker takes. */
#define FRAME_TEXT_BYTE_MIN 0x20u
#define FRAME_TEXT_BYTE_MAX 0x7Eu
#define FRAME_MAX_FRAME_CAP (256u * 1024u * 1024u)

/* Are the four bytes at p the start of a text-mode connection? */
static inline bool frame_text_start(const uint8_t *p)
{
    for (int i = 0; i < 4; i++) {
        if (p[i] < FRAME_TEXT_BYTE_MIN || p[i] > FRAME_TEXT_BYTE_MAX) {
            return false;
        }
    }
    return true;
}

/* ERR codes (the sid field of ERR). */
enum frame_err {
    FRAME_ERR_PROTOCOL = 1,  /* fatal */
    FRAME_ERR_TOO_LARGE = 2, /* fatal */
    FRAME_ERR_SUBJECT = 3,
    FRAME_ERR_PERMISSION = 4,
    FRAME_ERR_LIMIT = 5,
    FRAME_ERR_SLOW_CONSUMER = 6, /* fatal: a lossless subscriber stalled */
    FRAME_ERR_SID = 7,
    FRAME_ERR_HELLO_REQUIRED = 8, /* fatal */
    FRAME_ERR_SHUTDOWN = 9,       /* fatal */
    FRAME_ERR_VERSION = 10,       /* fatal */
    FRAME_ERR_REQUEST = 11,       /* a request to the broker it cannot use */
};

/* A decoded frame. The pointers point into the buffer given to
 * frame_parse(); nothing is copied. */
struct frame {
    uint32_t size;
    uint8_t op;
    uint8_t flags;
    uint16_t subject_len;
    uint16_t reply_len;
    uint16_t header_len;
    uint32_t sid;
    const uint8_t *subject;
    const uint8_t *reply;
    const uint8_t *headers;
    const uint8_t *payload;
    uint32_t payload_len;
};

/* Results of frame_parse() beside 0. */
enum {
    FRAME_NEED_MORE = 1, /* positive: not a whole frame yet */
};

/*
 * Little-endian access. memcpy() of a native integer is one load or store
 * once the compiler is done with it; assembling bytes by shifts is not
 * always recognised, and these run several times per message.
 */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define FRAME_LE16(v) __builtin_bswap16(v)
#define FRAME_LE32(v) __builtin_bswap32(v)
#define FRAME_LE64(v) __builtin_bswap64(v)
#else
#define FRAME_LE16(v) (v)
#define FRAME_LE32(v) (v)
#define FRAME_LE64(v) (v)
#endif

static inline uint16_t frame_get_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return FRAME_LE16(v);
}

static inline uint32_t frame_get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return FRAME_LE32(v);
}

static inline uint64_t frame_get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return FRAME_LE64(v);
}

static inline void frame_put_u16(uint8_t *p, uint16_t v)
{
    v = FRAME_LE16(v);
    memcpy(p, &v, sizeof(v));
}

static inline void frame_put_u32(uint8_t *p, uint32_t v)
{
    v = FRAME_LE32(v);
    memcpy(p, &v, sizeof(v));
}

static inline void frame_put_u64(uint8_t *p, uint64_t v)
{
    v = FRAME_LE64(v);
    memcpy(p, &v, sizeof(v));
}

/* The ops of protocol version 1, one bit each (all are below 64). */
#define FRAME_OPS_KNOWN                                                                            \
    ((1ull << FRAME_OP_HELLO) | (1ull << FRAME_OP_WELCOME) | (1ull << FRAME_OP_PUB) |              \
     (1ull << FRAME_OP_SUB) | (1ull << FRAME_OP_UNSUB) | (1ull << FRAME_OP_MSG) |                  \
     (1ull << FRAME_OP_DROPPED) | (1ull << FRAME_OP_PING) | (1ull << FRAME_OP_PONG) |              \
     (1ull << FRAME_OP_ERR))

/* Is `op` one of the ops of protocol version 1? */
static inline bool frame_op_known(uint8_t op)
{
    return op < 64 && ((FRAME_OPS_KNOWN >> op) & 1u) != 0;
}

/* Name of an op ("PUB"), or "?" for an unknown one. */
const char *frame_op_name(uint8_t op);

/*
 * Judge a frame's size field as soon as `len` >= 4 bytes are there.
 * Returns 0 with *size set, FRAME_NEED_MORE if len < 4, -EPROTO if the size
 * is below 16 and -EMSGSIZE if it is above max_frame.
 */
static inline int frame_peek_size(const uint8_t *buf, size_t len, uint32_t max_frame,
                                  uint32_t *size)
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

/* Describe in *f the frame of `size` bytes at buf, whose lengths have
 * been checked (they fit in size - 16): for frame_parse(), and for those
 * that check a frame of their own making by other rules. */
static inline void frame_fill(const uint8_t *buf, uint32_t size, struct frame *f)
{
    uint16_t subject_len = frame_get_u16(buf + 6);
    uint16_t reply_len = frame_get_u16(buf + 8);
    uint16_t header_len = frame_get_u16(buf + 10);
    f->size = size;
    f->op = buf[4];
    f->flags = buf[5];
    f->subject_len = subject_len;
    f->reply_len = reply_len;
    f->header_len = header_len;
    f->sid = frame_get_u32(buf + 12);
    f->subject = buf + FRAME_HEADER_SIZE;
    f->reply = f->subject + subject_len;
    f->headers = f->reply + reply_len;
    f->payload = f->headers + header_len;
    f->payload_len = size - FRAME_HEADER_SIZE - subject_len - reply_len - header_len;
}

/*
 * Decode the frame at the start of buf[0..len). Inline, with the two
 * above: the broker and the library run it once per message. Returns 0 and fills *f when
 * a whole valid frame is there (f->size bytes are then consumed by the
 * caller), FRAME_NEED_MORE when more bytes are needed, -EPROTO for a size
 * below 16, inner lengths that overrun the frame, or an unknown op, and
 * -EMSGSIZE for a size above max_frame. *f is written only on success.
 */
static inline int frame_parse(const uint8_t *buf, size_t len, uint32_t max_frame, struct frame *f)
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
    frame_fill(buf, size, f);
    return 0;
}

/* Size of the frame that frame_encode() would write for these lengths
 * (may exceed UINT32_MAX only for absurd inputs; callers check max_frame). */
static inline size_t frame_encoded_size(size_t subject_len, size_t reply_len, size_t header_len,
                                        size_t payload_len)
{
    return FRAME_HEADER_SIZE + subject_len + reply_len + header_len + payload_len;
}

/* Write a 16-byte header at `out`. Inline: it is on every message's path. */
static inline void frame_encode_header(uint8_t *out, uint32_t size, uint8_t op, uint8_t flags,
                                       uint16_t subject_len, uint16_t reply_len,
                                       uint16_t header_len, uint32_t sid)
{
    frame_put_u32(out, size);
    out[4] = op;
    out[5] = flags;
    frame_put_u16(out + 6, subject_len);
    frame_put_u16(out + 8, reply_len);
    frame_put_u16(out + 10, header_len);
    frame_put_u32(out + 12, sid);
}

/*
 * Write a whole frame to `out`, which must hold frame_encoded_size() bytes.
 * The caller has checked every length (subject, reply and header each at
 * most UINT16_MAX, total at most the peer's max_frame). Any of the body
 * pointers may be NULL when its length is 0. Returns the bytes written.
 */
size_t frame_encode(uint8_t *out, uint8_t op, uint8_t flags, uint32_t sid, const void *subject,
                    size_t subject_len, const void *reply, size_t reply_len, const void *headers,
                    size_t header_len, const void *payload, size_t payload_len);

/* Write the meta block `m` at out[0..FRAME_META_SIZE). */
static inline void frame_meta_encode(uint8_t *out, const struct frame_meta *m)
{
    memset(out, 0, FRAME_META_SIZE);
    frame_put_u64(out, m->client_id);
    frame_put_u32(out + 8, m->pid);
    frame_put_u32(out + 12, m->uid);
    frame_put_u32(out + 16, m->gid);
    out[20] = m->transport;
    frame_put_u16(out + 22, m->nfds);
}

/* Read the meta block at p[0..FRAME_META_SIZE). */
static inline void frame_meta_decode(const uint8_t *p, struct frame_meta *m)
{
    *m = (struct frame_meta){
        .client_id = frame_get_u64(p),
        .pid = frame_get_u32(p + 8),
        .uid = frame_get_u32(p + 12),
        .gid = frame_get_u32(p + 16),
        .transport = p[20],
        .nfds = frame_get_u16(p + 22),
    };
}

/*
 * Read the meta block of the MSG `f` (flag FRAME_MSG_META): the
 * FRAME_META_SIZE bytes after its headers. Returns 0 with *m written, or
 * -EPROTO when the flag is missing, the frame is not a MSG, or the block
 * does not fit before the end of the frame.
 */
int frame_meta_parse(const struct frame *f, struct frame_meta *m);

#endif /* SOCKBUS_FRAME_H */
