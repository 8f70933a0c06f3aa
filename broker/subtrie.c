/*
 * subtrie.c - the subscription trie.
 *
 * Every pattern is a path from the root, one node per token. A node has
 * three kinds of children: literal tokens, kept in an open-addressing hash
 * table (linear probing, power-of-two capacity, grown at 3/4 load, so a
 * parent with 100,000 children still finds one in O(1)); at most one '*'
 * child; and at most one '>' child, a leaf that acts as a bucket for the
 * patterns ending in '>'. A pattern's items live at its last node: plain
 * items in a vector, and queue groups, each a name with a vector of members
 * and a round-robin cursor. A node records its parent, so removal can walk
 * back up and free every node left with no items, groups or children; the
 * trie's size follows the live subscriptions, not its history.
 *
 * Matching walks the subject token by token. At each node it takes at most
 * three branches: the '>' bucket (which matches the rest of the subject,
 * whatever its length), the literal child for this token and the '*' child.
 * The cost is bounded by the nodes that match a prefix of the subject, never
 * by the number of subscriptions. The walk recurses once per token, and a
 * subject of at most SB_SUBJECT_MAX bytes has at most 513 tokens, so the
 * depth is bounded. Each node emits its plain items (once per pattern, so an
 * item added under two matching patterns comes out twice) and one member of
 * each of its groups, advancing that group's cursor. Nothing is allocated
 * while matching except when the caller's result vector must grow.
 *
 * The '$' rule (DESIGN.md §3): a wildcard in the first position does not
 * match a first token that starts with '$', so only the root's '*' and '>'
 * branches check for it.
 *
 * In front of the walk sits a small match cache (see struct cache_entry):
 * publishers tend to repeat subjects, and a hit costs one hash and one
 * memcmp of the subject instead of a walk and a validation.
 *
 * Token hashes: FNV-style, eight bytes per step, with a 64-bit finalizer;
 * unseeded. Subscribers are local clients of the same machine; if that ever
 * changes, seed the hash.
 */
#include "subtrie.h"

#include "sockbus.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Smallest literal table; tables double when 3/4 full. */
enum { CHILDREN_MIN_CAP = 8 };

/* Smallest item, member and group vector. */
enum { VEC_MIN_CAP = 4 };

enum node_kind {
    NODE_ROOT,
    NODE_LITERAL, /* in the parent's literal table */
    NODE_STAR,    /* the parent's '*' child */
    NODE_GT,      /* the parent's '>' bucket: a leaf */
};

/* A vector of caller-owned pointers (items, group members). */
struct ptrvec {
    void **v;
    size_t len;
    size_t cap;
};

struct group {
    struct ptrvec members;
    size_t next; /* index of the member the next match takes */
    size_t name_len;
    char name[];
};

/* A slot of a literal-children table. The hash sits beside the pointer so
 * that probing past other children does not load their nodes: with 100,000
 * children the table is far larger than the caches, and each node touched
 * is a miss. */
struct child_slot {
    uint64_t hash;
    struct node *node;
};

struct node {
    struct node *parent;
    /* Literal children: open addressing, a NULL node is an empty slot. */
    struct child_slot *children;
    size_t children_cap; /* 0 or a power of two */
    size_t children_len;
    struct node *star;
    struct node *gt;
    struct ptrvec items;
    struct group **groups;
    size_t groups_len;
    size_t groups_cap;
    uint64_t hash; /* of token, for NODE_LITERAL */
    enum node_kind kind;
    size_t token_len;
    char token[]; /* NODE_LITERAL only; not NUL-terminated */
};

/*
 * The match cache: the nodes a recent subject matched, so that publishing
 * on the same subjects again skips the walk and the validation (a subject
 * is cached only once it has been found valid). Direct mapped by the
 * subject's hash; every add or remove bumps `gen`, which invalidates all
 * entries at once. Entries hold node pointers, not items, so queue groups
 * still rotate on every match.
 */
enum {
    CACHE_ENTRIES = 256,     /* a power of two */
    CACHE_SUBJECT_MAX = 128, /* longer subjects are not cached */
    CACHE_NODES_MAX = 8,     /* subjects matching more nodes are not cached */
};

struct cache_entry {
    uint64_t gen; /* 0: empty */
    uint64_t hash;
    uint16_t subject_len;
    uint16_t nnodes;
    struct node *nodes[CACHE_NODES_MAX];
    char subject[CACHE_SUBJECT_MAX];
};

