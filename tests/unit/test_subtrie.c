/*
 * test_subtrie.c - the subscription trie against the reference matcher.
 *
 * Each subscription of the tests is a `struct titem`: its place in the trie
 * and a small integer id that the checks compare. add() and del() find
 * them by (pattern, queue, id) the way the broker finds its subscriptions
 * by sid, and give the trie only the subscription's place. Tables check
 * single patterns (and that the table agrees with sb_pattern_match()),
 * then several patterns at once, queue groups, removal, a randomized
 * cross-check against brute force, 100,000 literals under one parent,
 * tokens crafted to collide under the old unkeyed hash, what a
 * subscription is charged, and the match cache's index over many
 * subjects.
 */
#include <criterion/criterion.h>

#include "config.h"
#include "ctab.h"
#include "hash.h"
#include "mem.h"
#include "router.h"
#include "sockbus.h"
#include "subtrie.h"
#include "subtrie_node.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A subscription of the tests. */
struct titem {
    struct subtrie_sub sub;
    uintptr_t id;
    const char *pattern; /* as added; the registry's own copies */
    const char *queue;   /* NULL: plain */
};

static uintptr_t id_of(struct subtrie_sub *s)
{
    return ((struct titem *)(void *)((char *)s - offsetof(struct titem, sub)))->id;
}

static struct subtrie *trie;
static struct subtrie_result res;

/* The subscriptions made by add() and addq(), for del() to find. */
static struct titem **reg;
static size_t reg_len;
static size_t reg_cap;

static void item_free(struct titem *it)
{
    free((char *)it->pattern);
    free((char *)it->queue);
    free(it);
}

static void setup(void)
{
    hash_seed_fixed(1);
    cr_assert_eq(subtrie_new(&trie), 0);
    res = (struct subtrie_result){0};
}

static void teardown(void)
{
    subtrie_result_deinit(&res);
    subtrie_free(trie);
    for (size_t i = 0; i < reg_len; i++) {
        item_free(reg[i]);
    }
    free(reg);
    reg = NULL;
    reg_len = reg_cap = 0;
}

TestSuite(subtrie, .init = setup, .fini = teardown, .timeout = 120);

static int addq(const char *pattern, const char *queue, uintptr_t id)
{
    struct titem *it = calloc(1, sizeof(*it));
    cr_assert_not_null(it);
    it->id = id;
    it->pattern = strdup(pattern);
    it->queue = queue ? strdup(queue) : NULL;
    int r = subtrie_add(trie, &it->sub, pattern, strlen(pattern), queue, queue ? strlen(queue) : 0);
    if (r < 0) {
        item_free(it);
        return r;
    }
    if (reg_len == reg_cap) {
        reg_cap = reg_cap ? reg_cap * 2 : 64;
        reg = realloc(reg, reg_cap * sizeof(*reg));
        cr_assert_not_null(reg);
    }
    reg[reg_len++] = it;
    return 0;
}

static int add(const char *pattern, uintptr_t id)
{
    return addq(pattern, NULL, id);
}

/* Remove the newest subscription (pattern, queue, id); -ENOENT if none. */
static int delq(const char *pattern, const char *queue, uintptr_t id)
{
    for (size_t i = reg_len; i-- > 0;) {
        struct titem *it = reg[i];
        if (it->id == id && strcmp(it->pattern, pattern) == 0 &&
            (queue == NULL ? it->queue == NULL
                           : it->queue != NULL && strcmp(it->queue, queue) == 0)) {
            subtrie_remove(trie, &it->sub, pattern, strlen(pattern));
            cr_assert_null(it->sub.node, "the place is cleared");
            item_free(it);
            reg[i] = reg[--reg_len];
            return 0;
        }
    }
    return -ENOENT;
}

static int del(const char *pattern, uintptr_t id)
{
    return delq(pattern, NULL, id);
}

static int cmp_id(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a;
    uintptr_t y = *(const uintptr_t *)b;
    return (x > y) - (x < y);
}

/* Match subject into res and return the ids, sorted, in a fresh array. */
static uintptr_t *match_sorted(const char *subject, size_t *n)
{
    cr_assert_eq(subtrie_match(trie, subject, strlen(subject), &res), 0, "match %s", subject);
    uintptr_t *ids = malloc((res.len + 1) * sizeof(*ids));
    cr_assert_not_null(ids);
    for (size_t i = 0; i < res.len; i++) {
        ids[i] = id_of(res.items[i]);
    }
    qsort(ids, res.len, sizeof(*ids), cmp_id);
    *n = res.len;
    return ids;
}

/* The match of subject is exactly the multiset want[0..n). */
static void expect_ids(const char *subject, const uintptr_t *want, size_t n)
{
    size_t got_n;
    uintptr_t *got = match_sorted(subject, &got_n);
    uintptr_t *sorted = malloc((n + 1) * sizeof(*sorted));
    cr_assert_not_null(sorted);
    if (n > 0) {
        memcpy(sorted, want, n * sizeof(*sorted));
    }
    qsort(sorted, n, sizeof(*sorted), cmp_id);
    cr_assert_eq(got_n, n, "%s: %zu items, want %zu", subject, got_n, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(got[i], sorted[i], "%s: item %zu is %zu, want %zu", subject, i, (size_t)got[i],
                     (size_t)sorted[i]);
    }
    free(sorted);
    free(got);
}

#define EXPECT(subject, ...)                                                                       \
    do {                                                                                           \
        const uintptr_t want_[] = {__VA_ARGS__};                                                   \
        expect_ids(subject, want_, sizeof(want_) / sizeof(want_[0]));                              \
    } while (0)

#define EXPECT_NONE(subject) expect_ids(subject, NULL, 0)

/* --- One pattern, one subject ------------------------------------------ */

struct pair {
    const char *pattern;
    const char *subject;
    bool match;
};

