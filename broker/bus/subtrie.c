/*
 * subtrie.c - the subscription trie.
 *
 * Every pattern is a path from the root, one node per token. A node is
 * small: its literal children (a ctab: nothing, one child held directly, or
 * a keyed hash table that grows from 4 slots), a pointer to its "extra"
 * record, and its token. The extra record exists only for nodes that have
 * a '*' child, a '>' child (a leaf that acts as a bucket for the patterns
 * ending in '>'), or subscriptions: those ending at the node, plain ones in
 * a ring in order of arrival, and its queue groups in a ctab keyed by name,
 * each group a ring of members with a cursor. A chain of single-child
 * nodes, such as a long pattern of one-byte tokens, therefore costs one
 * 24-byte request (a 32-byte chunk) per token.
 *
 *   struct node, x86-64: 120 bytes plus the token, and an 8-slot child
 *   table of 128 bytes once it had a child (so about 290 bytes of heap per
 *   token), before; 24 bytes for tokens of up to 6 bytes (18 plus the
 *   token above that), and no table for a single child, now.
 *
 * Nodes are not pooled. A 24-byte node already fills glibc's smallest
 * chunk but for its 8-byte size word, which is all a pool could save; and
 * a pool's slab stays as long as one node in it lives, where freed chunks
 * go back to the system with malloc_trim() (the broker's trim timer) once
 * a client has dropped its subscriptions.
 *
 * A subscription carries its place (struct subtrie_sub: its ring, node and
 * group), so removing it is O(1): unlink it from its ring. Only when that
 * leaves the node empty does removal walk the pattern from the root again,
 * to free the node and every ancestor left empty with it; the trie's size
 * follows the live subscriptions, not its history. Nodes keep no parent
 * pointer: that walk finds the ancestors, and only when nodes are freed.
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
 * subject instead of a walk and a validation.
 *
 * Every table here is keyed by the process's random key (hash.h), the
 * child and group tables through ctab, the cache through hash_subject():
 * a client cannot make tokens or group names collide on purpose.
 *
 * Why one file of about 700 lines: adding, removing, matching and
 * measuring all work on the node layout below, which no other file needs
 * to see; what needs none of it (the match cache, the child tables) has a
 * file of its own.
 */
#include "subtrie.h"

#include "array.h"
#include "ctab.h"
#include "hash.h"
#include "matchcache.h"
#include "mem.h"
#include "sockbus.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Deepest path: a subject of SB_SUBJECT_MAX bytes has at most this many
 * tokens. */
enum { TRIE_DEPTH_MAX = SB_SUBJECT_MAX / 2 + 1 };

struct subtrie_node {
    struct ctab children; /* literal children, keyed by token */
    struct node_extra *x; /* NULL while it has none of what that holds */
    uint16_t token_len;   /* 0 for the root and wildcard nodes */
    char token[];         /* literal nodes; not NUL-terminated */
};

/* What few nodes have. Freed as soon as it holds nothing, so a node has
 * one exactly when it has a wildcard child or subscriptions. */
struct node_extra {
    struct subtrie_node *star;
    struct subtrie_node *gt;
    struct subtrie_sub *plain; /* ring, first in order of arrival */
    struct ctab groups;        /* struct subtrie_group, keyed by name */
};

struct subtrie_group {
    struct subtrie_sub *members; /* ring, first in order of arrival */
    struct subtrie_sub *turn;    /* the member the next match tries first */
    uint16_t name_len;
    char name[];
};

/* Where the walk collects the nodes a subject matches. */
struct node_list {
    struct subtrie_node **v;
    size_t len;
    size_t cap;
};

struct subtrie {
    struct subtrie_node *root;
    size_t count; /* subscriptions, plain and grouped */
    size_t nodes; /* nodes besides the root */
    struct node_list walk;
    /* The path from the root to a node being added or freed. */
    struct subtrie_node *path[TRIE_DEPTH_MAX + 1];
    struct matchcache cache; /* invalidated by every add and remove */
};

/* --- Tokens ------------------------------------------------------------ */

