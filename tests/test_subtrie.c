/*
 * test_subtrie.c - the subscription trie against the reference matcher.
 *
 * Items are small integers cast to pointers: the trie never dereferences
 * them. Tables check single patterns (and that the table agrees with
 * sb_pattern_match()), then several patterns at once, queue groups, removal,
 * a randomized cross-check against brute force, and 100,000 literals under
 * one parent.
 */
#include <criterion/criterion.h>

#include "sockbus.h"
#include "subtrie.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ITEM(n) ((void *)(uintptr_t)(n))

static struct subtrie *trie;
static struct subtrie_result res;

static void setup(void)
{
    cr_assert_eq(subtrie_new(&trie), 0);
    res = (struct subtrie_result){0};
}

static void teardown(void)
{
    subtrie_result_deinit(&res);
    subtrie_free(trie);
}

TestSuite(subtrie, .init = setup, .fini = teardown, .timeout = 120);

static int add(const char *pattern, uintptr_t id)
{
    return subtrie_add(trie, pattern, strlen(pattern), NULL, 0, ITEM(id));
}

static int addq(const char *pattern, const char *queue, uintptr_t id)
{
    return subtrie_add(trie, pattern, strlen(pattern), queue, strlen(queue), ITEM(id));
}

static int del(const char *pattern, uintptr_t id)
{
    return subtrie_remove(trie, pattern, strlen(pattern), NULL, 0, ITEM(id));
}

static int delq(const char *pattern, const char *queue, uintptr_t id)
{
    return subtrie_remove(trie, pattern, strlen(pattern), queue, strlen(queue), ITEM(id));
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
        ids[i] = (uintptr_t)res.items[i];
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
    char subject[SB_SUBJECT_MAX];
    char stars[SB_SUBJECT_MAX];
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
    cr_assert_eq(subtrie_add(trie, subject, len, NULL, 0, ITEM(1)), 0);
    cr_assert_eq(subtrie_add(trie, stars, len, NULL, 0, ITEM(2)), 0);
    cr_assert_eq(subtrie_add(trie, "a.>", 3, NULL, 0, ITEM(3)), 0);
    cr_assert_eq(subtrie_node_count(trie), 512 + 512 + 1);

    cr_assert_eq(subtrie_match(trie, subject, len, &res), 0);
    cr_assert_eq(res.len, 3);
    cr_assert_eq(subtrie_match(trie, subject, len - 2, &res), 0); /* 511 tokens */
    cr_assert_eq(res.len, 1);
    cr_assert_eq(res.items[0], ITEM(3));

    cr_assert_eq(subtrie_remove(trie, subject, len, NULL, 0, ITEM(1)), 0);
    cr_assert_eq(subtrie_remove(trie, stars, len, NULL, 0, ITEM(2)), 0);
    cr_assert_eq(subtrie_remove(trie, "a.>", 3, NULL, 0, ITEM(3)), 0);
    cr_assert_eq(subtrie_node_count(trie), 0);
}