static const struct pair pairs[] = {
    /* literal */
    {"a", "a", true},
    {"a", "b", false},
    {"a.b.c", "a.b.c", true},
    {"a.b.c", "a.b", false},
    {"a.b.c", "a.b.c.d", false},
    {"a.b", "a.bb", false},
    {"ab", "a", false},
    {"foo.bar", "foo.baz", false},
    /* '*': exactly one token */
    {"*", "a", true},
    {"*", "a.b", false},
    {"a.*", "a.b", true},
    {"a.*", "a", false},
    {"a.*", "a.b.c", false},
    {"a.*.c", "a.x.c", true},
    {"a.*.c", "a.x.y.c", false},
    {"a.*.c", "a.c", false},
    {"*.*", "a.b", true},
    {"*.*", "a", false},
    {"*.b.*", "a.b.c", true},
    {"*.b.*", "a.c.c", false},
    /* '>': one or more tokens */
    {">", "a", true},
    {">", "a.b.c", true},
    {"a.>", "a", false},
    {"a.>", "a.b", true},
    {"a.>", "a.b.c.d", true},
    {"a.>", "b.c", false},
    {"a.b.>", "a.b", false},
    /* mixed */
    {"*.>", "a", false},
    {"*.>", "a.b", true},
    {"*.b.>", "a.b.c.d", true},
    {"*.b.>", "a.c.c.d", false},
    {"a.*.>", "a.b.c", true},
    {"a.*.>", "a.b", false},
    /* the '$' rule: only a wildcard FIRST token is barred */
    {">", "$SYS", false},
    {">", "$SYS.STATS", false},
    {"*", "$SYS", false},
    {"*.STATS", "$SYS.STATS", false},
    {"*.>", "$SYS.EVENT.CONNECT", false},
    {"$SYS.>", "$SYS.STATS", true},
    {"$SYS.*", "$SYS.STATS", true},
    {"$SYS.STATS", "$SYS.STATS", true},
    {"a.*", "a.$b", true},
    {"a.>", "a.$b.c", true},
    {">", "a$.b", true},
    {"*", "x$", true},
};

Test(subtrie, single_pattern_table)
{
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        const struct pair *p = &pairs[i];
        /* The table itself must agree with the reference matcher. */
        cr_assert_eq(
            sb_pattern_match(p->pattern, strlen(p->pattern), p->subject, strlen(p->subject)),
            p->match, "table row %zu disagrees with sb_pattern_match", i);
        cr_assert_eq(add(p->pattern, i + 1), 0, "add %s", p->pattern);
        if (p->match) {
            EXPECT(p->subject, i + 1);
        } else {
            EXPECT_NONE(p->subject);
        }
        cr_assert_eq(del(p->pattern, i + 1), 0, "remove %s", p->pattern);
        cr_assert_eq(subtrie_count(trie), 0);
        cr_assert_eq(subtrie_node_count(trie), 0, "nodes left after %s", p->pattern);
    }
}

Test(subtrie, all_patterns_at_once)
{
    size_t n = sizeof(pairs) / sizeof(pairs[0]);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(add(pairs[i].pattern, i + 1), 0);
    }
    cr_assert_eq(subtrie_count(trie), n);
    /* Every subject of the table against every pattern of the table. */
    for (size_t s = 0; s < n; s++) {
        const char *subject = pairs[s].subject;
        uintptr_t want[sizeof(pairs) / sizeof(pairs[0])];
        size_t want_n = 0;
        for (size_t i = 0; i < n; i++) {
            if (sb_pattern_match(pairs[i].pattern, strlen(pairs[i].pattern), subject,
                                 strlen(subject))) {
                want[want_n++] = i + 1;
            }
        }
        expect_ids(subject, want, want_n);
    }
}

/* --- Several patterns -------------------------------------------------- */

Test(subtrie, mixed_patterns)
{
    cr_assert_eq(add("orders.eu.new", 1), 0);
    cr_assert_eq(add("orders.*.new", 2), 0);
    cr_assert_eq(add("orders.>", 3), 0);
    cr_assert_eq(add(">", 4), 0);
    cr_assert_eq(add("*.eu.*", 5), 0);
    cr_assert_eq(add("orders.us.new", 6), 0);
    cr_assert_eq(add("$SYS.>", 7), 0);

    EXPECT("orders.eu.new", 1, 2, 3, 4, 5);
    EXPECT("orders.us.new", 2, 3, 4, 6);
    EXPECT("orders.eu", 3, 4);
    EXPECT("orders", 4);
    EXPECT("billing.eu.x", 4, 5);
    EXPECT("orders.eu.new.late", 3, 4);
    EXPECT("$SYS.STATS", 7);
    EXPECT_NONE("$SYS");
}

Test(subtrie, same_item_under_two_patterns_comes_twice)
{
    cr_assert_eq(add("a.b", 1), 0);
    cr_assert_eq(add("a.*", 1), 0);
    cr_assert_eq(add(">", 1), 0);
    cr_assert_eq(add("a.b", 2), 0); /* another item, same pattern */
    cr_assert_eq(subtrie_count(trie), 4);

    EXPECT("a.b", 1, 1, 1, 2);
    EXPECT("a.c", 1, 1);
    EXPECT("z", 1);

    cr_assert_eq(del("a.*", 1), 0);
    EXPECT("a.b", 1, 1, 2);
    cr_assert_eq(del("a.b", 1), 0);
    EXPECT("a.b", 1, 2);
}

Test(subtrie, deepest_subject)
{
    /* 512 one-byte tokens: 1023 bytes, the deepest valid subject. */
    char subject[SB_SUBJECT_MAX + 1];
    char stars[SB_SUBJECT_MAX + 1];
    size_t len = 0;
    for (size_t i = 0; i < 512; i++) {
        if (i > 0) {
            subject[len] = '.';
            stars[len] = '.';
            len++;
        }
        subject[len] = 'a';
        stars[len] = '*';
        len++;
    }
    subject[len] = '\0';
    stars[len] = '\0';
    cr_assert_eq(add(subject, 1), 0);
    cr_assert_eq(add(stars, 2), 0);
    cr_assert_eq(add("a.>", 3), 0);
    cr_assert_eq(subtrie_node_count(trie), 512 + 512 + 1);

    cr_assert_eq(subtrie_match(trie, subject, len, &res), 0);
    cr_assert_eq(res.len, 3);
    cr_assert_eq(subtrie_match(trie, subject, len - 2, &res), 0); /* 511 tokens */
    cr_assert_eq(res.len, 1);
    cr_assert_eq(id_of(res.items[0]), 3);

    cr_assert_eq(del(subject, 1), 0);
    cr_assert_eq(del(stars, 2), 0);
    cr_assert_eq(del("a.>", 3), 0);
    cr_assert_eq(subtrie_node_count(trie), 0);
}

Test(subtrie, result_is_reset_and_reused)
{
    cr_assert_eq(add("a.>", 1), 0);
    cr_assert_eq(add("a.b", 2), 0);
    EXPECT("a.b", 1, 2);
    struct subtrie_sub **storage = res.items;
    size_t cap = res.cap;
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(subtrie_match(trie, "a.b", 3, &res), 0);
        cr_assert_eq(res.len, 2);
    }
    /* Steady state: the caller's vector was neither grown nor moved. */
    cr_assert_eq(res.items, storage);
    cr_assert_eq(res.cap, cap);
    EXPECT_NONE("b");
}

