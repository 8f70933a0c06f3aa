/*
 * test_hash.c - the keyed hashes: SipHash against the paper's test
 * vectors, the keys following the seed, and the match cache's hash
 * spreading subjects and reading nothing outside them.
 */
#include <criterion/criterion.h>

#include "hash.h"
#include "siphash_vectors.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

TestSuite(hash, .timeout = 60);

/* The paper's vectors (siphash_vectors.h) through the broker's own
 * functions, which take the key as its 16 bytes. */
Test(hash, siphash24_matches_the_paper)
{
    const uint8_t *m = ref_message();
    for (size_t i = 0; i < REF_VECTORS; i++) {
        size_t len = ref_vectors[i].len;
        cr_assert_eq(hash_siphash24(ref_key, m, len), ref_vectors[i].h24, "length %zu", len);
    }
}

Test(hash, siphash13_matches_an_independent_implementation)
{
    const uint8_t *m = ref_message();
    for (size_t i = 0; i < REF_VECTORS; i++) {
        size_t len = ref_vectors[i].len;
        cr_assert_eq(hash_siphash13(ref_key, m, len), ref_vectors[i].h13, "length %zu", len);
    }
}

/* Every hash follows the seed: the same seed gives the same values, another
 * seed others. */
Test(hash, keys_follow_the_seed)
{
    hash_seed_fixed(1);
    uint64_t b1 = hash_bytes("sensors", 7);
    uint64_t s1 = hash_subject("sensors.temp", 12);
    size_t u1 = hash_u32_index(12345, 16);
    hash_seed_fixed(2);
    uint64_t b2 = hash_bytes("sensors", 7);
    uint64_t s2 = hash_subject("sensors.temp", 12);
    size_t u2 = hash_u32_index(12345, 16);
    cr_assert_neq(b1, b2);
    cr_assert_neq(s1, s2);
    cr_assert_neq(u1, u2);
    hash_seed_fixed(1);
    cr_assert_eq(hash_bytes("sensors", 7), b1);
    cr_assert_eq(hash_subject("sensors.temp", 12), s1);
    cr_assert_eq(hash_u32_index(12345, 16), u1);
    /* The random seed is random: two draws agree with chance 2^-64. */
    cr_assert_eq(hash_seed_random(), 0);
    uint64_t r1 = hash_bytes("sensors", 7);
    cr_assert_eq(hash_seed_random(), 0);
    cr_assert_neq(hash_bytes("sensors", 7), r1);
}

/* The cache index of a chosen subject cannot be aimed at: subjects found
 * to share a slot with "victim.subject" under one seed share it under
 * another only by chance (1 in 256 each). */
Test(hash, cache_collisions_do_not_survive_a_new_seed)
{
    enum { PAIRS = 64, BITS = 8 };
    char found[PAIRS][24];
    const char *victim = "victim.subject";
    hash_seed_fixed(1);
    uint64_t slot = hash_subject(victim, strlen(victim)) >> (64 - BITS);
    size_t n = 0;
    for (unsigned i = 0; n < PAIRS; i++) {
        char s[24];
        int len = snprintf(s, sizeof(s), "attack.%u", i);
        if (hash_subject(s, (size_t)len) >> (64 - BITS) == slot) {
            memcpy(found[n++], s, sizeof(s));
        }
    }
    hash_seed_fixed(2);
    slot = hash_subject(victim, strlen(victim)) >> (64 - BITS);
    size_t still = 0;
    for (size_t i = 0; i < PAIRS; i++) {
        still += hash_subject(found[i], strlen(found[i])) >> (64 - BITS) == slot;
    }
    cr_assert_leq(still, 6, "%zu of %d still collide", still, PAIRS);
}

/* 256 cache slots, 256,000 subjects of a few shapes: every slot gets
 * about 1,000. */
Test(hash, subjects_spread_over_the_cache)
{
    enum { SLOTS = 256, PER = 1000 };
    static unsigned count[SLOTS];
    hash_seed_fixed(3);
    for (unsigned i = 0; i < SLOTS * PER; i++) {
        char s[64];
        int len = snprintf(s, sizeof(s), i % 2 ? "sensors.room%u.temp" : "x.%u", i);
        count[hash_subject(s, (size_t)len) >> 56]++;
    }
    for (unsigned i = 0; i < SLOTS; i++) {
        cr_assert(count[i] > PER / 2 && count[i] < PER * 2, "slot %u: %u", i, count[i]);
    }
}

/* hash_subject() reads nothing outside the subject: each length from 1 to
 * the maximum, placed against an unreadable page (and at the start of a
 * readable one). */
Test(hash, subject_hash_reads_only_the_subject)
{
    long page = sysconf(_SC_PAGESIZE);
    uint8_t *p =
        mmap(NULL, (size_t)page * 3, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(p, MAP_FAILED);
    cr_assert_eq(mprotect(p, (size_t)page, PROT_NONE), 0);
    cr_assert_eq(mprotect(p + 2 * page, (size_t)page, PROT_NONE), 0);
    uint8_t *mid = p + page;
    memset(mid, 'a', (size_t)page);
    for (size_t len = 1; len <= HASH_SUBJECT_MAX; len++) {
        uint64_t at_end = hash_subject((const char *)mid + page - len, len);
        uint64_t at_start = hash_subject((const char *)mid, len);
        cr_assert_eq(at_end, at_start, "length %zu", len);
    }
    munmap(p, (size_t)page * 3);
}

/* Subjects of one length that differ in one byte anywhere hash apart. */
Test(hash, every_byte_counts)
{
    hash_seed_fixed(4);
    for (size_t len = 1; len <= HASH_SUBJECT_MAX; len++) {
        char a[HASH_SUBJECT_MAX];
        memset(a, 'k', len);
        uint64_t h = hash_subject(a, len);
        for (size_t i = 0; i < len; i++) {
            a[i] = 'm';
            cr_assert_neq(hash_subject(a, len), h, "length %zu, byte %zu", len, i);
            a[i] = 'k';
        }
    }
}
