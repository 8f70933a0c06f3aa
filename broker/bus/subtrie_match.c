/*
 * subtrie_match.c - which subscriptions of the trie match a subject (the
 * trie's design, and its node layout, are in subtrie.c and subtrie_node.h).
 *
 * Matching walks the subject token by token. At each node it takes at most
 * three branches: the '>' bucket (which matches the rest of the subject,
 * whatever its length), the literal child for this token and the '*' child.
 * The cost is bounded by the nodes that match a prefix of the subject, never
 * by the number of subscriptions. The walk recurses once per token, and a
 * subject of at most SB_SUBJECT_MAX bytes has at most 513 tokens, so the
 * depth is bounded. Each node emits its plain subscriptions and one member
 * of each of its groups, advancing that group's cursor. Nothing is
 * allocated while matching except when the caller's result vector must
 * grow.
 *
 * The '$' rule (docs/protocol.md, Subjects): a wildcard in the first
 * position does not match a first token that starts with '$', so only the
 * root's '*' and '>' branches check for it.
 *
 * In front of the walk sits a small match cache (matchcache.h): publishers
 * tend to repeat subjects, and a hit costs one hash and one memcmp of the
 * subject instead of a walk and a validation. Behind it, in a trie of many
 * subscriptions, the cache's index: a publisher cycling over more subjects
 * than the cache's 256 entries finds each in one probe of the index
 * instead of a walk through large child tables.
 *
 * Where a token ends is subject_token_len(), and the `$` rule is
 * subject_wildcard_may_take() (subject.h): the grammar is written once, in
 * the wire layer, and sb_pattern_match() is the reference the unit tests
 * hold this walk to.
 */
#include "subtrie.h"

#include "array.h"
#include "ctab.h"
#include "matchcache.h"
#include "sockbus.h"
#include "subject.h"
#include "subtrie_node.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

static inline int result_push(struct subtrie_result *res, struct subtrie_sub *s)
{
    int err = array_reserve(res->items, res->cap, res->len, 1, 16);
    if (err < 0) {
        return err;
    }
    res->items[res->len++] = s;
    return 0;
}

/* The next member of g, in its rotation, that `accept` takes (so a member
 * that may not receive this message, such as the publisher itself without
 * echo, does not swallow it for the whole group). */
static int group_emit(struct subtrie_group *g, subtrie_accept_fn accept, void *arg,
                      struct subtrie_result *res)
{
    struct subtrie_sub *start = g->turn != NULL ? g->turn : g->members;
    struct subtrie_sub *m = start;
    do {
        if (accept == NULL || accept(m, arg)) {
            g->turn = m->next;
            return result_push(res, m);
        }
        m = m->next;
    } while (m != start);
    return 0;
}

/* Everything the patterns of a node with record x contribute: all plain
 * subscriptions that `accept` takes, and one member of each group. */
static inline int extra_emit(const struct node_extra *x, subtrie_accept_fn accept, void *arg,
                             struct subtrie_result *res)
{
    struct subtrie_sub *first = x->plain;
    if (first != NULL) {
        struct subtrie_sub *s = first;
        do {
            if (accept == NULL || accept(s, arg)) {
                int err = result_push(res, s);
                if (err < 0) {
                    return err;
                }
            }
            s = s->next;
        } while (s != first);
    }
    if (x->groups.p != 0) {
        struct subtrie_group *g;
        for (size_t pos = 0; (g = ctab_next(&x->groups, &pos)) != NULL;) {
            int err = group_emit(g, accept, arg, res);
            if (err < 0) {
                return err;
            }
        }
    }
    return 0;
}

static inline int node_emit(const struct subtrie_node *n, subtrie_accept_fn accept, void *arg,
                            struct subtrie_result *res)
{
    return n->x != NULL ? extra_emit(n->x, accept, arg, res) : 0;
}

static int walk_push(struct node_list *l, struct subtrie_node *n)
{
    if (array_reserve(l->v, l->cap, l->len, 1, 16) < 0) {
        return -ENOMEM;
    }
    l->v[l->len++] = n;
    return 0;
}

/* Collect the nodes below n whose patterns match the tokens of s[0..len)
 * (len > 0, the rest of a valid subject). `first`: s starts the subject,
 * where the '$' rule applies. One level of recursion per token. */
