/*
 * matchcache.c - filling the match cache (see matchcache.h); looking it
 * up is inline, on the path of every publish.
 */
#include "matchcache.h"

void matchcache_init(struct matchcache *c)
{
    memset(c, 0, sizeof(*c));
    c->gen = 1;
}

void matchcache_store(struct matchcache *c, struct matchcache_entry *e, uint64_t hash,
                      const char *subject, size_t len, struct subtrie_node *const *nodes, size_t n)
{
    if (n > MATCHCACHE_NODES_MAX) {
        return;
    }
    e->gen = c->gen;
    e->hash = hash;
    e->subject_len = (uint16_t)len;
    e->nnodes = (uint16_t)n;
    memcpy(e->subject, subject, len);
    if (n > 0) { /* nodes may be NULL with none */
        memcpy(e->nodes, nodes, n * sizeof(*nodes));
    }
}
