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

/*
 * The most heap bytes per entry of an open-addressing table of a power of
 * two slots, at least min_cap, and never more than 4 slots per entry (it
 * doubles past 3/4 full and halves below 1/4), whatever its number of
 * entries from min_len on: what a limit charges one entry for its place.
 * `table_bytes(cap)` is what a table of cap slots asks malloc() for. The
 * bytes per entry are highest for small tables, where the header and the
 * allocator's rounding weigh most; they are checked up to 4096 entries,
 * past which they tend to four slots' worth, below the maximum found.
 * Costs that walk: callers remember the answer.
 */
size_t mem_table_entry_bytes_max(size_t min_len, size_t min_cap, size_t (*table_bytes)(size_t cap));

/* Return free heap pages to the system (glibc's malloc_trim(0)); nothing
 * elsewhere. Costs a walk of the allocator's free lists: call it rarely,
 * after much was freed. */
void mem_give_back(void);

#endif /* SOCKBUS_MEM_H */
