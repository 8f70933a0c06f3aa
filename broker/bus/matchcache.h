/*
 * matchcache.h - the match cache in front of the subscription trie: the
 * trie nodes a recent subject matched.
 *
 * Publishers tend to repeat subjects, so publishing on the same subjects
 * again skips the trie's walk and the subject's validation (a subject is
 * cached only once it has been found valid): a hit costs one keyed hash
 * and one memcmp. The cache is direct mapped by the subject's keyed hash
 * (hash_subject(): a client cannot tell which subjects share an entry, so
 * it cannot evict a chosen one on purpose). Entries hold trie nodes, not
 * subscriptions, so queue groups still rotate on every match; the cache
 * never looks inside a node.
 *
 * Every add to or removal from the trie invalidates all entries at once
 * (matchcache_invalidate() bumps a generation): an entry never points at a
 * freed node, and no add has to find the entries it affects. The price:
 * while a client subscribes and unsubscribes in a loop, every publish
 * misses and pays the walk (the validation and one keyed hash per token of
 * its subject, a few hundred nanoseconds for a short subject) instead of
 * the hit. That bounds the harm a churning client does to a slowdown of
 * each publish by its subject's length, never a stall.
 */
#ifndef SOCKBUS_MATCHCACHE_H
#define SOCKBUS_MATCHCACHE_H

#include "hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct subtrie_node;

enum {
    MATCHCACHE_BITS = 8,
    MATCHCACHE_ENTRIES = 1 << MATCHCACHE_BITS,
    MATCHCACHE_SUBJECT_MAX = HASH_SUBJECT_MAX, /* longer subjects are not cached */
    MATCHCACHE_NODES_MAX = 8,                  /* subjects matching more are not cached */
};

struct matchcache_entry {
    uint64_t gen; /* 0: empty */
    uint64_t hash;
    uint16_t subject_len;
    uint16_t nnodes;
    struct subtrie_node *nodes[MATCHCACHE_NODES_MAX];
    char subject[MATCHCACHE_SUBJECT_MAX];
};

struct matchcache {
    uint64_t gen; /* starts at 1 */
    struct matchcache_entry entries[MATCHCACHE_ENTRIES];
};

/* An empty cache. */
void matchcache_init(struct matchcache *c);

/* Forget every entry: the trie has changed. */
static inline void matchcache_invalidate(struct matchcache *c)
{
    c->gen++;
}

/* The entry where subject[0..len) is, or would be, cached, with its hash in
 * *hash; NULL for a subject the cache does not take (longer than
 * MATCHCACHE_SUBJECT_MAX, or empty). */
static inline struct matchcache_entry *matchcache_slot(struct matchcache *c, const char *subject,
                                                       size_t len, uint64_t *hash)
{
    if (len - 1 >= MATCHCACHE_SUBJECT_MAX) { /* 1 to MATCHCACHE_SUBJECT_MAX */
        return NULL;
    }
    *hash = hash_subject(subject, len);
    return &c->entries[*hash >> (64 - MATCHCACHE_BITS)];
}

/* Does entry `e` (from matchcache_slot()) hold the nodes of subject? */
static inline bool matchcache_holds(const struct matchcache *c, const struct matchcache_entry *e,
                                    uint64_t hash, const char *subject, size_t len)
{
    return e->gen == c->gen && e->hash == hash && e->subject_len == len &&
           memcmp(e->subject, subject, len) == 0;
}

/* Keep, in entry `e` (from matchcache_slot()), that the subject of `hash`
 * matched nodes[0..n); more than MATCHCACHE_NODES_MAX are not kept. */
void matchcache_store(struct matchcache *c, struct matchcache_entry *e, uint64_t hash,
                      const char *subject, size_t len, struct subtrie_node *const *nodes, size_t n);

#endif /* SOCKBUS_MATCHCACHE_H */
