/*
 * test_matchcache.c - the match cache's index on its own: its size follows
 * the subscriptions within what they are charged, and does not flap when
 * a client alternates one add and one remove; it finds what it stored
 * until the next invalidation, and nothing after it, also when the 32-bit
 * generation of its slots wraps; it stops taking subjects at 3/4 full and
 * takes only short subjects that matched at most one node; and subjects
 * crafted to share a home slot, under a key the crafter knew, cost a
 * bounded probe and spread under another key; and the inline comparison
 * of subjects sees every byte. The values it holds are
 * never looked into here: distinct addresses stand for nodes' records.
 */
#include <criterion/criterion.h>

#include "hash.h"
#include "bytes.h"
#include "matchcache.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct matchcache *cache;

static void setup(void)
{
    hash_seed_fixed(1);
    cache = malloc(sizeof(*cache));
    cr_assert_not_null(cache);
    matchcache_init(cache);
}

static void teardown(void)
{
    matchcache_deinit(cache);
    free(cache);
}

TestSuite(matchcache, .init = setup, .fini = teardown, .timeout = 60);

/* A distinct, never dereferenced stand-in for a node's record. */
static const struct node_extra *record(size_t i)
{
    static max_align_t words[4096];
    return (const struct node_extra *)(void *)&words[i % 4096];
}

static int subject_of(char *buf, size_t len, const char *prefix, size_t i)
{
    return snprintf(buf, len, "%s.%zu", prefix, i);
}

static void store(const char *s, size_t n, const struct node_extra *x)
{
    matchcache_index_store(cache, hash_subject(s, strlen(s)), s, strlen(s), n, x);
}

static const struct matchcache_index_entry *find(const char *s)
{
    return matchcache_index_find(cache, hash_subject(s, strlen(s)), s, strlen(s));
}

/* What an add or a remove does to the cache. */
static void change(size_t subs)
{
    matchcache_invalidate(cache);
    matchcache_fit(cache, subs);
}

/* Whatever index there is: big enough and within its charge; and none
 * missing from MATCHCACHE_INDEX_MIN_SUBS up. */
static void check_size(size_t subs)
{
    if (cache->index == NULL) {
        cr_assert_lt(subs, MATCHCACHE_INDEX_MIN_SUBS, "%zu subscriptions have an index", subs);
        cr_assert_eq(matchcache_index_bytes(cache), 0);
        return;
    }
    cr_assert_eq((uintptr_t)cache->index % 64, 0, "slots are cache lines");
    cr_assert_geq(cache->index_cap * 3, subs * 4, "%zu slots for %zu", cache->index_cap, subs);
    cr_assert_leq(matchcache_index_bytes(cache), subs * MATCHCACHE_INDEX_COST,
                  "%zu bytes for %zu subscriptions", matchcache_index_bytes(cache), subs);
}

/* Up to 20,000 subscriptions and back to none, one at a time: always
 * within the charge and big enough, and resized a few dozen times each
 * way (about 5% apart), not at every step. */
Test(matchcache, index_size_follows_the_subscriptions)
{
    enum { TOP = 20000 };
    size_t resizes = 0;
    size_t cap = 0;
    for (size_t subs = 1; subs <= TOP; subs++) {
        change(subs);
        check_size(subs);
        if (subs < MATCHCACHE_INDEX_MIN_SUBS) {
            cr_assert_null(cache->index, "no index is made for %zu subscriptions", subs);
        }
        resizes += cache->index_cap != cap;
        cap = cache->index_cap;
    }
    fprintf(stderr, "matchcache: %zu resizes from 1 to %d subscriptions\n", resizes, TOP);
    cr_assert_leq(resizes, 120);
    resizes = 0;
    for (size_t subs = TOP; subs-- > 0;) {
        change(subs);
        check_size(subs);
        resizes += cache->index_cap != cap;
        cap = cache->index_cap;
    }
    cr_assert_leq(resizes, 120);
    cr_assert_null(cache->index);
}

/* One subscription added and removed in a loop, at any count: the index
 * is reallocated at most once, however long the loop. That includes the
 * count below which no index is made, and the one below which the index
 * made there no longer fits its charge. */
static void alternate(size_t base)
{
    change(base);
    size_t reallocs = 0;
    const void *mem = cache->index_mem;
    size_t cap = cache->index_cap;
    for (int i = 0; i < 1000; i++) {
        change(base + (size_t)(i & 1));
        reallocs += cache->index_mem != mem || cache->index_cap != cap;
        mem = cache->index_mem;
        cap = cache->index_cap;
    }
    cr_assert_leq(reallocs, 1, "%zu reallocations at %zu subscriptions", reallocs, base);
}

