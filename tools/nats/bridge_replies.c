/*
 * bridge_replies.c - where the replies of requests in flight go.
 *
 * A request that crosses the bridge keeps its reply subject on its own
 * side: the bridge sends it on with a reply subject of its own, ending in
 * a token, and remembers the original under that token. A reply is routed
 * only through a token the bridge gave out, so nobody on the far side can
 * use the bridge's reply subjects to publish on an arbitrary subject here.
 *
 * Tokens cannot be guessed: a token is the request's number n (16 hex
 * digits) followed by a tag (16 more), SipHash-2-4 of n under a 128-bit
 * key drawn from getrandom() when the table is made. Someone who sees one
 * token (a responder sees its request's) learns n, but the tag of n + 1,
 * or of any other number, is unknown to them: a reply to a token the
 * bridge did not give out matches with a chance of 2^-64, is not
 * delivered, and is counted (dropped_replies). Without the tag, a
 * responder to one request could answer the next requests in flight,
 * meant for other responders.
 *
 * The table is a ring of `cap` slots: request n lives in slot n % cap, and
 * a slot is reused by the request `cap` numbers later, so the newest `cap`
 * requests are remembered, whatever their replies do, with no timer and
 * no allocation per request but the subject's copy. A lookup is O(1): the
 * number names the slot, the slot must still hold that number, and the
 * tag must be n's. A reply for a request whose slot has been reused is not
 * delivered either, and counted. Several replies to one request (a
 * scatter-gather) all go back while the slot holds.
 */
#include "bridge.h"
#include "siphash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The tag of request n: SipHash-2-4 (siphash.h) of the 8 bytes of n,
 * little endian, under the table's key. */
static uint64_t tag_of(const struct bridge_replies *r, uint64_t n)
{
    return siphash24_u64(r->key[0], r->key[1], n);
}

/* ---- the table ----------------------------------------------------------- */

int bridge_replies_init(struct bridge_replies *r, uint32_t cap)
{
    memset(r, 0, sizeof(*r));
    uint8_t key[SIPHASH_KEY_SIZE];
    int err = siphash_key_random(key);
    if (err < 0) {
        return err;
    }
    r->key[0] = siphash_le64(key);
    r->key[1] = siphash_le64(key + 8);
    r->subjects = calloc(cap, sizeof(*r->subjects));
    r->numbers = calloc(cap, sizeof(*r->numbers));
    if (r->subjects == NULL || r->numbers == NULL) {
        free(r->subjects);
        free(r->numbers);
        memset(r, 0, sizeof(*r));
        return -ENOMEM;
    }
    r->cap = cap;
    r->next = 1; /* 0 marks an empty slot */
    return 0;
}

void bridge_replies_deinit(struct bridge_replies *r)
{
    if (r->subjects != NULL) {
        for (uint32_t i = 0; i < r->cap; i++) {
            free(r->subjects[i]);
        }
    }
    free(r->subjects);
    free(r->numbers);
    memset(r, 0, sizeof(*r));
}

static void hex16(char *out, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = digits[v & 15];
        v >>= 4;
    }
}

int bridge_replies_put(struct bridge_replies *r, const char *subject, size_t len,
                       char token[BRIDGE_TOKEN_LEN + 1])
{
    uint64_t n = r->next;
    size_t slot = (size_t)(n % r->cap);
    char *s = r->subjects[slot];
    /* Reuse the slot's buffer when it is large enough: subjects of a
     * steady stream of requests have similar lengths. */
    if (s == NULL || strlen(s) < len) {
        char *grown = realloc(s, len + 1);
        if (grown == NULL) {
            return -ENOMEM;
        }
        s = grown;
    }
    memcpy(s, subject, len);
    s[len] = '\0';
    r->subjects[slot] = s;
    r->numbers[slot] = n;
    r->next++;
    hex16(token, n);
    hex16(token + 16, tag_of(r, n));
    token[BRIDGE_TOKEN_LEN] = '\0';
    return 0;
}

/* 16 lowercase hex digits (what hex16() writes, nothing else) into *v. */
static int unhex16(const char *in, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < 16; i++) {
        char c = in[i];
        unsigned d;
        if (c >= '0' && c <= '9') {
            d = (unsigned)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            d = (unsigned)(c - 'a' + 10);
        } else {
            return -EINVAL;
        }
        x = x << 4 | d;
    }
    *v = x;
    return 0;
}

const char *bridge_replies_get(const struct bridge_replies *r, const char *token, size_t len)
{
    uint64_t n, tag;
    if (len != BRIDGE_TOKEN_LEN || unhex16(token, &n) < 0 || unhex16(token + 16, &tag) < 0 ||
        n == 0) {
        return NULL;
    }
    size_t slot = (size_t)(n % r->cap);
    /* Every bit compared, whatever differs first: the time taken says
     * nothing about how close a guess came. */
    uint64_t diff = (r->numbers[slot] ^ n) | (tag_of(r, n) ^ tag);
    if (diff != 0) {
        return NULL;
    }
    return r->subjects[slot];
}

int bridge_replies_token(const char *subject, size_t len, const char *prefix, size_t prefix_len,
                         const char **token, size_t *token_len)
{
    if (len <= prefix_len || memcmp(subject, prefix, prefix_len) != 0) {
        return -EINVAL;
    }
    *token = subject + prefix_len;
    *token_len = len - prefix_len;
    return 0;
}
