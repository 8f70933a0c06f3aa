/*
 * subtrie_cost.c - what the subscription trie costs (its layout is in
 * subtrie_node.h). subtrie_cost() is the bound the router charges a
 * subscription before it is added: it follows node_size(), group_size()
 * and the tables' worst case, so that the sum over the live subscriptions
 * bounds subtrie_heap_bytes(), which walks the real trie (and adds the
 * match cache's index, which the trie sizes by its subscriptions); the
 * unit tests hold the two together. The walks here visit the whole trie
 * and are for tests and statistics only, never on a client's path.
 */
#include "subtrie.h"

#include "ctab.h"
#include "mem.h"
#include "subject.h"
#include "subtrie_node.h"

#include <stdbool.h>
#include <stddef.h>

size_t subtrie_cost(const char *pattern, size_t pattern_len, size_t queue_len)
{
    size_t extra = mem_footprint(sizeof(struct node_extra));
    /* The last node's extra record, for the subscription, and its share of
     * the match cache's index (matchcache_fit()). */
    size_t cost = extra + MATCHCACHE_INDEX_COST;
    const char *tok;
    size_t tl;
    for (size_t pos = 0; subject_next_token(pattern, pattern_len, &pos, &tok, &tl);) {
        cost += mem_footprint(node_size(tl));
        if (subject_token_is(tok, tl, '*') || subject_token_is(tok, tl, '>')) {
            cost += extra; /* the parent's, for its wildcard child */
        } else {
            cost += ctab_entry_bytes_max(); /* its place in the parent's table */
        }
    }
    if (queue_len > 0) {
        cost += mem_footprint(group_size(queue_len)) + ctab_entry_bytes_max();
    }
    return cost;
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
    return node_heap_bytes(t->root) + matchcache_index_bytes(&t->cache);
}
