/*
 * test_frame.c - unit tests of the wire codec (libclient/wire/frame.c).
 *
 * The codec is the one implementation of the format, shared by the broker
 * and the library, so these tests pin it down byte for byte: round trips of
 * every op with every mix of empty, short and full-length fields, the
 * little-endian layout checked against hand-written frames, and every way a
 * frame can be refused (size below 16, size above max_frame judged from the
 * first 4 bytes alone, inner lengths that overrun the frame, unknown ops).
 *
 * Bytes handed to the parser sit at the very end of a heap block of their
 * exact size (see exact_new()), so that a build with -Db_sanitize=address
 * catches any read past the bytes the parser was given.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "sockbus.h"

#define MAX_FRAME SB_MAX_FRAME_DEFAULT

/* The ops of protocol version 1 and their names. */
static const struct {
    uint8_t op;
    const char *name;
} known_ops[] = {
    {FRAME_OP_HELLO, "HELLO"},     {FRAME_OP_WELCOME, "WELCOME"}, {FRAME_OP_PUB, "PUB"},
    {FRAME_OP_SUB, "SUB"},         {FRAME_OP_UNSUB, "UNSUB"},     {FRAME_OP_MSG, "MSG"},
    {FRAME_OP_DROPPED, "DROPPED"}, {FRAME_OP_PING, "PING"},       {FRAME_OP_PONG, "PONG"},
    {FRAME_OP_ERR, "ERR"},
};
#define N_KNOWN_OPS (sizeof(known_ops) / sizeof(known_ops[0]))

static const uint8_t unknown_ops[] = {0x00, 0x03, 0x13, 0x40, 0xFF};

/* The wire values are the contract: check them, not just the names. */
static void check_op_values(void)
{
    cr_assert_eq(FRAME_OP_HELLO, 0x01);
    cr_assert_eq(FRAME_OP_WELCOME, 0x02);
    cr_assert_eq(FRAME_OP_PUB, 0x10);
    cr_assert_eq(FRAME_OP_SUB, 0x11);
    cr_assert_eq(FRAME_OP_UNSUB, 0x12);
    cr_assert_eq(FRAME_OP_MSG, 0x20);
    cr_assert_eq(FRAME_OP_DROPPED, 0x21);
    cr_assert_eq(FRAME_OP_PING, 0x30);
    cr_assert_eq(FRAME_OP_PONG, 0x31);
    cr_assert_eq(FRAME_OP_ERR, 0x3F);
}

static bool is_known(unsigned op)
{
    for (size_t i = 0; i < N_KNOWN_OPS; i++) {
        if (known_ops[i].op == op) {
            return true;
        }
    }
    return false;
}

/*
 * A copy of src[0..len) placed at the end of a heap block, with one guard
 * byte before it: reading at or past p + len is a heap overflow that
 * AddressSanitizer reports, even for len == 0. Free with exact_free().
 */
static uint8_t *exact_new(const void *src, size_t len)
{
    uint8_t *block = malloc(len + 1);
    cr_assert_not_null(block);
    block[0] = 0xCC;
    if (len > 0) {
        memcpy(block + 1, src, len);
    }
    return block + 1;
}

/* An uninitialized exact-size block, for the encoder to write into. */
static uint8_t *exact_alloc(size_t len)
{
    uint8_t *block = malloc(len + 1);
    cr_assert_not_null(block);
    block[0] = 0xCC;
    return block + 1;
}

static void exact_free(uint8_t *p)
{
    free(p - 1);
}

/* Sentinel-filled frame, to check that failures leave *f alone. */
static void frame_poison(struct frame *f)
{
    memset(f, 0xA5, sizeof(*f));
}

static bool frame_is_poisoned(const struct frame *f)
{
    struct frame p;
    frame_poison(&p);
    return memcmp(f, &p, sizeof(p)) == 0;
}

/* Parse buf[0..len) from an exact-size copy; *f is poisoned first. */
static int parse_exact(const uint8_t *buf, size_t len, uint32_t max_frame, struct frame *f)
{
    uint8_t *copy = exact_new(buf, len);
    frame_poison(f);
    int r = frame_parse(copy, len, max_frame, f);
    /* On success the pointers would point into `copy`: rebase them. */
    if (r == 0) {
        f->subject = buf + (f->subject - copy);
        f->reply = buf + (f->reply - copy);
        f->headers = buf + (f->headers - copy);
        f->payload = buf + (f->payload - copy);
    }
    exact_free(copy);
    return r;
}

