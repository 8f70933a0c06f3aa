/*
 * sidmap.c - u32 -> pointer map for a connection's subscription ids.
 *
 * One flat array of slots, power-of-two capacity, key 0 marking an empty
 * slot (sid 0 is invalid on the wire, so it is free to use as the marker).
 * Lookups probe linearly from the key's home slot until they find the key
 * or an empty slot. Removal shifts later entries of the same run back into
 * the hole (backward-shift deletion), so there are no tombstones and probe
 * runs never grow from churn: a client that subscribes and unsubscribes all
 * day keeps short lookups. The table doubles when an insert would take it
 * past 3/4 full, and that is the only time it allocates; it never shrinks
 * (sidmap_deinit() gives the memory back when the connection goes).
 *
 * Clients usually number sids 1, 2, 3, ...: the key is mixed before masking
 * so that such runs spread over the table instead of forming one long run.
 */
#include "sidmap.h"

#include <errno.h>
#include <stdlib.h>

enum { SIDMAP_MIN_CAP = 8 };

/* lowbias32 (Chris Wellons' hash-prospector): a cheap, well-mixed bijection. */
static size_t sid_hash(uint32_t key)
{
    key ^= key >> 16;
    key *= 0x7feb352du;
    key ^= key >> 15;
    key *= 0x846ca68bu;
    key ^= key >> 16;
    return key;
}

/* Slot of key, or cap when absent. The map must not be empty. */
static size_t slot_of(const struct sidmap *m, uint32_t key)
{
    size_t mask = m->cap - 1;
    for (size_t i = sid_hash(key) & mask;; i = (i + 1) & mask) {
        if (m->slots[i].key == key) {
            return i;
        }
        if (m->slots[i].key == 0) {
            return m->cap;
        }
    }
}

/* Put an entry known to be absent into a table known to have room. */
static void place(struct sidmap_slot *slots, size_t cap, uint32_t key, void *value)
{
    size_t mask = cap - 1;
    size_t i = sid_hash(key) & mask;
    while (slots[i].key != 0) {
        i = (i + 1) & mask;
    }
    slots[i] = (struct sidmap_slot){.key = key, .value = value};
}

static int grow(struct sidmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : SIDMAP_MIN_CAP;
    if (cap > SIZE_MAX / sizeof(struct sidmap_slot)) {
        return -ENOMEM;
    }
    struct sidmap_slot *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key != 0) {
            place(slots, cap, m->slots[i].key, m->slots[i].value);
        }
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

void sidmap_init(struct sidmap *m)
{
    *m = (struct sidmap){0};
}

void sidmap_deinit(struct sidmap *m)
{
    if (m == NULL) {
        return;
    }
    free(m->slots);
    sidmap_init(m);
}

int sidmap_insert(struct sidmap *m, uint32_t key, void *value)
{
    if (key == 0) {
        return -EINVAL;
    }
    if (m->len > 0 && slot_of(m, key) != m->cap) {
        return -EEXIST;
    }
    if (m->len + 1 > m->cap / 4 * 3) {
        int err = grow(m);
        if (err < 0) {
            return err;
        }
    }
    place(m->slots, m->cap, key, value);
    m->len++;
    return 0;
}

void *sidmap_find(const struct sidmap *m, uint32_t key)
{
    if (key == 0 || m->len == 0) {
        return NULL;
    }
    size_t i = slot_of(m, key);
    return i == m->cap ? NULL : m->slots[i].value;
}

void *sidmap_remove(struct sidmap *m, uint32_t key)
{
    if (key == 0 || m->len == 0) {
        return NULL;
    }
    size_t hole = slot_of(m, key);
    if (hole == m->cap) {
        return NULL;
    }
    void *value = m->slots[hole].value;
    /* Move back every later entry of the run whose home slot is at or
     * before the hole (cyclically); the others must stay behind their home,
     * so they are skipped. The run ends at the first empty slot. */
    size_t mask = m->cap - 1;
    for (size_t j = (hole + 1) & mask; m->slots[j].key != 0; j = (j + 1) & mask) {
        size_t home = sid_hash(m->slots[j].key) & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole] = (struct sidmap_slot){0};
    m->len--;
    return value;
}

int sidmap_next(const struct sidmap *m, size_t *pos, uint32_t *key, void **value)
{
    for (size_t i = *pos; i < m->cap; i++) {
        if (m->slots[i].key != 0) {
            *pos = i + 1;
            *key = m->slots[i].key;
            *value = m->slots[i].value;
            return 1;
        }
    }
    *pos = m->cap;
    return 0;
}