/* --- Queue groups ------------------------------------------------------ */

/* Count how often each id in [0, 64) comes out over `rounds` matches. */
static void tally(const char *subject, int rounds, size_t *counts, size_t per_match)
{
    for (int r = 0; r < rounds; r++) {
        cr_assert_eq(subtrie_match(trie, subject, strlen(subject), &res), 0);
        cr_assert_eq(res.len, per_match, "round %d: %zu items", r, res.len);
        for (size_t i = 0; i < res.len; i++) {
            uintptr_t id = id_of(res.items[i]);
            cr_assert_lt(id, 64);
            counts[id]++;
        }
    }
}

Test(subtrie, queue_group_round_robin_is_exact)
{
    cr_assert_eq(addq("work.*", "q", 1), 0);
    cr_assert_eq(addq("work.*", "q", 2), 0);
    cr_assert_eq(addq("work.*", "q", 3), 0);
    cr_assert_eq(add("work.*", 10), 0);       /* plain, same pattern */
    cr_assert_eq(addq("work.>", "q", 4), 0);  /* same name, other pattern: */
    cr_assert_eq(addq("work.>", "q", 5), 0);  /* another group */
    cr_assert_eq(addq("work.*", "r", 6), 0);  /* other name, same pattern */
    cr_assert_eq(addq("other.*", "q", 7), 0); /* does not match */
    cr_assert_eq(subtrie_count(trie), 8);

    size_t counts[64] = {0};
    /* Per match: 10, one of q@work.*, one of q@work.>, 6. */
    tally("work.a", 60, counts, 4);
    cr_assert_eq(counts[1], 20);
    cr_assert_eq(counts[2], 20);
    cr_assert_eq(counts[3], 20);
    cr_assert_eq(counts[4], 30);
    cr_assert_eq(counts[5], 30);
    cr_assert_eq(counts[6], 60);
    cr_assert_eq(counts[7], 0);
    cr_assert_eq(counts[10], 60);

    /* A member leaves: the rest share the load exactly. */
    cr_assert_eq(delq("work.*", "q", 2), 0);
    memset(counts, 0, sizeof(counts));
    tally("work.a", 40, counts, 4);
    cr_assert_eq(counts[1], 20);
    cr_assert_eq(counts[2], 0);
    cr_assert_eq(counts[3], 20);
}

/* The member of group q@"g" in the result. */
static uintptr_t next_member(void)
{
    cr_assert_eq(subtrie_match(trie, "g", 1, &res), 0);
    cr_assert_eq(res.len, 1);
    return id_of(res.items[0]);
}

Test(subtrie, queue_group_rotation_survives_removal)
{
    for (uintptr_t id = 1; id <= 4; id++) {
        cr_assert_eq(addq("g", "q", id), 0);
    }
    cr_assert_eq(next_member(), 1);
    cr_assert_eq(next_member(), 2);
    /* Removing one already served must not skip the next in line. */
    cr_assert_eq(delq("g", "q", 1), 0);
    cr_assert_eq(next_member(), 3);
    /* Removing the next in line passes the turn to the one after. */
    cr_assert_eq(delq("g", "q", 4), 0);
    cr_assert_eq(next_member(), 2);
    cr_assert_eq(next_member(), 3);
    cr_assert_eq(next_member(), 2);
    /* Removing the last member deletes the group. */
    cr_assert_eq(delq("g", "q", 2), 0);
    cr_assert_eq(delq("g", "q", 3), 0);
    EXPECT_NONE("g");
    cr_assert_eq(subtrie_count(trie), 0);
    cr_assert_eq(subtrie_node_count(trie), 0);
}

/* --- Removal ----------------------------------------------------------- */

Test(subtrie, removal_frees_nodes)
{
    cr_assert_eq(add("a.b.c", 1), 0);
    cr_assert_eq(subtrie_node_count(trie), 3);
    cr_assert_eq(add("a.b.d", 2), 0);
    cr_assert_eq(subtrie_node_count(trie), 4);
    cr_assert_eq(add("a.*.>", 3), 0);
    cr_assert_eq(subtrie_node_count(trie), 6);
    cr_assert_eq(addq("a.b", "q", 4), 0);
    cr_assert_eq(subtrie_node_count(trie), 6);
    cr_assert_eq(subtrie_count(trie), 4);

    cr_assert_eq(del("a.b.c", 1), 0);
    cr_assert_eq(subtrie_node_count(trie), 5);
    cr_assert_eq(del("a.*.>", 3), 0);
    cr_assert_eq(subtrie_node_count(trie), 3);
    cr_assert_eq(del("a.b.d", 2), 0);
    cr_assert_eq(subtrie_node_count(trie), 2); /* a.b holds the group */
    cr_assert_eq(delq("a.b", "q", 4), 0);
    cr_assert_eq(subtrie_count(trie), 0);
    cr_assert_eq(subtrie_node_count(trie), 0);

    /* And the trie works as new afterwards. */
    cr_assert_eq(add("a.b.c", 1), 0);
    EXPECT("a.b.c", 1);
}

/* Removal takes a subscription's place, not a search: among many
 * subscriptions of one pattern and one group, it takes exactly the one
 * given, whichever it is, and leaves the order of the others. (Before
 * subscriptions carried their place, removal searched by item and could
 * fail with -ENOENT; a place cannot be absent, so those cases are gone.) */
Test(subtrie, remove_takes_exactly_its_subscription)
{
    for (uintptr_t id = 1; id <= 6; id++) {
        cr_assert_eq(add("a.b", id), 0);
        cr_assert_eq(addq("a.b", "q", 100 + id), 0);
    }
    cr_assert_eq(subtrie_count(trie), 12);
    cr_assert_eq(subtrie_node_count(trie), 2);
    /* The first, a middle one, the last. */
    cr_assert_eq(del("a.b", 1), 0);
    cr_assert_eq(del("a.b", 4), 0);
    cr_assert_eq(del("a.b", 6), 0);
    cr_assert_eq(delq("a.b", "q", 103), 0);
    cr_assert_eq(subtrie_count(trie), 8);
    cr_assert_eq(subtrie_match(trie, "a.b", 3, &res), 0);
    cr_assert_eq(res.len, 4); /* 2, 3, 5 and one member of q */
    /* Plain subscriptions come in the order they were made. */
    cr_assert_eq(id_of(res.items[0]), 2);
    cr_assert_eq(id_of(res.items[1]), 3);
    cr_assert_eq(id_of(res.items[2]), 5);
    cr_assert_geq(id_of(res.items[3]), 101);
    cr_assert_eq(del("a.b", 4), -ENOENT); /* the test's own bookkeeping */
    for (uintptr_t id = 1; id <= 6; id++) {
        del("a.b", id);
        delq("a.b", "q", 100 + id);
    }
    cr_assert_eq(subtrie_count(trie), 0);
    cr_assert_eq(subtrie_node_count(trie), 0);
}