/* Parse of an exact-size copy that must fail with `want`, leaving *f alone. */
static void expect_parse_error(const uint8_t *buf, size_t len, uint32_t max_frame, int want,
                               const char *what)
{
    struct frame f;
    int r = parse_exact(buf, len, max_frame, &f);
    cr_expect_eq(r, want, "%s: frame_parse(len %zu) = %d, want %d", what, len, r, want);
    cr_expect(frame_is_poisoned(&f), "%s: *f written on failure", what);
}

/* 16-byte header followed by `body_len` zero bytes. */
static uint8_t *header_frame(uint32_t size, uint8_t op, uint16_t subject_len, uint16_t reply_len,
                             uint16_t header_len, size_t body_len)
{
    uint8_t *buf = calloc(1, FRAME_HEADER_SIZE + body_len);
    cr_assert_not_null(buf);
    frame_encode_header(buf, size, op, 0, subject_len, reply_len, header_len, 0);
    return buf;
}

/* Source bytes for round trips: a distinct pattern per field, so that a
 * field decoded from the wrong offset does not compare equal. */
static uint8_t src_subject[UINT16_MAX];
static uint8_t src_reply[UINT16_MAX];
static uint8_t src_headers[UINT16_MAX];
static uint8_t src_payload[MAX_FRAME];

static void fill_sources(void)
{
    for (size_t i = 0; i < UINT16_MAX; i++) {
        src_subject[i] = (uint8_t)('a' + i % 26);
        src_reply[i] = (uint8_t)('A' + i % 23);
        src_headers[i] = (uint8_t)(i * 7 + 3);
    }
    for (size_t i = 0; i < sizeof(src_payload); i++) {
        src_payload[i] = (uint8_t)(i * 13 + 5 + (i >> 8));
    }
}

TestSuite(frame, .init = fill_sources);

Test(frame, op_values_are_the_wire_values)
{
    check_op_values();
    cr_assert_eq(FRAME_HEADER_SIZE, 16);
    cr_assert_eq(FRAME_MIN_SIZE, 16);
    cr_assert_eq(SB_MAX_FRAME_DEFAULT, 1024u * 1024u + 64u * 1024u);
    cr_assert_eq(FRAME_PUB_RETAIN, 0x01);
    cr_assert_eq(FRAME_MSG_NO_RESPONDERS, 0x01);
    cr_assert_eq(FRAME_MSG_RETAINED, 0x02);
    cr_assert_eq(FRAME_NEED_MORE, 1);
}

Test(frame, encoded_size)
{
    cr_assert_eq(frame_encoded_size(0, 0, 0, 0), 16);
    cr_assert_eq(frame_encoded_size(1, 2, 3, 4), 26);
    cr_assert_eq(frame_encoded_size(UINT16_MAX, UINT16_MAX, UINT16_MAX, 0), 16 + 3 * 65535);
    /* docs/protocol.md, "Framing": a 1 MiB payload fits with a full-length
     * subject and reply. */
    cr_assert_leq(frame_encoded_size(SB_SUBJECT_MAX, SB_SUBJECT_MAX, 0, 1024 * 1024), MAX_FRAME);
}

/*
 * Round trips: every op x subject, reply and header lengths in {0, 1,
 * SB_SUBJECT_MAX, UINT16_MAX (the longest the wire allows)} x payload in
 * {0, 1, 64 KiB, the most that max_frame leaves}. Each frame is encoded
 * into a block of exactly its size and parsed back from it.
 */