/* Length of the token at the start of s[0..len). */
static size_t token_len(const char *s, size_t len)
{
    const char *dot = memchr(s, '.', len);
    return dot ? (size_t)(dot - s) : len;
}

static bool token_is(const char *tok, size_t len, char c)
{
    return len == 1 && tok[0] == c;
}

static const char *node_key(const void *obj, size_t *len)
{
    const struct subtrie_node *n = obj;
    *len = n->token_len;
    return n->token;
}

static const char *group_key(const void *obj, size_t *len)
{
    const struct subtrie_group *g = obj;
    *len = g->name_len;
    return g->name;
}

/* --- Rings ------------------------------------------------------------- */

/* Append s to the ring that *first starts (the end is first's prev). */
static void ring_append(struct subtrie_sub **first, struct subtrie_sub *s)
{
    if (*first == NULL) {
        s->next = s;
        s->prev = s;
        *first = s;
        return;
    }
    struct subtrie_sub *last = (*first)->prev;
    s->prev = last;
    s->next = *first;
    last->next = s;
    (*first)->prev = s;
}

static void ring_remove(struct subtrie_sub **first, struct subtrie_sub *s)
{
    if (s->next == s) {
        *first = NULL;
    } else {
        s->prev->next = s->next;
        s->next->prev = s->prev;
        if (*first == s) {
            *first = s->next;
        }
    }
    s->next = NULL;
    s->prev = NULL;
}

/* --- Nodes ------------------------------------------------------------- */

static size_t node_size(size_t tok_len)
{
    size_t size = offsetof(struct subtrie_node, token) + tok_len;
    return size < sizeof(struct subtrie_node) ? sizeof(struct subtrie_node) : size;
}

static size_t group_size(size_t name_len)
{
    size_t size = offsetof(struct subtrie_group, name) + name_len;
    return size < sizeof(struct subtrie_group) ? sizeof(struct subtrie_group) : size;
}

static struct subtrie_node *node_new(struct subtrie *t, const char *tok, size_t tok_len)
{
    struct subtrie_node *n = malloc(node_size(tok_len));
    if (n == NULL) {
        return NULL;
    }
    n->children = (struct ctab){0};
    n->x = NULL;
    n->token_len = (uint16_t)tok_len;
    if (tok_len > 0) {
        memcpy(n->token, tok, tok_len);
    }
    t->nodes++;
    return n;
}

static bool node_is_empty(const struct subtrie_node *n)
{
    return n->children.p == 0 && n->x == NULL;
}

/* n's extra record, made if it has none. NULL on -ENOMEM. */
static struct node_extra *extra_get(struct subtrie_node *n)
{
    if (n->x == NULL) {
        n->x = calloc(1, sizeof(*n->x));
    }
    return n->x;
}

/* Free n's extra record if it holds nothing any more. */
static void extra_drop_if_empty(struct subtrie_node *n)
{
    struct node_extra *x = n->x;
    if (x != NULL && x->star == NULL && x->gt == NULL && x->plain == NULL && x->groups.p == 0) {
        free(x);
        n->x = NULL;
    }
}

/* Free n and everything below it (not the subscriptions). Recursion depth
 * is the pattern depth, at most TRIE_DEPTH_MAX levels. */
static void node_free_tree(struct subtrie_node *n)
{
    struct subtrie_node *c;
    for (size_t pos = 0; (c = ctab_next(&n->children, &pos)) != NULL;) {
        node_free_tree(c);
    }
    ctab_deinit(&n->children);
    struct node_extra *x = n->x;
    if (x != NULL) {
        if (x->star != NULL) {
            node_free_tree(x->star);
        }
        if (x->gt != NULL) {
            node_free_tree(x->gt);
        }
        struct subtrie_group *g;
        for (size_t pos = 0; (g = ctab_next(&x->groups, &pos)) != NULL;) {
            free(g);
        }
        ctab_deinit(&x->groups);
        free(x);
    }
    free(n);
}

