/*
 * retain.h - the retained store: the last value published with RETAIN on
 * each exact subject.
 *
 * Each value is kept as one encoded frame (header, subject, headers,
 * payload; no reply), so replaying it to a new subscription is the same
 * copy into the subscriber's queue as a live message. The values hang in a
 * trie of their subjects' tokens, with the same keyed child tables as the
 * subscription trie (ctab.h), so a subscription's pattern finds the values
 * it matches by walking along itself: a literal token follows one child,
 * '*' every child at that level, '>' everything below. A SUB costs what
 * its pattern reaches, never a scan of the whole store.
 *
 * The limit counts real memory: every value's allocation, every node and
 * every child table, in heap bytes as the allocator counts them
 * (mem_footprint()). The store's `bytes` is exactly that sum.
 */
#ifndef SOCKBUS_RETAIN_H
#define SOCKBUS_RETAIN_H

#include "ctab.h"
#include "frame.h"

#include <stddef.h>
#include <stdint.h>

struct frame;

/* retain_apply(): the value does not fit the limit. */
#define RETAIN_E_FULL 1

struct retained {
    uint32_t size; /* of frame[] */
    /* The meta block of the publish that stored it (frame.h), nfds 0: a
     * replay says who sent the value (docs/protocol.md, "Sender
     * credentials"). Right before frame[]: retain_value_meta(). */
    uint8_t meta[FRAME_META_SIZE];
    uint8_t frame[]; /* a PUB frame with reply_len 0 */
};

/* The meta block stored with a value that retain_foreach_match() handed
 * out. */
static inline const uint8_t *retain_value_meta(const struct frame *value)
{
    return value->subject - FRAME_HEADER_SIZE - FRAME_META_SIZE;
}

struct retain_store {
    struct ctab top; /* the nodes of first tokens */
    size_t count;    /* values */
    size_t nodes;
    uint64_t bytes; /* heap bytes of values, nodes and tables */
    uint64_t freed; /* heap bytes released; the broker resets it */
};

/* An empty store. */
void retain_init(struct retain_store *s);

/* Free every value and node, and leave an empty store. */
void retain_deinit(struct retain_store *s);

/*
 * Apply a PUB with RETAIN: store its value for its subject (a valid
 * subject), replacing the old one, or delete the subject's value when the
 * payload is empty. Returns 0, RETAIN_E_FULL when storing it would take the
 * store's bytes past `max_bytes` (the old value stays), or -ENOMEM.
 */
int retain_apply(struct retain_store *s, const struct frame *pub, uint64_t max_bytes);

/* retain_apply(), storing the encoded meta block `meta` (FRAME_META_SIZE
 * bytes; NULL: zeros) with the value. */
int retain_apply_meta(struct retain_store *s, const struct frame *pub, const uint8_t *meta,
                      uint64_t max_bytes);

/* Call fn for every value whose subject matches `pattern` (a valid
 * pattern), with the value decoded as a frame, in no particular order. fn
 * must not modify the store. Cost: the nodes the pattern reaches. */
void retain_foreach_match(const struct retain_store *s, const char *pattern, size_t pattern_len,
                          void (*fn)(const struct frame *value, void *arg), void *arg);

#endif /* SOCKBUS_RETAIN_H */