Test(frame, round_trip_every_op_and_length)
{
    static const size_t field_lens[] = {0, 1, SB_SUBJECT_MAX, UINT16_MAX};
    const size_t n_lens = sizeof(field_lens) / sizeof(field_lens[0]);
    unsigned iteration = 0;

    for (size_t o = 0; o < N_KNOWN_OPS; o++) {
        uint8_t op = known_ops[o].op;
        for (size_t si = 0; si < n_lens; si++) {
            for (size_t ri = 0; ri < n_lens; ri++) {
                for (size_t hi = 0; hi < n_lens; hi++) {
                    size_t sl = field_lens[si];
                    size_t rl = field_lens[ri];
                    size_t hl = field_lens[hi];
                    size_t pmax = MAX_FRAME - frame_encoded_size(sl, rl, hl, 0);
                    const size_t payload_lens[] = {0, 1, 64 * 1024, pmax};
                    for (size_t pi = 0; pi < 4; pi++) {
                        size_t pl = payload_lens[pi];
                        uint8_t flags = (uint8_t)(iteration * 37u + 1u);
                        uint32_t sid = iteration * 2654435761u;
                        iteration++;

                        size_t size = frame_encoded_size(sl, rl, hl, pl);
                        cr_assert_leq(size, MAX_FRAME);
                        uint8_t *buf = exact_alloc(size);
                        size_t n = frame_encode(buf, op, flags, sid, sl ? src_subject : NULL, sl,
                                                rl ? src_reply : NULL, rl, hl ? src_headers : NULL,
                                                hl, pl ? src_payload : NULL, pl);
                        cr_assert_eq(n, size, "op %s s %zu r %zu h %zu p %zu: wrote %zu",
                                     known_ops[o].name, sl, rl, hl, pl, n);

                        struct frame f;
                        frame_poison(&f);
                        int r = frame_parse(buf, size, MAX_FRAME, &f);
                        cr_assert_eq(r, 0, "op %s s %zu r %zu h %zu p %zu: parse = %d",
                                     known_ops[o].name, sl, rl, hl, pl, r);
                        cr_assert_eq(f.size, size);
                        cr_assert_eq(f.op, op);
                        cr_assert_eq(f.flags, flags);
                        cr_assert_eq(f.sid, sid);
                        cr_assert_eq(f.subject_len, sl);
                        cr_assert_eq(f.reply_len, rl);
                        cr_assert_eq(f.header_len, hl);
                        cr_assert_eq(f.payload_len, pl);
                        cr_assert_eq(f.subject, buf + 16);
                        cr_assert_eq(f.reply, buf + 16 + sl);
                        cr_assert_eq(f.headers, buf + 16 + sl + rl);
                        cr_assert_eq(f.payload, buf + 16 + sl + rl + hl);
                        cr_assert_eq(memcmp(f.subject, src_subject, sl), 0);
                        cr_assert_eq(memcmp(f.reply, src_reply, rl), 0);
                        cr_assert_eq(memcmp(f.headers, src_headers, hl), 0);
                        cr_assert_eq(memcmp(f.payload, src_payload, pl), 0);

                        if (pl == pmax) {
                            /* Exactly max_frame: accepted above, and one
                             * byte over a smaller limit is refused. */
                            cr_assert_eq(size, MAX_FRAME);
                            cr_assert_eq(frame_parse(buf, size, MAX_FRAME - 1, &f), -EMSGSIZE);
                        }
                        exact_free(buf);
                    }
                }
            }
        }
    }
    cr_assert_eq(iteration, N_KNOWN_OPS * 4 * 4 * 4 * 4);
}

/* A proper prefix of a valid frame is FRAME_NEED_MORE, *f untouched, and
 * no byte past the prefix is read. */
static void check_prefix(const uint8_t *frame, size_t len, size_t size)
{
    struct frame f;
    uint8_t *copy = exact_new(frame, len);
    frame_poison(&f);
    int r = frame_parse(copy, len, MAX_FRAME, &f);
    exact_free(copy);
    cr_assert_eq(r, FRAME_NEED_MORE, "prefix %zu of %zu: %d", len, size, r);
    cr_assert(frame_is_poisoned(&f), "prefix %zu of %zu: *f written", len, size);
}

/* Every prefix within 64 bytes of either end, every `step` in between;
 * then the whole frame parses. */
static void check_prefixes(const uint8_t *frame, size_t size, size_t step)
{
    for (size_t len = 0; len < size; len++) {
        if (len < 64 || len + 64 >= size || len % step == 0) {
            check_prefix(frame, len, size);
        }
    }
    struct frame f;
    cr_assert_eq(parse_exact(frame, size, MAX_FRAME, &f), 0);
    cr_assert_eq(f.size, size);
}