static int match_below(const struct subtrie_node *n, const char *s, size_t len, bool first,
                       struct node_list *out)
{
    size_t tl = subject_token_len(s, len);
    bool last = tl == len;
    const struct node_extra *x = subject_wildcard_may_take(first, s) ? n->x : NULL;
    int err;

    /* '>' takes this token and all that follow: one or more, as required. */
    if (x != NULL && x->gt != NULL) {
        err = walk_push(out, x->gt);
        if (err < 0) {
            return err;
        }
    }
    struct subtrie_node *next[2] = {
        ctab_find(&n->children, s, tl, node_key),
        x != NULL ? x->star : NULL,
    };
    for (size_t i = 0; i < 2; i++) {
        if (next[i] == NULL) {
            continue;
        }
        if (last) {
            err = walk_push(out, next[i]);
        } else {
            err = match_below(next[i], s + tl + 1, len - tl - 1, false, out);
        }
        if (err < 0) {
            return err;
        }
    }
    return 0;
}

static int emit_nodes(struct subtrie_node *const *nodes, size_t n, subtrie_accept_fn accept,
                      void *arg, struct subtrie_result *res)
{
    for (size_t i = 0; i < n; i++) {
        int err = node_emit(nodes[i], accept, arg, res);
        if (err < 0) {
            return err;
        }
    }
    return 0;
}

/*
 * Past the 256 entries, in two steps out of line (each a jump from the
 * one before, as they take the arguments of subtrie_match_filter()), so
 * that neither the hit in the entries nor the hit in the index carries
 * the registers of the walk. The subject's entry (NULL when the subject is
 * too long for one) and hash come in t->miss_entry and t->miss_hash.
 */

/*
 * What the index keeps for a subject that matched the one node with record
 * x: the record, or, for a node with one plain subscription and no queue
 * group (a subscription per subject: the case the index is for), that
 * subscription itself, with the low bit set, so that a lookup reaches it
 * without loading the record first. Both live until the trie next
 * changes, which empties the index.
 */
static const void *index_lead(const struct node_extra *x)
{
    if (x != NULL && x->plain != NULL && x->plain->next == x->plain && x->groups.p == 0) {
        return (const char *)x->plain + 1;
    }
    return x;
}

/* The one subscription an index slot leads to (index_lead()), or NULL
 * when it leads to a record, or to nothing. */
static inline struct subtrie_sub *lead_one(const void *lead)
{
    if (!((uintptr_t)lead & 1u)) {
        return NULL;
    }
    return (struct subtrie_sub *)(void *)((char *)(uintptr_t)lead - 1);
}

/* The subscriptions an index slot leads to (index_lead()), into res. */
static inline int lead_emit(const void *lead, subtrie_accept_fn accept, void *arg,
                            struct subtrie_result *res)
{
    struct subtrie_sub *s = lead_one(lead);
    if (s != NULL) {
        return accept == NULL || accept(s, arg) ? result_push(res, s) : 0;
    }
    return lead != NULL ? extra_emit(lead, accept, arg, res) : 0;
}

/* Validate (which also bounds the recursion), walk, and keep the walk's
 * nodes when they fit an entry, and in the index. */
static __attribute__((noinline)) int match_walk(struct subtrie *t, const char *subject,
                                                size_t subject_len, subtrie_accept_fn accept,
                                                void *arg, struct subtrie_result *res)
{
    if (!sb_subject_valid(subject, subject_len)) {
        return -EINVAL;
    }
    t->walk.len = 0;
    int err = match_below(t->root, subject, subject_len, true, &t->walk);
    if (err < 0) {
        return err;
    }
    struct matchcache_entry *e = t->miss_entry;
    if (e != NULL) {
        uint64_t hash = t->miss_hash;
        matchcache_store(&t->cache, e, hash, subject, subject_len, t->walk.v, t->walk.len);
        matchcache_index_store(&t->cache, hash, subject, subject_len, t->walk.len,
                               t->walk.len == 1 ? index_lead(t->walk.v[0]->x) : NULL);
    }
    return emit_nodes(t->walk.v, t->walk.len, accept, arg, res);
}