Test(subtrie, result_is_reset_and_reused)
{
    cr_assert_eq(add("a.>", 1), 0);
    cr_assert_eq(add("a.b", 2), 0);
    EXPECT("a.b", 1, 2);
    void **storage = res.items;
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
            uintptr_t id = (uintptr_t)res.items[i];
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
    return (uintptr_t)res.items[0];
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

Test(subtrie, remove_absent_is_enoent)
{
    cr_assert_eq(add("a.b", 1), 0);
    cr_assert_eq(addq("a.c", "q", 2), 0);

    cr_assert_eq(del("a.b", 2), -ENOENT);   /* wrong item */
    cr_assert_eq(del("a.x", 1), -ENOENT);   /* no such node */
    cr_assert_eq(del("a", 1), -ENOENT);     /* node exists, no items */
    cr_assert_eq(del("a.b.c", 1), -ENOENT); /* deeper than any node */
    cr_assert_eq(del("a.*", 1), -ENOENT);   /* wildcard is not literal */
    cr_assert_eq(del("a.>", 1), -ENOENT);
    cr_assert_eq(delq("a.b", "q", 1), -ENOENT); /* plain item, asked as grouped */
    cr_assert_eq(del("a.c", 2), -ENOENT);       /* grouped item, asked as plain */
    cr_assert_eq(delq("a.c", "r", 2), -ENOENT); /* wrong group */
    cr_assert_eq(delq("a.c", "q", 1), -ENOENT); /* wrong member */
    cr_assert_eq(del(">.a", 1), -ENOENT);       /* invalid patterns */
    cr_assert_eq(del("a..b", 1), -ENOENT);
    cr_assert_eq(del("a.", 1), -ENOENT);
    cr_assert_eq(subtrie_remove(trie, "a", 0, NULL, 0, ITEM(1)), -ENOENT);

    cr_assert_eq(subtrie_count(trie), 2);
    cr_assert_eq(subtrie_node_count(trie), 3);
    cr_assert_eq(del("a.b", 1), 0);
    cr_assert_eq(del("a.b", 1), -ENOENT); /* twice */
    cr_assert_eq(delq("a.c", "q", 2), 0);
    cr_assert_eq(subtrie_node_count(trie), 0);
}

Test(subtrie, invalid_input_is_einval)
{
    const char *bad[] = {"a..b", ".a", "a.", "a.>.b", ">.a", "a b", "a.b*", "a>", "\x7f"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(add(bad[i], 1), -EINVAL, "add %s", bad[i]);
    }
    cr_assert_eq(subtrie_add(trie, "a", 0, NULL, 0, ITEM(1)), -EINVAL);
    cr_assert_eq(subtrie_add(trie, "a", 1, NULL, 3, ITEM(1)), -EINVAL); /* queue_len, no name */
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
    return subtrie_add(trie, e->pattern, strlen(e->pattern), e->queue,
                       e->queue ? strlen(e->queue) : 0, ITEM(e->id));
}

static int entry_remove(struct entry *e)
{
    e->present = false;
    return subtrie_remove(trie, e->pattern, strlen(e->pattern), e->queue,
                          e->queue ? strlen(e->queue) : 0, ITEM(e->id));
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
        cr_assert_eq(entry_remove(&entries[order[i]]), 0);
    }
    cr_assert_eq(subtrie_count(trie), n_entries - half);
    cross_check(SUBJECTS_N / 2);

    for (size_t i = half; i < n_entries; i++) {
        cr_assert_eq(entry_remove(&entries[order[i]]), 0);
    }
    cr_assert_eq(subtrie_count(trie), 0);
    cr_assert_eq(subtrie_node_count(trie), 0);
    cross_check(100);
}

/* --- Scale ------------------------------------------------------------- */

#define BULK_N 100000

Test(subtrie, many_literals_under_one_parent)
{
    char buf[32];
    for (size_t i = 0; i < BULK_N; i++) {
        int len = snprintf(buf, sizeof(buf), "bulk.%zu", i);
        cr_assert_eq(subtrie_add(trie, buf, (size_t)len, NULL, 0, ITEM(i + 1)), 0);
    }
    cr_assert_eq(add("bulk.*", BULK_N + 1), 0);
    cr_assert_eq(subtrie_count(trie), BULK_N + 1);
    cr_assert_eq(subtrie_node_count(trie), 1 + BULK_N + 1);

    for (size_t i = 0; i < BULK_N; i++) {
        int len = snprintf(buf, sizeof(buf), "bulk.%zu", i);
        cr_assert_eq(subtrie_match(trie, buf, (size_t)len, &res), 0);
        cr_assert_eq(res.len, 2, "%s: %zu items", buf, res.len);
        void *literal = res.items[0] == ITEM(BULK_N + 1) ? res.items[1] : res.items[0];
        cr_assert_eq(literal, ITEM(i + 1), "%s", buf);
    }
    EXPECT("bulk.none", BULK_N + 1);
    EXPECT_NONE("bulk");

    cr_assert_eq(del("bulk.*", BULK_N + 1), 0);
    for (size_t i = 0; i < BULK_N; i++) {
        int len = snprintf(buf, sizeof(buf), "bulk.%zu", i);
        cr_assert_eq(subtrie_remove(trie, buf, (size_t)len, NULL, 0, ITEM(i + 1)), 0);
        /* Backward-shift deletion must keep the survivors findable. */
        if (i % 9973 == 0 && i + 1 < BULK_N) {
            snprintf(buf, sizeof(buf), "bulk.%d", BULK_N - 1);
            EXPECT(buf, BULK_N);
        }
    }
    cr_assert_eq(subtrie_count(trie), 0);
    cr_assert_eq(subtrie_node_count(trie), 0);
    EXPECT_NONE("bulk.0");
}

