/*
 * subtrie_node.h - the subscription trie's node layout, shared by the
 * three files of the trie and by no one else: subtrie.c (nodes, adding and
 * removing), subtrie_match.c (the walk, the match cache in front of it,
 * emitting subscriptions) and subtrie_cost.c (what a subscription can cost,
 * counts and heap bytes). See subtrie.c for the design.
 */
#ifndef SOCKBUS_SUBTRIE_NODE_H
#define SOCKBUS_SUBTRIE_NODE_H

#include "ctab.h"
#include "matchcache.h"
#include "sockbus.h"

#include <stddef.h>
#include <stdint.h>

struct subtrie_sub; /* subtrie.h */

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
    /* The match cache's entry and hash of the subject being matched, for
     * the path past a miss in the entries (subtrie_match.c). */
    struct matchcache_entry *miss_entry;
    uint64_t miss_hash;
    /* The path from the root to a node being added or freed. */
    struct subtrie_node *path[TRIE_DEPTH_MAX + 1];
    struct matchcache cache; /* invalidated by every add and remove */
};

/* The keys of the child and group tables (ctab). */
static inline const char *node_key(const void *obj, size_t *len)
{
    const struct subtrie_node *n = obj;
    *len = n->token_len;
    return n->token;
}

static inline const char *group_key(const void *obj, size_t *len)
{
    const struct subtrie_group *g = obj;
    *len = g->name_len;
    return g->name;
}

/* Heap request of a node with a token of tok_len bytes, and of a group
 * with a name of name_len bytes. */
static inline size_t node_size(size_t tok_len)
{
    size_t size = offsetof(struct subtrie_node, token) + tok_len;
    return size < sizeof(struct subtrie_node) ? sizeof(struct subtrie_node) : size;
}

static inline size_t group_size(size_t name_len)
{
    size_t size = offsetof(struct subtrie_group, name) + name_len;
    return size < sizeof(struct subtrie_group) ? sizeof(struct subtrie_group) : size;
}

#endif /* SOCKBUS_SUBTRIE_NODE_H */
