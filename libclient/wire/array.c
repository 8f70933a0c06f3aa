/*
 * array.c - the growth of an array (see array.h).
 *
 * The caller's pointer is read and written through memcpy(), since its
 * type (uint8_t *, struct peer **, ...) is not void *: every object
 * pointer has the same representation on the systems the broker runs on,
 * and memcpy() keeps the compiler from assuming otherwise.
 */
#include "array.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int array__grow(void *items, size_t *cap, size_t len, size_t more, size_t size, size_t min_cap)
{
    if (len > SIZE_MAX - more) {
        return -ENOMEM;
    }
    size_t need = len + more;
    size_t n = *cap > min_cap ? *cap : min_cap;
    if (n == 0) {
        n = 1;
    }
    while (n < need) {
        if (n > SIZE_MAX / 2) {
            return -ENOMEM;
        }
        n *= 2;
    }
    if (n > SIZE_MAX / size) {
        return -ENOMEM;
    }
    void *old;
    memcpy(&old, items, sizeof(old));
    void *p = realloc(old, n * size);
    if (p == NULL) {
        return -ENOMEM;
    }
    memcpy(items, &p, sizeof(p));
    *cap = n;
    return 0;
}
