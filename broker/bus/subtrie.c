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
 * Every table here is keyed by the process's random key (hash.h), the
 * child and group tables through ctab, the cache through hash_subject():
 * a client cannot make tokens or group names collide on purpose.
 *
 * Three files share the node layout (subtrie_node.h), each along a seam
 * of the trie's work: this one builds and prunes the structure (nodes,
 * rings, adding and removing), subtrie_match.c walks it for a subject, and
 * subtrie_cost.c measures it (what a subscription can cost, counts, heap
 * bytes, probe runs). What needs none of the layout (the match cache, the
 * child tables) has a file of its own.
 */
#include "subtrie.h"

#include "ctab.h"
#include "matchcache.h"
#include "sockbus.h"
#include "subject.h"
#include "subtrie_node.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Patterns are split with subject_next_token() (subject.h): the grammar is
 * written once, in the wire layer. */

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
    bool star = subject_token_is(tok, tok_len, '*');
    if (star || subject_token_is(tok, tok_len, '>')) {
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
    const char *tok;
    size_t tl;
    t->path[0] = t->root;
    while (subject_next_token(pattern, len, &pos, &tok, &tl)) {
        struct subtrie_node *c = node_child(t, t->path[depth], tok, tl, create);
        if (c == NULL) {
            *reached = depth;
            return -1;
        }
        t->path[++depth] = c;
    }
    *reached = depth;
    return (ptrdiff_t)depth;
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
    matchcache_deinit(&t->cache);
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
    matchcache_fit(&t->cache, t->count);
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
    matchcache_fit(&t->cache, t->count);
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
