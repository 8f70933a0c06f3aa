/*
 * units.h - sizes in bytes as people write them: "4096", "64k", "16MiB".
 *
 * The broker's byte limits (flags and config file), the bridge's buffer
 * and the bench's message sizes all take the same spelling, read by this
 * one function: an admin who writes `--max-pending 16m` on one command
 * should not meet a different rule on the next.
 */
#ifndef SOCKBUS_UNITS_H
#define SOCKBUS_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* How the accepted spellings are described to a person, in help texts and
 * error lines. */
#define UNITS_BYTES_HINT "k, m or g for KiB, MiB or GiB"

/*
 * Read text[0..len) as a number of bytes: decimal digits, then at most one
 * of k, m or g (any case) for 1024, 1024^2 or 1024^3, which may be
 * followed by "i", "b" or "ib" (so "16M", "16MiB" and "16mb" are all
 * 16,777,216: a unit here is always a power of 1024), or a lone "b"
 * ("512b"). Nothing else: no sign, no space, no other base. Returns 0 and *out, -EINVAL for text
 * that is not such a size, or -ERANGE when it exceeds UINT64_MAX.
 */
int units_parse_bytes(const char *text, size_t len, uint64_t *out);

#endif /* SOCKBUS_UNITS_H */
