/*
 * client.c - the public API of a client (include/sockbus.h): publishing,
 * subscribing, the flush barrier, receiving a message, processing from an
 * event loop, and the accessors.
 *
 * These calls are thin: each checks its arguments, encodes one frame into
 * the write buffer (client_send_frame(), in client_io.c) or waits in
 * client_pump() for what it needs. The buffers, reading and scanning are
 * client_io.c's; connecting and the handshake client_connect.c's; the
 * requests client_request.c's; struct sb_client is in client.h. A
 * publish, the call made once per message, does its common case (the
 * subject published last, connected, room in the write buffer) inline
 * and leaves the rest to the general path.
 *
 * A client that reconnects (client_connect.c, the dialer) changes each
 * call at its boundary: client_ready() first (an attempt, when one is
 * due), and after a connection error client_lost_check(), which turns it
 * into the DISCONNECTED state: a publish is then held for the replay, a
 * subscription waits for it, a flush fails with SB_E_DISCONNECTED.
 */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

/* ---- messaging ---------------------------------------------------------- */

/*
 * Is subject[0..len) valid? A publisher usually sends many messages on one
 * subject, so the last subject found valid is kept and the same bytes again
 * are only compared; any other subject is validated (and kept when valid).
 */
static bool publish_subject_valid(sb_client *c, const char *subject, size_t len)
{
    if (len != 0 && len == c->pub_subject_len && bytes_same(subject, c->pub_subject, len)) {
        return true;
    }
    if (!sb_subject_valid(subject, len)) {
        return false;
    }
    memcpy(c->pub_subject, subject, len); /* len <= SB_SUBJECT_MAX: valid */
    c->pub_subject_len = len;
    return true;
}

/*
 * The common case of a publish, done in place: connected, no error, and a
 * frame that fits in what is left of the write buffer (so nothing is
 * written now). Encodes the frame there as client_send_frame() would and
 * returns true; false leaves everything to the general path. The subject
 * and reply are valid, so each is at most SB_SUBJECT_MAX bytes. Always
 * inlined: in publish(), without reply or headers, it folds to a header,
 * the subject and the payload.
 */
__attribute__((always_inline)) static inline bool
publish_buffered(sb_client *c, uint8_t flags, const char *subject, size_t sl, const char *reply,
                 size_t rl, const void *headers, size_t hl, const void *payload, size_t pl)
{
    if (c->closed_err != 0 || c->state != SB_STATE_CONNECTED || c->fd < 0 || hl > UINT16_MAX ||
        pl >= CLIENT_DIRECT_MIN) {
        return false;
    }
    size_t size = frame_encoded_size(sl, rl, hl, pl);
    if (size >= CLIENT_DIRECT_MIN || size > c->max_frame || CLIENT_WBUF_SIZE - c->wlen < size) {
        return false;
    }
    uint8_t *out = c->wbuf + c->wlen;
    frame_encode_header(out, (uint32_t)size, FRAME_OP_PUB, flags, (uint16_t)sl, (uint16_t)rl,
                        (uint16_t)hl, 0);
    out += FRAME_HEADER_SIZE;
    bytes_copy_short(out, subject, sl);
    out += sl;
    if (rl > 0) {
        memcpy(out, reply, rl);
        out += rl;
    }
    if (hl > 0) {
        memcpy(out, headers, hl);
        out += hl;
    }
    if (pl > 0) {
        memcpy(out, payload, pl);
    }
    c->wlen += size;
    return true;
}

/* A publish in full: every check, then the write buffer, a direct write,
 * or the publishes held while disconnected. sl and rl are the lengths of
 * subject and reply (0 for NULL). */
__attribute__((noinline, cold)) static int
publish_slow(sb_client *c, uint8_t flags, const char *subject, size_t sl, const char *reply,
             size_t rl, const void *headers, size_t hl, const void *payload, size_t pl)
{
    if (!publish_subject_valid(c, subject, sl) || (rl > 0 && !sb_subject_valid(reply, rl)) ||
        (hl > 0 && headers == NULL) || (pl > 0 && payload == NULL)) {
        return -EINVAL;
    }
    /* client_ready() does nothing for a connected client without an
     * error: that case goes straight to the write buffer. */
    if (publish_buffered(c, flags, subject, sl, reply, rl, headers, hl, payload, pl)) {
        return 0;
    }
    int r = client_ready(c);
    if (r == 0 && c->state != SB_STATE_DISCONNECTED) {
        r = client_send_frame(c, FRAME_OP_PUB, flags, 0, subject, sl, reply, rl, headers, hl,
                              payload, pl);
        if (r >= 0 || !client_lost_check(c)) {
            return r;
        }
    }
    if (r == 0 || c->state == SB_STATE_DISCONNECTED) {
        /* The broker is away (or went while this was written): held. */
        r = client_hold_frame(c, FRAME_OP_PUB, flags, 0, subject, sl, reply, rl, headers, hl,
                              payload, pl);
    }
    return r;
}

