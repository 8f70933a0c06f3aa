/*
 * subtrie.h - the subscription trie: which subscriptions match a subject.
 *
 * Patterns are stored token by token: each node has children by literal
 * token (a hash table), one '*' child and one '>' list. Matching a subject
 * walks at most the literal, '*' and '>' branches at each level, so the cost
 * depends on the subject's depth and the wildcards, not on how many
 * subscriptions exist.
 *
 * Items are opaque pointers owned by the caller (the broker's subscriptions).
 * Items added with a queue group name are grouped by (pattern, queue): a
 * match yields every plain item, and exactly one item of each matching group,
 * chosen round robin.
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

/* Matching items, appended by subtrie_match(). The caller keeps one of these
 * and reuses it, so steady-state matching allocates nothing. Start from
 * zero (`struct subtrie_result res = {0};`); the storage belongs to the
 * caller, released with subtrie_result_deinit(). */
struct subtrie_result {
    void **items;
    size_t len;
    size_t cap;
};

/* Allocate an empty trie. Returns 0 or -ENOMEM; *out written on success. */
int subtrie_new(struct subtrie **out);

/* Free the trie and its nodes (not the items). Accepts NULL. */
void subtrie_free(struct subtrie *t);

/*
 * Add `item` under `pattern` (a valid pattern, sb_pattern_valid()), in queue
 * group `queue` when queue_len > 0. The same item may not be added twice
 * under one pattern (not checked: that would make adding O(n)). The pattern
 * and queue name are copied; the item stays the caller's. Returns 0,
 * -EINVAL when the pattern is not valid (checked, since a misplaced '>'
 * would corrupt the trie's shape) or queue is NULL with queue_len > 0, or
 * -ENOMEM (the trie is then unchanged).
 */
int subtrie_add(struct subtrie *t, const char *pattern, size_t pattern_len, const char *queue,
                size_t queue_len, void *item);

/* Remove `item` added with exactly these arguments. Empty nodes and groups
 * are freed. Returns 0, or -ENOENT when it is not there (an invalid pattern
 * is never there). Cost: the pattern's depth plus a scan of the items (or
 * the group's members) at its node, newest first. */
int subtrie_remove(struct subtrie *t, const char *pattern, size_t pattern_len, const char *queue,
                   size_t queue_len, void *item);

/*
 * Append to `res` (after res->len is reset to 0) every item that matches
 * `subject`: each plain item once per pattern it was added under, and one
 * item per matching queue group (round robin). Returns 0, -EINVAL when the
 * subject is not valid (sb_subject_valid(); res->len is then 0), or -ENOMEM
 * (res then holds a partial result). Not const: it advances the round-robin
 * cursors of the groups it draws from, and fills the match cache.
 */
int subtrie_match(struct subtrie *t, const char *subject, size_t subject_len,
                  struct subtrie_result *res);

/* A filter for subtrie_match_filter(): may `item` receive this message? */
typedef bool (*subtrie_accept_fn)(void *item, void *arg);

/*
 * subtrie_match(), skipping items that `accept` (if not NULL) refuses: a
 * refused plain item is left out, and a queue group passes the message to
 * its next member that accepts it. Returns 0, -EINVAL for an invalid
 * subject, or -ENOMEM.
 */
int subtrie_match_filter(struct subtrie *t, const char *subject, size_t subject_len,
                         subtrie_accept_fn accept, void *arg, struct subtrie_result *res);

/* Number of items in the trie. */
size_t subtrie_count(const struct subtrie *t);

/* Number of nodes besides the root: 0 once every item is removed. For tests
 * and statistics. */
size_t subtrie_node_count(const struct subtrie *t);

/* Release the storage of a result and zero it. Accepts NULL. */
void subtrie_result_deinit(struct subtrie_result *res);

#endif /* SOCKBUS_SUBTRIE_H */
