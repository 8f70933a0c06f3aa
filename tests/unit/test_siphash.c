/*
 * test_siphash.c - the wire layer's SipHash (siphash.h) against the
 * paper's test vectors, SipHash-1-3 against an independent implementation,
 * and the tag of a number against the hash of its 8 bytes.
 */
#include <criterion/criterion.h>

#include "siphash.h"
#include "siphash_vectors.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

TestSuite(siphash, .timeout = 60);

Test(siphash, key_words_are_little_endian)
{
    cr_assert_eq(siphash_le64(ref_key), 0x0706050403020100u);
    cr_assert_eq(siphash_le64(ref_key + 8), 0x0f0e0d0c0b0a0908u);
}

Test(siphash, both_variants_match_the_vectors)
{
    const uint8_t *m = ref_message();
    uint64_t k0 = siphash_le64(ref_key);
    uint64_t k1 = siphash_le64(ref_key + 8);
    for (size_t i = 0; i < REF_VECTORS; i++) {
        size_t len = ref_vectors[i].len;
        cr_assert_eq(siphash24(k0, k1, m, len), ref_vectors[i].h24, "2-4, length %zu", len);
        cr_assert_eq(siphash13(k0, k1, m, len), ref_vectors[i].h13, "1-3, length %zu", len);
        /* The general function with the same rounds is the same one. */
        cr_assert_eq(siphash(k0, k1, m, len, 2, 4), ref_vectors[i].h24);
        cr_assert_eq(siphash(k0, k1, m, len, 1, 3), ref_vectors[i].h13);
    }
}

/* A number's tag is SipHash-2-4 of its 8 little-endian bytes: the paper's
 * 8-byte vector (message 00..07), and any other number the same way. */
Test(siphash, tag_of_a_number_is_the_hash_of_its_bytes)
{
    uint64_t k0 = siphash_le64(ref_key);
    uint64_t k1 = siphash_le64(ref_key + 8);
    cr_assert_eq(siphash24_u64(k0, k1, 0x0706050403020100u), 0x93f5f5799a932462u);
    const uint64_t numbers[] = {0, 1, 255, 256, 0x8000000000000000u, UINT64_MAX};
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
        uint8_t b[8];
        for (size_t j = 0; j < 8; j++) {
            b[j] = (uint8_t)(numbers[i] >> (8 * j));
        }
        cr_assert_eq(siphash24_u64(k0, k1, numbers[i]), siphash24(k0, k1, b, 8), "n = %llu",
                     (unsigned long long)numbers[i]);
    }
    /* Another key, another tag. */
    cr_assert_neq(siphash24_u64(k0 ^ 1, k1, 1), siphash24_u64(k0, k1, 1));
}

/* A random key is drawn whole: two draws of 16 bytes agree with chance
 * 2^-128, and every byte is written (a byte keeps its mark through four
 * draws with chance 2^-32, one of the 16 with chance 2^-28). */
Test(siphash, random_keys_are_drawn_whole)
{
    uint8_t a[SIPHASH_KEY_SIZE], b[SIPHASH_KEY_SIZE];
    cr_assert_eq(siphash_key_random(a), 0);
    cr_assert_eq(siphash_key_random(b), 0);
    cr_assert_neq(memcmp(a, b, sizeof(a)), 0);
    for (size_t i = 0; i < SIPHASH_KEY_SIZE; i++) {
        bool kept = true;
        for (int draw = 0; draw < 4 && kept; draw++) {
            uint8_t k[SIPHASH_KEY_SIZE];
            memset(k, 0xa5, sizeof(k));
            cr_assert_eq(siphash_key_random(k), 0);
            kept = k[i] == 0xa5;
        }
        cr_assert(!kept, "byte %zu was never written", i);
    }
}