Test(matchcache, alternating_add_and_remove_does_not_resize)
{
    for (size_t base = 64; base < 100000; base = base * 3 / 2) {
        alternate(base);
    }
    alternate(MATCHCACHE_INDEX_MIN_SUBS - 1);
    /* Down from the first index to where it is dropped. */
    change(MATCHCACHE_INDEX_MIN_SUBS);
    size_t kept = MATCHCACHE_INDEX_MIN_SUBS;
    while (cache->index != NULL) {
        change(--kept);
    }
    fprintf(stderr, "matchcache: the first index is kept down to %zu subscriptions\n", kept + 1);
    cr_assert_lt(kept, MATCHCACHE_INDEX_MIN_SUBS - 1, "the index is kept just below its count");
    alternate(kept);
}

/* Is any page of [lo, hi) in a mapping that asks for huge pages (the
 * "hg" of its VmFlags in /proc/self/smaps)? */
static bool huge_advised(uintptr_t lo, uintptr_t hi)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    cr_assert_not_null(f);
    char line[512];
    bool overlaps = false;
    bool advised = false;
    while (!advised && fgets(line, sizeof(line), f) != NULL) {
        unsigned long start;
        unsigned long end;
        if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
            overlaps = start < hi && end > lo;
        } else if (overlaps && strncmp(line, "VmFlags:", 8) == 0) {
            advised = strstr(line, " hg") != NULL;
        }
    }
    fclose(f);
    return advised;
}

/* A large index asks for huge pages under it, from its first page (it
 * starts on a huge page boundary), and that advice goes with it. Here the allocator hands out large
 * blocks from its heap, as glibc does once its mmap threshold has risen past their size (after any
 * larger block was freed): advice given to the heap's pages would outlive
 * the index, and whatever small blocks take those pages later could be
 * backed by 2 MiB pages that no limit counts. */
Test(matchcache, huge_page_advice_goes_with_the_index)
{
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 256 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 512 * 1024 * 1024);
#endif
    change(60000);
    cr_assert_not_null(cache->index);
    uintptr_t lo = (uintptr_t)cache->index;
    uintptr_t hi = lo + cache->index_cap * sizeof(*cache->index);
    void *after = malloc(64); /* the index is not the top of the heap */
    cr_assert_not_null(after);
    if (!huge_advised(lo, hi)) {
        free(after);
        cr_skip_test("no transparent huge pages here");
    }
    cr_assert_eq(lo % (2u * 1024u * 1024u), 0, "the index does not start on a huge page");
    change(0);
    cr_assert_null(cache->index);
    cr_assert(!huge_advised(lo, hi), "the advice outlived the index");
    free(after);
}

/* Found with the record it was stored with, and after an add or remove
 * (an invalidation) not at all, until stored again. */
Test(matchcache, index_holds_until_invalidated)
{
    enum { N = 1000 };
    char s[64];
    change(N);
    for (size_t i = 0; i < N; i++) {
        subject_of(s, sizeof(s), "sensor.reading", i);
        cr_assert_null(find(s));
        store(s, i % 7 == 0 ? 0 : 1, i % 7 == 0 ? NULL : record(i));
    }
    size_t entries;
    matchcache_index_max_probe(cache, &entries);
    cr_assert_eq(entries, N);
    for (size_t i = 0; i < N; i++) {
        subject_of(s, sizeof(s), "sensor.reading", i);
        const struct matchcache_index_entry *e = find(s);
        cr_assert_not_null(e, "%s", s);
        cr_assert_eq(e->x, i % 7 == 0 ? NULL : record(i), "%s", s);
    }
    cr_assert_null(find("sensor.reading"));
    cr_assert_null(find("sensor.reading.1000"));
    cr_assert_null(find("sensor.reading.1 "));

    change(N + 1);
    for (size_t i = 0; i < N; i++) {
        subject_of(s, sizeof(s), "sensor.reading", i);
        cr_assert_null(find(s), "%s survived an invalidation", s);
    }
    store("sensor.reading.5", 1, record(5));
    cr_assert_eq(find("sensor.reading.5")->x, record(5));
}

/* Never more than 3/4 full: the subjects past that are refused (and take
 * the walk), those taken stay found. */
Test(matchcache, index_stops_at_three_quarters)
{
    enum { SUBS = 100, N = 1000 };
    char s[64];
    change(SUBS);
    for (size_t i = 0; i < N; i++) {
        subject_of(s, sizeof(s), "many", i);
        store(s, 1, record(i));
    }
    size_t entries;
    matchcache_index_max_probe(cache, &entries);
    cr_assert_eq(entries, cache->index_cap / 4 * 3, "%zu entries in %zu slots", entries,
                 cache->index_cap);
    size_t found = 0;
    for (size_t i = 0; i < N; i++) {
        subject_of(s, sizeof(s), "many", i);
        const struct matchcache_index_entry *e = find(s);
        if (e != NULL) {
            cr_assert_eq(e->x, record(i));
            found++;
        }
    }
    cr_assert_eq(found, entries);
}

/* Subjects that matched several nodes, and longer subjects, are not
 * indexed; nor is anything without an index. */
