/*
 * retain.c - the retained store (see retain.h).
 */
#include "retain.h"

#include "frame.h"
#include "sockbus.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define RETAIN_MIN_BUCKETS 64u

/* FNV-1a: short subjects, no adversarial concern beyond chain length,
 * which the table's growth keeps near one. */
static uint32_t subject_hash(const uint8_t *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ s[i]) * 16777619u;
    }
    return h;
}

static const uint8_t *value_subject(const struct retained *r, size_t *len)
{
    *len = frame_get_u16(r->frame + 6);
    return r->frame + FRAME_HEADER_SIZE;
}

void retain_init(struct retain_store *s)
{
    *s = (struct retain_store){0};
}

void retain_deinit(struct retain_store *s)
{
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct retained *r = s->buckets[i];
        while (r != NULL) {
            struct retained *next = r->next;
            free(r);
            r = next;
        }
    }
    free(s->buckets);
    *s = (struct retain_store){0};
}

/* The link that points at the value for this subject, or at the NULL that
 * ends its chain. */
static struct retained **retain_find(const struct retain_store *s, const uint8_t *subject,
                                     size_t len, uint32_t hash)
{
    struct retained **link = &s->buckets[hash & (s->nbuckets - 1)];
    for (; *link != NULL; link = &(*link)->next) {
        size_t l;
        const uint8_t *subj = value_subject(*link, &l);
        if ((*link)->hash == hash && l == len && memcmp(subj, subject, len) == 0) {
            break;
        }
    }
    return link;
}

static int retain_grow(struct retain_store *s)
{
    size_t n = s->nbuckets ? s->nbuckets * 2 : RETAIN_MIN_BUCKETS;
    struct retained **b = calloc(n, sizeof(*b));
    if (b == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct retained *r = s->buckets[i];
        while (r != NULL) {
            struct retained *next = r->next;
            r->next = b[r->hash & (n - 1)];
            b[r->hash & (n - 1)] = r;
            r = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
    return 0;
}

int retain_apply(struct retain_store *s, const struct frame *pub, uint64_t max_bytes)
{
    if (s->count >= s->nbuckets && retain_grow(s) < 0) {
        return -ENOMEM;
    }
    uint32_t hash = subject_hash(pub->subject, pub->subject_len);
    struct retained **link = retain_find(s, pub->subject, pub->subject_len, hash);
    struct retained *old = *link;
    uint64_t old_bytes = old ? old->bytes : 0;

    if (pub->payload_len == 0) {
        if (old != NULL) {
            *link = old->next;
            s->bytes -= old_bytes;
            s->count--;
            free(old);
        }
        return 0;
    }
    uint64_t bytes = (uint64_t)pub->subject_len + pub->header_len + pub->payload_len;
    if (s->bytes - old_bytes + bytes > max_bytes) {
        return -EDQUOT;
    }
    size_t size = frame_encoded_size(pub->subject_len, 0, pub->header_len, pub->payload_len);
    struct retained *r = malloc(sizeof(*r) + size);
    if (r == NULL) {
        return -ENOMEM;
    }
    r->hash = hash;
    r->size = (uint32_t)size;
    r->bytes = bytes;
    frame_encode(r->frame, FRAME_OP_PUB, 0, 0, pub->subject, pub->subject_len, NULL, 0,
                 pub->headers, pub->header_len, pub->payload, pub->payload_len);
    if (old != NULL) {
        r->next = old->next;
        free(old);
        s->count--;
    } else {
        r->next = NULL;
    }
    *link = r;
    s->count++;
    s->bytes = s->bytes - old_bytes + bytes;
    return 0;
}

static void retain_visit(const struct retained *r, void (*fn)(const struct frame *, void *),
                         void *arg)
{
    struct frame f;
    /* Encoded by retain_apply() within the limits it was accepted with. */
    if (frame_parse(r->frame, r->size, UINT32_MAX, &f) == 0) {
        fn(&f, arg);
    }
}

void retain_foreach_match(const struct retain_store *s, const char *pattern, size_t pattern_len,
                          void (*fn)(const struct frame *value, void *arg), void *arg)
{
    if (s->count == 0) {
        return;
    }
    if (sb_subject_valid(pattern, pattern_len)) {
        /* No wildcard: one lookup. */
        uint32_t hash = subject_hash((const uint8_t *)pattern, pattern_len);
        struct retained *r = *retain_find(s, (const uint8_t *)pattern, pattern_len, hash);
        if (r != NULL) {
            retain_visit(r, fn, arg);
        }
        return;
    }
    for (size_t i = 0; i < s->nbuckets; i++) {
        for (const struct retained *r = s->buckets[i]; r != NULL; r = r->next) {
            size_t len;
            const uint8_t *subj = value_subject(r, &len);
            if (sb_pattern_match(pattern, pattern_len, (const char *)subj, len)) {
                retain_visit(r, fn, arg);
            }
        }
    }
}