Test(frame, every_prefix_needs_more)
{
    uint8_t buf[256];
    size_t n;

    /* Header only. */
    n = frame_encode(buf, FRAME_OP_PING, 0, 42, NULL, 0, NULL, 0, NULL, 0, NULL, 0);
    cr_assert_eq(n, 16);
    check_prefixes(buf, n, 1);

    /* Every field present. */
    n = frame_encode(buf, FRAME_OP_PUB, FRAME_PUB_RETAIN, 0, "a.b", 3, "_INBOX.1", 8, "hdr:1", 5,
                     src_payload, 100);
    cr_assert_eq(n, 16 + 3 + 8 + 5 + 100);
    check_prefixes(buf, n, 1);

    /* One payload byte, nothing else. */
    n = frame_encode(buf, FRAME_OP_MSG, 0, 7, NULL, 0, NULL, 0, NULL, 0, "x", 1);
    check_prefixes(buf, n, 1);

    /* 64 KiB payload: every prefix near both ends, a sample in between. */
    size_t size = frame_encoded_size(5, 0, 0, 65536);
    uint8_t *big = malloc(size);
    cr_assert_not_null(big);
    n = frame_encode(big, FRAME_OP_MSG, 0, 1, "x.y.z", 5, NULL, 0, NULL, 0, src_payload, 65536);
    cr_assert_eq(n, size);
    check_prefixes(big, size, 4093);
    free(big);
}

Test(frame, peek_size_needs_four_bytes)
{
    /* Whatever the first bytes say, fewer than 4 is not enough to judge. */
    static const uint8_t patterns[][4] = {
        {0x20, 0x00, 0x00, 0x00}, /* 32: fine */
        {0x00, 0x00, 0x00, 0x00}, /* 0: too small */
        {0xFF, 0xFF, 0xFF, 0xFF}, /* too large */
    };
    for (size_t i = 0; i < 3; i++) {
        for (size_t len = 0; len < 4; len++) {
            uint32_t size = 0xDEADBEEF;
            uint8_t *copy = exact_new(patterns[i], len);
            int r = frame_peek_size(copy, len, MAX_FRAME, &size);
            exact_free(copy);
            cr_expect_eq(r, FRAME_NEED_MORE, "pattern %zu len %zu: %d", i, len, r);
            cr_expect_eq(size, 0xDEADBEEF, "pattern %zu len %zu: *size written", i, len);
        }
    }
    uint32_t size = 0;
    uint8_t *copy = exact_new(patterns[0], 4);
    cr_expect_eq(frame_peek_size(copy, 4, MAX_FRAME, &size), 0);
    cr_expect_eq(size, 32);
    exact_free(copy);
}

Test(frame, size_below_16_is_protocol_error)
{
    static const uint32_t sizes[] = {0, 1, 15};
    for (size_t i = 0; i < 3; i++) {
        uint8_t hdr[16];
        frame_encode_header(hdr, sizes[i], FRAME_OP_PING, 0, 0, 0, 0, 0);

        uint32_t size = 0xDEADBEEF;
        uint8_t *copy = exact_new(hdr, 4);
        cr_expect_eq(frame_peek_size(copy, 4, MAX_FRAME, &size), -EPROTO, "size %u", sizes[i]);
        cr_expect_eq(size, 0xDEADBEEF);
        exact_free(copy);

        /* Judged from 4 bytes, from a whole header, and from more. */
        expect_parse_error(hdr, 4, MAX_FRAME, -EPROTO, "size < 16, 4 bytes");
        expect_parse_error(hdr, 15, MAX_FRAME, -EPROTO, "size < 16, 15 bytes");
        expect_parse_error(hdr, 16, MAX_FRAME, -EPROTO, "size < 16, 16 bytes");
    }
}

Test(frame, size_16_is_smallest_frame)
{
    uint8_t hdr[16];
    frame_encode_header(hdr, 16, FRAME_OP_PONG, 0, 0, 0, 0, 99);
    uint32_t size = 0;
    cr_assert_eq(frame_peek_size(hdr, 4, MAX_FRAME, &size), 0);
    cr_assert_eq(size, 16);
    struct frame f;
    cr_assert_eq(parse_exact(hdr, 16, MAX_FRAME, &f), 0);
    cr_assert_eq(f.size, 16);
    cr_assert_eq(f.op, FRAME_OP_PONG);
    cr_assert_eq(f.sid, 99);
    cr_assert_eq(f.payload_len, 0);
}

