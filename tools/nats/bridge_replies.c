/*
 * bridge_replies.c - where the replies of requests in flight go.
 *
 * A request that crosses the bridge keeps its reply subject on its own
 * side: the bridge sends it on with a reply subject of its own, ending in
 * a token, and remembers the original under that token. A reply is routed
 * only through a token the bridge gave out, so nobody on the far side can
 * use the bridge's reply subjects to publish on an arbitrary subject here.
 *
 * The table is a ring of `cap` slots: token t lives in slot t % cap, and
 * a slot is reused by the request `cap` tokens later, so the newest `cap`
 * requests are remembered, whatever their replies do, with no timer and
 * no allocation per request but the subject's copy. A reply for a token
 * whose slot has been reused is not delivered, and counted
 * (dropped_replies). Several replies to one request (a scatter-gather) all
 * go back while the slot holds.
 */
#include "bridge.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bridge_replies_init(struct bridge_replies *r, uint32_t cap)
{
    memset(r, 0, sizeof(*r));
    r->subjects = calloc(cap, sizeof(*r->subjects));
    r->tokens = calloc(cap, sizeof(*r->tokens));
    if (r->subjects == NULL || r->tokens == NULL) {
        free(r->subjects);
        free(r->tokens);
        return -ENOMEM;
    }
    r->cap = cap;
    r->next = 1; /* 0 is never a token */
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
    free(r->tokens);
    memset(r, 0, sizeof(*r));
}

int bridge_replies_put(struct bridge_replies *r, const char *subject, size_t len, uint64_t *token)
{
    uint64_t t = r->next;
    size_t slot = (size_t)(t % r->cap);
    char *s = r->subjects[slot];
    /* Reuse the slot's buffer when it is large enough: subjects of a
     * steady stream of requests have similar lengths. */
    if (s == NULL || strlen(s) < len) {
        char *n = realloc(s, len + 1);
        if (n == NULL) {
            return -ENOMEM;
        }
        s = n;
    }
    memcpy(s, subject, len);
    s[len] = '\0';
    r->subjects[slot] = s;
    r->tokens[slot] = t;
    r->next++;
    *token = t;
    return 0;
}

const char *bridge_replies_get(const struct bridge_replies *r, uint64_t token)
{
    size_t slot = (size_t)(token % r->cap);
    if (token == 0 || r->tokens[slot] != token) {
        return NULL;
    }
    return r->subjects[slot];
}

int bridge_replies_token(const char *subject, size_t len, const char *prefix, size_t prefix_len,
                         uint64_t *token)
{
    if (len <= prefix_len || len - prefix_len > 20 || memcmp(subject, prefix, prefix_len) != 0) {
        return -EINVAL;
    }
    uint64_t t = 0;
    for (size_t i = prefix_len; i < len; i++) {
        if (subject[i] < '0' || subject[i] > '9') {
            return -EINVAL;
        }
        uint64_t d = (uint64_t)(subject[i] - '0');
        if (t > (UINT64_MAX - d) / 10) {
            return -EINVAL;
        }
        t = t * 10 + d;
    }
    *token = t;
    return 0;
}
