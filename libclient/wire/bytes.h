/*
 * bytes.h - copying and comparing the short byte strings of the
 * per-message paths (subjects, small bodies) without a call.
 *
 * A subject is compared or copied for nearly every message, in the broker
 * (the match it reuses, the match cache, a small MSG body) and in the
 * library (the subject it checked last, the subject of a MSG it hands
 * out), and is short. memcpy() and memcmp() of a length known only at run
 * time are calls; these are a few overlapping word moves for the common
 * lengths, and the library functions for the others. Only n bytes of each
 * side are read or written.
 */
#ifndef SOCKBUS_BYTES_H
#define SOCKBUS_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* dst[0..n) = src[0..n), which do not overlap: from 8 to 32 bytes, two
 * overlapping moves of 8 or 16 bytes. */
__attribute__((always_inline)) static inline void bytes_copy_short(void *dst, const void *src,
                                                                   size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (n >= 8 && n <= 16) {
        uint64_t a;
        uint64_t b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + n - 8, &b, 8);
    } else if (n > 16 && n <= 32) {
        uint8_t a[16];
        uint8_t b[16];
        memcpy(a, s, 16);
        memcpy(b, s + n - 16, 16);
        memcpy(d, a, 16);
        memcpy(d + n - 16, b, 16);
    } else {
        memcpy(d, s, n);
    }
}

/* Are a[0..n) and b[0..n) the same bytes? Words of 8 bytes (the last one
 * overlapping the one before it), or for fewer than 8 bytes two
 * overlapping halves, or the bytes themselves. */
__attribute__((always_inline)) static inline bool bytes_same(const void *x, const void *y, size_t n)
{
    const uint8_t *a = x;
    const uint8_t *b = y;
    if (n >= 8) {
        uint64_t p;
        uint64_t q;
        uint64_t diff = 0;
        for (size_t i = 0; i + 8 < n; i += 8) {
            memcpy(&p, a + i, 8);
            memcpy(&q, b + i, 8);
            diff |= p ^ q;
        }
        memcpy(&p, a + n - 8, 8);
        memcpy(&q, b + n - 8, 8);
        return (diff | (p ^ q)) == 0;
    }
    if (n >= 4) {
        uint32_t p[2];
        uint32_t q[2];
        memcpy(&p[0], a, 4);
        memcpy(&p[1], a + n - 4, 4);
        memcpy(&q[0], b, 4);
        memcpy(&q[1], b + n - 4, 4);
        return ((p[0] ^ q[0]) | (p[1] ^ q[1])) == 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i]) {
            return false;
        }
    }
    return true;
}

#endif /* SOCKBUS_BYTES_H */