Test(frame, size_above_max_frame_judged_from_four_bytes)
{
    static const uint32_t sizes[] = {MAX_FRAME + 1, MAX_FRAME + 2, 0x7FFFFFFFu, 0x80000000u,
                                     0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t hdr[16];
        frame_encode_header(hdr, sizes[i], FRAME_OP_PUB, 0, 0, 0, 0, 0);

        uint32_t size = 0xDEADBEEF;
        uint8_t *copy = exact_new(hdr, 4);
        cr_expect_eq(frame_peek_size(copy, 4, MAX_FRAME, &size), -EMSGSIZE, "size %#x", sizes[i]);
        cr_expect_eq(size, 0xDEADBEEF);
        exact_free(copy);

        expect_parse_error(hdr, 4, MAX_FRAME, -EMSGSIZE, "size > max, 4 bytes");
        expect_parse_error(hdr, 16, MAX_FRAME, -EMSGSIZE, "size > max, 16 bytes");
    }
    /* Byte by byte: 0xFFFFFFFF is all ones, not a small negative. */
    static const uint8_t ones[4] = {0xFF, 0xFF, 0xFF, 0xFF};
    expect_parse_error(ones, 4, MAX_FRAME, -EMSGSIZE, "0xFFFFFFFF");
    expect_parse_error(ones, 4, UINT32_MAX - 1, -EMSGSIZE, "0xFFFFFFFF, max 2^32-2");
}

Test(frame, size_exactly_max_frame_accepted)
{
    uint8_t hdr[16];
    frame_encode_header(hdr, MAX_FRAME, FRAME_OP_PUB, 0, 0, 0, 0, 0);
    uint32_t size = 0;
    cr_assert_eq(frame_peek_size(hdr, 4, MAX_FRAME, &size), 0);
    cr_assert_eq(size, MAX_FRAME);
    /* Accepted, so parse waits for the rest instead of refusing. */
    struct frame f;
    cr_assert_eq(parse_exact(hdr, 4, MAX_FRAME, &f), FRAME_NEED_MORE);
    cr_assert_eq(parse_exact(hdr, 16, MAX_FRAME, &f), FRAME_NEED_MORE);

    /* A smaller, per-broker max_frame is honoured the same way. */
    frame_encode_header(hdr, 64, FRAME_OP_PUB, 0, 0, 0, 0, 0);
    cr_assert_eq(frame_peek_size(hdr, 4, 64, &size), 0);
    cr_assert_eq(size, 64);
    cr_assert_eq(frame_peek_size(hdr, 4, 63, &size), -EMSGSIZE);
    expect_parse_error(hdr, 16, 63, -EMSGSIZE, "64 over max 63");
}

/* The three inner lengths must fit in size - 16. Body is 10 bytes here. */
Test(frame, inner_lengths_overrunning_frame)
{
    static const struct {
        uint16_t s, r, h;
        int want;
        uint32_t payload_len;
    } cases[] = {
        {11, 0, 0, -EPROTO, 0},
        {0, 11, 0, -EPROTO, 0},
        {0, 0, 11, -EPROTO, 0},
        {4, 4, 3, -EPROTO, 0},
        {0, 5, 6, -EPROTO, 0},
        {6, 0, 5, -EPROTO, 0},
        {65535, 0, 0, -EPROTO, 0},
        {0, 65535, 0, -EPROTO, 0},
        {0, 0, 65535, -EPROTO, 0},
        {65535, 65535, 65535, -EPROTO, 0},
        /* Sums that wrap to a small number in 16 bits. */
        {65535, 1, 0, -EPROTO, 0},
        {65535, 0, 2, -EPROTO, 0},
        {32768, 32768, 5, -EPROTO, 0},
        /* Fitting. */
        {10, 0, 0, 0, 0},
        {0, 10, 0, 0, 0},
        {0, 0, 10, 0, 0},
        {4, 3, 3, 0, 0},
        {3, 3, 3, 0, 1},
        {0, 0, 0, 0, 10},
        {1, 2, 3, 0, 4},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t *buf = header_frame(16 + 10, FRAME_OP_MSG, cases[i].s, cases[i].r, cases[i].h, 10);
        struct frame f;
        int r = parse_exact(buf, 26, MAX_FRAME, &f);
        cr_expect_eq(r, cases[i].want, "s %u r %u h %u: %d", cases[i].s, cases[i].r, cases[i].h, r);
        if (cases[i].want == 0 && r == 0) {
            cr_expect_eq(f.payload_len, cases[i].payload_len);
            cr_expect_eq(f.payload, buf + 16 + cases[i].s + cases[i].r + cases[i].h);
        } else {
            cr_expect(frame_is_poisoned(&f), "case %zu: *f written on failure", i);
        }
        free(buf);
    }

    /* The largest inner lengths, exactly fitting and one byte short. */
    uint32_t body = 3 * 65535u;
    uint8_t *buf = header_frame(16 + body, FRAME_OP_MSG, 65535, 65535, 65535, body);
    struct frame f;
    cr_assert_eq(parse_exact(buf, 16 + body, MAX_FRAME, &f), 0);
    cr_assert_eq(f.payload_len, 0);
    cr_assert_eq(f.payload, buf + 16 + body);
    free(buf);

    buf = header_frame(16 + body - 1, FRAME_OP_MSG, 65535, 65535, 65535, body - 1);
    expect_parse_error(buf, 16 + body - 1, MAX_FRAME, -EPROTO, "3 x 65535 in one byte less");
    free(buf);
}

