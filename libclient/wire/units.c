/*
 * units.c - sizes in bytes as people write them (see units.h).
 *
 * Digits are accumulated with an overflow check before each step, and the
 * unit's multiplication is checked the same way, so that no spelling can
 * wrap round to a small size: "18446744073709551616" and "17179869184g"
 * are refused, not read as something else.
 */
#include "units.h"

#include <errno.h>
#include <stdbool.h>

static int lower(char c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

int units_parse_bytes(const char *text, size_t len, uint64_t *out)
{
    if (text == NULL || len == 0 || text[0] < '0' || text[0] > '9') {
        return -EINVAL;
    }
    uint64_t v = 0;
    size_t i = 0;
    bool too_large = false;
    for (; i < len && text[i] >= '0' && text[i] <= '9'; i++) {
        unsigned digit = (unsigned)(text[i] - '0');
        if (v > (UINT64_MAX - digit) / 10) {
            too_large = true;
        }
        v = v * 10 + digit;
    }
    unsigned shift = 0;
    if (i < len) {
        switch (lower(text[i])) {
        case 'k':
            shift = 10;
            break;
        case 'm':
            shift = 20;
            break;
        case 'g':
            shift = 30;
            break;
        case 'b': /* "512b": bytes, said so */
            shift = 0;
            break;
        default:
            return -EINVAL;
        }
        if (shift > 0 && i + 1 < len && lower(text[i + 1]) == 'i') {
            i++;
        }
        if (shift > 0 && i + 1 < len && lower(text[i + 1]) == 'b') {
            i++;
        }
        i++;
    }
    if (i != len) {
        return -EINVAL;
    }
    if (too_large || v > UINT64_MAX >> shift) {
        return -ERANGE;
    }
    *out = v << shift;
    return 0;
}
