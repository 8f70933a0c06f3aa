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
 *
 * Behind those 256 entries, once the trie holds MATCHCACHE_INDEX_MIN_SUBS
 * subscriptions or more, sits the index: an open-addressing table of
 * 64-byte slots (one cache line each), each a subject of up to
 * MATCHCACHE_INDEX_SUBJECT_MAX bytes and the subscriptions of the one node
 * it matched (the node's extra record, or its one subscription when it has
 * only one: either lives at least as long as the generation it was stored
 * in; NULL for none), sized by the number of subscriptions. A publisher cycling over many subjects
 * misses the 256 entries every time; the index then answers with one probe into a table slot, one
 * cache miss, where the walk took two per token in a large child table, plus the validation, one
 * SipHash per token and a load of the node. It is a cache, not a second trie: filled by walks,
 * emptied by the same generation as the entries above (a slot of an older generation is empty), it
 * takes a subject only while it is less than 3/4 full, never evicts, and a lookup probes at most
 * MATCHCACHE_INDEX_PROBE_MAX slots (running on past the last home slot into as many more, rather
 * than wrapping round). Subjects that match several nodes (wildcards) stay with the walk and the
 * 256 entries.
 *
 * Memory: the index has at least 4/3 slots per subscription (so that 3/4
 * full holds a subject per subscription) and at most
 * MATCHCACHE_INDEX_COST heap bytes per subscription, which subtrie_cost()
 * charges every subscription; an add or a remove that takes it out of
 * that range reallocates it, empty, in the middle of the range. A client
 * publishing many distinct subjects fills it up to 3/4 and no further: the
 * subjects that do not fit take the walk, as without an index.
 */
#ifndef SOCKBUS_MATCHCACHE_H
#define SOCKBUS_MATCHCACHE_H

#include "bytes.h"
#include "hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct subtrie_node;
struct node_extra; /* subtrie_node.h: a node's subscriptions */

enum {
    MATCHCACHE_BITS = 8,
    MATCHCACHE_ENTRIES = 1 << MATCHCACHE_BITS,
    MATCHCACHE_SUBJECT_MAX = HASH_SUBJECT_MAX, /* longer subjects are not cached */
    MATCHCACHE_NODES_MAX = 8,                  /* subjects matching more are not cached */
    MATCHCACHE_INDEX_MIN_SUBS = 512,           /* fewer subscriptions: no new index */
    MATCHCACHE_INDEX_SUBJECT_MAX = 47,         /* longer subjects are not indexed */
    MATCHCACHE_INDEX_PROBE_MAX = 32,           /* slots a lookup or a store looks at */
    /* Heap bytes of the index per subscription, at most: 1.5 slots. */
    MATCHCACHE_INDEX_COST = 96,
};

/* One slot of the index: 64 bytes, a cache line. gen holds the low 32
 * bits of the cache's generation (matchcache_invalidate() skips the value
 * 0, which marks a slot never written, and clears the index when they
 * wrap). */
struct matchcache_index_entry {
    uint32_t gen;
    uint32_t tag; /* low bits of the subject's hash: most probes stop here */
    /* What the subject leads to, which only subtrie_match.c reads: the
     * node's extra record, or its one subscription; NULL: none. */
    const void *x;
    uint8_t subject_len;
    char subject[MATCHCACHE_INDEX_SUBJECT_MAX];
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
    struct matchcache_index_entry *index; /* NULL: none; 64-byte aligned */
    void *index_mem;                      /* its allocation */
    size_t index_cap;                     /* slots */
    size_t index_used;                    /* slots of the current generation */
};

/* An empty cache, without an index. */
void matchcache_init(struct matchcache *c);

/* Free the index. The cache is empty after it. */
void matchcache_deinit(struct matchcache *c);

/* The generation's low 32 bits wrapped: empty the index (see below). */
void matchcache__index_clear(struct matchcache *c);

/* Forget every entry: the trie has changed. Once in 2^32 calls this also
 * zeroes the index, so that an index slot's 32-bit generation can never
 * come round to the current one again. */
static inline void matchcache_invalidate(struct matchcache *c)
{
    c->gen++;
    c->index_used = 0; /* every index slot went with the old generation */
    if ((uint32_t)c->gen == 0) {
        c->gen++;
        matchcache__index_clear(c);
    }
}

/* Size the index for `subs` subscriptions (the trie's count after an add
 * or a remove): at least 4/3 slots and at most MATCHCACHE_INDEX_COST
 * bytes per subscription, reallocated (empty) only when outside that
 * range; none is made for fewer than MATCHCACHE_INDEX_MIN_SUBS (one made
 * at that count is kept below it while within that range). Call it after
 * matchcache_invalidate(). Never fails: without memory for a new index
 * there is none, and matching walks. */
void matchcache_fit(struct matchcache *c, size_t subs);

/* The heap bytes of the index now (mem_footprint(); 0 without one). */
size_t matchcache_index_bytes(const struct matchcache *c);

/* The longest distance, in slots, of a current index entry from the slot
 * its hash names, and the number of current entries. For tests. */
size_t matchcache_index_max_probe(const struct matchcache *c, size_t *entries);

/* Does the cache take a subject of len bytes (1 to
 * MATCHCACHE_SUBJECT_MAX)? */
static inline bool matchcache__takes(size_t len)
{
    return len - 1 < MATCHCACHE_SUBJECT_MAX;
}

/* matchcache_slot() with the subject's hash already known (from
 * matchcache_prefetch(), of these very bytes). */
