/*
 * matchcache.c - filling the match cache and its index, and sizing the
 * index (see matchcache.h); looking them up is inline, on the path of
 * every publish.
 *
 * The index is one zeroed array, aligned to a cache line inside its
 * allocation, and reallocated empty rather than rehashed: every resize
 * comes with an add or a remove, which invalidates every entry anyway.
 * Its capacity need not be a power of two (the home slot scales the
 * hash's top bits to it), so that it can follow the subscriptions
 * closely: a new index gets 17/12 slots per subscription (90.7 bytes of
 * the 96 charged) and is kept while the subscriptions stay within about
 * 5% of what they were then (at least 4/3 slots, at most 96 bytes, per
 * subscription). Between two resizes, then, the subscriptions change by
 * about a twentieth, so zeroing the new index costs each add or remove
 * about 2 KiB of memset, amortized, however a client alternates them,
 * from a few thousand subscriptions up. Below that the probe run's 33
 * extra slots take most of the slack: up to 7 KiB just above
 * MATCHCACHE_INDEX_MIN_SUBS. No index is made below that count, but one
 * made at it is kept a little below it, while it stays within its
 * charge (down to 507 subscriptions), so that a client alternating an add
 * and a remove across the count does not have the whole index, 48 KiB,
 * allocated and freed each time.
 */
#include "matchcache.h"

#include "mem.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

enum { LINE = 64 };

_Static_assert(sizeof(struct matchcache_index_entry) == LINE, "an index slot is a cache line");

void matchcache_init(struct matchcache *c)
{
    memset(c, 0, sizeof(*c));
    c->gen = 1;
}

/* Slots allocated for an index of capacity cap: probes run on past the
 * last home slot instead of wrapping round, and one more aligns them. */
static size_t index_slots(size_t cap)
{
    return cap + MATCHCACHE_INDEX_PROBE_MAX + 1;
}

static void index_release(void *mem, size_t bytes);

void matchcache_deinit(struct matchcache *c)
{
    if (c->index_mem != NULL) {
        index_release(c->index_mem, index_slots(c->index_cap) * sizeof(*c->index));
    }
    c->index_mem = NULL;
    c->index = NULL;
    c->index_cap = 0;
    c->index_used = 0;
}