/* Take the empty node n out of its parent and free it. */
static void node_unlink_free(struct subtrie *t, struct subtrie_node *parent, struct subtrie_node *n)
{
    struct node_extra *x = parent->x;
    if (x != NULL && x->star == n) {
        x->star = NULL;
        extra_drop_if_empty(parent);
    } else if (x != NULL && x->gt == n) {
        x->gt = NULL;
        extra_drop_if_empty(parent);
    } else {
        ctab_remove(&parent->children, n, node_key);
    }
    free(n);
    t->nodes--;
}

/* Free the nodes t->path[depth], [depth - 1], ... as long as they are
 * empty. The root (path[0]) stays. */
static void path_prune(struct subtrie *t, size_t depth)
{
    for (; depth > 0 && node_is_empty(t->path[depth]); depth--) {
        node_unlink_free(t, t->path[depth - 1], t->path[depth]);
    }
}

/* The child of n for token tok, created when `create` and missing. Returns
 * NULL when it is missing (create false) or cannot be allocated. */
static struct subtrie_node *node_child(struct subtrie *t, struct subtrie_node *n, const char *tok,
                                       size_t tok_len, bool create)
{
    bool star = token_is(tok, tok_len, '*');
    if (star || token_is(tok, tok_len, '>')) {
        struct node_extra *x = create ? extra_get(n) : n->x;
        if (x == NULL) {
            return NULL;
        }
        struct subtrie_node **slot = star ? &x->star : &x->gt;
        if (*slot == NULL && create) {
            *slot = node_new(t, NULL, 0);
            if (*slot == NULL) {
                extra_drop_if_empty(n);
            }
        }
        return *slot;
    }
    struct subtrie_node *c = ctab_find(&n->children, tok, tok_len, node_key);
    if (c != NULL || !create) {
        return c;
    }
    c = node_new(t, tok, tok_len);
    if (c == NULL) {
        return NULL;
    }
    if (ctab_insert(&n->children, c, node_key) < 0) {
        free(c);
        t->nodes--;
        return NULL;
    }
    return c;
}

/* Walk pattern from the root into t->path[0..depth]. Returns the depth of
 * its last node, or -1 when a node is missing (create false) or cannot be
 * allocated; *reached is then the depth of the deepest node on the path,
 * so that a failed add can prune what it built. */
static ptrdiff_t path_walk(struct subtrie *t, const char *pattern, size_t len, bool create,
                           size_t *reached)
{
    size_t depth = 0;
    size_t pos = 0;
    t->path[0] = t->root;
    for (;;) {
        size_t tl = token_len(pattern + pos, len - pos);
        struct subtrie_node *c = node_child(t, t->path[depth], pattern + pos, tl, create);
        if (c == NULL) {
            *reached = depth;
            return -1;
        }
        t->path[++depth] = c;
        pos += tl;
        if (pos == len) {
            *reached = depth;
            return (ptrdiff_t)depth;
        }
        pos++; /* the dot */
    }
}

/* --- API --------------------------------------------------------------- */

int subtrie_new(struct subtrie **out)
{
    struct subtrie *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return -ENOMEM;
    }
    t->root = calloc(1, sizeof(*t->root));
    if (t->root == NULL) {
        free(t);
        return -ENOMEM;
    }
    matchcache_init(&t->cache);
    *out = t;
    return 0;
}

void subtrie_free(struct subtrie *t)
{
    if (t == NULL) {
        return;
    }
    node_free_tree(t->root);
    free(t->walk.v);
    free(t);
}

/* Put s into the queue group `queue` of node n (made if new). */
static int group_join(struct node_extra *x, struct subtrie_sub *s, const char *queue,
                      size_t queue_len)
{
    struct subtrie_group *g = ctab_find(&x->groups, queue, queue_len, group_key);
    if (g == NULL) {
        g = malloc(group_size(queue_len));
        if (g == NULL) {
            return -ENOMEM;
        }
        g->members = NULL;
        g->turn = NULL;
        g->name_len = (uint16_t)queue_len;
        memcpy(g->name, queue, queue_len);
        if (ctab_insert(&x->groups, g, group_key) < 0) {
            free(g);
            return -ENOMEM;
        }
    }
    /* At the end of the ring: a newcomer's first turn comes after everyone
     * already there has had theirs. */
    ring_append(&g->members, s);
    s->group = g;
    return 0;
}

