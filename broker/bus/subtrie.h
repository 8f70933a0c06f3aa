/*
 * subtrie.h - the subscription trie: which subscriptions match a subject.
 *
 * Patterns are stored token by token: each node has children by literal
 * token (a ctab), one '*' child and one '>' child. Matching a subject walks
 * at most the literal, '*' and '>' branches at each level, so the cost
 * depends on the subject's depth and the wildcards, not on how many
 * subscriptions exist.
 *
 * A subscription is a `struct subtrie_sub` embedded in the caller's object
 * (the broker's struct sub): subtrie_add() fills it with the subscription's
 * place in the trie, so that subtrie_remove() finds it again in O(1)
 * instead of searching. Subscriptions added with a queue group name are
 * grouped by (pattern, queue): a match yields every plain subscription,
 * and exactly one member of each matching group, chosen round robin.
 *
 * A pattern whose first token is '*' or '>' does not match a subject whose
 * first token starts with '$' (same rule as sb_pattern_match()).
 */
#ifndef SOCKBUS_SUBTRIE_H
#define SOCKBUS_SUBTRIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct subtrie;
struct matchcache;
struct subtrie_node;
struct subtrie_group;

/*
 * One subscription's place in the trie, embedded in the caller's object
 * and owned by it. Written by subtrie_add() and subtrie_remove() only:
 * the ring of subscriptions (or group members) it is in, its node, and its
 * group (NULL for a plain subscription).
 */
struct subtrie_sub {
    struct subtrie_sub *next;
    struct subtrie_sub *prev;
    struct subtrie_node *node;
    struct subtrie_group *group;
};

/* Matching subscriptions, appended by subtrie_match(). The caller keeps one
 * of these and reuses it, so steady-state matching allocates nothing.
 * Start from zero (`struct subtrie_result res = {0};`); the storage
 * belongs to the caller, released with subtrie_result_deinit(). */
struct subtrie_result {
    struct subtrie_sub **items;
    size_t len;
    size_t cap;
};

/* Allocate an empty trie. Returns 0 or -ENOMEM; *out written on success. */
int subtrie_new(struct subtrie **out);

/* Free the trie and its nodes (not the subscriptions). Accepts NULL. */
void subtrie_free(struct subtrie *t);

/*
 * Add the subscription `s` (not in any trie) under `pattern` (a valid
 * pattern, sb_pattern_valid()), in queue group `queue` when queue_len > 0.
 * The pattern and queue name are copied. Returns 0, -EINVAL when the
 * pattern is not valid (checked, since a misplaced '>' would corrupt the
 * trie's shape) or queue is NULL with queue_len > 0, or -ENOMEM (the trie
 * is then unchanged). Cost: the pattern's length.
 */
int subtrie_add(struct subtrie *t, struct subtrie_sub *s, const char *pattern, size_t pattern_len,
                const char *queue, size_t queue_len);

/*
 * Remove the subscription `s`, added under `pattern` (the same bytes: when
 * its node is left empty, the pattern leads to the ancestors to free).
 * Never fails. Cost: O(1), plus the pattern's length when nodes are freed.
 * A queue group's rotation goes on with the member after `s` when it was
 * `s`'s turn, and is unchanged otherwise: nobody is skipped, and nobody
 * served twice in a row.
 */
void subtrie_remove(struct subtrie *t, struct subtrie_sub *s, const char *pattern,
                    size_t pattern_len);

/*
 * An upper bound of the heap bytes that adding one subscription under this
 * pattern (and a queue group name of queue_len bytes) can make the trie
 * hold: a node for every token, its place in its parent's table, the
 * records a node needs for wildcard children and subscriptions, the
 * group, and its share of the match cache's index (MATCHCACHE_INDEX_COST).
 * Shared nodes are counted for every subscription through them, so the sum
 * over the live subscriptions bounds the trie's memory.
 */
size_t subtrie_cost(const char *pattern, size_t pattern_len, size_t queue_len);

/*
 * Append to `res` (after res->len is reset to 0) every subscription that
 * matches `subject`: each plain one, and one member per matching queue
 * group (round robin). Returns 0, -EINVAL when the subject is not valid
 * (sb_subject_valid(); res->len is then 0), or -ENOMEM (res then holds a
 * partial result). Not const: it advances the rotation of the groups it
 * draws from, and fills the match cache.
 */
int subtrie_match(struct subtrie *t, const char *subject, size_t subject_len,
                  struct subtrie_result *res);

/* A filter for subtrie_match_filter(): may `s` receive this message? */
typedef bool (*subtrie_accept_fn)(struct subtrie_sub *s, void *arg);

/*
 * subtrie_match(), skipping subscriptions that `accept` (if not NULL)
 * refuses: a refused plain subscription is left out, and a queue group
 * passes the message to its next member that accepts it. Returns 0,
 * -EINVAL for an invalid subject, or -ENOMEM.
 */
int subtrie_match_filter(struct subtrie *t, const char *subject, size_t subject_len,
                         subtrie_accept_fn accept, void *arg, struct subtrie_result *res);

/* subtrie_match_filter() for a subject whose hash is known: `hash` is
 * what matchcache_prefetch() returned for these very bytes (0: not known,
 * computed here). It saves hashing a subject twice. */
int subtrie_match_hashed(struct subtrie *t, const char *subject, size_t subject_len, uint64_t hash,
                         subtrie_accept_fn accept, void *arg, struct subtrie_result *res);

/* The one subscription subject[0..len) matches, when the index knows
 * that it matches exactly one (one node, with one plain subscription and
 * no queue group); `hash` as for subtrie_match_hashed(), not 0. NULL says
 * nothing: subtrie_match_filter() has the answer then. Turns no group and
 * applies no filter. */
struct subtrie_sub *subtrie_match_one(struct subtrie *t, const char *subject, size_t subject_len,
                                      uint64_t hash);

/* The match cache in front of the trie (matchcache.h), for starting the
 * loads of a match early (matchcache_prefetch()): read only. */
const struct matchcache *subtrie_cache(const struct subtrie *t);

/*
 * How many subscriptions a publish on `subject` would reach now: each
 * plain one that matches, and each matching queue group once; counted up
 * to `max` (a caller that only asks whether anyone listens passes 1).
 * Unlike a match it takes no group's turn and leaves the match cache
 * alone, so it may be asked while a match's result is being walked.
 * Returns 0 and *count, -EINVAL for an invalid subject, or -ENOMEM.
 */
int subtrie_interest(struct subtrie *t, const char *subject, size_t subject_len, size_t max,
                     size_t *count);

/* Number of subscriptions in the trie. */
size_t subtrie_count(const struct subtrie *t);

/* Number of nodes besides the root: 0 once every subscription is removed.
 * For tests and statistics. */
size_t subtrie_node_count(const struct subtrie *t);

/* The longest probe run of any table in the trie (children and groups):
 * see ctab_max_probe(). Walks the whole trie: for tests. */
size_t subtrie_max_probe(const struct subtrie *t);

/* The heap bytes of the trie's nodes, records, groups and tables besides
 * the root, and of the match cache's index (mem_footprint()), which the
 * subtrie_cost() of the live subscriptions bounds. Walks the whole trie:
 * for tests. */
size_t subtrie_heap_bytes(const struct subtrie *t);

/* Release the storage of a result and zero it. Accepts NULL. */
void subtrie_result_deinit(struct subtrie_result *res);

#endif /* SOCKBUS_SUBTRIE_H */