Test(frame, unknown_ops_are_protocol_errors)
{
    for (size_t i = 0; i < sizeof(unknown_ops); i++) {
        uint8_t op = unknown_ops[i];
        cr_expect_not(frame_op_known(op), "op %#x", op);
        uint8_t *buf = header_frame(20, op, 0, 0, 0, 4);
        expect_parse_error(buf, 20, MAX_FRAME, -EPROTO, "unknown op");
        free(buf);
    }
}

Test(frame, exactly_the_ten_ops_are_known)
{
    for (unsigned op = 0; op <= 0xFF; op++) {
        bool want = is_known(op);
        cr_expect_eq(frame_op_known((uint8_t)op), want, "op %#x", op);
        uint8_t *buf = header_frame(16, (uint8_t)op, 0, 0, 0, 0);
        struct frame f;
        int r = parse_exact(buf, 16, MAX_FRAME, &f);
        cr_expect_eq(r, want ? 0 : -EPROTO, "op %#x: parse %d", op, r);
        if (r == 0) {
            cr_expect_eq(f.op, op);
        }
        free(buf);
    }
}

/* A hand-written PUB, byte by byte, both ways. */
static const uint8_t hand_pub[] = {
    0x1B, 0x00, 0x00, 0x00,      /* size 27 = 16 + 3 + 2 + 1 + 5 */
    0x10,                        /* op PUB */
    0x01,                        /* flags RETAIN */
    0x03, 0x00,                  /* subject_len 3 */
    0x02, 0x00,                  /* reply_len 2 */
    0x01, 0x00,                  /* header_len 1 */
    0x78, 0x56, 0x34, 0x12,      /* sid 0x12345678 */
    'a',  '.',  'b',             /* subject */
    'r',  '1',                   /* reply */
    0xEE,                        /* headers */
    'h',  'e',  'l',  'l',  'o', /* payload */
};

Test(frame, little_endian_layout_encode)
{
    uint8_t *buf = exact_alloc(sizeof(hand_pub));
    size_t n = frame_encode(buf, FRAME_OP_PUB, FRAME_PUB_RETAIN, 0x12345678u, "a.b", 3, "r1", 2,
                            "\xEE", 1, "hello", 5);
    cr_assert_eq(n, sizeof(hand_pub));
    for (size_t i = 0; i < sizeof(hand_pub); i++) {
        cr_expect_eq(buf[i], hand_pub[i], "byte %zu: %#x, want %#x", i, buf[i], hand_pub[i]);
    }
    exact_free(buf);

    /* Every byte of every header field distinct, so a swap shows. */
    static const uint8_t want[16] = {0x04, 0x03, 0x02, 0x01, 0x3F, 0x05, 0x07, 0x06,
                                     0x09, 0x08, 0x0B, 0x0A, 0x0F, 0x0E, 0x0D, 0x0C};
    uint8_t hdr[16];
    memset(hdr, 0x55, sizeof(hdr));
    frame_encode_header(hdr, 0x01020304u, FRAME_OP_ERR, 0x05, 0x0607, 0x0809, 0x0A0B, 0x0C0D0E0Fu);
    for (size_t i = 0; i < 16; i++) {
        cr_expect_eq(hdr[i], want[i], "header byte %zu: %#x, want %#x", i, hdr[i], want[i]);
    }
}

