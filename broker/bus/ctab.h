/*
 * ctab.h - a set of objects found by a byte-string key: the children of a
 * trie node (subscription trie and retained store alike) and the queue
 * groups at a node.
 *
 * The objects are the caller's; each holds its own key, which the caller's
 * key function reports (so the table stores no copy of it). A ctab is one
 * word, and grows with what it holds:
 *
 *   empty       0 bytes besides the word;
 *   one object  the word points at it: no table, no hash (a trie node on a
 *               chain of single children costs just itself);
 *   two or more an open-addressing table of 4, 8, 16 ... slots, linear
 *               probing, at most 3/4 full, halved when less than 1/4 full.
 *
 * A slot is the object's pointer and 32 bits of its key's keyed hash
 * (hash_bytes(), SipHash-1-3 under the process key), kept in two arrays:
 * probing reads the hashes, 16 per cache line, and looks at an object only
 * when its hash matches. Removal shifts the rest of the probe run back
 * (no tombstones), so churn never lengthens runs.
 *
 * Memory: the table never has more than 4 slots per object it holds, so
 * its bytes per object are bounded (ctab_entry_bytes_max()): that is what
 * a limit charges an object for its place in a ctab.
 */
#ifndef SOCKBUS_CTAB_H
#define SOCKBUS_CTAB_H

#include "hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Zero-initialised: empty. */
struct ctab {
    uintptr_t p; /* 0, an object, or (table | 1) */
};

/* Where the key of `obj` is, and its length. */
typedef const char *(*ctab_key_fn)(const void *obj, size_t *len);

struct ctab__table {
    uint32_t cap; /* a power of two, at least CTAB_MIN_CAP */
    uint32_t len; /* at least 2 */
    void *objs[]; /* cap of them, then uint32_t hashes[cap]; 0: empty */
};

/* The stored hash of a key: 32 bits of its keyed hash, never 0, which
 * marks an empty slot. The slot index takes the low bits. */
static inline uint32_t ctab_hash(const char *key, size_t len)
{
    return (uint32_t)hash_bytes(key, len) | 0x80000000u;
}

static inline uint32_t *ctab__hashes(const struct ctab__table *tb)
{
    return (uint32_t *)(tb->objs + tb->cap);
}

static inline bool ctab__is_table(const struct ctab *t)
{
    return (t->p & 1) != 0;
}

static inline struct ctab__table *ctab__table(const struct ctab *t)
{
    return (struct ctab__table *)(t->p - 1);
}

/* The object whose key is key[0..len), or NULL. Hashes only when there is
 * a table; a single object is compared directly. */
static inline void *ctab_find(const struct ctab *t, const char *key, size_t len, ctab_key_fn key_of)
{
    if (t->p == 0) {
        return NULL;
    }
    if (!ctab__is_table(t)) {
        void *obj = (void *)t->p;
        size_t l;
        const char *k = key_of(obj, &l);
        return l == len && memcmp(k, key, len) == 0 ? obj : NULL;
    }
    const struct ctab__table *tb = ctab__table(t);
    const uint32_t *hashes = ctab__hashes(tb);
    uint32_t h = ctab_hash(key, len);
    size_t mask = tb->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        if (hashes[i] == 0) {
            return NULL;
        }
        if (hashes[i] == h) {
            size_t l;
            const char *k = key_of(tb->objs[i], &l);
            if (l == len && memcmp(k, key, len) == 0) {
                return tb->objs[i];
            }
        }
    }
}

/* Objects held. */
static inline size_t ctab_count(const struct ctab *t)
{
    return t->p == 0 ? 0 : ctab__is_table(t) ? ctab__table(t)->len : 1;
}

/* Add `obj`, whose key (key_of) is not in the table yet. Returns 0 or
 * -ENOMEM (the table is then unchanged). */
int ctab_insert(struct ctab *t, void *obj, ctab_key_fn key_of);

/* Take out `obj`, which must be in the table. Never fails: a table that
 * cannot be shrunk for want of memory stays as it is. */
void ctab_remove(struct ctab *t, const void *obj, ctab_key_fn key_of);

/* Iterate: for (size_t pos = 0; (obj = ctab_next(t, &pos)) != NULL;).
 * Each object once, in no particular order; no insert or remove meanwhile. */
void *ctab_next(const struct ctab *t, size_t *pos);

/* Free the table (not the objects) and leave it empty. */
void ctab_deinit(struct ctab *t);

/* The heap bytes of the table now (mem_footprint(); 0 without a table),
 * and what they would be after one more insert. */
size_t ctab_bytes(const struct ctab *t);
size_t ctab_bytes_after_insert(const struct ctab *t);

/* An upper bound of ctab_bytes() / ctab_count(), whatever the count:
 * what one object's place in a ctab can cost. */
size_t ctab_entry_bytes_max(void);

/* The longest distance, in slots, of an object from the slot its hash
 * names: how long a lookup can probe. For tests and statistics. */
size_t ctab_max_probe(const struct ctab *t);

#endif /* SOCKBUS_CTAB_H */