/* Where the walk collects the nodes a subject matches. */
struct node_list {
    struct node **v;
    size_t len;
    size_t cap;
};

struct subtrie {
    struct node *root;
    size_t count; /* items, plain and grouped */
    size_t nodes; /* nodes besides the root */
    uint64_t gen; /* starts at 1; bumped by every add and remove */
    struct node_list walk;
    struct cache_entry cache[CACHE_ENTRIES];
};

/* --- Tokens and hashing ------------------------------------------------ */

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

static uint64_t token_hash(const char *tok, size_t len)
{
    /* Eight bytes per step: this runs for every token of every subject
     * the match cache does not know. */
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
    /* The table indexes by the low bits: mix (MurmurHash3's fmix64). */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53u;
    h ^= h >> 33;
    return h;
}

/* --- Vectors ----------------------------------------------------------- */

/* Make room for one more pointer. Returns 0 or -ENOMEM (vector unchanged). */
static int ptrvec_reserve_one(struct ptrvec *pv)
{
    if (pv->len < pv->cap) {
        return 0;
    }
    size_t cap = pv->cap ? pv->cap * 2 : VEC_MIN_CAP;
    if (cap > SIZE_MAX / sizeof(*pv->v)) {
        return -ENOMEM;
    }
    void **v = realloc(pv->v, cap * sizeof(*v));
    if (v == NULL) {
        return -ENOMEM;
    }
    pv->v = v;
    pv->cap = cap;
    return 0;
}

static int ptrvec_push(struct ptrvec *pv, void *p)
{
    int err = ptrvec_reserve_one(pv);
    if (err < 0) {
        return err;
    }
    pv->v[pv->len++] = p;
    return 0;
}

/* Index of p, searching from the end (the newest is the likeliest to go
 * first), or -1. */
static ptrdiff_t ptrvec_find(const struct ptrvec *pv, const void *p)
{
    for (size_t i = pv->len; i-- > 0;) {
        if (pv->v[i] == p) {
            return (ptrdiff_t)i;
        }
    }
    return -1;
}

/* Remove the pointer at i, keeping the order of the rest (delivery order
 * and round-robin order stay stable). An emptied vector gives back its
 * storage: the node or group holding it is usually about to go too. */
static void ptrvec_remove_at(struct ptrvec *pv, size_t i)
{
    memmove(&pv->v[i], &pv->v[i + 1], (pv->len - i - 1) * sizeof(*pv->v));
    pv->len--;
    if (pv->len == 0) {
        free(pv->v);
        *pv = (struct ptrvec){0};
    }
}

/* --- Nodes ------------------------------------------------------------- */

static struct node *node_new(struct subtrie *t, struct node *parent, enum node_kind kind,
                             const char *tok, size_t tok_len, uint64_t hash)
{
    struct node *n = calloc(1, sizeof(*n) + tok_len);
    if (n == NULL) {
        return NULL;
    }
    n->parent = parent;
    n->kind = kind;
    n->hash = hash;
    n->token_len = tok_len;
    if (tok_len > 0) {
        memcpy(n->token, tok, tok_len);
    }
    t->nodes++;
    return n;
}

static bool node_is_empty(const struct node *n)
{
    return n->items.len == 0 && n->groups_len == 0 && n->children_len == 0 && n->star == NULL &&
           n->gt == NULL;
}

/* The literal child for tok, or NULL. */
static struct node *children_find(const struct node *n, const char *tok, size_t tok_len,
                                  uint64_t hash)
{
    if (n->children_len == 0) {
        return NULL;
    }
    size_t mask = n->children_cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        const struct child_slot *slot = &n->children[i];
        if (slot->node == NULL) {
            return NULL;
        }
        struct node *c = slot->node;
        if (slot->hash == hash && c->token_len == tok_len && memcmp(c->token, tok, tok_len) == 0) {
            return c;
        }
    }
}

/* Put c in a table known to have a free slot and not to hold c's token. */
static void children_place(struct child_slot *slots, size_t cap, struct node *c)
{
    size_t mask = cap - 1;
    size_t i = (size_t)c->hash & mask;
    while (slots[i].node != NULL) {
        i = (i + 1) & mask;
    }
    slots[i] = (struct child_slot){.hash = c->hash, .node = c};
}

/* Make room for one more literal child. Returns 0 or -ENOMEM (the table is
 * then unchanged). */
