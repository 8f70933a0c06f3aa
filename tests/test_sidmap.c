/*
 * test_sidmap.c - the sid map: basics, growth, and a randomized run against
 * a plain array, which is where backward-shift deletion would go wrong.
 */
#include <criterion/criterion.h>

#include "sidmap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VAL(n) ((void *)(uintptr_t)(n))

static struct sidmap map;

static void setup(void)
{
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
