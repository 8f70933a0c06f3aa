/*
 * array.h - arrays that grow with use: the one growth path of the broker
 * and the library (here in the wire layer, which both build on).
 *
 * Every buffer or vector the broker grows as it is filled (output queues,
 * the match result, the trie's walk, the iovec array of a flush, the
 * scratch frame, the $SYS.CLIENTS list and page, a connection's received
 * descriptors), and the library's received descriptors, is a pointer, a capacity
 * and a length in the caller's own struct, with names of the caller's
 * choosing. array_reserve() makes room in any of them: the check whether
 * the room is there already is inline (it is on the hot path, once per
 * queued message), the growth itself one function that doubles the
 * capacity from a minimum until the room fits, checks the arithmetic for
 * overflow, and leaves the array as it was when memory runs out. Nothing
 * shrinks here: whoever wants memory back frees the array.
 */
#ifndef SOCKBUS_ARRAY_H
#define SOCKBUS_ARRAY_H

#include <stddef.h>

/*
 * Make room for `more` elements after the first `len` of the array whose
 * pointer is at `items` (a `T **`, passed as void *) and whose capacity,
 * in elements of `size` bytes, is *cap: on success the array has at least
 * len + more elements of room. A new capacity is min_cap, doubled as often
 * as needed. Returns 0, or -ENOMEM with the array and *cap untouched (also
 * when the size would overflow). Use array_reserve().
 */
int array__grow(void *items, size_t *cap, size_t len, size_t more, size_t size, size_t min_cap);

static inline int array__reserve(void *items, size_t *cap, size_t len, size_t more, size_t size,
                                 size_t min_cap)
{
    if (*cap - len >= more) {
        return 0;
    }
    return array__grow(items, cap, len, more, size, min_cap);
}

/*
 * array_reserve(ptr, cap, len, more, min_cap): room for `more` elements of
 * *ptr after the first `len`, growing `ptr` (an lvalue of pointer type)
 * and `cap` (an lvalue of type size_t, in elements) together. Returns 0 or
 * -ENOMEM (nothing changed).
 */
#define array_reserve(ptr, cap, len, more, min_cap)                                                \
    array__reserve(&(ptr), &(cap), (len), (more), sizeof(*(ptr)), (min_cap))

#endif /* SOCKBUS_ARRAY_H */
