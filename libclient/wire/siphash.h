/*
 * siphash.h - SipHash, the keyed hash of the broker's tables and of the
 * NATS bridge's reply tokens, in one place.
 *
 * SipHash, from the paper (Aumasson, Bernstein: "SipHash: a fast
 * short-input PRF", 2012): the 128-bit key k0, k1 initialises four 64-bit
 * words v0..v3 (each xored with a constant spelling "somepseudorandomly
 * generatedbytes"); each 8-byte little-endian block m is absorbed as
 * v3 ^= m, c SipRounds, v0 ^= m; the last block holds the leftover bytes
 * and, in its top byte, the length mod 256; then v2 ^= 0xff, d SipRounds,
 * and the result is v0 ^ v1 ^ v2 ^ v3. A SipRound is four add-rotate-xor
 * steps on the pairs (v0, v1) and (v2, v3).
 *
 * Two variants are named: SipHash-2-4, the paper's, a pseudorandom
 * function where a guess must not succeed (tokens, key derivation), and
 * SipHash-1-3, as CPython and Rust use for their tables, where it only
 * has to keep collisions from being chosen. Everything is static inline,
 * so that each caller gets the rounds unrolled with its constant c and d
 * and, for a constant length, the block loop resolved: the broker hashes
 * every token of a SUB and every subject a match-cache miss looks up with
 * it. Keys are the two words k0, k1; siphash_le64() reads them from the
 * 16 bytes of a key as the paper does, and siphash_key_random() draws
 * those bytes from the kernel (the one function not inline).
 */
#ifndef SOCKBUS_SIPHASH_H
#define SOCKBUS_SIPHASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The bytes of a key: the words k0, k1 are siphash_le64() of each half. */
#define SIPHASH_KEY_SIZE 16

/* Fill key[] from getrandom() (siphash.c), for a key no one outside the
 * process can know. Returns 0 or a negative errno (getrandom()'s). */
int siphash_key_random(uint8_t key[SIPHASH_KEY_SIZE]);

/* The 8 bytes at p as a little-endian word, on any host. */
static inline uint64_t siphash_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint64_t siphash__rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

struct siphash__state {
    uint64_t v0, v1, v2, v3;
};

static inline void siphash__round(struct siphash__state *s)
{
    s->v0 += s->v1;
    s->v1 = siphash__rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = siphash__rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = siphash__rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = siphash__rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = siphash__rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = siphash__rotl(s->v2, 32);
}

/* SipHash-c-d of p[0..len) under the key k0, k1. Call it with constant c
 * and d (or through siphash13() and siphash24()). */
static inline uint64_t siphash(uint64_t k0, uint64_t k1, const void *data, size_t len, int c, int d)
{
    const uint8_t *p = data;
    struct siphash__state s = {
        .v0 = k0 ^ 0x736f6d6570736575u,
        .v1 = k1 ^ 0x646f72616e646f6du,
        .v2 = k0 ^ 0x6c7967656e657261u,
        .v3 = k1 ^ 0x7465646279746573u,
    };
    const uint8_t *end = p + (len & ~(size_t)7);
    for (; p < end; p += 8) {
        uint64_t m = siphash_le64(p);
        s.v3 ^= m;
        for (int i = 0; i < c; i++) {
            siphash__round(&s);
        }
        s.v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++) {
        b |= (uint64_t)p[i] << (8 * i);
    }
    s.v3 ^= b;
    for (int i = 0; i < c; i++) {
        siphash__round(&s);
    }
    s.v0 ^= b;
    s.v2 ^= 0xff;
    for (int i = 0; i < d; i++) {
        siphash__round(&s);
    }
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

/* SipHash-1-3 of p[0..len) under k0, k1: for tables. */
static inline uint64_t siphash13(uint64_t k0, uint64_t k1, const void *p, size_t len)
{
    return siphash(k0, k1, p, len, 1, 3);
}

/* SipHash-2-4 of p[0..len) under k0, k1: the paper's function. */
static inline uint64_t siphash24(uint64_t k0, uint64_t k1, const void *p, size_t len)
{
    return siphash(k0, k1, p, len, 2, 4);
}

/* SipHash-2-4 of the 8 bytes of m, little endian, under k0, k1: a keyed
 * tag of a number (a counter, a request's number). */
static inline uint64_t siphash24_u64(uint64_t k0, uint64_t k1, uint64_t m)
{
    uint8_t bytes[8];
    for (size_t i = 0; i < 8; i++) {
        bytes[i] = (uint8_t)(m >> (8 * i));
    }
    return siphash24(k0, k1, bytes, sizeof(bytes));
}

#endif /* SOCKBUS_SIPHASH_H */
