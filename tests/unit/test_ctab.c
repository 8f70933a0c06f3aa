/*
 * test_ctab.c - the keyed child table: its three states (empty, one object,
 * a table), growth and shrinking, a randomized run against a plain array,
 * and what it charges per object.
 */
#include <criterion/criterion.h>

#include "ctab.h"
#include "hash.h"
#include "mem.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct obj {
    size_t len;
    char key[24];
};

static const char *obj_key(const void *o, size_t *len)
{
    const struct obj *x = o;
    *len = x->len;
    return x->key;
}

static struct ctab tab;

static void setup(void)
{
    hash_seed_fixed(5);
    tab = (struct ctab){0};
}

static void teardown(void)
{
    ctab_deinit(&tab);
}

TestSuite(ctab, .init = setup, .fini = teardown, .timeout = 60);

static void make(struct obj *o, const char *key)
{
    o->len = strlen(key);
    memcpy(o->key, key, o->len);
}

static void *find(const char *key)
{
    return ctab_find(&tab, key, strlen(key), obj_key);
}

Test(ctab, one_object_is_held_without_a_table)
{
    struct obj a;
    struct obj b;
    struct obj c;
    make(&a, "alpha");
    make(&b, "beta");
    make(&c, "gamma");
    cr_assert_null(find("alpha"));
    cr_assert_eq(ctab_count(&tab), 0);
    cr_assert_eq(ctab_insert(&tab, &a, obj_key), 0);
    cr_assert_eq(ctab_count(&tab), 1);
    cr_assert_eq(ctab_bytes(&tab), 0, "one object needs no table");
    cr_assert_eq(find("alpha"), &a);
    cr_assert_null(find("alph"));
    cr_assert_null(find("alphas"));
    cr_assert_gt(ctab_bytes_after_insert(&tab), 0);
    cr_assert_eq(ctab_insert(&tab, &b, obj_key), 0);
    cr_assert_eq(ctab_bytes(&tab), mem_footprint(sizeof(struct ctab__table) + 4 * 12));
    cr_assert_eq(ctab_insert(&tab, &c, obj_key), 0);
    cr_assert_eq(ctab_count(&tab), 3);
    cr_assert_eq(find("alpha"), &a);
    cr_assert_eq(find("beta"), &b);
    cr_assert_eq(find("gamma"), &c);
    size_t seen = 0;
    void *o;
    for (size_t pos = 0; (o = ctab_next(&tab, &pos)) != NULL;) {
        cr_assert(o == &a || o == &b || o == &c);
        seen++;
    }
    cr_assert_eq(seen, 3);
    ctab_remove(&tab, &b, obj_key);
    ctab_remove(&tab, &a, obj_key);
    cr_assert_eq(ctab_count(&tab), 1);
    cr_assert_eq(ctab_bytes(&tab), 0, "back to one object: the table is gone");
    cr_assert_eq(find("gamma"), &c);
    ctab_remove(&tab, &c, obj_key);
    cr_assert_eq(tab.p, 0);
    cr_assert_null(ctab_next(&tab, &(size_t){0}));
}

static uint64_t rng_state;

static uint64_t rng(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Inserts and removals at random over a small key space, so that the
 * table grows, shrinks, turns into one object and back, and deletions
 * shift runs that wrap around its end; every key checked against a plain
 * array, and the bytes against the charge per object. */
Test(ctab, randomized_against_array)
{
    enum { KEYS = 3000, OPS = 300000 };
    static struct obj objs[KEYS];
    static bool in[KEYS];
    for (size_t i = 0; i < KEYS; i++) {
        objs[i].len = (size_t)snprintf(objs[i].key, sizeof(objs[i].key), "k%zu", i * 7919);
    }
    size_t count = 0;
    size_t max_per = ctab_entry_bytes_max();
    rng_state = 9;
    for (size_t op = 0; op < OPS; op++) {
        /* Phases of mostly inserting and mostly removing. */
        bool fill = (op / 20000) % 2 == 0;
        size_t k = rng() % (op % 3 == 0 ? 5 : KEYS);
        bool insert = (rng() % 4 != 0) == fill;
        struct obj *o = &objs[k];
        if (insert && !in[k]) {
            size_t predicted = ctab_bytes_after_insert(&tab);
            cr_assert_eq(ctab_insert(&tab, o, obj_key), 0);
            cr_assert_eq(ctab_bytes(&tab), predicted, "op %zu", op);
            in[k] = true;
            count++;
        } else if (!insert && in[k]) {
            ctab_remove(&tab, o, obj_key);
            in[k] = false;
            count--;
        }
        cr_assert_eq(ctab_count(&tab), count);
        cr_assert_leq(ctab_bytes(&tab), count * max_per, "op %zu: %zu bytes for %zu", op,
                      ctab_bytes(&tab), count);
        if (op % 997 == 0) {
            for (size_t i = 0; i < KEYS; i++) {
                cr_assert_eq(ctab_find(&tab, objs[i].key, objs[i].len, obj_key),
                             in[i] ? &objs[i] : NULL, "op %zu, key %zu", op, i);
            }
        }
    }
}

Test(ctab, many_objects_keep_short_probes)
{
    enum { N = 100000 };
    static struct obj objs[N];
    for (size_t i = 0; i < N; i++) {
        objs[i].len = (size_t)snprintf(objs[i].key, sizeof(objs[i].key), "%zu", i);
        cr_assert_eq(ctab_insert(&tab, &objs[i], obj_key), 0);
    }
    size_t probe = ctab_max_probe(&tab);
    fprintf(stderr, "ctab: %d objects, longest probe %zu\n", N, probe);
    cr_assert_lt(probe, 64);
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(ctab_find(&tab, objs[i].key, objs[i].len, obj_key), &objs[i]);
    }
}

/* The charge per object: about 4 slots of 12 bytes, plus the header and
 * the allocator's rounding spread over at least 2 objects. */
Test(ctab, entry_charge_is_small)
{
    size_t max = ctab_entry_bytes_max();
    cr_assert_geq(max, 4 * 12);
    cr_assert_leq(max, 4 * 12 + 32, "%zu bytes per object", max);
}
