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
 * past 3/4 full, and halves when a removal leaves it less than 1/4 full,
 * so that a connection that dropped most of its subscriptions gives the
 * memory back; both are amortized O(1), and a map never has more than 4
 * slots per entry (sidmap_entry_bytes_max()).
 *
 * The client chooses the sids, so the home slot comes from a keyed hash:
 * multiply-shift (hash_u32_index()) with the process's random multiplier.
 * Which sids share a run is then unknown to the client; and the sids
 * clients usually pick, 1, 2, 3, ..., are spread as evenly as a Weyl
 * sequence by any odd multiplier.
 */
#include "sidmap.h"

#include "hash.h"
#include "mem.h"

#include <errno.h>
#include <stdlib.h>

enum { SIDMAP_MIN_CAP = 4 };

/* Home slot of key in a table of cap (a power of two) slots. */
static size_t sid_home(uint32_t key, size_t cap)
{
    return hash_u32_index(key, (unsigned)__builtin_ctzll(cap));
}

/* Slot of key, or cap when absent. The map must not be empty. */
static size_t slot_of(const struct sidmap *m, uint32_t key)
{
    size_t mask = m->cap - 1;
    for (size_t i = sid_home(key, m->cap);; i = (i + 1) & mask) {
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
    size_t i = sid_home(key, cap);
    while (slots[i].key != 0) {
        i = (i + 1) & mask;
    }
    slots[i] = (struct sidmap_slot){.key = key, .value = value};
}

/* Move every entry into a new table of `cap` slots. Returns 0 or -ENOMEM
 * (the map is then unchanged). */
static int resize(struct sidmap *m, size_t cap)
{
    if (cap > SIZE_MAX / sizeof(struct sidmap_slot) || cap > (size_t)1 << 32) {
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
        int err = resize(m, m->cap ? m->cap * 2 : SIDMAP_MIN_CAP);
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
        size_t home = sid_home(m->slots[j].key, m->cap);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole] = (struct sidmap_slot){0};
    m->len--;
    if (m->len == 0) {
        sidmap_deinit(m);
    } else if (m->cap > SIDMAP_MIN_CAP && m->len < m->cap / 4) {
        resize(m, m->cap / 2); /* if that fails, the map just stays larger */
    }
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

static size_t slots_size(size_t cap)
{
    return cap * sizeof(struct sidmap_slot);
}

/* With len entries a map has at most 4 * len slots, and at least
 * SIDMAP_MIN_CAP. */
size_t sidmap_entry_bytes_max(void)
{
    static size_t max;
    if (max == 0) {
        max = mem_table_entry_bytes_max(1, SIDMAP_MIN_CAP, slots_size);
    }
    return max;
}

size_t sidmap_longest_run(const struct sidmap *m)
{
    size_t longest = 0;
    size_t run = 0;
    /* Twice around, so that a run wrapping past the end counts whole. */
    for (size_t i = 0; i < 2 * m->cap; i++) {
        run = m->slots[i & (m->cap - 1)].key != 0 ? run + 1 : 0;
        longest = run > longest ? run : longest;
    }
    return longest < m->cap ? longest : m->cap;
}