/* The index, when the trie is large enough to have one. Its entry leads
 * straight to the subscriptions (one or two loads fewer than through the
 * node: index_lead()). A
 * subject found there is not copied into the 256 entries: a publisher
 * cycling over more subjects than that would only overwrite them. */
static __attribute__((noinline)) int match_index(struct subtrie *t, const char *subject,
                                                 size_t subject_len, subtrie_accept_fn accept,
                                                 void *arg, struct subtrie_result *res)
{
    const struct matchcache_index_entry *ie =
        t->miss_entry != NULL ? matchcache_index_find(&t->cache, t->miss_hash, subject, subject_len)
                              : NULL;
    if (ie == NULL) {
        return match_walk(t, subject, subject_len, accept, arg, res);
    }
    return lead_emit(ie->x, accept, arg, res);
}

/* subtrie_match_filter(), with the subject's hash when it is known (0:
 * not). */
__attribute__((always_inline)) static inline int
match_filter(struct subtrie *t, const char *subject, size_t subject_len, uint64_t hash,
             subtrie_accept_fn accept, void *arg, struct subtrie_result *res)
{
    res->len = 0;
    struct matchcache_entry *e = hash != 0
                                     ? matchcache_slot_of(&t->cache, subject_len, hash)
                                     : matchcache_slot(&t->cache, subject, subject_len, &hash);
    if (e != NULL && matchcache_holds(&t->cache, e, hash, subject, subject_len)) {
        return emit_nodes(e->nodes, e->nnodes, accept, arg, res);
    }
    t->miss_entry = e;
    t->miss_hash = hash;
    return match_index(t, subject, subject_len, accept, arg, res);
}

int subtrie_match_filter(struct subtrie *t, const char *subject, size_t subject_len,
                         subtrie_accept_fn accept, void *arg, struct subtrie_result *res)
{
    return match_filter(t, subject, subject_len, 0, accept, arg, res);
}

int subtrie_match_hashed(struct subtrie *t, const char *subject, size_t subject_len, uint64_t hash,
                         subtrie_accept_fn accept, void *arg, struct subtrie_result *res)
{
    return match_filter(t, subject, subject_len, hash, accept, arg, res);
}

struct subtrie_sub *subtrie_match_one(struct subtrie *t, const char *subject, size_t subject_len,
                                      uint64_t hash)
{
    const struct matchcache_index_entry *ie =
        matchcache_index_find(&t->cache, hash, subject, subject_len);
    return ie != NULL ? lead_one(ie->x) : NULL;
}

const struct matchcache *subtrie_cache(const struct subtrie *t)
{
    return &t->cache;
}

int subtrie_match(struct subtrie *t, const char *subject, size_t subject_len,
                  struct subtrie_result *res)
{
    if (subject == NULL) {
        res->len = 0;
        return -EINVAL;
    }
    return subtrie_match_filter(t, subject, subject_len, NULL, NULL, res);
}

/* What node n contributes to a match, without taking a turn: its plain
 * subscriptions and one per queue group, counted up to `max`. */
static size_t node_interest(const struct subtrie_node *n, size_t max)
{
    const struct node_extra *x = n->x;
    if (x == NULL) {
        return 0;
    }
    size_t count = ctab_count(&x->groups);
    const struct subtrie_sub *first = x->plain;
    if (first != NULL) {
        const struct subtrie_sub *s = first;
        do {
            count++;
            s = s->next;
        } while (s != first && count < max);
    }
    return count;
}

int subtrie_interest(struct subtrie *t, const char *subject, size_t subject_len, size_t max,
                     size_t *count)
{
    if (subject == NULL || !sb_subject_valid(subject, subject_len)) {
        return -EINVAL;
    }
    t->walk.len = 0;
    int err = match_below(t->root, subject, subject_len, true, &t->walk);
    if (err < 0) {
        return err;
    }
    size_t n = 0;
    for (size_t i = 0; i < t->walk.len && n < max; i++) {
        n += node_interest(t->walk.v[i], max - n);
    }
    *count = n < max ? n : max;
    return 0;
}

void subtrie_result_deinit(struct subtrie_result *res)
{
    if (res == NULL) {
        return;
    }
    free(res->items);
    *res = (struct subtrie_result){0};
}
