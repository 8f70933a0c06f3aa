/*
 * test_sidmap.c - the sid map: basics, growth and shrinking, a randomized
 * run against a plain array (where backward-shift deletion would go
 * wrong), and sids crafted to collide under the old unkeyed hash.
 */
#include <criterion/criterion.h>

#include "hash.h"
#include "mem.h"
#include "sidmap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VAL(n) ((void *)(uintptr_t)(n))

static struct sidmap map;

static void setup(void)
{
    hash_seed_fixed(1);
    sidmap_init(&map);
}

static void teardown(void)
{
    sidmap_deinit(&map);
}

TestSuite(sidmap, .init = setup, .fini = teardown, .timeout = 60);

Test(sidmap, empty_map)
{
    cr_assert_eq(map.cap, 0);
    cr_assert_eq(map.len, 0);
    cr_assert_null(map.slots);
    cr_assert_null(sidmap_find(&map, 1));
    cr_assert_null(sidmap_remove(&map, 1));
    size_t pos = 0;
    uint32_t key;
    void *value;
    cr_assert_eq(sidmap_next(&map, &pos, &key, &value), 0);
    sidmap_deinit(&map);
    sidmap_deinit(NULL);
}

Test(sidmap, insert_find_remove)
{
    cr_assert_eq(sidmap_insert(&map, 7, VAL(70)), 0);
    cr_assert_eq(sidmap_insert(&map, 1, VAL(10)), 0);
    cr_assert_eq(sidmap_insert(&map, UINT32_MAX, VAL(99)), 0);
    cr_assert_eq(map.len, 3);

    cr_assert_eq(sidmap_find(&map, 7), VAL(70));
    cr_assert_eq(sidmap_find(&map, 1), VAL(10));
    cr_assert_eq(sidmap_find(&map, UINT32_MAX), VAL(99));
    cr_assert_null(sidmap_find(&map, 2));

    cr_assert_eq(sidmap_remove(&map, 7), VAL(70));
    cr_assert_null(sidmap_find(&map, 7));
    cr_assert_null(sidmap_remove(&map, 7));
    cr_assert_eq(map.len, 2);
    cr_assert_eq(sidmap_find(&map, 1), VAL(10));

    /* A removed key can come back. */
    cr_assert_eq(sidmap_insert(&map, 7, VAL(71)), 0);
    cr_assert_eq(sidmap_find(&map, 7), VAL(71));
}

Test(sidmap, duplicate_is_eexist)
{
    cr_assert_eq(sidmap_insert(&map, 5, VAL(1)), 0);
    cr_assert_eq(sidmap_insert(&map, 5, VAL(2)), -EEXIST);
    cr_assert_eq(sidmap_find(&map, 5), VAL(1), "the old value stays");
    cr_assert_eq(map.len, 1);
}

Test(sidmap, key_zero_is_rejected)
{
    cr_assert_eq(sidmap_insert(&map, 0, VAL(1)), -EINVAL);
    cr_assert_eq(map.len, 0);
    cr_assert_eq(map.cap, 0, "nothing allocated for a rejected key");
    cr_assert_eq(sidmap_insert(&map, 1, VAL(1)), 0);
    cr_assert_null(sidmap_find(&map, 0));
    cr_assert_null(sidmap_remove(&map, 0));
    cr_assert_eq(map.len, 1);
}

#define MANY 200000

Test(sidmap, growth_keeps_every_key)
{
    size_t last_cap = 0;
    void *last_slots = NULL;
    size_t growths = 0;
    for (uint32_t k = 1; k <= MANY; k++) {
        cr_assert_eq(sidmap_insert(&map, k, VAL(k * 2u)), 0);
        cr_assert_eq(map.cap & (map.cap - 1), 0, "capacity %zu not a power of two", map.cap);
        cr_assert_leq(map.len * 4, map.cap * 3, "over 3/4 full: %zu of %zu", map.len, map.cap);
        if (map.cap != last_cap) {
            growths++;
            last_cap = map.cap;
        } else {
            cr_assert_eq((void *)map.slots, last_slots, "moved without growing");
        }
        last_slots = map.slots;
    }
    cr_assert_eq(map.len, MANY);
    cr_assert_lt(growths, 20);
    for (uint32_t k = 1; k <= MANY; k++) {
        cr_assert_eq(sidmap_find(&map, k), VAL(k * 2u), "key %u", k);
    }
    cr_assert_null(sidmap_find(&map, MANY + 1));

    /* Spread keys too (high bits set). */
    for (uint32_t k = 1; k <= 1000; k++) {
        cr_assert_eq(sidmap_insert(&map, k * 2654435761u | 0x80000000u, VAL(k)), 0);
    }
    for (uint32_t k = 1; k <= 1000; k++) {
        cr_assert_eq(sidmap_find(&map, k * 2654435761u | 0x80000000u), VAL(k));
    }
}