void matchcache__index_clear(struct matchcache *c)
{
    if (c->index != NULL) {
        memset(c->index, 0, (index_slots(c->index_cap) - 1) * sizeof(*c->index));
    }
    c->index_used = 0;
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

void matchcache_index_store(struct matchcache *c, uint64_t hash, const char *subject, size_t len,
                            size_t n, const void *x)
{
    if (c->index == NULL || n > 1 || len == 0 || len > MATCHCACHE_INDEX_SUBJECT_MAX) {
        return;
    }
    if (c->index_used >= c->index_cap / 4 * 3) {
        return;
    }
    uint32_t gen = (uint32_t)c->gen;
    struct matchcache_index_entry *e = &c->index[matchcache__index_home(c, hash)];
    for (struct matchcache_index_entry *end = e + MATCHCACHE_INDEX_PROBE_MAX; e < end; e++) {
        if (e->gen != gen) {
            e->gen = gen;
            e->tag = (uint32_t)hash;
            e->x = x;
            e->subject_len = (uint8_t)len;
            memcpy(e->subject, subject, len);
            c->index_used++;
            return;
        }
    }
}

/* The heap bytes of an index of cap slots: the slots a probe from the
 * last one may run on to, and one more, to align them. */
static size_t index_bytes(size_t cap)
{
    return mem_footprint(index_slots(cap) * sizeof(struct matchcache_index_entry));
}

enum { HUGE_PAGE = 2 * 1024 * 1024 };

/*
 * Ask for huge pages under the whole 2 MiB pages of a large index (bytes
 * at mem). Its slots are read at random, one per publish on a subject not
 * met lately: with 4 KiB pages a large one misses the TLB on nearly every
 * lookup as well as the cache, and a prefetch waits for the page walk.
 * Only advice: the index works the same without it, and it costs no more
 * memory than the slots themselves (the pages are whole within them, and
 * a fresh mapping is zero without being touched).
 */
static void index_huge(void *mem, size_t bytes)
{
    const uintptr_t huge = HUGE_PAGE;
    uintptr_t start = ((uintptr_t)mem + huge - 1) & ~(huge - 1);
    uintptr_t end = ((uintptr_t)mem + bytes) & ~(huge - 1);
    if (end > start) {
        (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
    }
}

/* A zeroed block of `bytes` for an index. One that may hold a huge page
 * is a mapping of its own, so that the advice given to its pages ends
 * with it: a block of the heap (where glibc puts large blocks too, once
 * its mmap threshold has risen past their size) would leave the advice on
 * pages that later hold small blocks, which 2 MiB pages would then back
 * uncounted. Either costs at most mem_footprint(bytes) (index_bytes()). */
static void *index_alloc(size_t bytes)
{
    if (bytes < HUGE_PAGE) {
        return calloc(1, bytes);
    }
    /* Mapped with a huge page's worth more, and trimmed to start on a huge
     * page boundary, so that every page of it may be one. */
    size_t span = bytes + HUGE_PAGE;
    void *map = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        return NULL;
    }
    uintptr_t start = (uintptr_t)map;
    uintptr_t mem = (start + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t end = (mem + bytes + page - 1) & ~(page - 1);
    if (mem > start) {
        (void)munmap(map, mem - start);
    }
    if (start + span > end) {
        (void)munmap((void *)end, start + span - end);
    }
    index_huge((void *)mem, bytes);
    return (void *)mem;
}

/* Give back what index_alloc(bytes) returned. */
static void index_release(void *mem, size_t bytes)
{
    if (bytes < HUGE_PAGE) {
        free(mem);
    } else {
        (void)munmap(mem, bytes);
    }
}

void matchcache_fit(struct matchcache *c, size_t subs)
{
    /* Keep the index while it has at least 4/3 slots per subscription (so
     * that 3/4 full holds a subject per subscription) and costs no more
     * than the subscriptions pay for it: also just below
     * MATCHCACHE_INDEX_MIN_SUBS, where none would be made. */
    if (c->index != NULL && c->index_cap * 3 >= subs * 4 &&
        index_bytes(c->index_cap) <= subs * MATCHCACHE_INDEX_COST) {
        return;
    }
    matchcache_deinit(c);
    if (subs < MATCHCACHE_INDEX_MIN_SUBS) {
        return;
    }
    size_t cap = (subs * 17 + 11) / 12; /* at least 4/3 of subs */
    if (index_bytes(cap) > subs * MATCHCACHE_INDEX_COST) {
        return; /* not for a handful of subscriptions */
    }
    void *mem = index_alloc(index_slots(cap) * sizeof(*c->index));
    if (mem == NULL) {
        return;
    }
    uintptr_t at = ((uintptr_t)mem + LINE - 1) & ~(uintptr_t)(LINE - 1);
    c->index_mem = mem;
    c->index = (struct matchcache_index_entry *)at;
    c->index_cap = cap;
    c->index_used = 0;
}

size_t matchcache_index_bytes(const struct matchcache *c)
{
    return c->index != NULL ? index_bytes(c->index_cap) : 0;
}

size_t matchcache_index_max_probe(const struct matchcache *c, size_t *entries)
{
    size_t max = 0;
    size_t n = 0;
    uint32_t gen = (uint32_t)c->gen;
    for (size_t i = 0; c->index != NULL && i < index_slots(c->index_cap) - 1; i++) {
        const struct matchcache_index_entry *e = &c->index[i];
        if (e->gen != gen) {
            continue;
        }
        size_t d = i - matchcache__index_home(c, hash_subject(e->subject, e->subject_len));
        max = d > max ? d : max;
        n++;
    }
    *entries = n;
    return max;
}