/*
 * sb_publish_ex() and sb_publish(), the parts of an sb_pub as arguments.
 * The common publish is done here without a call but strlen(): the subject
 * published last again, no reply nor headers, connected, and room in the
 * write buffer. Anything else is publish_slow()'s, which gives the same
 * result for these.
 */
__attribute__((always_inline)) static inline int publish(sb_client *c, uint32_t pub_flags,
                                                         const char *subject, const char *reply,
                                                         const void *headers, size_t hl,
                                                         const void *payload, size_t pl)
{
    uint8_t flags = (uint8_t)pub_flags;
    size_t sl = subject ? strlen(subject) : 0;
    size_t rl = reply ? strlen(reply) : 0;
    if (rl == 0 && hl == 0 && (pl == 0 || payload != NULL) && sl != 0 && sl == c->pub_subject_len &&
        bytes_same(subject, c->pub_subject, sl) &&
        publish_buffered(c, flags, subject, sl, NULL, 0, NULL, 0, payload, pl)) {
        return 0;
    }
    return publish_slow(c, flags, subject, sl, reply, rl, headers, hl, payload, pl);
}

SB_EXPORT int sb_publish_ex(sb_client *c, const sb_pub *pub)
{
    return publish(c, pub->flags, pub->subject, pub->reply, pub->headers, pub->headers_len,
                   pub->payload, pub->payload_len);
}

SB_EXPORT int sb_publish(sb_client *c, const char *subject, const char *reply, const void *data,
                         size_t len)
{
    return publish(c, 0, subject, reply, NULL, 0, data, len);
}

SB_EXPORT int sb_subscribe(sb_client *c, const char *pattern, const char *queue, uint32_t *sid)
{
    return sb_subscribe_ex(c, pattern, queue, 0, sid);
}

SB_EXPORT int sb_subscribe_ex(sb_client *c, const char *pattern, const char *queue, uint32_t flags,
                              uint32_t *sid)
{
    size_t pl = pattern ? strlen(pattern) : 0;
    size_t ql = queue ? strlen(queue) : 0;
    if (!sb_pattern_valid(pattern, pl) || (ql > 0 && !sb_subject_valid(queue, ql)) ||
        (flags & ~SB_SUB_FLAGS_KNOWN) != 0) {
        return -EINVAL;
    }
    if (c->next_sid == 0) {
        return -ENOSPC; /* 2^32 - 1 subscriptions issued on one connection */
    }
    int r = client_ready(c);
    if (r < 0) {
        return r;
    }
    uint32_t id = c->next_sid;
    if (c->reconnect) {
        r = client_subs_add(c, id, (uint8_t)flags, pattern, ql > 0 ? queue : NULL);
        if (r < 0) {
            return r;
        }
    }
    if (c->state != SB_STATE_DISCONNECTED) {
        r = client_send_frame(c, FRAME_OP_SUB, (uint8_t)flags, id, pattern, pl, queue, ql, NULL, 0,
                              NULL, 0);
        if (r < 0 && !client_lost_check(c)) {
            client_subs_unsubscribe(c, id, 0);
            return r;
        }
    }
    c->next_sid++;
    if (sid != NULL) {
        *sid = id;
    }
    return 0;
}

SB_EXPORT int sb_unsubscribe(sb_client *c, uint32_t sid, uint32_t max_msgs)
{
    if (sid == 0 || (c->next_sid != 0 && sid >= c->next_sid)) {
        return -ENOENT;
    }
    int r = client_ready(c);
    if (r < 0) {
        return r;
    }
    client_subs_unsubscribe(c, sid, max_msgs);
    if (c->state == SB_STATE_DISCONNECTED) {
        return 0; /* the replay leaves it out, or replays its count */
    }
    uint8_t count[4];
    frame_put_u32(count, max_msgs);
    r = client_send_frame(c, FRAME_OP_UNSUB, 0, sid, NULL, 0, NULL, 0, NULL, 0, count,
                          max_msgs > 0 ? sizeof(count) : 0);
    return r < 0 && client_lost_check(c) ? 0 : r;
}

static bool have_pong(const sb_client *c)
{
    /* Tokens increase; PONGs come back in order. */
    return (int32_t)(c->pong_seen - c->ping_sent) >= 0;
}