static uint64_t rng_state;

static uint64_t rng(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

#define KEYS 3000
#define OPS  200000

/* Check every key in [1, KEYS] against the reference. */
static void check_all(void *const *ref, size_t ref_len)
{
    cr_assert_eq(map.len, ref_len);
    for (uint32_t k = 1; k <= KEYS; k++) {
        cr_assert_eq(sidmap_find(&map, k), ref[k], "key %u", k);
    }
}

Test(sidmap, randomized_against_array)
{
    /* A small key space keeps the map dense and the probe runs long, so
     * deletions shift entries, wrap around the end, and skip entries that
     * must stay. Values are never NULL, so NULL in ref means absent. */
    static void *ref[KEYS + 1];
    size_t ref_len = 0;
    rng_state = 42;
    for (size_t op = 0; op < OPS; op++) {
        uint32_t k = (uint32_t)(rng() % KEYS) + 1;
        void *v = VAL(op + 1);
        switch (rng() % 3) {
        case 0:
        case 1:
            if (ref[k] == NULL) {
                cr_assert_eq(sidmap_insert(&map, k, v), 0);
                ref[k] = v;
                ref_len++;
            } else {
                cr_assert_eq(sidmap_insert(&map, k, v), -EEXIST);
                cr_assert_eq(sidmap_remove(&map, k), ref[k], "key %u", k);
                ref[k] = NULL;
                ref_len--;
            }
            break;
        default:
            cr_assert_eq(sidmap_find(&map, k), ref[k], "key %u", k);
            break;
        }
        if (op % 5000 == 0) {
            check_all(ref, ref_len);
        }
    }
    check_all(ref, ref_len);
    /* Drain in random order, checking the rest as the map empties. */
    for (size_t left = ref_len; left > 0;) {
        uint32_t k = (uint32_t)(rng() % KEYS) + 1;
        if (ref[k] != NULL) {
            cr_assert_eq(sidmap_remove(&map, k), ref[k]);
            ref[k] = NULL;
            ref_len--;
            left--;
            if (left % 97 == 0) {
                check_all(ref, ref_len);
            }
        }
    }
    cr_assert_eq(map.len, 0);
    check_all(ref, 0);
}

Test(sidmap, iteration_visits_each_once)
{
    enum { N = 5000 };
    static unsigned seen[N + 1];
    for (uint32_t k = 1; k <= N; k++) {
        cr_assert_eq(sidmap_insert(&map, k, VAL(k + 1000000u)), 0);
    }
    /* Remove some so the table has holes to skip. */
    for (uint32_t k = 3; k <= N; k += 3) {
        cr_assert_not_null(sidmap_remove(&map, k));
    }
    size_t visited = 0;
    uint32_t key;
    void *value;
    for (size_t pos = 0; sidmap_next(&map, &pos, &key, &value);) {
        cr_assert(key >= 1 && key <= N, "key %u", key);
        cr_assert_neq(key % 3, 0, "removed key %u visited", key);
        cr_assert_eq(value, VAL(key + 1000000u));
        seen[key]++;
        visited++;
    }
    cr_assert_eq(visited, map.len);
    for (uint32_t k = 1; k <= N; k++) {
        cr_assert_eq(seen[k], k % 3 == 0 ? 0u : 1u, "key %u seen %u times", k, seen[k]);
    }
}

Test(sidmap, deinit_then_reuse)
{
    for (uint32_t k = 1; k <= 100; k++) {
        cr_assert_eq(sidmap_insert(&map, k, VAL(k)), 0);
    }
    sidmap_deinit(&map);
    cr_assert_eq(map.len, 0);
    cr_assert_eq(map.cap, 0);
    cr_assert_null(sidmap_find(&map, 1));
    cr_assert_eq(sidmap_insert(&map, 1, VAL(2)), 0);
    cr_assert_eq(sidmap_find(&map, 1), VAL(2));
}

/* The sid hash before it was keyed: lowbias32, a bijection anyone can
 * invert. */
static uint32_t old_sid_hash(uint32_t key)
{
    key ^= key >> 16;
    key *= 0x7feb352du;
    key ^= key >> 15;
    key *= 0x846ca68bu;
    key ^= key >> 16;
    return key;
}

/* x * inverse(a) == 1 mod 2^32, by Newton's iteration. */
static uint32_t mul_inverse(uint32_t a)
{
    uint32_t x = a;
    for (int i = 0; i < 5; i++) {
        x *= 2 - a * x;
    }
    return x;
}

static uint32_t old_sid_unhash(uint32_t h)
{
    h ^= h >> 16;
    h *= mul_inverse(0x846ca68bu);
    h ^= (h >> 15) ^ (h >> 30);
    h *= mul_inverse(0x7feb352du);
    h ^= h >> 16;
    return h;
}

/*
 * 16,384 sids whose old hash ends in 16 zero bits: in any table of up to
 * 65,536 slots they all had one home slot, so each insert walked a run as
 * long as the sids before it (a client's SUBs quadratic in its number of
 * subscriptions). Keyed, they spread like any others.
 */
Test(sidmap, crafted_sids_keep_short_runs)
{
    enum { N = 16384 };
    for (uint32_t i = 1; i <= N; i++) {
        uint32_t sid = old_sid_unhash(i << 16);
        cr_assert_eq(old_sid_hash(sid), i << 16);
        cr_assert_eq(sidmap_insert(&map, sid, VAL(i)), 0);
    }
    cr_assert_eq(map.cap, 32768);
    size_t run = sidmap_longest_run(&map);
    fprintf(stderr, "sidmap: %d crafted sids in %zu slots: longest run %zu\n", N, map.cap, run);
    cr_assert_lt(run, 256, "a run of %zu slots", run);

    /* What the old hash did with them in the same table: one run. */
    static bool used[32768];
    size_t longest = 0;
    for (uint32_t i = 1; i <= N; i++) {
        size_t j = old_sid_hash(old_sid_unhash(i << 16)) & 32767;
        size_t home = j;
        while (used[j]) {
            j = (j + 1) & 32767;
        }
        used[j] = true;
        longest = ((j - home) & 32767) > longest ? (j - home) & 32767 : longest;
    }
    cr_assert_eq(longest, N - 1);
}

Test(sidmap, sequential_sids_spread_evenly)
{
    enum { N = 49152 }; /* 3/4 of 65,536 */
    for (uint32_t k = 1; k <= N; k++) {
        cr_assert_eq(sidmap_insert(&map, k, VAL(k)), 0);
    }
    size_t run = sidmap_longest_run(&map);
    fprintf(stderr, "sidmap: sids 1..%d in %zu slots: longest run %zu\n", N, map.cap, run);
    cr_assert_lt(run, 256, "a run of %zu slots", run);
}

/* A map that lost most of its entries gives its slots back, and an empty
 * one holds nothing. */
Test(sidmap, shrinks_when_mostly_empty)
{
    enum { N = 100000 };
    for (uint32_t k = 1; k <= N; k++) {
        cr_assert_eq(sidmap_insert(&map, k, VAL(k)), 0);
    }
    size_t big = map.cap;
    for (uint32_t k = 1; k <= N - 10; k++) {
        cr_assert_eq(sidmap_remove(&map, k), VAL(k));
        cr_assert(map.len * 4 >= map.cap || map.cap <= 4, "%zu of %zu", map.len, map.cap);
    }
    cr_assert_lt(map.cap, 64, "still %zu slots for 10 entries (had %zu)", map.cap, big);
    for (uint32_t k = N - 9; k <= N; k++) {
        cr_assert_eq(sidmap_find(&map, k), VAL(k));
        cr_assert_eq(sidmap_remove(&map, k), VAL(k));
    }
    cr_assert_eq(map.cap, 0);
    cr_assert_null(map.slots);
}

/* What an entry is charged bounds the slots' bytes per entry. */
Test(sidmap, entry_charge_bounds_the_slots)
{
    size_t max = sidmap_entry_bytes_max();
    for (uint32_t k = 1; k <= 5000; k++) {
        cr_assert_eq(sidmap_insert(&map, k, VAL(k)), 0);
        cr_assert_leq(mem_footprint(map.cap * sizeof(struct sidmap_slot)), map.len * max);
    }
    for (uint32_t k = 1; k < 5000; k++) {
        sidmap_remove(&map, k);
        cr_assert_leq(mem_footprint(map.cap * sizeof(struct sidmap_slot)), map.len * max);
    }
}
