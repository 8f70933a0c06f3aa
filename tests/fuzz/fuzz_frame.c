/*
 * fuzz_frame.c - the frame decoder (libclient/wire/frame.c) over arbitrary bytes.
 *
 * The input is read as a stream, the way the broker and the library read a
 * socket: frame after frame until the decoder wants more bytes or refuses
 * one. That is done once per max_frame value in max_frames[], from the
 * smallest the format allows to the largest a u32 can say, so the size
 * checks are fuzzed on both sides of every limit.
 *
 * For every frame accepted, the decoder's answer must describe the bytes
 * exactly: all parts inside the frame and the frame inside the input, the
 * lengths adding up to `size`, the op known; re-encoding the decoded frame
 * with frame_encode() must give back the very same bytes; and the same frame
 * cut one byte short must be "need more", never an error or a frame (a
 * receiver that gets it in two reads must not judge it differently).
 * For every refusal, the code must be the one the first bytes call for.
 *
 * The meta block (docs/protocol.md, "Sender credentials") is read from
 * every accepted frame too: frame_meta_parse() must accept exactly the
 * MSGs with flag META and room for the block, read each field from its
 * place, and frame_meta_encode() must write back the same block (but for
 * the bytes the format says are 0).
 */
#include "fuzz.h"

#include "frame.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static const uint32_t max_frames[] = {
    FRAME_MIN_SIZE, 17, 64, 4096, 1114112u /* the default */, UINT32_MAX,
};

static uint8_t reencoded[1u << 20];

/* The checks on one accepted frame at buf[0..len). */
static void check_frame(const uint8_t *buf, size_t len, uint32_t max_frame, const struct frame *f)
{
    FUZZ_CHECK(f->size >= FRAME_MIN_SIZE);
    FUZZ_CHECK(f->size <= max_frame);
    FUZZ_CHECK(f->size <= len);
    FUZZ_CHECK(f->size == frame_get_u32(buf));
    FUZZ_CHECK(frame_op_known(f->op));
    FUZZ_CHECK(strcmp(frame_op_name(f->op), "?") != 0);
    FUZZ_CHECK(f->op == buf[4] && f->flags == buf[5]);
    FUZZ_CHECK(f->sid == frame_get_u32(buf + 12));

    /* The parts are consecutive, in order, and end where the frame ends. */
    const uint8_t *end = buf + f->size;
    FUZZ_CHECK(f->subject == buf + FRAME_HEADER_SIZE);
    FUZZ_CHECK(f->reply == f->subject + f->subject_len);
    FUZZ_CHECK(f->headers == f->reply + f->reply_len);
    FUZZ_CHECK(f->payload == f->headers + f->header_len);
    FUZZ_CHECK(f->payload <= end);
    FUZZ_CHECK(f->payload + f->payload_len == end);
    FUZZ_CHECK((uint64_t)FRAME_HEADER_SIZE + f->subject_len + f->reply_len + f->header_len +
                   f->payload_len ==
               f->size);

    /* The size peek agrees with the whole parse. */
    uint32_t peeked = 0;
    FUZZ_CHECK(frame_peek_size(buf, len, max_frame, &peeked) == 0 && peeked == f->size);

    /* Re-encoding gives back the same bytes. */
    size_t n = frame_encoded_size(f->subject_len, f->reply_len, f->header_len, f->payload_len);
    FUZZ_CHECK(n == f->size);
    if (n <= sizeof(reencoded)) {
        size_t w =
            frame_encode(reencoded, f->op, f->flags, f->sid, f->subject, f->subject_len, f->reply,
                         f->reply_len, f->headers, f->header_len, f->payload, f->payload_len);
        FUZZ_CHECK(w == n);
        FUZZ_CHECK(memcmp(reencoded, buf, n) == 0);
    }

    /* The meta block. */
    struct frame_meta m;
    memset(&m, 0x5A, sizeof(m));
    int mr = frame_meta_parse(f, &m);
    bool has = f->op == FRAME_OP_MSG && (f->flags & FRAME_MSG_META) &&
               f->payload_len >= FRAME_META_SIZE;
    FUZZ_CHECK((mr == 0) == has);
    FUZZ_CHECK(mr == 0 || mr == -EPROTO);
    if (has) {
        const uint8_t *p = f->payload;
        FUZZ_CHECK(m.client_id == frame_get_u64(p));
        FUZZ_CHECK(m.pid == frame_get_u32(p + 8) && m.uid == frame_get_u32(p + 12) &&
                   m.gid == frame_get_u32(p + 16));
        FUZZ_CHECK(m.transport == p[20] && m.nfds == frame_get_u16(p + 22));
        uint8_t block[FRAME_META_SIZE];
        memcpy(block, p, sizeof(block));
        block[21] = 0;
        memset(block + 24, 0, 8);
        uint8_t again[FRAME_META_SIZE];
        frame_meta_encode(again, &m);
        FUZZ_CHECK(memcmp(again, block, sizeof(block)) == 0);
    }

    /* One byte short: not a frame yet, and not an error either. */
    struct frame g;
    FUZZ_CHECK(frame_parse(buf, f->size - 1, max_frame, &g) == FRAME_NEED_MORE);
}

/* The checks on a refusal or a "need more" for buf[0..len). */
static void check_other(const uint8_t *buf, size_t len, uint32_t max_frame, int r)
{
    uint32_t peeked;
    int p = frame_peek_size(buf, len, max_frame, &peeked);
    if (r == FRAME_NEED_MORE) {
        /* Either the size is not there yet, or it is valid and the frame
         * is not complete. */
        FUZZ_CHECK(len < 4 || (p == 0 && peeked > len));
        return;
    }
    FUZZ_CHECK(len >= 4);
    uint32_t size = frame_get_u32(buf);
    if (r == -EMSGSIZE) {
        FUZZ_CHECK(size > max_frame && size >= FRAME_MIN_SIZE);
        FUZZ_CHECK(p == -EMSGSIZE);
        return;
    }
    FUZZ_CHECK(r == -EPROTO);
    if (size < FRAME_MIN_SIZE) {
        FUZZ_CHECK(p == -EPROTO);
        return;
    }
    /* A valid size: the frame is whole, and its lengths or op are wrong. */
    FUZZ_CHECK(p == 0 && size <= len);
    uint32_t inner =
        (uint32_t)frame_get_u16(buf + 6) + frame_get_u16(buf + 8) + frame_get_u16(buf + 10);
    FUZZ_CHECK(inner > size - FRAME_HEADER_SIZE || !frame_op_known(buf[4]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t m = 0; m < sizeof(max_frames) / sizeof(max_frames[0]); m++) {
        uint32_t max_frame = max_frames[m];
        size_t off = 0;
        for (;;) {
            struct frame f;
            struct frame before;
            memset(&f, 0xA5, sizeof(f));
            memcpy(&before, &f, sizeof(f));
            int r = frame_parse(data + off, size - off, max_frame, &f);
            if (r != 0) {
                /* *f is written only on success. */
                FUZZ_CHECK(memcmp(&f, &before, sizeof(f)) == 0);
                check_other(data + off, size - off, max_frame, r);
                break;
            }
            check_frame(data + off, size - off, max_frame, &f);
            off += f.size;
        }
    }
    return 0;
}
