/*
 * hash.c - SipHash, and the process keys (see hash.h).
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
 * All keys are derived from one 16-byte seed with SipHash-2-4 used as a
 * pseudorandom function over a counter, so the whole state follows from
 * the seed: random in the broker, fixed in unit tests.
 */
#include "hash.h"

#include <errno.h>
#include <sys/random.h>

/* Fixed until seeded: arbitrary odd constants, so that a unit test that
 * never seeds still gets working (if unkeyed) hashes. */
static uint64_t sip_k0 = 0x0706050403020100u;
static uint64_t sip_k1 = 0x0f0e0d0c0b0a0908u;
uint64_t hash__u32_mul = 0x9e3779b97f4a7c15u;
uint64_t hash__subject_mul = 0xc2b2ae3d27d4eb4fu;
uint32_t hash__nh_key[HASH_SUBJECT_MAX / 4];
uint64_t hash__len_key[HASH_SUBJECT_MAX + 1];

static inline uint64_t rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

struct sip {
    uint64_t v0, v1, v2, v3;
};

static inline void sip_round(struct sip *s)
{
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

/* SipHash-c-d; inlined into its two users with constant rounds. */
static inline uint64_t siphash(uint64_t k0, uint64_t k1, const uint8_t *p, size_t len, int c, int d)
{
    struct sip s = {
        .v0 = k0 ^ 0x736f6d6570736575u,
        .v1 = k1 ^ 0x646f72616e646f6du,
        .v2 = k0 ^ 0x6c7967656e657261u,
        .v3 = k1 ^ 0x7465646279746573u,
    };
    const uint8_t *end = p + (len & ~(size_t)7);
    for (; p < end; p += 8) {
        uint64_t m = load_le64(p);
        s.v3 ^= m;
        for (int i = 0; i < c; i++) {
            sip_round(&s);
        }
        s.v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++) {
        b |= (uint64_t)p[i] << (8 * i);
    }
    s.v3 ^= b;
    for (int i = 0; i < c; i++) {
        sip_round(&s);
    }
    s.v0 ^= b;
    s.v2 ^= 0xff;
    for (int i = 0; i < d; i++) {
        sip_round(&s);
    }
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

uint64_t hash_bytes(const void *p, size_t len)
{
    return siphash(sip_k0, sip_k1, p, len, 1, 3);
}

uint64_t hash_siphash24(const uint8_t key[16], const void *p, size_t len)
{
    return siphash(load_le64(key), load_le64(key + 8), p, len, 2, 4);
}

uint64_t hash_siphash13(const uint8_t key[16], const void *p, size_t len)
{
    return siphash(load_le64(key), load_le64(key + 8), p, len, 1, 3);
}

/* Word i of the key stream: SipHash-2-4 of the counter under the seed. */
static uint64_t derive(const uint8_t seed[16], uint64_t i)
{
    uint8_t counter[8];
    for (size_t j = 0; j < 8; j++) {
        counter[j] = (uint8_t)(i >> (8 * j));
    }
    return hash_siphash24(seed, counter, sizeof(counter));
}

static void hash_seed_bytes(const uint8_t seed[16])
{
    uint64_t i = 0;
    sip_k0 = derive(seed, i++);
    sip_k1 = derive(seed, i++);
    hash__u32_mul = derive(seed, i++) | 1;
    hash__subject_mul = derive(seed, i++) | 1;
    for (size_t j = 0; j < HASH_SUBJECT_MAX / 4; j += 2) {
        uint64_t w = derive(seed, i++);
        hash__nh_key[j] = (uint32_t)w;
        hash__nh_key[j + 1] = (uint32_t)(w >> 32);
    }
    for (size_t j = 0; j <= HASH_SUBJECT_MAX; j++) {
        hash__len_key[j] = derive(seed, i++);
    }
}

int hash_seed_random(void)
{
    uint8_t seed[16];
    size_t got = 0;
    while (got < sizeof(seed)) {
        ssize_t n = getrandom(seed + got, sizeof(seed) - got, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        got += (size_t)n;
    }
    hash_seed_bytes(seed);
    return 0;
}

void hash_seed_fixed(uint64_t seed)
{
    uint8_t bytes[16];
    for (size_t j = 0; j < 8; j++) {
        bytes[j] = (uint8_t)(seed >> (8 * j));
        bytes[8 + j] = (uint8_t)(~seed >> (8 * j));
    }
    hash_seed_bytes(bytes);
}