static bool refuse_first(void *item, void *arg)
{
    return item != arg;
}

Test(subtrie, match_filter_skips_refused_items_and_group_turns)
{
    struct subtrie *t;
    cr_assert_eq(subtrie_new(&t), 0);
    int a;
    int b;
    int plain;
    cr_assert_eq(subtrie_add(t, "x", 1, "g", 1, &a), 0);
    cr_assert_eq(subtrie_add(t, "x", 1, "g", 1, &b), 0);
    cr_assert_eq(subtrie_add(t, "x", 1, NULL, 0, &plain), 0);
    struct subtrie_result out = {0};
    /* Refusing `a`: every match gives `b` for the group, never nothing. */
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(subtrie_match_filter(t, "x", 1, refuse_first, &a, &out), 0);
        cr_assert_eq(out.len, 2);
        cr_assert(out.items[0] == &plain || out.items[1] == &plain);
        cr_assert(out.items[0] == &b || out.items[1] == &b);
    }
    /* Refusing the plain item leaves it out. */
    cr_assert_eq(subtrie_match_filter(t, "x", 1, refuse_first, &plain, &out), 0);
    cr_assert_eq(out.len, 1);
    cr_assert_neq(out.items[0], &plain);
    subtrie_result_deinit(&out);
    subtrie_free(t);
}

Test(subtrie, cache_follows_adds_and_removes)
{
    struct subtrie *t;
    cr_assert_eq(subtrie_new(&t), 0);
    int a;
    int b;
    struct subtrie_result out = {0};
    cr_assert_eq(subtrie_add(t, "c.d", 3, NULL, 0, &a), 0);
    for (int i = 0; i < 3; i++) { /* fill, then hit the cache */
        cr_assert_eq(subtrie_match(t, "c.d", 3, &out), 0);
        cr_assert_eq(out.len, 1);
    }
    cr_assert_eq(subtrie_add(t, "c.*", 3, NULL, 0, &b), 0);
    cr_assert_eq(subtrie_match(t, "c.d", 3, &out), 0);
    cr_assert_eq(out.len, 2, "a cached walk must not hide a new subscription");
    cr_assert_eq(subtrie_remove(t, "c.d", 3, NULL, 0, &a), 0);
    cr_assert_eq(subtrie_match(t, "c.d", 3, &out), 0);
    cr_assert_eq(out.len, 1);
    cr_assert_eq(out.items[0], &b);
    cr_assert_eq(subtrie_remove(t, "c.*", 3, NULL, 0, &b), 0);
    cr_assert_eq(subtrie_match(t, "c.d", 3, &out), 0);
    cr_assert_eq(out.len, 0, "and must not point at freed nodes");
    /* Invalid subjects are refused, also after a valid one filled the
     * same slot. */
    cr_assert_eq(subtrie_match(t, "c..d", 4, &out), -EINVAL);
    subtrie_result_deinit(&out);
    subtrie_free(t);
}
