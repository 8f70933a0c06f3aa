/*
 * retain.h - the retained store: the last value published with RETAIN on
 * each exact subject.
 *
 * Each value is kept as one encoded frame (header, subject, headers,
 * payload; no reply), so replaying it to a new subscription is the same
 * copy into the subscriber's queue as a live message. Subjects are found by
 * a hash table; a wildcard subscription scans every value and matches it
 * with sb_pattern_match(), a literal one looks its subject up directly.
 * Total bytes (subject + headers + payload of each value) are bounded by
 * the caller's limit.
 */
#ifndef SOCKBUS_RETAIN_H
#define SOCKBUS_RETAIN_H

#include <stddef.h>
#include <stdint.h>

struct frame;

struct retained {
    struct retained *next; /* hash chain */
    uint32_t hash;
    uint32_t size;   /* of frame[] */
    uint64_t bytes;  /* counted toward the limit */
    uint8_t frame[]; /* a PUB frame with reply_len 0 */
};

struct retain_store {
    struct retained **buckets;
    size_t nbuckets; /* 0 or a power of two */
    size_t count;
    uint64_t bytes;
};

void retain_init(struct retain_store *s);
void retain_deinit(struct retain_store *s);

/*
 * Apply a PUB with RETAIN: store its value for its subject, replacing the
 * old one, or delete the subject's value when the payload is empty.
 * Returns 0, -EDQUOT when storing it would exceed `max_bytes` (the old
 * value stays), or -ENOMEM.
 */
int retain_apply(struct retain_store *s, const struct frame *pub, uint64_t max_bytes);

/* Call fn for every value whose subject matches `pattern` (a valid
 * pattern), with the value decoded as a frame. fn must not modify the
 * store. */
void retain_foreach_match(const struct retain_store *s, const char *pattern, size_t pattern_len,
                          void (*fn)(const struct frame *value, void *arg), void *arg);

#endif /* SOCKBUS_RETAIN_H */