Test(frame, little_endian_layout_parse)
{
    struct frame f;
    cr_assert_eq(parse_exact(hand_pub, sizeof(hand_pub), MAX_FRAME, &f), 0);
    cr_assert_eq(f.size, 27);
    cr_assert_eq(f.op, FRAME_OP_PUB);
    cr_assert_eq(f.flags, FRAME_PUB_RETAIN);
    cr_assert_eq(f.subject_len, 3);
    cr_assert_eq(f.reply_len, 2);
    cr_assert_eq(f.header_len, 1);
    cr_assert_eq(f.sid, 0x12345678u);
    cr_assert_eq(f.payload_len, 5);
    cr_assert_eq(f.subject, hand_pub + 16);
    cr_assert_eq(memcmp(f.subject, "a.b", 3), 0);
    cr_assert_eq(memcmp(f.reply, "r1", 2), 0);
    cr_assert_eq(f.headers[0], 0xEE);
    cr_assert_eq(memcmp(f.payload, "hello", 5), 0);

    /* Lengths above 255 and a size above 65535: every byte of each
     * little-endian field counts. size 0x00010203 = 66051. */
    uint8_t *buf = calloc(1, 0x00010203);
    cr_assert_not_null(buf);
    static const uint8_t hdr[16] = {0x03, 0x02, 0x01, 0x00, 0x20, 0x80, 0x02, 0x01,
                                    0x03, 0x00, 0x04, 0x01, 0xEF, 0xCD, 0xAB, 0x89};
    memcpy(buf, hdr, 16);
    cr_assert_eq(parse_exact(buf, 0x00010203, MAX_FRAME, &f), 0);
    cr_assert_eq(f.size, 66051);
    cr_assert_eq(f.op, FRAME_OP_MSG);
    cr_assert_eq(f.flags, 0x80);
    cr_assert_eq(f.subject_len, 0x0102);
    cr_assert_eq(f.reply_len, 0x0003);
    cr_assert_eq(f.header_len, 0x0104);
    cr_assert_eq(f.sid, 0x89ABCDEFu);
    cr_assert_eq(f.payload_len, 66051 - 16 - 258 - 3 - 260);
    cr_assert_eq(f.payload, buf + 16 + 258 + 3 + 260);
    free(buf);
}

Test(frame, integer_helpers_little_endian)
{
    uint8_t b[8];
    frame_put_u16(b, 0xA1B2);
    cr_assert_eq(b[0], 0xB2);
    cr_assert_eq(b[1], 0xA1);
    cr_assert_eq(frame_get_u16(b), 0xA1B2);

    frame_put_u32(b, 0xA1B2C3D4u);
    cr_assert_eq(b[0], 0xD4);
    cr_assert_eq(b[1], 0xC3);
    cr_assert_eq(b[2], 0xB2);
    cr_assert_eq(b[3], 0xA1);
    cr_assert_eq(frame_get_u32(b), 0xA1B2C3D4u);

    /* DROPPED carries a u64 count. */
    frame_put_u64(b, 0x0102030405060708ull);
    for (size_t i = 0; i < 8; i++) {
        cr_assert_eq(b[i], 8 - i, "u64 byte %zu", i);
    }
    cr_assert_eq(frame_get_u64(b), 0x0102030405060708ull);
    frame_put_u64(b, UINT64_MAX);
    cr_assert_eq(frame_get_u64(b), UINT64_MAX);
    static const uint8_t high[8] = {0, 0, 0, 0, 0, 0, 0, 0x80};
    cr_assert_eq(frame_get_u64(high), 0x8000000000000000ull);
    static const uint8_t high32[4] = {0, 0, 0, 0x80};
    cr_assert_eq(frame_get_u32(high32), 0x80000000u);
}

Test(frame, flags_and_sid_preserved)
{
    static const uint8_t flags[] = {0x00, 0x01, 0x02, 0x03, 0x80, 0xFE, 0xFF};
    static const uint32_t sids[] = {0, 1, 0x7FFFFFFFu, 0x80000000u, 0xDEADBEEFu, UINT32_MAX};
    for (size_t i = 0; i < sizeof(flags); i++) {
        for (size_t j = 0; j < sizeof(sids) / sizeof(sids[0]); j++) {
            uint8_t buf[32];
            size_t n = frame_encode(buf, FRAME_OP_MSG, flags[i], sids[j], "s", 1, NULL, 0, NULL, 0,
                                    "p", 1);
            struct frame f;
            cr_assert_eq(parse_exact(buf, n, MAX_FRAME, &f), 0);
            cr_expect_eq(f.flags, flags[i]);
            cr_expect_eq(f.sid, sids[j]);
            cr_expect_eq(f.payload_len, 1);
            cr_expect_eq(f.payload[0], 'p');
        }
    }
}

