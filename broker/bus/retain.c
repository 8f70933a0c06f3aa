/*
 * retain.c - the retained store (see retain.h).
 *
 * A node per token of a stored subject: its children in a ctab keyed by
 * token (one child held directly, a table from two on), the value stored
 * for the subject that ends there, and its token. A node goes when it has
 * neither value nor children, so the trie holds only the paths of stored
 * subjects.
 *
 * Storing walks the subject's tokens as far as nodes exist and adds the
 * rest. Before anything is allocated, the bytes the change will add are
 * known exactly: the new value less the old one, a node for each missing
 * token, and the growth of the one existing table that gains a child (a
 * new node's own table starts empty). The change is refused when that
 * would take `bytes` past the limit; otherwise `bytes` moves by exactly
 * the footprints of what was allocated and freed.
 */
#include "retain.h"

#include "frame.h"
#include "mem.h"
#include "sockbus.h"
#include "subject.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Tokens of the deepest subject (SB_SUBJECT_MAX bytes). */
enum { RETAIN_DEPTH_MAX = SB_SUBJECT_MAX / 2 + 1 };

struct retain_node {
    struct ctab children;   /* keyed by token */
    struct retained *value; /* of the subject that ends here, or NULL */
    uint16_t token_len;
    char token[];
};

static const char *node_key(const void *obj, size_t *len)
{
    const struct retain_node *n = obj;
    *len = n->token_len;
    return n->token;
}

static size_t node_size(size_t tok_len)
{
    size_t size = offsetof(struct retain_node, token) + tok_len;
    return size < sizeof(struct retain_node) ? sizeof(struct retain_node) : size;
}

static size_t value_size(size_t frame_size)
{
    return offsetof(struct retained, frame) + frame_size;
}

void retain_init(struct retain_store *s)
{
    *s = (struct retain_store){0};
}

static void node_free_tree(struct retain_node *n)
{
    struct retain_node *c;
    for (size_t pos = 0; (c = ctab_next(&n->children, &pos)) != NULL;) {
        node_free_tree(c);
    }
    ctab_deinit(&n->children);
    free(n->value);
    free(n);
}

void retain_deinit(struct retain_store *s)
{
    struct retain_node *c;
    for (size_t pos = 0; (c = ctab_next(&s->top, &pos)) != NULL;) {
        node_free_tree(c);
    }
    ctab_deinit(&s->top);
    retain_init(s);
}

/* The children table of path[depth], path[0] being the store's top. */
static struct ctab *children_of(struct retain_store *s, struct retain_node *const *path,
                                size_t depth)
{
    return depth == 0 ? &s->top : &path[depth]->children;
}

/* Insert `child` into `tab`, counting the table's change in bytes. */
static int table_insert(struct retain_store *s, struct ctab *tab, struct retain_node *child)
{
    size_t before = ctab_bytes(tab);
    int err = ctab_insert(tab, child, node_key);
    if (err == 0) {
        s->bytes = s->bytes - before + ctab_bytes(tab);
    }
    return err;
}

static void table_remove(struct retain_store *s, struct ctab *tab, struct retain_node *child)
{
    size_t before = ctab_bytes(tab);
    ctab_remove(tab, child, node_key);
    size_t after = ctab_bytes(tab);
    s->bytes = s->bytes - before + after;
    s->freed += before > after ? before - after : 0;
}

/* Free path[depth], path[depth - 1], ... while they hold neither a value
 * nor children. */
static void path_prune(struct retain_store *s, struct retain_node *const *path, size_t depth)
{
    for (; depth > 0; depth--) {
        struct retain_node *n = path[depth];
        if (n->value != NULL || n->children.p != 0) {
            return;
        }
        table_remove(s, children_of(s, path, depth - 1), n);
        size_t bytes = mem_footprint(node_size(n->token_len));
        s->bytes -= bytes;
        s->freed += bytes;
        s->nodes--;
        free(n);
    }
}

static void value_free(struct retain_store *s, struct retained *r)
{
    size_t bytes = mem_footprint(value_size(r->size));
    s->bytes -= bytes;
    s->freed += bytes;
    s->count--;
    free(r);
}

