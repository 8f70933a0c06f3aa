/*
 * mem.c - allocation footprints and malloc_trim().
 *
 * glibc gives every allocation a chunk: the request plus one size word,
 * rounded up to 16 bytes, at least 32 (malloc/malloc.c, request2size());
 * malloc_usable_size() reports the chunk less that word. Rather than copy
 * the rule, the sizes the broker allocates most (up to MEM_PROBE_MAX: trie
 * nodes, groups, subscriptions, small retained values) are measured: one
 * malloc(), malloc_usable_size() and free() the first time a size is
 * asked, remembered after that. Larger sizes (tables, big values) use the
 * rule, since probing them would move glibc's dynamic mmap threshold. Under
 * AddressSanitizer malloc_usable_size() reports the request itself, which
 * is then what the broker counts: the numbers are consistent within one
 * build, which is all the limits need.
 */
#include "mem.h"

#include <stdint.h>
#include <stdlib.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

enum {
    MEM_PROBE_MAX = 4096,
    MEM_GRANULE = 16,
    MEM_MIN_CHUNK = 32,
    MEM_PAGE = 4096,
    /* glibc's initial mmap threshold: from here on a chunk may be a
     * mapping of its own, whole pages plus two size words. */
    MEM_MMAP_MIN = 128 * 1024,
};

static uint32_t probed[MEM_PROBE_MAX + 1]; /* 0: not measured yet */

static size_t mem_rule(size_t n)
{
    size_t chunk = (n + sizeof(size_t) + MEM_GRANULE - 1) & ~(size_t)(MEM_GRANULE - 1);
    if (chunk < MEM_MIN_CHUNK) {
        chunk = MEM_MIN_CHUNK;
    }
    if (n >= MEM_MMAP_MIN) {
        chunk = (n + 2 * sizeof(size_t) + MEM_PAGE - 1) & ~(size_t)(MEM_PAGE - 1);
    }
    return chunk;
}

static size_t mem_probe(size_t n)
{
#ifdef __GLIBC__
    void *p = malloc(n > 0 ? n : 1);
    if (p != NULL) {
        size_t usable = malloc_usable_size(p);
        free(p);
        return usable + sizeof(size_t);
    }
#endif
    return mem_rule(n);
}

size_t mem_footprint(size_t n)
{
    if (n > MEM_PROBE_MAX) {
        return mem_rule(n);
    }
    if (probed[n] == 0) {
        probed[n] = (uint32_t)mem_probe(n);
    }
    return probed[n];
}

size_t mem_table_entry_bytes_max(size_t min_len, size_t min_cap, size_t (*table_bytes)(size_t cap))
{
    enum { CHECK_LEN = 4096 };
    size_t max = 0;
    for (size_t len = min_len; len <= CHECK_LEN; len++) {
        size_t cap = min_cap;
        while (cap * 2 <= 4 * len) {
            cap *= 2;
        }
        size_t per = (mem_footprint(table_bytes(cap)) + len - 1) / len;
        if (per > max) {
            max = per;
        }
    }
    return max;
}

void mem_give_back(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}