int subtrie_add(struct subtrie *t, struct subtrie_sub *s, const char *pattern, size_t pattern_len,
                const char *queue, size_t queue_len)
{
    matchcache_invalidate(&t->cache); /* whatever happens below */
    /* Checked here, not just assumed: a '>' in the middle would hang
     * children below a bucket that matching never descends into. */
    if (!sb_pattern_valid(pattern, pattern_len) || (queue_len > 0 && queue == NULL) ||
        queue_len > UINT16_MAX) {
        return -EINVAL;
    }
    size_t reached;
    ptrdiff_t depth = path_walk(t, pattern, pattern_len, true, &reached);
    if (depth < 0) {
        path_prune(t, reached);
        return -ENOMEM;
    }
    struct subtrie_node *n = t->path[depth];
    struct node_extra *x = extra_get(n);
    int err = x == NULL ? -ENOMEM : 0;
    if (err == 0 && queue_len > 0) {
        err = group_join(x, s, queue, queue_len);
    } else if (err == 0) {
        ring_append(&x->plain, s);
        s->group = NULL;
    }
    if (err < 0) {
        extra_drop_if_empty(n);
        path_prune(t, (size_t)depth);
        return err;
    }
    s->node = n;
    t->count++;
    return 0;
}

void subtrie_remove(struct subtrie *t, struct subtrie_sub *s, const char *pattern,
                    size_t pattern_len)
{
    matchcache_invalidate(&t->cache); /* it may hold the nodes freed below */
    struct subtrie_node *n = s->node;
    struct subtrie_group *g = s->group;
    if (g != NULL) {
        if (g->turn == s) {
            g->turn = s->next == s ? NULL : s->next;
        }
        ring_remove(&g->members, s);
        if (g->members == NULL) {
            ctab_remove(&n->x->groups, g, group_key);
            free(g);
        }
    } else {
        ring_remove(&n->x->plain, s);
    }
    s->node = NULL;
    s->group = NULL;
    t->count--;
    extra_drop_if_empty(n);
    if (!node_is_empty(n)) {
        return;
    }
    /* The node goes, and its ancestors left empty with it: the pattern
     * leads to them (it was added under it, so every node is there). */
    size_t reached;
    ptrdiff_t depth = path_walk(t, pattern, pattern_len, false, &reached);
    if (depth > 0 && t->path[depth] == n) {
        path_prune(t, (size_t)depth);
    }
}

size_t subtrie_cost(const char *pattern, size_t pattern_len, size_t queue_len)
{
    size_t extra = mem_footprint(sizeof(struct node_extra));
    size_t cost = extra; /* the last node's, for the subscription */
    for (size_t pos = 0; pos < pattern_len;) {
        size_t tl = token_len(pattern + pos, pattern_len - pos);
        cost += mem_footprint(node_size(tl));
        if (token_is(pattern + pos, tl, '*') || token_is(pattern + pos, tl, '>')) {
            cost += extra; /* the parent's, for its wildcard child */
        } else {
            cost += ctab_entry_bytes_max(); /* its place in the parent's table */
        }
        pos += tl + 1;
    }
    if (queue_len > 0) {
        cost += mem_footprint(group_size(queue_len)) + ctab_entry_bytes_max();
    }
    return cost;
}

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

/* Everything n's patterns contribute: all plain subscriptions that
 * `accept` takes, and one member of each group. */