int retain_apply(struct retain_store *s, const struct frame *pub, uint64_t max_bytes)
{
    const char *subject = (const char *)pub->subject;
    size_t len = pub->subject_len;
    struct retain_node *path[RETAIN_DEPTH_MAX + 1];
    path[0] = NULL;

    /* As far as the subject's nodes exist; `pos` is then where the first
     * token without a node starts. */
    size_t depth = 0;
    size_t pos = 0;
    const char *tok;
    size_t tl;
    for (size_t next = pos; subject_next_token(subject, len, &next, &tok, &tl); pos = next) {
        struct retain_node *c = ctab_find(children_of(s, path, depth), tok, tl, node_key);
        if (c == NULL) {
            break;
        }
        path[++depth] = c;
    }
    bool found = pos >= len; /* every token has its node */
    struct retained *old = found ? path[depth]->value : NULL;

    if (pub->payload_len == 0) {
        if (old != NULL) {
            path[depth]->value = NULL;
            value_free(s, old);
            path_prune(s, path, depth);
        }
        return 0;
    }

    size_t size = frame_encoded_size(pub->subject_len, 0, pub->header_len, pub->payload_len);
    uint64_t need = mem_footprint(value_size(size));
    uint64_t gone = old != NULL ? mem_footprint(value_size(old->size)) : 0;
    if (!found) {
        struct ctab *tab = children_of(s, path, depth);
        need += ctab_bytes_after_insert(tab) - ctab_bytes(tab);
        for (size_t p = pos; subject_next_token(subject, len, &p, &tok, &tl);) {
            need += mem_footprint(node_size(tl));
        }
    }
    if (s->bytes - gone + need > max_bytes) {
        return RETAIN_E_FULL;
    }

    struct retained *r = malloc(value_size(size));
    if (r == NULL) {
        return -ENOMEM;
    }
    r->size = (uint32_t)size;
    frame_encode(r->frame, FRAME_OP_PUB, 0, 0, pub->subject, pub->subject_len, NULL, 0,
                 pub->headers, pub->header_len, pub->payload, pub->payload_len);
    while (subject_next_token(subject, len, &pos, &tok, &tl)) {
        struct retain_node *c = malloc(node_size(tl));
        if (c != NULL) {
            c->children = (struct ctab){0};
            c->value = NULL;
            c->token_len = (uint16_t)tl;
            memcpy(c->token, tok, tl);
        }
        if (c == NULL || table_insert(s, children_of(s, path, depth), c) < 0) {
            free(c);
            free(r);
            path_prune(s, path, depth); /* the nodes made for it */
            return -ENOMEM;
        }
        s->bytes += mem_footprint(node_size(tl));
        s->nodes++;
        path[++depth] = c;
    }
    struct retain_node *n = path[depth];
    if (old != NULL) {
        value_free(s, old);
    }
    n->value = r;
    s->count++;
    s->bytes += mem_footprint(value_size(size));
    return 0;
}

/* Decode a stored value and hand it to fn. */
static void visit(const struct retained *r, void (*fn)(const struct frame *, void *), void *arg)
{
    struct frame f;
    /* Encoded by retain_apply() within the limits it was accepted with. */
    if (frame_parse(r->frame, r->size, UINT32_MAX, &f) == 0) {
        fn(&f, arg);
    }
}

/* Every value at or below n. Recursion depth: the subjects' depth. */
static void visit_tree(const struct retain_node *n, void (*fn)(const struct frame *, void *),
                       void *arg)
{
    if (n->value != NULL) {
        visit(n->value, fn, arg);
    }
    struct retain_node *c;
    for (size_t pos = 0; (c = ctab_next(&n->children, &pos)) != NULL;) {
        visit_tree(c, fn, arg);
    }
}

/* The values below the table `tab` that match the tokens of the pattern
 * p[0..len) from `pos` on (pos 0 is the first token, where the '$' rule
 * applies). */
static void match_below(const struct ctab *tab, const char *p, size_t len, size_t pos,
                        void (*fn)(const struct frame *, void *), void *arg)
{
    bool first = pos == 0;
    const char *tok;
    size_t tl;
    if (!subject_next_token(p, len, &pos, &tok, &tl)) {
        return;
    }
    bool last = pos >= len;
    bool star = subject_token_is(tok, tl, '*');
    if (!star && !subject_token_is(tok, tl, '>')) {
        const struct retain_node *c = ctab_find(tab, tok, tl, node_key);
        if (c == NULL) {
            return;
        }
        if (last) {
            if (c->value != NULL) {
                visit(c->value, fn, arg);
            }
        } else {
            match_below(&c->children, p, len, pos, fn, arg);
        }
        return;
    }
    /* A wildcard: every child, but not a first token starting with '$'. */
    struct retain_node *c;
    for (size_t at = 0; (c = ctab_next(tab, &at)) != NULL;) {
        if (!subject_wildcard_may_take(first, c->token)) {
            continue;
        }
        if (!star) {
            visit_tree(c, fn, arg); /* '>': one or more tokens */
        } else if (last) {
            if (c->value != NULL) {
                visit(c->value, fn, arg);
            }
        } else {
            match_below(&c->children, p, len, pos, fn, arg);
        }
    }
}

void retain_foreach_match(const struct retain_store *s, const char *pattern, size_t pattern_len,
                          void (*fn)(const struct frame *value, void *arg), void *arg)
{
    if (s->count == 0 || pattern_len == 0) {
        return;
    }
    match_below(&s->top, pattern, pattern_len, 0, fn, arg);
}
