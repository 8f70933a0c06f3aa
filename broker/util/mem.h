/*
 * mem.h - what an allocation really costs, and giving memory back.
 *
 * Limits that a client can fill (max_subscription_bytes,
 * max_retained_bytes) count the memory their data really takes, not the
 * bytes the client sent: a 24-byte request costs a 32-byte chunk of
 * glibc's heap, and a trie node is not its token. mem_footprint() says how
 * much, from the allocator itself.
 */
#ifndef SOCKBUS_MEM_H
#define SOCKBUS_MEM_H

#include <stddef.h>

/*
 * The bytes malloc(n) takes from the heap: its usable size (as
 * malloc_usable_size() reports it for an allocation of that size) plus the
 * chunk's size word. Sizes up to a few KiB are asked of the allocator once
 * each and remembered; larger ones follow glibc's rounding (16-byte
 * granules, whole pages for mmapped chunks). A pure function of n for the
 * life of the process, so a charge computed twice is the same twice.
 */
size_t mem_footprint(size_t n);

/* Return free heap pages to the system (glibc's malloc_trim(0)); nothing
 * elsewhere. Costs a walk of the allocator's free lists: call it rarely,
 * after much was freed. */
void mem_give_back(void);

#endif /* SOCKBUS_MEM_H */