Test(frame, back_to_back_frames)
{
    uint8_t stream[256];
    size_t a = frame_encode(stream, FRAME_OP_MSG, FRAME_MSG_RETAINED, 1, "a.b", 3, NULL, 0, NULL, 0,
                            "first", 5);
    size_t b = frame_encode(stream + a, FRAME_OP_PING, 0, 77, NULL, 0, NULL, 0, NULL, 0, NULL, 0);
    size_t c = frame_encode(stream + a + b, FRAME_OP_ERR, 0, FRAME_ERR_SUBJECT, "x..y", 4, NULL, 0,
                            NULL, 0, "bad", 3);
    size_t total = a + b + c;
    /* And the first 7 bytes of a fourth frame. */
    size_t d =
        frame_encode(stream + total, FRAME_OP_PONG, 0, 5, NULL, 0, NULL, 0, NULL, 0, NULL, 0);
    cr_assert_eq(d, 16);
    total += 7;

    uint8_t *buf = exact_new(stream, total);
    size_t off = 0;
    struct frame f;

    cr_assert_eq(frame_parse(buf + off, total - off, MAX_FRAME, &f), 0);
    cr_assert_eq(f.size, a);
    cr_assert_eq(f.op, FRAME_OP_MSG);
    cr_assert_eq(f.flags, FRAME_MSG_RETAINED);
    cr_assert_eq(f.payload_len, 5);
    cr_assert_eq(memcmp(f.payload, "first", 5), 0);
    off += f.size;

    cr_assert_eq(frame_parse(buf + off, total - off, MAX_FRAME, &f), 0);
    cr_assert_eq(f.size, b);
    cr_assert_eq(f.op, FRAME_OP_PING);
    cr_assert_eq(f.sid, 77);
    off += f.size;

    cr_assert_eq(frame_parse(buf + off, total - off, MAX_FRAME, &f), 0);
    cr_assert_eq(f.size, c);
    cr_assert_eq(f.op, FRAME_OP_ERR);
    cr_assert_eq(f.sid, FRAME_ERR_SUBJECT);
    cr_assert_eq(memcmp(f.subject, "x..y", 4), 0);
    cr_assert_eq(memcmp(f.payload, "bad", 3), 0);
    off += f.size;

    cr_assert_eq(frame_parse(buf + off, total - off, MAX_FRAME, &f), FRAME_NEED_MORE);
    exact_free(buf);
}

Test(frame, payload_len_is_the_rest)
{
    static const struct {
        size_t s, r, h, p;
    } cases[] = {
        {0, 0, 0, 0}, {0, 0, 0, 1},  {1, 0, 0, 0},     {0, 1, 0, 0},
        {0, 0, 1, 0}, {3, 5, 7, 11}, {200, 0, 0, 300},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t size = frame_encoded_size(cases[i].s, cases[i].r, cases[i].h, cases[i].p);
        uint8_t *buf = malloc(size);
        cr_assert_not_null(buf);
        frame_encode(buf, FRAME_OP_PUB, 0, 0, src_subject, cases[i].s, src_reply, cases[i].r,
                     src_headers, cases[i].h, src_payload, cases[i].p);
        struct frame f;
        cr_assert_eq(parse_exact(buf, size, MAX_FRAME, &f), 0);
        cr_expect_eq(f.payload_len, cases[i].p, "case %zu: payload_len %u", i, f.payload_len);
        cr_expect_eq(f.payload + f.payload_len, buf + size, "case %zu: payload end", i);
        free(buf);
    }

    /* A buffer holding more than the frame: only `size` bytes belong to it. */
    uint8_t buf[64];
    memset(buf, 0x77, sizeof(buf));
    size_t n = frame_encode(buf, FRAME_OP_PUB, 0, 0, "s", 1, NULL, 0, NULL, 0, "pay", 3);
    struct frame f;
    cr_assert_eq(frame_parse(buf, sizeof(buf), MAX_FRAME, &f), 0);
    cr_assert_eq(f.size, n);
    cr_assert_eq(f.payload_len, 3);
}

Test(frame, op_names)
{
    for (size_t i = 0; i < N_KNOWN_OPS; i++) {
        cr_expect_str_eq(frame_op_name(known_ops[i].op), known_ops[i].name);
    }
    for (size_t i = 0; i < sizeof(unknown_ops); i++) {
        cr_expect_str_eq(frame_op_name(unknown_ops[i]), "?", "op %#x", unknown_ops[i]);
    }
    for (unsigned op = 0; op <= 0xFF; op++) {
        const char *name = frame_op_name((uint8_t)op);
        cr_assert_not_null(name);
        if (!is_known(op)) {
            cr_expect_str_eq(name, "?", "op %#x", op);
        } else {
            cr_expect_str_neq(name, "?", "op %#x", op);
        }
    }
}