SB_EXPORT int sb_flush(sb_client *c, int timeout_ms)
{
    int64_t deadline = client_deadline_after(timeout_ms);
    /* While the broker is away, wait for it (and the replay) first. */
    int r = client_await(c, deadline);
    if (r < 0) {
        return r;
    }
    uint32_t losses = c->losses;
    uint32_t token = c->ping_sent + 1;
    r = client_send_frame(c, FRAME_OP_PING, 0, token, NULL, 0, NULL, 0, NULL, 0, NULL, 0);
    if (r < 0) {
        return client_lost_check(c) ? SB_E_DISCONNECTED : r;
    }
    c->ping_sent = token;
    r = client_pump(c, have_pong, deadline);
    if (c->losses != losses) {
        /* Lost before the PONG: what the barrier covered may be lost. */
        return SB_E_DISCONNECTED;
    }
    if (r < 0) {
        return r;
    }
    r = c->pending_err;
    c->pending_err = 0;
    return r;
}

SB_EXPORT int sb_next_msg(sb_client *c, sb_msg *msg, int timeout_ms)
{
    if (client_take_msg(c, msg)) {
        return 0;
    }
    if (c->closed_err && !client_lost_check(c)) {
        return c->closed_err;
    }
    int r = client_pump(c, client_have_msg, client_deadline_after(timeout_ms));
    if (r < 0) {
        return r;
    }
    client_take_msg(c, msg);
    return 0;
}

SB_EXPORT int sb_process(sb_client *c)
{
    int r = client_ready(c); /* dials when sb_timeout_ms() has passed */
    if (r < 0) {
        return r;
    }
    if (c->state == SB_STATE_DISCONNECTED) {
        return 0;
    }
    r = c->closed_err ? c->closed_err : client_write_some(c);
    /* Bounded: a fast sender must not keep us here forever. Each read is
     * scanned before the next: a read that ends the connection must not
     * take with it the frames read before (a broker's last words, ERR 6
     * or 9, come right before its end of file). */
    for (int i = 0; r >= 0 && i < 16; i++) {
        r = client_read_some(c);
        if (r <= 0) {
            break;
        }
        r = client_scan(c);
    }
    if (r >= 0) {
        r = client_scan(c);
    }
    if (c->msg_cb != NULL) {
        sb_msg m;
        c->dispatching = true;
        while (client_take_msg(c, &m)) {
            c->msg_cb(c, &m, c->msg_arg);
        }
        c->dispatching = false;
    }
    if (r < 0 && client_lost_check(c)) {
        return 0; /* disconnected: sb_timeout_ms() says when to call again */
    }
    return r < 0 ? r : 0;
}

/* ---- accessors ---------------------------------------------------------- */

SB_EXPORT const char *sb_endpoint(const sb_client *c)
{
    return c->endpoint;
}

SB_EXPORT pid_t sb_broker_pid(const sb_client *c)
{
    return c->broker_pid;
}

SB_EXPORT uid_t sb_broker_uid(const sb_client *c)
{
    return c->broker_uid;
}

SB_EXPORT uint64_t sb_client_id(const sb_client *c)
{
    return c->client_id;
}

SB_EXPORT uint32_t sb_max_frame(const sb_client *c)
{
    return c->max_frame;
}

SB_EXPORT size_t sb_max_payload(const sb_client *c, size_t subject_len, size_t reply_len,
                                size_t headers_len)
{
    size_t used = frame_encoded_size(subject_len, reply_len, headers_len, 0);
    return used >= c->max_frame ? 0 : c->max_frame - used;
}

SB_EXPORT const char *sb_server_version(const sb_client *c)
{
    return c->server_version;
}

SB_EXPORT const char *sb_last_error(const sb_client *c)
{
    return c->last_err;
}

SB_EXPORT int sb_fd(const sb_client *c)
{
    return c->fd;
}

SB_EXPORT short sb_events(const sb_client *c)
{
    if (c->fd < 0) {
        return 0;
    }
    return (short)(POLLIN | (c->wlen > c->woff ? POLLOUT : 0));
}

SB_EXPORT void sb_set_msg_cb(sb_client *c, sb_msg_cb cb, void *arg)
{
    c->msg_cb = cb;
    c->msg_arg = arg;
}

SB_EXPORT void sb_set_dropped_cb(sb_client *c, sb_dropped_cb cb, void *arg)
{
    c->dropped_cb = cb;
    c->dropped_arg = arg;
}

SB_EXPORT void sb_set_error_cb(sb_client *c, sb_error_cb cb, void *arg)
{
    c->error_cb = cb;
    c->error_arg = arg;
}

SB_EXPORT uint64_t sb_take_dropped(sb_client *c)
{
    uint64_t n = c->dropped;
    c->dropped = 0;
    return n;
}
