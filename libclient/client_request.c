/*
 * client_request.c - request/reply (docs/protocol.md, "Request/reply"):
 * the inbox, the requests in flight, and taking their replies out of the
 * stream of messages.
 *
 * Replies come to one subscription, the inbox prefix WELCOME gave followed
 * by ">", made on the first request; the last token of a reply's subject
 * is the request's token. client_scan() hands every MSG on that
 * subscription to client_take_reply(), which copies a reply into its
 * request's buffer (it may have arrived behind messages that stay in the
 * read buffer) or drops it when its request is gone (timed out). Request
 * slots and their buffers are kept for reuse, so that steady request/reply
 * allocates nothing; sb_request_wait() hands a reply out from a buffer of
 * its own that stays put until the next one.
 */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the request slots ------------------------------------------------- */

/* The request in flight with this token, or NULL. */
static struct client_request *client_find_request(sb_client *c, uint32_t token)
{
    for (size_t i = 0; i < c->nrequests; i++) {
        if (c->requests[i].token == token) {
            return &c->requests[i];
        }
    }
    return NULL;
}

/* Copy data[0..len) into b, growing it when it is too small. */
static int buf_hold(struct client_buf *b, const void *data, size_t len)
{
    if (len > b->cap) {
        uint8_t *p = realloc(b->data, len);
        if (p == NULL) {
            return -ENOMEM;
        }
        b->data = p;
        b->cap = len;
    }
    if (len > 0) {
        memcpy(b->data, data, len);
    }
    return 0;
}

/*
 * A MSG on the inbox: copy it to the request waiting for its token (the
 * last token of the subject), or drop it when nobody waits any more (a
 * reply after its request timed out). Returns 1 when it was taken, 0 to
 * keep it, or a negative errno.
 */
int client_take_reply(sb_client *c, const struct frame *f)
{
    const char *subject = (const char *)f->subject;
    size_t plen = strlen(c->inbox_prefix);
    if (f->subject_len <= plen || memcmp(subject, c->inbox_prefix, plen) != 0) {
        return 0;
    }
    uint32_t token = 0;
    for (size_t i = plen; i < f->subject_len; i++) {
        if (subject[i] < '0' || subject[i] > '9') {
            return 0; /* someone else's subject under our inbox: a message */
        }
        token = token * 10 + (uint32_t)(subject[i] - '0');
    }
    struct client_request *req = client_find_request(c, token);
    if (req != NULL && !req->done) {
        int r = buf_hold(&req->reply, f->subject - FRAME_HEADER_SIZE, f->size);
        if (r < 0) {
            return r;
        }
        req->done = true;
    }
    return 1;
}

/* An ERR naming the subject of a request in flight (permission denied, a
 * $SYS answer too large) fails the oldest such request now, rather than
 * leaving it to its timeout. */
void client_refuse_request(sb_client *c, int err, const char *subject, size_t len)
{
    for (size_t i = 0; i < c->nrequests; i++) {
        struct client_request *req = &c->requests[i];
        if (!req->done && req->subject_len == len && memcmp(req->subject.data, subject, len) == 0) {
            req->done = true;
            req->err = err;
            return;
        }
    }
}

void client_fail_requests(sb_client *c, int err)
{
    for (size_t i = 0; i < c->nrequests; i++) {
        if (!c->requests[i].done) {
            c->requests[i].done = true;
            c->requests[i].err = err;
        }
    }
}

void client_requests_deinit(sb_client *c)
{
    for (size_t i = 0; i < c->requests_cap; i++) {
        free(c->requests[i].reply.data);
        free(c->requests[i].subject.data);
    }
    free(c->requests);
    free(c->reply_held.data);
    c->requests = NULL;
    c->nrequests = 0;
    c->requests_cap = 0;
    c->reply_held = (struct client_buf){0};
}

/* ---- requests ----------------------------------------------------------- */

/* Subscribe to the inbox once, on the first request. */
static int client_inbox(sb_client *c)
{
    if (c->inbox_sid != 0) {
        return 0;
    }
    if (c->inbox_prefix[0] == '\0') {
        return -EPROTO; /* the broker did not say where replies go */
    }
    if (c->next_sid == 0) {
        return -ENOSPC;
    }
    /* Not through sb_subscribe(): the dialer replays the inbox on its own,
     * under the prefix of the new connection. */
    char pattern[sizeof(c->inbox_prefix) + 1];
    int n = snprintf(pattern, sizeof(pattern), "%s>", c->inbox_prefix);
    int r = client_send_frame(c, FRAME_OP_SUB, 0, c->next_sid, pattern, (size_t)n, NULL, 0, NULL, 0,
                              NULL, 0);
    if (r < 0) {
        return r;
    }
    c->inbox_sid = c->next_sid++;
    return 0;
}

/* A slot for a new request; slots past nrequests keep their buffers for
 * reuse, so steady request/reply allocates nothing. */
