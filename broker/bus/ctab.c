/*
 * ctab.c - the keyed child table (see ctab.h).
 *
 * Three states behind one word: empty, a single object (the common case
 * along a pattern: one child per node), and a table of at least
 * CTAB_MIN_CAP slots. Growth doubles past 3/4; removal halves below 1/4
 * (hysteresis: a table just grown is 3/8 full, one just shrunk 1/2), so
 * the amortized cost of both is O(1) and a table never holds more than 4
 * slots per object, which is what ctab_entry_bytes_max() charges. A table
 * left with one object becomes that object again.
 */
#include "ctab.h"

#include "mem.h"

#include <errno.h>
#include <stdlib.h>

enum { CTAB_MIN_CAP = 4 };

static size_t table_size(size_t cap)
{
    return sizeof(struct ctab__table) + cap * (sizeof(void *) + sizeof(uint32_t));
}

static uint32_t obj_hash(const void *obj, ctab_key_fn key_of)
{
    size_t len;
    const char *key = key_of(obj, &len);
    return ctab_hash(key, len);
}

/* Put obj (hash h) into a table known to have a free slot. */
static void place(struct ctab__table *tb, void *obj, uint32_t h)
{
    uint32_t *hashes = ctab__hashes(tb);
    size_t mask = tb->cap - 1;
    size_t i = h & mask;
    while (hashes[i] != 0) {
        i = (i + 1) & mask;
    }
    tb->objs[i] = obj;
    hashes[i] = h;
}

/* A new empty table of `cap` slots, or NULL. */
static struct ctab__table *table_new(size_t cap)
{
    struct ctab__table *tb = calloc(1, table_size(cap));
    if (tb != NULL) {
        tb->cap = (uint32_t)cap;
    }
    return tb;
}

/* Move every object of `old` into a new table of `cap` slots. Returns the
 * new table, or NULL (old unchanged). */
static struct ctab__table *rehash(const struct ctab__table *old, size_t cap)
{
    struct ctab__table *tb = table_new(cap);
    if (tb == NULL) {
        return NULL;
    }
    const uint32_t *hashes = ctab__hashes(old);
    for (size_t i = 0; i < old->cap; i++) {
        if (hashes[i] != 0) {
            place(tb, old->objs[i], hashes[i]);
        }
    }
    tb->len = old->len;
    return tb;
}

int ctab_insert(struct ctab *t, void *obj, ctab_key_fn key_of)
{
    if (t->p == 0) {
        t->p = (uintptr_t)obj;
        return 0;
    }
    if (!ctab__is_table(t)) {
        struct ctab__table *tb = table_new(CTAB_MIN_CAP);
        if (tb == NULL) {
            return -ENOMEM;
        }
        void *first = (void *)t->p;
        place(tb, first, obj_hash(first, key_of));
        place(tb, obj, obj_hash(obj, key_of));
        tb->len = 2;
        t->p = (uintptr_t)tb | 1;
        return 0;
    }
    struct ctab__table *tb = ctab__table(t);
    if ((size_t)tb->len + 1 > (size_t)tb->cap / 4 * 3) {
        if (tb->cap > UINT32_MAX / 2) {
            return -ENOMEM;
        }
        struct ctab__table *grown = rehash(tb, (size_t)tb->cap * 2);
        if (grown == NULL) {
            return -ENOMEM;
        }
        free(tb);
        tb = grown;
        t->p = (uintptr_t)tb | 1;
    }
    place(tb, obj, obj_hash(obj, key_of));
    tb->len++;
    return 0;
}

/* Turn a table left with one object back into that object. */
static void table_to_single(struct ctab *t, struct ctab__table *tb)
{
    const uint32_t *hashes = ctab__hashes(tb);
    for (size_t i = 0; i < tb->cap; i++) {
        if (hashes[i] != 0) {
            t->p = (uintptr_t)tb->objs[i];
            break;
        }
    }
    free(tb);
}

