/*
 * sidmap.h - a map from u32 keys (subscription ids) to pointers.
 *
 * Open addressing with linear probing and backward-shift deletion; each
 * connection embeds one for its subscriptions, so lookups by sid on UNSUB
 * are O(1) even with tens of thousands of subscriptions. Slots are found
 * with a keyed hash (hash.h), since the client chooses the sids.
 * Key 0 is never stored (sid 0 is invalid on the wire).
 */
#ifndef SOCKBUS_SIDMAP_H
#define SOCKBUS_SIDMAP_H

#include <stddef.h>
#include <stdint.h>

struct sidmap_slot {
    uint32_t key; /* 0: empty */
    void *value;
};

struct sidmap {
    struct sidmap_slot *slots;
    size_t cap; /* 0 or a power of two */
    size_t len;
};

/* An empty map; allocates nothing until the first insert. */
void sidmap_init(struct sidmap *m);
/* Free the slots (not the values) and leave an empty map. Accepts NULL. */
void sidmap_deinit(struct sidmap *m);

/* Insert key -> value. Returns 0, -EEXIST if key is present, -EINVAL for
 * key 0, -ENOMEM (the map is then unchanged). Allocates only when the map
 * grows (doubling, past 3/4 full). */
int sidmap_insert(struct sidmap *m, uint32_t key, void *value);

/* The value for key, or NULL. */
void *sidmap_find(const struct sidmap *m, uint32_t key);

/* Remove key; returns its value, or NULL if it was not there. A map left
 * less than 1/4 full is halved (if memory for the smaller one is there),
 * and an empty one frees its slots. */
void *sidmap_remove(struct sidmap *m, uint32_t key);

/* Iterate: for (size_t i = 0; sidmap_next(m, &i, &k, &v);) ... Returns 1
 * and writes *key and *value while entries remain, then 0. Each entry once,
 * in no particular order. Do not insert or remove while iterating. */
int sidmap_next(const struct sidmap *m, size_t *pos, uint32_t *key, void **value);

/* An upper bound of the heap bytes of a map's slots per entry, whatever its
 * size: what an entry is charged for its place. */
size_t sidmap_entry_bytes_max(void);

/* The longest run of consecutive occupied slots: the most a lookup can
 * probe. For tests. */
size_t sidmap_longest_run(const struct sidmap *m);

#endif /* SOCKBUS_SIDMAP_H */