Test(subtrie, invalid_input_is_einval)
{
    const char *bad[] = {"a..b", ".a", "a.", "a.>.b", ">.a", "a b", "a.b*", "a>", "\x7f"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(add(bad[i], 1), -EINVAL, "add %s", bad[i]);
    }
    struct subtrie_sub s = {0};
    cr_assert_eq(subtrie_add(trie, &s, "a", 0, NULL, 0), -EINVAL);
    cr_assert_eq(subtrie_add(trie, &s, "a", 1, NULL, 3), -EINVAL); /* queue_len, no name */
    cr_assert_eq(subtrie_count(trie), 0);
    cr_assert_eq(subtrie_node_count(trie), 0);

    cr_assert_eq(add(">", 1), 0);
    cr_assert_eq(subtrie_match(trie, "a", 0, &res), -EINVAL);
    cr_assert_eq(res.len, 0);
    static char longest[SB_SUBJECT_MAX + 2];
    memset(longest, 'a', sizeof(longest));
    cr_assert_eq(subtrie_match(trie, longest, SB_SUBJECT_MAX, &res), 0);
    cr_assert_eq(res.len, 1);
    cr_assert_eq(subtrie_match(trie, longest, SB_SUBJECT_MAX + 1, &res), -EINVAL);
    cr_assert_eq(res.len, 0);
}

/* --- Randomized cross-check against sb_pattern_match() ----------------- */

static uint64_t rng_state;

static uint64_t rng(void) /* splitmix64: fixed seed, reproducible failures */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static size_t rng_below(size_t n)
{
    return (size_t)(rng() % n);
}

/* A small alphabet so that patterns and subjects collide often; "$d" so the
 * '$' rule is exercised. */
static const char *const alphabet[] = {"a", "b", "c", "$d"};
#define ALPHABET_N (sizeof(alphabet) / sizeof(alphabet[0]))
#define MAX_TOKENS 5
#define STR_MAX    (MAX_TOKENS * 3 + 1)

static void random_subject(char *out)
{
    size_t n = 1 + rng_below(MAX_TOKENS);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            strcat(out, ".");
        }
        strcat(out, alphabet[rng_below(ALPHABET_N)]);
    }
}

static void random_pattern(char *out)
{
    size_t n = 1 + rng_below(MAX_TOKENS - 1);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            strcat(out, ".");
        }
        size_t r = rng_below(10);
        if (i == n - 1 && r == 0) {
            strcat(out, ">");
        } else if (r <= 2) {
            strcat(out, "*");
        } else {
            strcat(out, alphabet[rng_below(ALPHABET_N)]);
        }
    }
}

#define PLAIN_N       3000
#define PLAIN_IDS     1000 /* ids repeat: an item under up to 3 patterns */
#define GROUPED_N     600
#define GROUP_ID_BASE 100000
#define SUBJECTS_N    2000

struct entry {
    char pattern[STR_MAX];
    const char *queue; /* NULL: plain */
    struct titem item; /* its place and its id */
    uintptr_t id;
    size_t group; /* grouped: index of the first entry of its (pattern, queue) */
    bool present;
};

static struct entry entries[PLAIN_N + GROUPED_N];

static void build_entries(void)
{
    static const char *const queues[] = {"q1", "q2"};
    for (size_t i = 0; i < PLAIN_N; i++) {
        struct entry *e = &entries[i];
        e->id = i % PLAIN_IDS + 1;
        e->queue = NULL;
        bool again;
        do { /* one item may not be added twice under one pattern */
            random_pattern(e->pattern);
            again = false;
            for (size_t j = e->id - 1; j < i; j += PLAIN_IDS) {
                again = again || strcmp(entries[j].pattern, e->pattern) == 0;
            }
        } while (again);
    }
    for (size_t i = PLAIN_N; i < PLAIN_N + GROUPED_N; i++) {
        struct entry *e = &entries[i];
        random_pattern(e->pattern);
        e->queue = queues[rng_below(2)];
        e->id = GROUP_ID_BASE + i;
        e->group = i;
        for (size_t j = PLAIN_N; j < i; j++) {
            if (strcmp(entries[j].pattern, e->pattern) == 0 &&
                strcmp(entries[j].queue, e->queue) == 0) {
                e->group = j;
                break;
            }
        }
    }
}

static int entry_add(struct entry *e)
{
    e->present = true;
    e->item.id = e->id;
    return subtrie_add(trie, &e->item.sub, e->pattern, strlen(e->pattern), e->queue,
                       e->queue ? strlen(e->queue) : 0);
}

static void entry_remove(struct entry *e)
{
    e->present = false;
    subtrie_remove(trie, &e->item.sub, e->pattern, strlen(e->pattern));
}

/* What the present entries are charged bounds what the trie holds. */
static void charges_bound_the_trie(void)
{
    size_t charged = 0;
    for (size_t i = 0; i < PLAIN_N + GROUPED_N; i++) {
        const struct entry *e = &entries[i];
        if (e->present) {
            charged +=
                subtrie_cost(e->pattern, strlen(e->pattern), e->queue ? strlen(e->queue) : 0);
        }
    }
    size_t held = subtrie_heap_bytes(trie);
    cr_assert_geq(charged, held, "charged %zu, the trie holds %zu", charged, held);
}

static bool entry_matches(const struct entry *e, const char *subject)
{
    return sb_pattern_match(e->pattern, strlen(e->pattern), subject, strlen(subject));
}

/* Plain items: the same multiset as brute force. Groups: exactly one member
 * of each present, matching (pattern, queue) group, and nothing else. */