static inline struct matchcache_entry *matchcache_slot_of(struct matchcache *c, size_t len,
                                                          uint64_t hash)
{
    return matchcache__takes(len) ? &c->entries[hash >> (64 - MATCHCACHE_BITS)] : NULL;
}

/* The entry where subject[0..len) is, or would be, cached, with its hash in
 * *hash; NULL for a subject the cache does not take (longer than
 * MATCHCACHE_SUBJECT_MAX, or empty). */
static inline struct matchcache_entry *matchcache_slot(struct matchcache *c, const char *subject,
                                                       size_t len, uint64_t *hash)
{
    if (!matchcache__takes(len)) {
        return NULL;
    }
    *hash = hash_subject(subject, len);
    return matchcache_slot_of(c, len, *hash);
}

/* Does entry `e` (from matchcache_slot()) hold the nodes of subject? */
static inline bool matchcache_holds(const struct matchcache *c, const struct matchcache_entry *e,
                                    uint64_t hash, const char *subject, size_t len)
{
    return e->gen == c->gen && e->hash == hash && e->subject_len == len &&
           bytes_same(e->subject, subject, len);
}

/* Keep, in entry `e` (from matchcache_slot()), that the subject of `hash`
 * matched nodes[0..n); more than MATCHCACHE_NODES_MAX are not kept. */
void matchcache_store(struct matchcache *c, struct matchcache_entry *e, uint64_t hash,
                      const char *subject, size_t len, struct subtrie_node *const *nodes, size_t n);

/* The index's home slot for `hash`: its top 32 bits scaled to the
 * capacity, which need not be a power of two. */
static inline size_t matchcache__index_home(const struct matchcache *c, uint64_t hash)
{
    return (size_t)(((hash >> 32) * (uint64_t)c->index_cap) >> 32);
}

/* The index entry of subject[0..len) (hash from matchcache_slot()), or
 * NULL when the index has none (or there is no index). The entry's record
 * holds every subscription the subject matches. */
static inline const struct matchcache_index_entry *
matchcache_index_find(const struct matchcache *c, uint64_t hash, const char *subject, size_t len)
{
    if (c->index == NULL || len > MATCHCACHE_INDEX_SUBJECT_MAX) {
        return NULL;
    }
    uint32_t gen = (uint32_t)c->gen;
    uint32_t tag = (uint32_t)hash;
    const struct matchcache_index_entry *e = &c->index[matchcache__index_home(c, hash)];
    const struct matchcache_index_entry *end = e + MATCHCACHE_INDEX_PROBE_MAX;
    for (; e < end && e->gen == gen; e++) { /* an empty slot ends the run */
        if (e->tag == tag && e->subject_len == len && bytes_same(e->subject, subject, len)) {
            return e;
        }
    }
    return NULL;
}

/* Is there an index behind the entries? Then a match of a subject not met
 * lately costs a cache miss or more, which matchcache_prefetch() can start
 * early. */
static inline bool matchcache_indexed(const struct matchcache *c)
{
    return c->index != NULL;
}

/* Start loading what a match of subject[0..len) will read first: its
 * entry and, with an index, its home slot there; for a subject some frames
 * ahead of the one being matched, so that the loads overlap. Returns its
 * hash, for matchcache_prefetch_next(), or 0 when it is not cached. Always
 * inlined: GCC finds that a function whose only effects are prefetches has
 * none, and drops its calls. */
__attribute__((always_inline)) static inline uint64_t
matchcache_prefetch(const struct matchcache *c, const char *subject, size_t len)
{
    if (!matchcache__takes(len)) {
        return 0;
    }
    uint64_t hash = hash_subject(subject, len);
    __builtin_prefetch(&c->entries[hash >> (64 - MATCHCACHE_BITS)]);
    if (c->index != NULL && len <= MATCHCACHE_INDEX_SUBJECT_MAX) {
        /* And the slot after it: at 3/4 full, half the lookups need it. */
        const struct matchcache_index_entry *e = &c->index[matchcache__index_home(c, hash)];
        __builtin_prefetch(e);
        __builtin_prefetch(e + 1);
    }
    return hash;
}

/* The next step, a few frames later, once the slots have come: start
 * loading what the index entry of `hash` leads to (its `x`). Only the two
 * slots matchcache_prefetch() loaded are looked at, and only their tags:
 * a wrong guess costs a useless load. */
__attribute__((always_inline)) static inline void
matchcache_prefetch_next(const struct matchcache *c, uint64_t hash)
{
    if (c->index == NULL) {
        return;
    }
    uint32_t gen = (uint32_t)c->gen;
    const struct matchcache_index_entry *e = &c->index[matchcache__index_home(c, hash)];
    for (int i = 0; i < 2 && e->gen == gen; i++, e++) {
        if (e->tag == (uint32_t)hash) {
            __builtin_prefetch(e->x);
            return;
        }
    }
}

/* Keep in the index that the subject of `hash` (valid, just walked)
 * matched nodes[0..n), whose subscriptions are in x: NULL when n is 0 or
 * the node has none. Kept only for n <= 1, a subject of at most
 * MATCHCACHE_INDEX_SUBJECT_MAX bytes, an index less than 3/4 full, and a
 * free slot within MATCHCACHE_INDEX_PROBE_MAX of its home. */
void matchcache_index_store(struct matchcache *c, uint64_t hash, const char *subject, size_t len,
                            size_t n, const void *x);

#endif /* SOCKBUS_MATCHCACHE_H */