static int children_reserve_one(struct node *n)
{
    size_t need = n->children_len + 1;
    if (n->children_cap > 0 && need <= n->children_cap / 4 * 3) {
        return 0;
    }
    size_t cap = n->children_cap ? n->children_cap * 2 : CHILDREN_MIN_CAP;
    struct child_slot *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n->children_cap; i++) {
        if (n->children[i].node != NULL) {
            children_place(slots, cap, n->children[i].node);
        }
    }
    free(n->children);
    n->children = slots;
    n->children_cap = cap;
    return 0;
}

/*
 * Take c out of its parent's table. Backward-shift deletion: the entries
 * after the hole that may live there (their home slot is at or before the
 * hole, cyclically) move back one by one, so lookups never need tombstones.
 */
static void children_remove(struct node *n, const struct node *c)
{
    size_t mask = n->children_cap - 1;
    size_t hole = (size_t)c->hash & mask;
    while (n->children[hole].node != c) {
        hole = (hole + 1) & mask;
    }
    for (size_t j = (hole + 1) & mask; n->children[j].node != NULL; j = (j + 1) & mask) {
        size_t home = (size_t)n->children[j].hash & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            n->children[hole] = n->children[j];
            hole = j;
        }
    }
    n->children[hole] = (struct child_slot){0};
    n->children_len--;
    if (n->children_len == 0) {
        free(n->children);
        n->children = NULL;
        n->children_cap = 0;
    }
}

static void group_free(struct group *g)
{
    free(g->members.v);
    free(g);
}

/* Free n and everything below it. Recursion depth is the pattern depth,
 * at most SB_SUBJECT_MAX / 2 + 1 levels. */
static void node_free_tree(struct node *n)
{
    for (size_t i = 0; i < n->children_cap; i++) {
        if (n->children[i].node != NULL) {
            node_free_tree(n->children[i].node);
        }
    }
    if (n->star != NULL) {
        node_free_tree(n->star);
    }
    if (n->gt != NULL) {
        node_free_tree(n->gt);
    }
    for (size_t i = 0; i < n->groups_len; i++) {
        group_free(n->groups[i]);
    }
    free(n->groups);
    free(n->items.v);
    free(n->children);
    free(n);
}

/* Free n, then its ancestors, as long as they are empty. The root stays. */
static void node_prune(struct subtrie *t, struct node *n)
{
    while (n != t->root && node_is_empty(n)) {
        struct node *parent = n->parent;
        switch (n->kind) {
        case NODE_LITERAL:
            children_remove(parent, n);
            break;
        case NODE_STAR:
            parent->star = NULL;
            break;
        case NODE_GT:
            parent->gt = NULL;
            break;
        case NODE_ROOT:
            break;
        }
        node_free_tree(n); /* empty: frees just n */
        t->nodes--;
        n = parent;
    }
}

/* The child of n for token tok, created when `create` and missing. Returns
 * NULL when it is missing (create false) or cannot be allocated. */
static struct node *node_child(struct subtrie *t, struct node *n, const char *tok, size_t tok_len,
                               bool create)
{
    if (token_is(tok, tok_len, '*')) {
        if (n->star == NULL && create) {
            n->star = node_new(t, n, NODE_STAR, NULL, 0, 0);
        }
        return n->star;
    }
    if (token_is(tok, tok_len, '>')) {
        if (n->gt == NULL && create) {
            n->gt = node_new(t, n, NODE_GT, NULL, 0, 0);
        }
        return n->gt;
    }
    uint64_t hash = token_hash(tok, tok_len);
    struct node *c = children_find(n, tok, tok_len, hash);
    if (c != NULL || !create) {
        return c;
    }
    if (children_reserve_one(n) < 0) {
        return NULL;
    }
    c = node_new(t, n, NODE_LITERAL, tok, tok_len, hash);
    if (c == NULL) {
        return NULL;
    }
    children_place(n->children, n->children_cap, c);
    n->children_len++;
    return c;
}

/* Walk pattern from the root. Returns its last node, or NULL when a node is
 * missing (create false) or cannot be allocated; *last is then the deepest
 * node reached, so a failed add can prune what it built. */
static struct node *node_walk(struct subtrie *t, const char *pattern, size_t len, bool create,
                              struct node **last)
{
    struct node *n = t->root;
    size_t pos = 0;
    for (;;) {
        size_t tl = token_len(pattern + pos, len - pos);
        struct node *c = node_child(t, n, pattern + pos, tl, create);
        if (c == NULL) {
            *last = n;
            return NULL;
        }
        n = c;
        pos += tl;
        if (pos == len) {
            *last = n;
            return n;
        }
        pos++; /* the dot */
    }
}