static void cross_check(size_t subjects)
{
    static uintptr_t want[PLAIN_N];
    static size_t group_hits[PLAIN_N + GROUPED_N];
    static bool group_alive[PLAIN_N + GROUPED_N]; /* has a present member */
    size_t n_entries = PLAIN_N + GROUPED_N;
    memset(group_alive, 0, sizeof(group_alive));
    for (size_t i = PLAIN_N; i < n_entries; i++) {
        group_alive[entries[i].group] |= entries[i].present;
    }
    for (size_t s = 0; s < subjects; s++) {
        char subject[STR_MAX];
        random_subject(subject);

        size_t got_n;
        uintptr_t *got = match_sorted(subject, &got_n);
        size_t want_n = 0;
        for (size_t i = 0; i < PLAIN_N; i++) {
            if (entries[i].present && entry_matches(&entries[i], subject)) {
                want[want_n++] = entries[i].id;
            }
        }
        qsort(want, want_n, sizeof(*want), cmp_id);

        size_t plain_n = 0;
        while (plain_n < got_n && got[plain_n] < GROUP_ID_BASE) {
            plain_n++;
        }
        cr_assert_eq(plain_n, want_n, "%s: %zu plain items, want %zu", subject, plain_n, want_n);
        cr_assert_eq(memcmp(got, want, want_n * sizeof(*want)), 0, "%s: plain items differ",
                     subject);

        memset(group_hits, 0, sizeof(group_hits));
        for (size_t i = plain_n; i < got_n; i++) {
            const struct entry *e = &entries[got[i] - GROUP_ID_BASE];
            cr_assert(e->present, "%s: removed member %zu matched", subject, (size_t)e->id);
            cr_assert(entry_matches(e, subject), "%s: member of %s matched", subject, e->pattern);
            group_hits[e->group]++;
        }
        for (size_t i = PLAIN_N; i < n_entries; i++) {
            const struct entry *e = &entries[i];
            if (e->group == i) {
                size_t want_hits = group_alive[i] && entry_matches(e, subject) ? 1 : 0;
                cr_assert_eq(group_hits[i], want_hits, "%s: group %s/%s drew %zu members", subject,
                             e->pattern, e->queue, group_hits[i]);
            }
        }
        free(got);
    }
}

Test(subtrie, randomized_against_brute_force)
{
    rng_state = 0x5eedu;
    build_entries();
    size_t n_entries = PLAIN_N + GROUPED_N;
    for (size_t i = 0; i < n_entries; i++) {
        cr_assert_eq(entry_add(&entries[i]), 0, "add %s", entries[i].pattern);
    }
    cr_assert_eq(subtrie_count(trie), n_entries);
    cross_check(SUBJECTS_N);
    charges_bound_the_trie();

    /* Remove a random half, check again, then the rest. */
    size_t order[PLAIN_N + GROUPED_N];
    for (size_t i = 0; i < n_entries; i++) {
        order[i] = i;
    }
    for (size_t i = n_entries - 1; i > 0; i--) {
        size_t j = rng_below(i + 1);
        size_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    size_t half = n_entries / 2;
    for (size_t i = 0; i < half; i++) {
        entry_remove(&entries[order[i]]);
    }
    cr_assert_eq(subtrie_count(trie), n_entries - half);
    cross_check(SUBJECTS_N / 2);
    charges_bound_the_trie();

    for (size_t i = half; i < n_entries; i++) {
        entry_remove(&entries[order[i]]);
    }
    cr_assert_eq(subtrie_count(trie), 0);
    cr_assert_eq(subtrie_node_count(trie), 0);
    cross_check(100);
}

/* --- Scale ------------------------------------------------------------- */

#define BULK_N 100000

Test(subtrie, many_literals_under_one_parent)
{
    static struct titem items[BULK_N];
    static char patterns[BULK_N][16];
    for (size_t i = 0; i < BULK_N; i++) {
        int len = snprintf(patterns[i], sizeof(patterns[i]), "bulk.%zu", i);
        items[i].id = i + 1;
        cr_assert_eq(subtrie_add(trie, &items[i].sub, patterns[i], (size_t)len, NULL, 0), 0);
    }
    cr_assert_eq(add("bulk.*", BULK_N + 1), 0);
    cr_assert_eq(subtrie_count(trie), BULK_N + 1);
    cr_assert_eq(subtrie_node_count(trie), 1 + BULK_N + 1);
    /* Keyed, even-spread hashing: 100,000 children probe briefly. */
    cr_assert_lt(subtrie_max_probe(trie), 64, "longest probe %zu", subtrie_max_probe(trie));

    for (size_t i = 0; i < BULK_N; i++) {
        const char *buf = patterns[i];
        cr_assert_eq(subtrie_match(trie, buf, strlen(buf), &res), 0);
        cr_assert_eq(res.len, 2, "%s: %zu items", buf, res.len);
        uintptr_t literal =
            id_of(res.items[0]) == BULK_N + 1 ? id_of(res.items[1]) : id_of(res.items[0]);
        cr_assert_eq(literal, i + 1, "%s", buf);
    }
    EXPECT("bulk.none", BULK_N + 1);
    EXPECT_NONE("bulk");

    cr_assert_eq(del("bulk.*", BULK_N + 1), 0);
    for (size_t i = 0; i < BULK_N; i++) {
        subtrie_remove(trie, &items[i].sub, patterns[i], strlen(patterns[i]));
        /* Backward-shift deletion (and shrinking) must keep the survivors
         * findable. */
        if (i % 9973 == 0 && i + 1 < BULK_N) {
            EXPECT(patterns[BULK_N - 1], BULK_N);
        }
    }
    cr_assert_eq(subtrie_count(trie), 0);
    cr_assert_eq(subtrie_node_count(trie), 0);
    EXPECT_NONE("bulk.0");
}

/* The child-table hash before it was keyed: FNV-style steps and fmix64,
 * the same for every process. Kept here to craft tokens that collided. */
static uint64_t old_token_hash(const char *tok, size_t len)
{
    uint64_t h = 0xcbf29ce484222325u ^ len;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, tok, 8);
        h = (h ^ w) * 0x100000001b3u;
        h ^= h >> 29;
        tok += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, tok, len);
    h ^= w;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53u;
    h ^= h >> 33;
    return h;
}

/* `n` distinct 8-character tokens whose old hash has the same low `bits`
 * bits as "sensors", found by brute force (about 2^bits tries each). */
static char (*crafted_tokens(size_t n, unsigned bits))[9]
{
    char(*toks)[9] = calloc(n, sizeof(*toks));
    cr_assert_not_null(toks);
    uint64_t mask = ((uint64_t)1 << bits) - 1;
    uint64_t target = old_token_hash("sensors", 7) & mask;
    uint64_t x = 0;
    for (size_t found = 0; found < n; x++) {
        char tok[9];
        uint64_t v = x;
        for (int i = 0; i < 8; i++) {
            tok[i] = (char)('a' + v % 26);
            v /= 26;
        }
        tok[8] = '\0';
        if ((old_token_hash(tok, 8) & mask) == target) {
            memcpy(toks[found++], tok, 9);
        }
    }
    return toks;
}