static int node_emit(const struct subtrie_node *n, subtrie_accept_fn accept, void *arg,
                     struct subtrie_result *res)
{
    const struct node_extra *x = n->x;
    if (x == NULL) {
        return 0;
    }
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

static int walk_push(struct node_list *l, struct subtrie_node *n)
{
    if (array_reserve(l->v, l->cap, l->len, 1, 16) < 0) {
        return -ENOMEM;
    }
    l->v[l->len++] = n;
    return 0;
}

/* Collect the nodes below n whose patterns match the tokens of s[0..len)
 * (len > 0). `first`: s starts the subject, where the '$' rule applies.
 * One level of recursion per token. */
static int match_below(const struct subtrie_node *n, const char *s, size_t len, bool first,
                       struct node_list *out)
{
    size_t tl = token_len(s, len);
    bool wild_ok = !(first && s[0] == '$');
    bool last = tl == len;
    const struct node_extra *x = wild_ok ? n->x : NULL;
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

int subtrie_match_filter(struct subtrie *t, const char *subject, size_t subject_len,
                         subtrie_accept_fn accept, void *arg, struct subtrie_result *res)
{
    res->len = 0;
    uint64_t hash = 0;
    struct matchcache_entry *e = matchcache_slot(&t->cache, subject, subject_len, &hash);
    if (e != NULL && matchcache_holds(&t->cache, e, hash, subject, subject_len)) {
        return emit_nodes(e->nodes, e->nnodes, accept, arg, res);
    }
    /* A miss: validate (which also bounds the recursion), walk, and keep
     * the walk's nodes when they fit an entry. */
    if (!sb_subject_valid(subject, subject_len)) {
        return -EINVAL;
    }
    t->walk.len = 0;
    int err = match_below(t->root, subject, subject_len, true, &t->walk);
    if (err < 0) {
        return err;
    }
    if (e != NULL) {
        matchcache_store(&t->cache, e, hash, subject, subject_len, t->walk.v, t->walk.len);
    }
    return emit_nodes(t->walk.v, t->walk.len, accept, arg, res);
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

size_t subtrie_count(const struct subtrie *t)
{
    return t->count;
}

size_t subtrie_node_count(const struct subtrie *t)
{
    return t->nodes;
}

static size_t node_max_probe(const struct subtrie_node *n)
{
    size_t max = ctab_max_probe(&n->children);
    struct subtrie_node *c;
    for (size_t pos = 0; (c = ctab_next(&n->children, &pos)) != NULL;) {
        size_t p = node_max_probe(c);
        max = p > max ? p : max;
    }
    if (n->x != NULL) {
        size_t p = ctab_max_probe(&n->x->groups);
        max = p > max ? p : max;
        for (int i = 0; i < 2; i++) {
            const struct subtrie_node *w = i == 0 ? n->x->star : n->x->gt;
            p = w != NULL ? node_max_probe(w) : 0;
            max = p > max ? p : max;
        }
    }
    return max;
}

size_t subtrie_max_probe(const struct subtrie *t)
{
    return node_max_probe(t->root);
}

static size_t node_heap_bytes(const struct subtrie_node *n)
{
    size_t bytes = ctab_bytes(&n->children);
    struct subtrie_node *c;
    for (size_t pos = 0; (c = ctab_next(&n->children, &pos)) != NULL;) {
        bytes += mem_footprint(node_size(c->token_len)) + node_heap_bytes(c);
    }
    const struct node_extra *x = n->x;
    if (x != NULL) {
        bytes += mem_footprint(sizeof(*x)) + ctab_bytes(&x->groups);
        struct subtrie_group *g;
        for (size_t pos = 0; (g = ctab_next(&x->groups, &pos)) != NULL;) {
            bytes += mem_footprint(group_size(g->name_len));
        }
        for (int i = 0; i < 2; i++) {
            const struct subtrie_node *w = i == 0 ? x->star : x->gt;
            if (w != NULL) {
                bytes += mem_footprint(node_size(0)) + node_heap_bytes(w);
            }
        }
    }
    return bytes;
}

size_t subtrie_heap_bytes(const struct subtrie *t)
{
    return node_heap_bytes(t->root);
}

void subtrie_result_deinit(struct subtrie_result *res)
{
    if (res == NULL) {
        return;
    }
    free(res->items);
    *res = (struct subtrie_result){0};
}