/* --- Groups ------------------------------------------------------------ */

static ptrdiff_t group_find(const struct node *n, const char *name, size_t name_len)
{
    for (size_t i = 0; i < n->groups_len; i++) {
        const struct group *g = n->groups[i];
        if (g->name_len == name_len && memcmp(g->name, name, name_len) == 0) {
            return (ptrdiff_t)i;
        }
    }
    return -1;
}

/* A new, empty group appended to n. Returns NULL on -ENOMEM. */
static struct group *group_add(struct node *n, const char *name, size_t name_len)
{
    if (n->groups_len == n->groups_cap) {
        size_t cap = n->groups_cap ? n->groups_cap * 2 : VEC_MIN_CAP;
        struct group **groups = realloc(n->groups, cap * sizeof(*groups));
        if (groups == NULL) {
            return NULL;
        }
        n->groups = groups;
        n->groups_cap = cap;
    }
    struct group *g = calloc(1, sizeof(*g) + name_len);
    if (g == NULL) {
        return NULL;
    }
    g->name_len = name_len;
    memcpy(g->name, name, name_len);
    n->groups[n->groups_len++] = g;
    return g;
}

static void group_remove_at(struct node *n, size_t i)
{
    group_free(n->groups[i]);
    memmove(&n->groups[i], &n->groups[i + 1], (n->groups_len - i - 1) * sizeof(*n->groups));
    n->groups_len--;
    if (n->groups_len == 0) {
        free(n->groups);
        n->groups = NULL;
        n->groups_cap = 0;
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
    t->root->kind = NODE_ROOT;
    t->gen = 1;
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

int subtrie_add(struct subtrie *t, const char *pattern, size_t pattern_len, const char *queue,
                size_t queue_len, void *item)
{
    t->gen++; /* whatever happens below, cached walks may be stale */
    /* Checked here, not just assumed: a '>' in the middle would hang
     * children below a bucket that matching never descends into. */
    if (!sb_pattern_valid(pattern, pattern_len) || (queue_len > 0 && queue == NULL)) {
        return -EINVAL;
    }
    struct node *last;
    struct node *n = node_walk(t, pattern, pattern_len, true, &last);
    if (n == NULL) {
        node_prune(t, last);
        return -ENOMEM;
    }
    int err;
    if (queue_len == 0) {
        err = ptrvec_push(&n->items, item);
    } else {
        ptrdiff_t gi = group_find(n, queue, queue_len);
        struct group *g = gi >= 0 ? n->groups[gi] : group_add(n, queue, queue_len);
        if (g == NULL) {
            err = -ENOMEM;
        } else {
            err = ptrvec_push(&g->members, item);
            if (err < 0 && g->members.len == 0) {
                group_remove_at(n, n->groups_len - 1); /* the one just added */
            }
        }
    }
    if (err < 0) {
        node_prune(t, n);
        return err;
    }
    t->count++;
    return 0;
}

int subtrie_remove(struct subtrie *t, const char *pattern, size_t pattern_len, const char *queue,
                   size_t queue_len, void *item)
{
    t->gen++; /* whatever happens below, cached walks may be stale */
    if (pattern == NULL || pattern_len == 0 || (queue_len > 0 && queue == NULL)) {
        return -ENOENT;
    }
    struct node *last;
    struct node *n = node_walk(t, pattern, pattern_len, false, &last);
    if (n == NULL) {
        return -ENOENT;
    }
    if (queue_len == 0) {
        ptrdiff_t i = ptrvec_find(&n->items, item);
        if (i < 0) {
            return -ENOENT;
        }
        ptrvec_remove_at(&n->items, (size_t)i);
    } else {
        ptrdiff_t gi = group_find(n, queue, queue_len);
        if (gi < 0) {
            return -ENOENT;
        }
        struct group *g = n->groups[gi];
        ptrdiff_t i = ptrvec_find(&g->members, item);
        if (i < 0) {
            return -ENOENT;
        }
        ptrvec_remove_at(&g->members, (size_t)i);
        /* Keep the cursor on the member it pointed at, so the rotation
         * neither skips nor repeats anyone. */
        if ((size_t)i < g->next) {
            g->next--;
        }
        if (g->next >= g->members.len) {
            g->next = 0;
        }
        if (g->members.len == 0) {
            group_remove_at(n, (size_t)gi);
        }
    }
    t->count--;
    node_prune(t, n);
    return 0;
}

static int result_push(struct subtrie_result *res, void *item)
{
    if (res->len == res->cap) {
        size_t cap = res->cap ? res->cap * 2 : 16;
        if (cap > SIZE_MAX / sizeof(*res->items)) {
            return -ENOMEM;
        }
        void **items = realloc(res->items, cap * sizeof(*items));
        if (items == NULL) {
            return -ENOMEM;
        }
        res->items = items;
        res->cap = cap;
    }
    res->items[res->len++] = item;
    return 0;
}

/* Everything n's patterns contribute: all plain items that `accept`
 * takes, and the next member of each group in its rotation that it takes
 * (so a member that may not receive this message, such as the publisher
 * itself without echo, does not swallow it for the whole group). */
static int node_emit(struct node *n, subtrie_accept_fn accept, void *arg,
                     struct subtrie_result *res)
{
    for (size_t i = 0; i < n->items.len; i++) {
        if (accept != NULL && !accept(n->items.v[i], arg)) {
            continue;
        }
        int err = result_push(res, n->items.v[i]);
        if (err < 0) {
            return err;
        }
    }
    for (size_t i = 0; i < n->groups_len; i++) {
        struct group *g = n->groups[i];
        size_t len = g->members.len;
        for (size_t tried = 0; tried < len; tried++) {
            void *member = g->members.v[g->next];
            g->next = g->next + 1 == len ? 0 : g->next + 1;
            if (accept == NULL || accept(member, arg)) {
                int err = result_push(res, member);
                if (err < 0) {
                    return err;
                }
                break;
            }
        }
    }
    return 0;
}

static int walk_push(struct node_list *l, struct node *n)
{
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct node **v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->len++] = n;
    return 0;
}

/* Collect the nodes below n whose patterns match the tokens of s[0..len)
 * (len > 0). `first`: s starts the subject, where the '$' rule applies.
 * One level of recursion per token. */
static int match_below(struct node *n, const char *s, size_t len, bool first, struct node_list *out)
{
    size_t tl = token_len(s, len);
    bool wild_ok = !(first && s[0] == '$');
    bool last = tl == len;
    int err;

    /* '>' takes this token and all that follow: one or more, as required. */
    if (n->gt != NULL && wild_ok) {
        err = walk_push(out, n->gt);
        if (err < 0) {
            return err;
        }
    }
    struct node *next[2] = {
        children_find(n, s, tl, n->children_len > 0 ? token_hash(s, tl) : 0),
        wild_ok ? n->star : NULL,
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

/* The cache key: eight bytes per multiply, since this runs for every
 * message (a byte-at-a-time hash showed up as a quarter of the broker's
 * time). Not keyed: the cache only compares what the hash narrows down. */
static uint64_t subject_hash(const char *s, size_t len)
{
    const uint64_t k = 0x9e3779b97f4a7c15ull;
    uint64_t h = len * k;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * k;
        h ^= h >> 32;
        s += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, len);
    h = (h ^ w) * k;
    return h ^ (h >> 29);
}

static int emit_nodes(struct node *const *nodes, size_t n, subtrie_accept_fn accept, void *arg,
                      struct subtrie_result *res)
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
    uint64_t hash = subject_hash(subject, subject_len);
    struct cache_entry *e = &t->cache[hash & (CACHE_ENTRIES - 1)];
    if (e->gen == t->gen && e->hash == hash && e->subject_len == subject_len &&
        memcmp(e->subject, subject, subject_len) == 0) {
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
    if (subject_len <= CACHE_SUBJECT_MAX && t->walk.len <= CACHE_NODES_MAX) {
        e->gen = t->gen;
        e->hash = hash;
        e->subject_len = (uint16_t)subject_len;
        e->nnodes = (uint16_t)t->walk.len;
        memcpy(e->subject, subject, subject_len);
        if (t->walk.len > 0) { /* walk.v is NULL until a walk matched */
            memcpy(e->nodes, t->walk.v, t->walk.len * sizeof(*t->walk.v));
        }
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

size_t subtrie_count(const struct subtrie *t)
{
    return t->count;
}

size_t subtrie_node_count(const struct subtrie *t)
{
    return t->nodes;
}

void subtrie_result_deinit(struct subtrie_result *res)
{
    if (res == NULL) {
        return;
    }
    free(res->items);
    *res = (struct subtrie_result){0};
}