/*
 * Tokens crafted to collide under the old unkeyed hash (low 12 bits: one
 * home slot of a 4096-slot table, so with linear probing every lookup
 * among them walks one run as long as their number) land on spread slots
 * under the keyed one: the table they share keeps short probe runs.
 */
Test(subtrie, crafted_tokens_no_longer_collide)
{
    enum { N = 2000, BITS = 12 };
    char(*toks)[9] = crafted_tokens(N, BITS);
    uint64_t mask = ((uint64_t)1 << BITS) - 1;
    /* They did collide: all in one home slot of the old table. */
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(old_token_hash(toks[i], 8) & mask, old_token_hash(toks[0], 8) & mask);
    }
    static bool home[1 << BITS];
    size_t homes = 0;
    for (size_t i = 0; i < N; i++) {
        uint32_t h = ctab_hash(toks[i], 8) & mask;
        homes += !home[h];
        home[h] = true;
    }
    cr_assert_gt(homes, N / 2, "only %zu distinct home slots for %d tokens", homes, N);

    static struct titem items[N];
    char pattern[32];
    for (size_t i = 0; i < N; i++) {
        snprintf(pattern, sizeof(pattern), "sensors.%s", toks[i]);
        items[i].id = i + 1;
        cr_assert_eq(subtrie_add(trie, &items[i].sub, pattern, strlen(pattern), NULL, 0), 0);
    }
    cr_assert_eq(add("sensors.*", N + 1), 0);
    cr_assert_lt(subtrie_max_probe(trie), 32, "a run of %zu", subtrie_max_probe(trie));
    snprintf(pattern, sizeof(pattern), "sensors.%s", toks[N / 2]);
    EXPECT(pattern, N / 2 + 1, N + 1);
    for (size_t i = 0; i < N; i++) {
        snprintf(pattern, sizeof(pattern), "sensors.%s", toks[i]);
        subtrie_remove(trie, &items[i].sub, pattern, strlen(pattern));
    }
    cr_assert_eq(del("sensors.*", N + 1), 0);
    cr_assert_eq(subtrie_node_count(trie), 0);
    free(toks);
}

/* The same crafted tokens against a table of the old layout and hash
 * (linear probing, power-of-two capacity, 3/4 load), to show what the
 * test above guards against: one run as long as the tokens. */
Test(subtrie, crafted_tokens_did_collide_under_the_old_hash)
{
    enum { N = 2000, BITS = 12, CAP = 4096 };
    char(*toks)[9] = crafted_tokens(N, BITS);
    static bool used[CAP];
    size_t longest = 0;
    for (size_t i = 0; i < N; i++) {
        size_t home = old_token_hash(toks[i], 8) & (CAP - 1);
        size_t j = home;
        while (used[j]) {
            j = (j + 1) & (CAP - 1);
        }
        used[j] = true;
        size_t dist = (j - home) & (CAP - 1);
        longest = dist > longest ? dist : longest;
    }
    cr_assert_eq(longest, N - 1, "the old hash put them in one run");
    free(toks);
}

/* 65,536 queue groups on one pattern: each found by its name in O(1)
 * (a keyed table at the node), each member removed in O(1). */
Test(subtrie, many_groups_on_one_pattern)
{
    enum { N = 65536 };
    static struct titem items[N];
    char queue[16];
    for (size_t i = 0; i < N; i++) {
        snprintf(queue, sizeof(queue), "q%zu", i);
        items[i].id = i + 1;
        cr_assert_eq(subtrie_add(trie, &items[i].sub, "g.x", 3, queue, strlen(queue)), 0);
    }
    /* A second member for one group, found by name among the 65,536. */
    struct titem extra = {.id = N + 1};
    cr_assert_eq(subtrie_add(trie, &extra.sub, "g.x", 3, "q77", 3), 0);
    cr_assert_eq(extra.sub.group, items[77].sub.group, "joined the existing group");
    cr_assert_lt(subtrie_max_probe(trie), 64);
    cr_assert_eq(subtrie_match(trie, "g.x", 3, &res), 0);
    cr_assert_eq(res.len, N, "one member per group");
    for (size_t i = 0; i < N; i++) {
        subtrie_remove(trie, &items[i].sub, "g.x", 3);
    }
    cr_assert_eq(subtrie_match(trie, "g.x", 3, &res), 0);
    cr_assert_eq(res.len, 1);
    cr_assert_eq(id_of(res.items[0]), N + 1);
    subtrie_remove(trie, &extra.sub, "g.x", 3);
    cr_assert_eq(subtrie_count(trie), 0);
    cr_assert_eq(subtrie_node_count(trie), 0);
}

/* Round robin across removals, against a model of the rotation: a ring in
 * order of arrival with a cursor. Whatever is removed (the member whose
 * turn it is, one served just before, any other) and whatever joins, the
 * next member served is the model's: nobody skipped, nobody served twice
 * in a row while others wait. */
Test(subtrie, rotation_follows_its_model_across_removals)
{
    enum { POOL = 40, OPS = 20000 };
    static struct titem items[POOL];
    uintptr_t ring[POOL]; /* ids in order of arrival */
    size_t n = 0;
    size_t cursor = 0; /* index into ring of the next to serve */
    bool in[POOL] = {false};
    rng_state = 7;
    uintptr_t last = 0;
    bool alone = false; /* the ring was down to one member since `last` */
    for (size_t op = 0; op < OPS; op++) {
        size_t r = rng_below(10);
        size_t k = rng_below(POOL);
        if (r < 2 && !in[k]) { /* join: at the end of the ring */
            items[k].id = k + 1;
            cr_assert_eq(subtrie_add(trie, &items[k].sub, "rr", 2, "q", 1), 0);
            ring[n++] = k + 1;
            in[k] = true;
        } else if (r < 4 && in[k]) { /* leave */
            subtrie_remove(trie, &items[k].sub, "rr", 2);
            size_t at = 0;
            while (ring[at] != k + 1) {
                at++;
            }
            memmove(&ring[at], &ring[at + 1], (n - at - 1) * sizeof(ring[0]));
            n--;
            if (at < cursor) {
                cursor--;
            }
            if (cursor >= n) {
                cursor = 0;
            }
            alone = alone || n == 1;
            in[k] = false;
        } else if (n > 0) { /* serve */
            cr_assert_eq(subtrie_match(trie, "rr", 2, &res), 0);
            cr_assert_eq(res.len, 1);
            uintptr_t got = id_of(res.items[0]);
            cr_assert_eq(got, ring[cursor], "op %zu: served %zu, the model says %zu", op,
                         (size_t)got, (size_t)ring[cursor]);
            cr_assert(n == 1 || alone || got != last, "op %zu: %zu served twice in a row", op,
                      (size_t)got);
            last = got;
            alone = n == 1;
            cursor = (cursor + 1) % n;
        }
    }
    for (size_t k = 0; k < POOL; k++) {
        if (in[k]) {
            subtrie_remove(trie, &items[k].sub, "rr", 2);
        }
    }
    cr_assert_eq(subtrie_node_count(trie), 0);
}