Test(matchcache, index_takes_short_subjects_of_one_node)
{
    char longest[MATCHCACHE_INDEX_SUBJECT_MAX + 2];
    memset(longest, 'a', sizeof(longest));
    longest[MATCHCACHE_INDEX_SUBJECT_MAX] = '\0';
    store("no.index.yet", 1, record(1));
    cr_assert_null(find("no.index.yet"));

    change(MATCHCACHE_INDEX_MIN_SUBS);
    store("two.nodes", 2, record(2));
    cr_assert_null(find("two.nodes"));
    store(longest, 1, record(3));
    cr_assert_eq(find(longest)->x, record(3));
    longest[MATCHCACHE_INDEX_SUBJECT_MAX] = 'a';
    longest[MATCHCACHE_INDEX_SUBJECT_MAX + 1] = '\0';
    store(longest, 1, record(4));
    cr_assert_null(find(longest));
}

/*
 * Slots keep the generation's low 32 bits. A slot stored 2^32
 * invalidations ago has the generation the cache comes round to: without
 * clearing the index when the low bits wrap, the stale slot (pointing at
 * a record long freed) would be found again.
 */
Test(matchcache, generation_wrap_clears_the_index)
{
    change(1000);
    cache->gen = ((uint64_t)1 << 32) + 1;
    store("stale.subject", 1, record(9));
    cr_assert_not_null(find("stale.subject"));
    cache->gen = ((uint64_t)2 << 32) - 1; /* 2^32 - 2 invalidations later */
    cr_assert_null(find("stale.subject"));
    matchcache_invalidate(cache);
    cr_assert_eq((uint32_t)cache->gen, 1, "0 marks a slot never written: skipped");
    cr_assert_null(find("stale.subject"), "a slot of 2^32 generations ago is found again");
    store("fresh.subject", 1, record(10));
    cr_assert_eq(find("fresh.subject")->x, record(10));
}

/*
 * Subjects found to share the home slot of "victim.subject" under one key:
 * even with that key (a client cannot learn it, but suppose) they cost a
 * probe of at most MATCHCACHE_INDEX_PROBE_MAX slots and are refused past
 * it; under another key (each broker draws its own at start) they spread
 * over the table like any subjects.
 */
Test(matchcache, crafted_subjects_probe_briefly)
{
    enum { SUBS = 10000, N = 200 };
    static char found[N][32];
    change(SUBS);
    const char *victim = "victim.subject";
    size_t home = matchcache__index_home(cache, hash_subject(victim, strlen(victim)));
    size_t n = 0;
    for (unsigned i = 0; n < N; i++) {
        char s[32];
        int len = snprintf(s, sizeof(s), "attack.%u", i);
        if (matchcache__index_home(cache, hash_subject(s, (size_t)len)) == home) {
            memcpy(found[n++], s, sizeof(s));
        }
    }
    store(victim, 1, record(0));
    for (size_t i = 0; i < N; i++) {
        store(found[i], 1, record(i + 1));
    }
    size_t entries;
    size_t probe = matchcache_index_max_probe(cache, &entries);
    cr_assert_eq(entries, MATCHCACHE_INDEX_PROBE_MAX, "%zu entries", entries);
    cr_assert_lt(probe, MATCHCACHE_INDEX_PROBE_MAX);
    cr_assert_eq(find(victim)->x, record(0));
    for (size_t i = 0; i < N; i++) {
        const struct matchcache_index_entry *e = find(found[i]);
        cr_assert(e == NULL || e->x == record(i + 1), "%s", found[i]);
    }

    hash_seed_fixed(2);
    change(SUBS);
    store(victim, 1, record(0));
    for (size_t i = 0; i < N; i++) {
        store(found[i], 1, record(i + 1));
    }
    probe = matchcache_index_max_probe(cache, &entries);
    cr_assert_eq(entries, N + 1, "%zu entries", entries);
    cr_assert_leq(probe, 3, "longest probe %zu", probe);
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(find(found[i])->x, record(i + 1), "%s", found[i]);
    }
}

/* The inline comparison of subjects, at every length a subject can be
 * cached at: equal bytes are equal, and a difference in any one byte is
 * seen (with the two strings at every alignment within a word). */
Test(matchcache, subjects_compare_byte_for_byte)
{
    char a[MATCHCACHE_SUBJECT_MAX + 8];
    char b[MATCHCACHE_SUBJECT_MAX + 8];
    for (size_t shift = 0; shift < 8; shift++) {
        for (size_t len = 1; len <= MATCHCACHE_SUBJECT_MAX; len++) {
            char *x = a + shift;
            char *y = b + (7 - shift);
            for (size_t i = 0; i < len; i++) {
                x[i] = y[i] = (char)('a' + (i * 7 + len) % 26);
            }
            cr_assert(bytes_same(x, y, len), "length %zu", len);
            for (size_t i = 0; i < len; i++) {
                y[i] ^= 0x20;
                cr_assert(!bytes_same(x, y, len), "length %zu, byte %zu", len, i);
                y[i] ^= 0x20;
            }
        }
    }
}