void ctab_remove(struct ctab *t, const void *obj, ctab_key_fn key_of)
{
    if (!ctab__is_table(t)) {
        if (t->p == (uintptr_t)obj) {
            t->p = 0;
        }
        return;
    }
    struct ctab__table *tb = ctab__table(t);
    uint32_t *hashes = ctab__hashes(tb);
    size_t mask = tb->cap - 1;
    size_t hole = obj_hash(obj, key_of) & mask;
    while (tb->objs[hole] != obj) {
        if (hashes[hole] == 0) {
            return; /* not here: a caller's mistake, but harmless */
        }
        hole = (hole + 1) & mask;
    }
    /* Backward shift: an entry later in the run moves into the hole when
     * its home slot is at or before the hole (cyclically). */
    for (size_t j = (hole + 1) & mask; hashes[j] != 0; j = (j + 1) & mask) {
        size_t home = hashes[j] & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            tb->objs[hole] = tb->objs[j];
            hashes[hole] = hashes[j];
            hole = j;
        }
    }
    tb->objs[hole] = NULL;
    hashes[hole] = 0;
    tb->len--;
    if (tb->len == 1) {
        table_to_single(t, tb);
        return;
    }
    size_t cap = tb->cap;
    while (cap > CTAB_MIN_CAP && tb->len < cap / 4) {
        cap /= 2;
    }
    if (cap != tb->cap) {
        struct ctab__table *shrunk = rehash(tb, cap);
        if (shrunk != NULL) {
            free(tb);
            t->p = (uintptr_t)shrunk | 1;
        }
    }
}

void *ctab_next(const struct ctab *t, size_t *pos)
{
    if (t->p == 0) {
        return NULL;
    }
    if (!ctab__is_table(t)) {
        return (*pos)++ == 0 ? (void *)t->p : NULL;
    }
    const struct ctab__table *tb = ctab__table(t);
    const uint32_t *hashes = ctab__hashes(tb);
    for (size_t i = *pos; i < tb->cap; i++) {
        if (hashes[i] != 0) {
            *pos = i + 1;
            return tb->objs[i];
        }
    }
    *pos = tb->cap;
    return NULL;
}

void ctab_deinit(struct ctab *t)
{
    if (ctab__is_table(t)) {
        free(ctab__table(t));
    }
    t->p = 0;
}

size_t ctab_bytes(const struct ctab *t)
{
    return ctab__is_table(t) ? mem_footprint(table_size(ctab__table(t)->cap)) : 0;
}

size_t ctab_bytes_after_insert(const struct ctab *t)
{
    if (t->p == 0) {
        return 0;
    }
    if (!ctab__is_table(t)) {
        return mem_footprint(table_size(CTAB_MIN_CAP));
    }
    const struct ctab__table *tb = ctab__table(t);
    size_t cap = (size_t)tb->len + 1 > (size_t)tb->cap / 4 * 3 ? (size_t)tb->cap * 2 : tb->cap;
    return mem_footprint(table_size(cap));
}

/* With len >= 2 objects a table has at most 4 * len slots (it is halved
 * below 1/4; CTAB_MIN_CAP = 4 holds 2 or 3). */
size_t ctab_entry_bytes_max(void)
{
    static size_t max;
    if (max == 0) {
        max = mem_table_entry_bytes_max(2, CTAB_MIN_CAP, table_size);
    }
    return max;
}

size_t ctab_max_probe(const struct ctab *t)
{
    if (!ctab__is_table(t)) {
        return 0;
    }
    const struct ctab__table *tb = ctab__table(t);
    const uint32_t *hashes = ctab__hashes(tb);
    size_t mask = tb->cap - 1;
    size_t max = 0;
    for (size_t i = 0; i < tb->cap; i++) {
        if (hashes[i] != 0 && ((i - (hashes[i] & mask)) & mask) > max) {
            max = (i - (hashes[i] & mask)) & mask;
        }
    }
    return max;
}