/* A chain of one-byte tokens costs one small node per token, with no
 * table: the 1023-byte pattern of 512 tokens takes 512 nodes of at most
 * 32 bytes of heap each (it took about 290 each, with an 8-slot table per
 * node). And what a subscription is charged bounds what its nodes take. */
Test(subtrie, long_patterns_cost_little_and_are_charged_more)
{
    char pattern[SB_SUBJECT_MAX + 1];
    size_t len = 0;
    for (size_t i = 0; i < 512; i++) {
        if (i > 0) {
            pattern[len++] = '.';
        }
        pattern[len++] = 'a';
    }
    pattern[len] = '\0';
    size_t node = mem_footprint(24); /* a node of a 1-byte token */
    cr_assert_leq(node, 32, "a node of a one-byte token takes %zu bytes", node);
    size_t cost = subtrie_cost(pattern, len, 0);
    cr_assert_geq(cost, 512 * node, "charged %zu", cost);
    cr_assert_leq(cost, 512 * (node + ctab_entry_bytes_max()) + 1024, "charged %zu", cost);
    cr_assert_eq(add(pattern, 1), 0);
    cr_assert_eq(subtrie_node_count(trie), 512);
    /* A queue group adds its record and its place. */
    cr_assert_gt(subtrie_cost("a.b", 3, 5), subtrie_cost("a.b", 3, 0));
    cr_assert_gt(subtrie_cost("a.*", 3, 0), subtrie_cost("a.b", 3, 0) - ctab_entry_bytes_max());
}

/* The default max_subscription_bytes holds max_subscriptions typical
 * subscriptions: 40-byte patterns of 4 tokens, all distinct. */
Test(subtrie, default_budget_holds_max_subscriptions_typical)
{
    const char *typical = "sensors.building.floor-00001.temperature";
    cr_assert_eq(strlen(typical), 40);
    size_t each = router_sub_cost(typical, 40, 0);
    fprintf(stderr, "subtrie: a subscription to %s is charged %zu bytes\n", typical, each);
    cr_assert_leq((uint64_t)each * BROKER_MAX_SUBSCRIPTIONS_DEFAULT,
                  BROKER_MAX_SUBSCRIPTION_BYTES_DEFAULT, "%zu bytes each", each);
    /* And they really take less than that: the trie of 20,000 of them. */
    enum { N = 20000 };
    static struct titem items[N];
    static char patterns[N][48];
    size_t charged = 0;
    for (size_t i = 0; i < N; i++) {
        snprintf(patterns[i], sizeof(patterns[i]), "sensors.building.floor-%05zu.temperature", i);
        cr_assert_eq(subtrie_add(trie, &items[i].sub, patterns[i], 40, NULL, 0), 0);
        charged += subtrie_cost(patterns[i], 40, 0);
    }
    cr_assert_leq(subtrie_heap_bytes(trie), charged);
    for (size_t i = 0; i < N; i++) {
        subtrie_remove(trie, &items[i].sub, patterns[i], 40);
    }
    cr_assert_eq(subtrie_heap_bytes(trie), 0);
}

static bool refuse_one(struct subtrie_sub *s, void *arg)
{
    return s != arg;
}

Test(subtrie, match_filter_skips_refused_items_and_group_turns)
{
    struct subtrie *t;
    cr_assert_eq(subtrie_new(&t), 0);
    struct titem a = {.id = 1};
    struct titem b = {.id = 2};
    struct titem plain = {.id = 3};
    cr_assert_eq(subtrie_add(t, &a.sub, "x", 1, "g", 1), 0);
    cr_assert_eq(subtrie_add(t, &b.sub, "x", 1, "g", 1), 0);
    cr_assert_eq(subtrie_add(t, &plain.sub, "x", 1, NULL, 0), 0);
    struct subtrie_result out = {0};
    /* Refusing `a`: every match gives `b` for the group, never nothing. */
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(subtrie_match_filter(t, "x", 1, refuse_one, &a.sub, &out), 0);
        cr_assert_eq(out.len, 2);
        cr_assert(out.items[0] == &plain.sub || out.items[1] == &plain.sub);
        cr_assert(out.items[0] == &b.sub || out.items[1] == &b.sub);
    }
    /* Refusing the plain item leaves it out. */
    cr_assert_eq(subtrie_match_filter(t, "x", 1, refuse_one, &plain.sub, &out), 0);
    cr_assert_eq(out.len, 1);
    cr_assert_neq(out.items[0], &plain.sub);
    subtrie_result_deinit(&out);
    subtrie_remove(t, &a.sub, "x", 1);
    subtrie_remove(t, &b.sub, "x", 1);
    subtrie_remove(t, &plain.sub, "x", 1);
    cr_assert_eq(subtrie_node_count(t), 0);
    subtrie_free(t);
}

Test(subtrie, cache_follows_adds_and_removes)
{
    struct subtrie *t;
    cr_assert_eq(subtrie_new(&t), 0);
    struct titem a = {.id = 1};
    struct titem b = {.id = 2};
    struct subtrie_result out = {0};
    cr_assert_eq(subtrie_add(t, &a.sub, "c.d", 3, NULL, 0), 0);
    for (int i = 0; i < 3; i++) { /* fill, then hit the cache */
        cr_assert_eq(subtrie_match(t, "c.d", 3, &out), 0);
        cr_assert_eq(out.len, 1);
    }
    cr_assert_eq(subtrie_add(t, &b.sub, "c.*", 3, NULL, 0), 0);
    cr_assert_eq(subtrie_match(t, "c.d", 3, &out), 0);
    cr_assert_eq(out.len, 2, "a cached walk must not hide a new subscription");
    subtrie_remove(t, &a.sub, "c.d", 3);
    cr_assert_eq(subtrie_match(t, "c.d", 3, &out), 0);
    cr_assert_eq(out.len, 1);
    cr_assert_eq(out.items[0], &b.sub);
    subtrie_remove(t, &b.sub, "c.*", 3);
    cr_assert_eq(subtrie_match(t, "c.d", 3, &out), 0);
    cr_assert_eq(out.len, 0, "and must not point at freed nodes");
    /* Invalid subjects are refused, also after a valid one filled the
     * same slot. */
    cr_assert_eq(subtrie_match(t, "c..d", 4, &out), -EINVAL);
    subtrie_result_deinit(&out);
    subtrie_free(t);
}