static struct client_request *client_new_request(sb_client *c)
{
    if (c->nrequests == c->requests_cap) {
        size_t cap = c->requests_cap ? c->requests_cap * 2 : 4;
        struct client_request *p = realloc(c->requests, cap * sizeof(*p));
        if (p == NULL) {
            return NULL;
        }
        memset(p + c->requests_cap, 0, (cap - c->requests_cap) * sizeof(*p));
        c->requests = p;
        c->requests_cap = cap;
    }
    return &c->requests[c->nrequests++];
}

/* Forget a request: swap the last one into its place, keeping buffers. */
static void client_end_request(sb_client *c, struct client_request *req)
{
    struct client_request *last = &c->requests[--c->nrequests];
    struct client_request tmp = *req;
    *req = *last;
    *last = tmp;
    last->done = false;
}

SB_EXPORT int sb_request_send(sb_client *c, const sb_pub *req, uint32_t *token)
{
    int r = client_ready(c);
    if (r < 0) {
        return r;
    }
    if (c->state == SB_STATE_DISCONNECTED) {
        return SB_E_DISCONNECTED; /* its reply would go to a lost inbox */
    }
    r = client_inbox(c);
    if (r < 0) {
        return client_lost_check(c) ? SB_E_DISCONNECTED : r;
    }
    struct client_request *slot = client_new_request(c);
    if (slot == NULL) {
        return -ENOMEM;
    }
    if (++c->next_token == 0) {
        c->next_token = 1;
    }
    slot->token = c->next_token;
    slot->done = false;
    slot->err = 0;
    slot->subject_len = req->subject ? strlen(req->subject) : 0;
    if (buf_hold(&slot->subject, req->subject, slot->subject_len) < 0) {
        client_end_request(c, slot);
        return -ENOMEM;
    }
    char reply[sizeof(c->inbox_prefix) + 12];
    snprintf(reply, sizeof(reply), "%s%u", c->inbox_prefix, slot->token);
    sb_pub pub = *req;
    pub.reply = reply;
    r = sb_publish_ex(c, &pub);
    if (r == 0 && c->state == SB_STATE_DISCONNECTED) {
        r = SB_E_DISCONNECTED; /* lost while it was sent: it is held, not in flight */
    }
    if (r < 0) {
        client_end_request(c, slot);
        return r;
    }
    if (token != NULL) {
        *token = slot->token;
    }
    return 0;
}

static bool have_reply(const sb_client *c)
{
    for (size_t i = 0; i < c->nrequests; i++) {
        if (c->requests[i].token == c->wait_token) {
            return c->requests[i].done;
        }
    }
    return true; /* not in flight: nothing to wait for */
}

SB_EXPORT int sb_request_wait(sb_client *c, uint32_t token, sb_msg *reply, int timeout_ms)
{
    if (client_find_request(c, token) == NULL) {
        return -ENOENT;
    }
    c->wait_token = token;
    int r = client_pump(c, have_reply, client_deadline_after(timeout_ms));
    /* The pump may have moved the slots: look the request up again. */
    struct client_request *req = client_find_request(c, token);
    if (!req->done || req->err != 0) {
        /* Timed out, refused or disconnected: forget it (a late reply
         * will be dropped). */
        int err = req->done ? req->err : r < 0 ? r : -ETIMEDOUT;
        client_end_request(c, req);
        return err;
    }
    /* Hand the reply out from a buffer that stays put until the next
     * reply, and give the slot the old one to reuse. */
    struct client_buf b = c->reply_held;
    c->reply_held = req->reply;
    req->reply = b;
    client_end_request(c, req);
    const uint8_t *p = c->reply_held.data; /* a MSG checked by client_scan() */
    if (p[5] & FRAME_MSG_NO_RESPONDERS) {
        return SB_E_NO_RESPONDERS;
    }
    client_fill_msg(c, p, frame_get_u32(p), reply);
    return 0;
}

SB_EXPORT int sb_request_ex(sb_client *c, const sb_pub *req, sb_msg *reply, int timeout_ms)
{
    /* While the broker is away, wait for it within the timeout first. */
    int64_t deadline = client_deadline_after(timeout_ms);
    int r = client_await(c, deadline);
    if (r < 0) {
        return r;
    }
    uint32_t token;
    r = sb_request_send(c, req, &token);
    if (r < 0) {
        return r;
    }
    int left = deadline < 0 ? -1 : client_remaining_ms(deadline);
    return sb_request_wait(c, token, reply, left);
}

SB_EXPORT int sb_request(sb_client *c, const char *subject, const void *data, size_t len,
                         sb_msg *reply, int timeout_ms)
{
    sb_pub pub = {.subject = subject, .payload = data, .payload_len = len};
    return sb_request_ex(c, &pub, reply, timeout_ms);
}
