/*
 * hash.h - the broker's keyed hashes.
 *
 * Every table a client can fill (trie children and queue groups, the
 * retained store, the sid map, the match cache) finds its slots with a hash
 * keyed by a per-process random seed, so which keys share a slot is not
 * known outside the broker and cannot be arranged by a client: no crafted
 * set of tokens, sids or subjects turns a table into one long probe run.
 *
 * Three functions, each as cheap as its use allows:
 *
 * - hash_bytes(): SipHash-1-3 (Aumasson and Bernstein's SipHash with one
 *   compression and three finalization rounds, as CPython and Rust use
 *   for their tables), a keyed pseudorandom function: for byte strings that
 *   fill open-addressing tables (tokens, queue group names). Runs for each
 *   token at SUB time and on a match-cache miss.
 * - hash_u32_index(): multiply-shift with a random odd 64-bit multiplier
 *   (Dietzfelbinger et al., a universal family), for sids: one multiply.
 * - hash_subject(): the match cache's index, computed for every publish:
 *   NH (the inner hash of UMAC; Black et al.) over 32-bit halves of 8-byte
 *   words with a random key, plus a random key per length, then
 *   multiply-shift. For two subjects chosen without knowledge of the key
 *   the chance that they share one of 256 cache slots is at most about
 *   2^-7 + 2^-32, and it costs about as much as the unkeyed hash it
 *   replaces. The cache's 256 entries are direct mapped: what this
 *   protects there is a chosen subject's entry from being evicted on
 *   purpose. Its index (matchcache.h) is open-addressed by the same hash;
 *   a run of probes there stops at MATCHCACHE_INDEX_PROBE_MAX slots
 *   whatever the subjects, and a subject that finds no free slot takes
 *   the walk.
 *
 * The broker seeds once, at start (hash_seed_random(), from getrandom()).
 * Until then the keys are fixed, and unit tests may fix them with
 * hash_seed_fixed() to be reproducible; the broker never does.
 */
#ifndef SOCKBUS_HASH_H
#define SOCKBUS_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Longest subject hash_subject() takes: the match cache's limit. */
#define HASH_SUBJECT_MAX 128u

/* Seed every key from 16 random bytes (getrandom()). Returns 0 or a
 * negative errno. Call once, before any table is filled. */
int hash_seed_random(void);

/* Seed every key from `seed`, reproducibly. For tests only. */
void hash_seed_fixed(uint64_t seed);

/* SipHash-1-3 of p[0..len) under the process key. */
uint64_t hash_bytes(const void *p, size_t len);

/* SipHash-2-4 of p[0..len) under `key` (16 bytes), the paper's reference
 * function: derives the process keys, and checks the implementation
 * against the paper's test vectors. */
uint64_t hash_siphash24(const uint8_t key[16], const void *p, size_t len);

/* SipHash-1-3 under `key`: hash_bytes() with the key given, for tests. */
uint64_t hash_siphash13(const uint8_t key[16], const void *p, size_t len);

/* Key material; written only by the seeding functions. */
extern uint64_t hash__u32_mul;     /* odd */
extern uint64_t hash__subject_mul; /* odd */
extern uint32_t hash__nh_key[HASH_SUBJECT_MAX / 4];
extern uint64_t hash__len_key[HASH_SUBJECT_MAX + 1];

/* Index of `key` in a table of 2^bits slots (1 <= bits <= 32): the top
 * bits of key times the multiplier. */
static inline size_t hash_u32_index(uint32_t key, unsigned bits)
{
    return (size_t)((key * hash__u32_mul) >> (64 - bits));
}

/* One NH step: two 32-bit words, each plus its key word, multiplied. */
static inline uint64_t hash__nh(uint64_t w, const uint32_t *k)
{
    return (uint64_t)((uint32_t)w + k[0]) * (uint32_t)((uint32_t)(w >> 32) + k[1]);
}

/*
 * The match cache's hash of a subject of 1 to HASH_SUBJECT_MAX bytes. Its
 * top bits are the best mixed: index with `h >> (64 - bits)`. Each byte of
 * the subject goes into some 8-byte word (the last word may overlap the
 * one before it, and a short subject is read as two overlapping halves),
 * which for a given length is a one-to-one encoding: that, and the key per
 * length, is all NH needs. Reads nothing outside s[0..len).
 */
static inline uint64_t hash_subject(const char *s, size_t len)
{
    const uint32_t *k = hash__nh_key;
    uint64_t sum = hash__len_key[len];
    size_t i = 0;
    for (; i + 8 <= len; i += 8, k += 2) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        sum += hash__nh(w, k);
    }
    if (i < len) {
        uint64_t w;
        if (len >= 8) {
            memcpy(&w, s + len - 8, 8);
        } else if (len >= 4) {
            uint32_t lo;
            uint32_t hi;
            memcpy(&lo, s, 4);
            memcpy(&hi, s + len - 4, 4);
            w = lo | (uint64_t)hi << 32;
        } else {
            w = (uint64_t)(uint8_t)s[0] | (uint64_t)(uint8_t)s[len / 2] << 8 |
                (uint64_t)(uint8_t)s[len - 1] << 16;
        }
        sum += hash__nh(w, k);
    }
    return sum * hash__subject_mul;
}

#endif /* SOCKBUS_HASH_H */