/*
 * 2,000 subscriptions on distinct subjects, published in a cycle (more
 * subjects than the match cache's 256 entries): after one pass nearly
 * every subject is in the cache's index, and the next passes, answered from it,
 * agree with the walk; a queue group answered from it still rotates
 * exactly; a wildcard added or a subscription removed is seen at once (the
 * index never answers for a trie that changed, nor points at a freed
 * record, which the sanitizer build would catch); and what the
 * subscriptions are charged bounds the trie and the index together.
 */
Test(subtrie, many_subjects_are_indexed_and_follow_changes)
{
    enum { N = 2000, GROUP = 3 };
    static char subjects[N][32];
    for (size_t i = 0; i < N; i++) {
        snprintf(subjects[i], sizeof(subjects[i]), "plant.line-%zu.temp", i);
        cr_assert_eq(add(subjects[i], i + 1), 0);
    }
    for (uintptr_t m = 0; m < GROUP; m++) {
        cr_assert_eq(addq("plant.line-g.temp", "workers", 10000 + m), 0);
    }
    for (size_t i = 0; i < N; i++) {
        EXPECT(subjects[i], i + 1);
    }
    /* All but the few whose home slot is deep in one of the longest probe
     * runs (linear probing, 70% full): those take the walk each time. */
    size_t indexed;
    size_t probe = matchcache_index_max_probe(&trie->cache, &indexed);
    cr_assert_geq(indexed, N - N / 50, "%zu subjects indexed", indexed);
    cr_assert_lt(probe, MATCHCACHE_INDEX_PROBE_MAX);

    /* From the index now, with the group's turns in between. */
    size_t turns[GROUP] = {0};
    for (int pass = 0; pass < 3; pass++) {
        for (size_t i = 0; i < N; i++) {
            EXPECT(subjects[i], i + 1);
            if (i % 500 == 0) {
                cr_assert_eq(subtrie_match(trie, "plant.line-g.temp", 17, &res), 0);
                cr_assert_eq(res.len, 1);
                turns[id_of(res.items[0]) - 10000]++;
            }
        }
    }
    for (size_t m = 0; m < GROUP; m++) {
        cr_assert_eq(turns[m], 4, "member %zu had %zu turns of 12", m, turns[m]);
    }

    size_t charged = 0;
    for (size_t i = 0; i < reg_len; i++) {
        const char *q = reg[i]->queue;
        charged += subtrie_cost(reg[i]->pattern, strlen(reg[i]->pattern), q ? strlen(q) : 0);
    }
    cr_assert_gt(matchcache_index_bytes(&trie->cache), 0);
    cr_assert_geq(charged, subtrie_heap_bytes(trie), "charged %zu, held %zu", charged,
                  subtrie_heap_bytes(trie));

    cr_assert_eq(add("plant.*.temp", 99999), 0);
    for (size_t i = 0; i < N; i += 7) {
        EXPECT(subjects[i], i + 1, 99999);
    }
    cr_assert_eq(del("plant.*.temp", 99999), 0);
    for (size_t i = 0; i < N; i += 2) {
        EXPECT(subjects[i], i + 1); /* back in the index */
    }
    for (size_t i = 0; i < N; i += 2) {
        cr_assert_eq(del(subjects[i], i + 1), 0);
    }
    for (size_t i = 0; i < N; i++) {
        if (i % 2 == 0) {
            EXPECT_NONE(subjects[i]);
        } else {
            EXPECT(subjects[i], i + 1);
        }
    }
}

/* The index keeps the one subscription of a subject held by one plain
 * subscription (no record in between): a second one on the subject, a
 * queue group joining it, the first one gone, and a filter that refuses
 * it must all be seen through the index as through the walk. Each check
 * goes over every subject twice, so that the second time each is found in
 * the index, not in the 256 entries in front of it. */
enum { LEAD_N = 600 };
static char lead_subjects[LEAD_N][32];

static void lead_check(size_t changed, uintptr_t extra)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < LEAD_N; i++) {
            if (i == changed) {
                EXPECT(lead_subjects[i], extra);
            } else if (i == changed + 1) {
                EXPECT(lead_subjects[i], i + 1, extra + 1);
            } else {
                EXPECT(lead_subjects[i], i + 1);
            }
        }
    }
}

Test(subtrie, an_indexed_subject_of_one_subscription_follows_every_change)
{
    for (size_t i = 0; i < LEAD_N; i++) {
        snprintf(lead_subjects[i], sizeof(lead_subjects[i]), "dev.%zu.state", i);
        cr_assert_eq(add(lead_subjects[i], i + 1), 0);
    }
    for (int pass = 0; pass < 2; pass++) { /* the walk, then the index */
        for (size_t i = 0; i < LEAD_N; i++) {
            EXPECT(lead_subjects[i], i + 1);
        }
    }
    size_t indexed;
    matchcache_index_max_probe(&trie->cache, &indexed);
    cr_assert_geq(indexed, LEAD_N - LEAD_N / 50, "%zu subjects indexed", indexed);

    /* Subject 5 gets a second subscription, subject 6 a queue group. */
    cr_assert_eq(add(lead_subjects[5], 9000), 0);
    cr_assert_eq(addq(lead_subjects[6], "workers", 9001), 0);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < LEAD_N; i++) {
            if (i == 5) {
                EXPECT(lead_subjects[i], 6, 9000);
            } else if (i == 6) {
                EXPECT(lead_subjects[i], 7, 9001);
            } else {
                EXPECT(lead_subjects[i], i + 1);
            }
        }
    }
    /* Subject 5's first one goes. */
    cr_assert_eq(del(lead_subjects[5], 6), 0);
    lead_check(5, 9000);

    /* A filter that refuses subject 7's one subscription, from the index. */
    struct titem *seven = NULL;
    for (size_t i = 0; i < reg_len; i++) {
        seven = reg[i]->id == 8 ? reg[i] : seven;
    }
    cr_assert_not_null(seven);
    struct subtrie_result out = {0};
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < LEAD_N; i++) {
            cr_assert_eq(subtrie_match_filter(trie, lead_subjects[i], strlen(lead_subjects[i]),
                                              refuse_one, &seven->sub, &out),
                         0);
            cr_assert_eq(out.len,
                         i == 7   ? 0u
                         : i == 6 ? 2u
                                  : 1u,
                         "%s, pass %d", lead_subjects[i], pass);
        }
    }
    subtrie_result_deinit(&out);
}
