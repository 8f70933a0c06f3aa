/*
 * test_retain.c - the retained store: storing, replacing and deleting
 * values, the bytes it counts (exactly what it holds, back to zero when
 * empty, never past the limit), and the values a pattern finds through the
 * trie, against a brute-force scan with sb_pattern_match().
 */
#include <criterion/criterion.h>

#include "ctab.h"
#include "frame.h"
#include "hash.h"
#include "mem.h"
#include "retain.h"
#include "sockbus.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct retain_store store;

static void setup(void)
{
    hash_seed_fixed(6);
    retain_init(&store);
}

static void teardown(void)
{
    retain_deinit(&store);
}

TestSuite(retain, .init = setup, .fini = teardown, .timeout = 120);

/* RETAIN `payload` (may be "") on subject, under max_bytes. */
static int put(const char *subject, const char *payload, uint64_t max_bytes)
{
    static uint8_t buf[4096];
    size_t size = frame_encode(buf, FRAME_OP_PUB, FRAME_PUB_RETAIN, 0, subject, strlen(subject),
                               NULL, 0, NULL, 0, payload, strlen(payload));
    struct frame f;
    cr_assert_eq(frame_parse(buf, size, UINT32_MAX, &f), 0);
    return retain_apply(&store, &f, max_bytes);
}

/* What a match found: subjects and payloads, as "subject=payload" lines. */
struct found {
    char text[1 << 16];
    size_t n;
};

static void collect(const struct frame *value, void *arg)
{
    struct found *fd = arg;
    size_t len = strlen(fd->text);
    snprintf(fd->text + len, sizeof(fd->text) - len, "%.*s=%.*s\n", (int)value->subject_len,
             (const char *)value->subject, (int)value->payload_len, (const char *)value->payload);
    fd->n++;
    cr_assert_eq(value->reply_len, 0);
}

static size_t count_matches(const char *pattern)
{
    static struct found fd;
    fd.text[0] = '\0';
    fd.n = 0;
    retain_foreach_match(&store, pattern, strlen(pattern), collect, &fd);
    return fd.n;
}

Test(retain, store_replace_delete)
{
    cr_assert_eq(put("a.b", "one", UINT64_MAX), 0);
    cr_assert_eq(put("a.c", "two", UINT64_MAX), 0);
    cr_assert_eq(store.count, 2);
    cr_assert_eq(store.nodes, 3);
    static struct found fd;
    retain_foreach_match(&store, "a.b", 3, collect, &fd);
    cr_assert_str_eq(fd.text, "a.b=one\n");

    uint64_t bytes = store.bytes;
    cr_assert_eq(put("a.b", "ONE", UINT64_MAX), 0); /* same size: same bytes */
    cr_assert_eq(store.count, 2);
    cr_assert_eq(store.bytes, bytes);
    fd.text[0] = '\0';
    retain_foreach_match(&store, "a.b", 3, collect, &fd);
    cr_assert_str_eq(fd.text, "a.b=ONE\n");

    cr_assert_eq(put("a.b", "", UINT64_MAX), 0); /* delete */
    cr_assert_eq(put("a.b", "", UINT64_MAX), 0); /* nothing to delete */
    cr_assert_eq(put("x.y.z", "", UINT64_MAX), 0);
    cr_assert_eq(store.count, 1);
    cr_assert_eq(store.nodes, 2);
    cr_assert_eq(count_matches("a.*"), 1);
    cr_assert_eq(put("a.c", "", UINT64_MAX), 0);
    cr_assert_eq(store.count, 0);
    cr_assert_eq(store.nodes, 0, "empty nodes are freed");
    cr_assert_eq(store.bytes, 0, "and every byte is given back");
    cr_assert_eq(count_matches(">"), 0);
}

/* A value on a subject that is a prefix of another's, and the other way. */
Test(retain, values_inside_the_tree)
{
    cr_assert_eq(put("a", "1", UINT64_MAX), 0);
    cr_assert_eq(put("a.b", "2", UINT64_MAX), 0);
    cr_assert_eq(put("a.b.c", "3", UINT64_MAX), 0);
    cr_assert_eq(count_matches("a"), 1);
    cr_assert_eq(count_matches("a.>"), 2);
    cr_assert_eq(count_matches(">"), 3);
    cr_assert_eq(count_matches("*.*"), 1);
    cr_assert_eq(put("a.b", "", UINT64_MAX), 0); /* a node with a child stays */
    cr_assert_eq(store.nodes, 3);
    cr_assert_eq(count_matches("a.>"), 1);
    cr_assert_eq(put("a.b.c", "", UINT64_MAX), 0);
    cr_assert_eq(store.nodes, 1);
    cr_assert_eq(put("a", "", UINT64_MAX), 0);
    cr_assert_eq(store.bytes, 0);
}

Test(retain, dollar_rule)
{
    cr_assert_eq(put("$SYS.x", "s", UINT64_MAX), 0);
    cr_assert_eq(put("a.$b", "d", UINT64_MAX), 0);
    cr_assert_eq(count_matches(">"), 1);
    cr_assert_eq(count_matches("*.x"), 0);
    cr_assert_eq(count_matches("$SYS.>"), 1);
    cr_assert_eq(count_matches("$SYS.*"), 1);
    cr_assert_eq(count_matches("a.*"), 1, "only a first token is barred");
}

/* The bytes counted are exactly the footprints of what is held, the limit
 * is never passed, and a refused value leaves the old one. */
