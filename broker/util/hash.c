/*
 * hash.c - the broker's keyed hashes and the process keys (see hash.h).
 *
 * The SipHash itself is the wire layer's (siphash.h, after Aumasson and
 * Bernstein, "SipHash: a fast short-input PRF", 2012), inlined here with
 * constant rounds: SipHash-1-3 under the process key for hash_bytes(),
 * SipHash-2-4 under a given key for the key derivation.
 *
 * All keys are derived from one 16-byte seed with SipHash-2-4 used as a
 * pseudorandom function over a counter, so the whole state follows from
 * the seed: random in the broker, fixed in unit tests.
 */
#include "hash.h"

#include "siphash.h"

/* Fixed until seeded: arbitrary odd constants, so that a unit test that
 * never seeds still gets working (if unkeyed) hashes. */
static uint64_t sip_k0 = 0x0706050403020100u;
static uint64_t sip_k1 = 0x0f0e0d0c0b0a0908u;
uint64_t hash__u32_mul = 0x9e3779b97f4a7c15u;
uint64_t hash__subject_mul = 0xc2b2ae3d27d4eb4fu;
uint32_t hash__nh_key[HASH_SUBJECT_MAX / 4];
uint64_t hash__len_key[HASH_SUBJECT_MAX + 1];

uint64_t hash_bytes(const void *p, size_t len)
{
    return siphash13(sip_k0, sip_k1, p, len);
}

uint64_t hash_siphash24(const uint8_t key[16], const void *p, size_t len)
{
    return siphash24(siphash_le64(key), siphash_le64(key + 8), p, len);
}

uint64_t hash_siphash13(const uint8_t key[16], const void *p, size_t len)
{
    return siphash13(siphash_le64(key), siphash_le64(key + 8), p, len);
}

/* Word i of the key stream: SipHash-2-4 of the counter (8 bytes, little
 * endian) under the seed. */
static uint64_t derive(const uint8_t seed[16], uint64_t i)
{
    return siphash24_u64(siphash_le64(seed), siphash_le64(seed + 8), i);
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
    uint8_t seed[SIPHASH_KEY_SIZE];
    int r = siphash_key_random(seed);
    if (r < 0) {
        return r;
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