Test(retain, bytes_are_real_and_bounded)
{
    enum { LIMIT = 200000 };
    char subject[32];
    size_t stored = 0;
    int r = 0;
    for (unsigned i = 0; r == 0; i++) {
        snprintf(subject, sizeof(subject), "r.%u", i);
        r = put(subject, "v", LIMIT);
        cr_assert(r == 0 || r == RETAIN_E_FULL);
        stored += r == 0;
        cr_assert_leq(store.bytes, LIMIT);
    }
    cr_assert_eq(store.count, stored);
    /* One small value, node and slot: about 100 bytes each, so about
     * 2,000 fit in 200,000 bytes (the payload bytes alone would have let
     * 200,000 in). */
    fprintf(stderr, "retain: %zu one-byte values in %d bytes (%zu each)\n", stored, LIMIT,
            (size_t)LIMIT / stored);
    cr_assert(stored > LIMIT / 200 && stored < LIMIT / 48, "%zu stored", stored);
    /* Full: a longer value for a stored subject is refused, and the old
     * one stays. */
    static char longer[600];
    memset(longer, 'w', sizeof(longer) - 1);
    /* (The limit is the bytes held now: the room the last refusal left
     * depends on how the tables grow, and may hold a longer value.) */
    cr_assert_eq(put("r.0", longer, store.bytes), RETAIN_E_FULL);
    static struct found fd;
    retain_foreach_match(&store, "r.0", 3, collect, &fd);
    cr_assert_str_eq(fd.text, "r.0=v\n");
    /* Everything deleted: zero again. */
    for (unsigned i = 0; i < stored; i++) {
        snprintf(subject, sizeof(subject), "r.%u", i);
        cr_assert_eq(put(subject, "", LIMIT), 0);
    }
    cr_assert_eq(store.count, 0);
    cr_assert_eq(store.bytes, 0);
    cr_assert_eq(store.nodes, 0);
}

/* --- Randomized cross-check -------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static const char *const alphabet[] = {"a", "b", "c", "$d"};
#define MAX_TOKENS 5
#define STR_MAX    (MAX_TOKENS * 3 + 1)

static void random_subject(char *out)
{
    size_t n = 1 + rng() % MAX_TOKENS;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            strcat(out, ".");
        }
        strcat(out, alphabet[rng() % 4]);
    }
}

static void random_pattern(char *out)
{
    size_t n = 1 + rng() % (MAX_TOKENS - 1);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            strcat(out, ".");
        }
        size_t r = rng() % 10;
        if (i == n - 1 && r == 0) {
            strcat(out, ">");
        } else if (r <= 2) {
            strcat(out, "*");
        } else {
            strcat(out, alphabet[rng() % 4]);
        }
    }
}

/* Every subject of up to 5 tokens of the alphabet (1,364 of them) stored
 * and deleted at random; each pattern finds exactly what a scan with
 * sb_pattern_match() finds. */
Test(retain, randomized_against_brute_force)
{
    enum { OPS = 20000, SUBJECTS = 600 };
    static char subjects[SUBJECTS][STR_MAX];
    static bool in[SUBJECTS];
    rng_state = 11;
    for (size_t i = 0; i < SUBJECTS; i++) {
        bool again;
        do {
            random_subject(subjects[i]);
            again = false;
            for (size_t j = 0; j < i; j++) {
                again = again || strcmp(subjects[i], subjects[j]) == 0;
            }
        } while (again && i < 400);
    }
    for (size_t op = 0; op < OPS; op++) {
        size_t k = rng() % SUBJECTS;
        bool del = rng() % 3 == 0;
        cr_assert_eq(put(subjects[k], del ? "" : subjects[k], UINT64_MAX), 0);
        /* Duplicate subjects share one value. */
        for (size_t j = 0; j < SUBJECTS; j++) {
            if (strcmp(subjects[j], subjects[k]) == 0) {
                in[j] = !del;
            }
        }
        if (op % 50 != 0) {
            continue;
        }
        char pattern[STR_MAX];
        random_pattern(pattern);
        size_t want = 0;
        for (size_t j = 0; j < SUBJECTS; j++) {
            bool first = true;
            for (size_t i = 0; i < j; i++) {
                first = first && strcmp(subjects[i], subjects[j]) != 0;
            }
            want += first && in[j] &&
                    sb_pattern_match(pattern, strlen(pattern), subjects[j], strlen(subjects[j]));
        }
        cr_assert_eq(count_matches(pattern), want, "op %zu: %s", op, pattern);
    }
    for (size_t j = 0; j < SUBJECTS; j++) {
        cr_assert_eq(put(subjects[j], "", UINT64_MAX), 0);
    }
    cr_assert_eq(store.count, 0);
    cr_assert_eq(store.bytes, 0);
}

/* 100,000 values under one node: a pattern that matches none of them by
 * its literal tokens looks at none of them. (A scan of the whole store
 * would, for every SUB.) */
Test(retain, literal_tokens_do_not_scan)
{
    char subject[32];
    for (unsigned i = 0; i < 100000; i++) {
        snprintf(subject, sizeof(subject), "big.%u", i);
        cr_assert_eq(put(subject, "x", UINT64_MAX), 0);
    }
    cr_assert_eq(count_matches("none.>"), 0);
    cr_assert_eq(count_matches("*.none"), 0);
    cr_assert_eq(count_matches("big.77"), 1);
    cr_assert_eq(count_matches("big.*"), 100000);
    cr_assert_eq(count_matches(">"), 100000);
}
