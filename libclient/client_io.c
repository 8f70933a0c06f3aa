/*
 * client_io.c - the client's buffers, and the frames through them: writing,
 * reading, scanning, handing messages out, and waiting with poll().
 *
 * Output: frames are encoded straight into one write buffer and leave in
 * batches, when the buffer is full, on sb_flush(), before any call blocks
 * for input, and from sb_process(). A frame too large for the buffer goes
 * out with one sendmsg() of its parts, so a big payload is never copied.
 *
 * Input: one read buffer, reused. Bytes land at `rtail`; every complete
 * frame is checked once by client_scan(), which advances `rscan`. Control
 * frames (PONG, ERR, DROPPED) are handled as they are scanned and their op
 * is overwritten with 0, a tombstone, so that MSG frames before and after
 * them stay where they are: messages are handed out from `rhead` in arrival
 * order, pointing into the buffer, without a copy. The buffer is compacted
 * only before a read, which is why a message is valid until the next call.
 *
 *     rbuf: [ consumed | MSG ... MSG tombstone MSG | unscanned | free ]
 *           0          rhead                       rscan       rtail   rcap
 *
 * The socket is always non-blocking; the blocking calls wait with poll(),
 * in client_pump(), against a deadline.
 */
#include "client.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

/* ---- time ------------------------------------------------------------- */

int64_t client_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Deadline for a timeout: -1 for "forever". */
int64_t client_deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : client_now_ms() + timeout_ms;
}

/* Milliseconds left until the deadline, for poll(). */
int client_remaining_ms(int64_t deadline)
{
    if (deadline < 0) {
        return -1;
    }
    int64_t left = deadline - client_now_ms();
    if (left <= 0) {
        return 0;
    }
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* ---- connection state --------------------------------------------------- */

int client_fail(sb_client *c, int err)
{
    if (c->closed_err == 0) {
        c->closed_err = err;
    }
    return c->closed_err;
}

int client_wait(sb_client *c, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = c->fd, .events = events};
        int n = poll(&p, 1, client_remaining_ms(deadline));
        if (n > 0) {
            return p.revents; /* > 0: POLLNVAL cannot happen on our own fd */
        }
        if (n == 0) {
            return -ETIMEDOUT;
        }
        if (errno != EINTR) {
            return -errno;
        }
    }
}

/* ---- output ------------------------------------------------------------- */

int client_write_some(sb_client *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        }
        return client_fail(c, n < 0 ? -errno : -EPIPE);
    }
    c->woff = 0;
    c->wlen = 0;
    return 0;
}

/*
 * Wait until the socket takes more output, reading meanwhile (see
 * client_write_all() for why) but not from inside a callback, where reading
 * may move the buffer that the message being handled points into.
 * Returns 0, -ETIMEDOUT, or a connection error.
 */
int client_wait_writable(sb_client *c, int64_t deadline)
{
    short events = c->dispatching ? POLLOUT : POLLOUT | POLLIN;
    int r = client_wait(c, events, deadline);
    if (r < 0) {
        return r == -ETIMEDOUT ? r : client_fail(c, r);
    }
    if (c->dispatching || !(r & (POLLIN | POLLHUP | POLLERR))) {
        return 0;
    }
    r = client_read_some(c);
    if (r > 0) {
        r = client_scan(c);
    }
    return r < 0 ? r : 0;
}

/*
 * Write everything buffered, waiting for the socket until the deadline
 * (-1: as long as it takes). While it waits it also reads: the broker
 * drops messages for slow consumers rather than block, but it does stop
 * reading from a client that leaves its own replies (PONG, ERR) unread, so
 * a writer that never read could wait for ever. What is read stays in the
 * read buffer for later calls. A timeout leaves the rest buffered and the
 * connection usable.
 */
int client_write_all(sb_client *c, int64_t deadline)
{
    if (c->closed_err) {
        return c->closed_err;
    }
    for (;;) {
        int r = client_write_some(c);
        if (r < 0 || c->wlen == 0) {
            return r;
        }
        r = client_wait_writable(c, deadline);
        if (r < 0) {
            return r;
        }
    }
}

/* Send a frame's parts with sendmsg() until all is written. Used for frames
 * too big for the write buffer; the buffer is empty when this is called. */
int client_write_iov(sb_client *c, struct iovec *iov, int iovcnt)
{
    while (iovcnt > 0) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int r = client_wait_writable(c, -1);
                if (r < 0) {
                    return client_fail(c, r);
                }
                continue;
            }
            return client_fail(c, -errno);
        }
        client_iov_advance(&iov, &iovcnt, (size_t)n);
    }
    return 0;
}

void client_iov_advance(struct iovec **iov, int *iovcnt, size_t sent)
{
    while (*iovcnt > 0 && sent >= (*iov)->iov_len) {
        sent -= (*iov)->iov_len;
        (*iov)++;
        (*iovcnt)--;
    }
    if (*iovcnt > 0) {
        (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + sent;
        (*iov)->iov_len -= sent;
    }
}

int client_frame_iov(struct iovec iov[5], const uint8_t *hdr, const void *subject,
                     size_t subject_len, const void *reply, size_t reply_len, const void *headers,
                     size_t header_len, const void *payload, size_t payload_len)
{
    int n = 0;
    iov[n++] = (struct iovec){(void *)hdr, FRAME_HEADER_SIZE};
    const void *parts[4] = {subject, reply, headers, payload};
    size_t lens[4] = {subject_len, reply_len, header_len, payload_len};
    for (int i = 0; i < 4; i++) {
        if (lens[i] > 0) {
            iov[n++] = (struct iovec){(void *)parts[i], lens[i]};
        }
    }
    return n;
}

int client_frame_size(const sb_client *c, size_t subject_len, size_t reply_len, size_t header_len,
                      size_t payload_len, size_t *size)
{
    /* Each part is bounded before the sum: a payload length near SIZE_MAX
     * would wrap it to a small size. */
    if (subject_len > UINT16_MAX || reply_len > UINT16_MAX || header_len > UINT16_MAX ||
        payload_len > c->max_frame) {
        return -EMSGSIZE;
    }
    size_t n = frame_encoded_size(subject_len, reply_len, header_len, payload_len);
    if (n > c->max_frame) {
        return -EMSGSIZE;
    }
    *size = n;
    return 0;
}

/* Queue one frame. The body parts are copied into the write buffer (small
 * frames: one memcpy beats a syscall) or sent directly (large frames). */
int client_send_frame(sb_client *c, uint8_t op, uint8_t flags, uint32_t sid, const void *subject,
                      size_t subject_len, const void *reply, size_t reply_len, const void *headers,
                      size_t header_len, const void *payload, size_t payload_len)
{
    if (c->closed_err) {
        return c->closed_err;
    }
    if (c->fd < 0) {
        return SB_E_DISCONNECTED; /* callers hold frames meanwhile */
    }
    size_t size;
    int r = client_frame_size(c, subject_len, reply_len, header_len, payload_len, &size);
    if (r < 0) {
        return r;
    }
    if (size >= CLIENT_DIRECT_MIN) {
        r = client_write_all(c, -1);
        if (r < 0) {
            return r;
        }
        uint8_t hdr[FRAME_HEADER_SIZE];
        frame_encode_header(hdr, (uint32_t)size, op, flags, (uint16_t)subject_len,
                            (uint16_t)reply_len, (uint16_t)header_len, sid);
        struct iovec iov[5];
        int n = client_frame_iov(iov, hdr, subject, subject_len, reply, reply_len, headers,
                                 header_len, payload, payload_len);
        return client_write_iov(c, iov, n);
    }
    if (CLIENT_WBUF_SIZE - c->wlen < size) {
        r = client_write_all(c, -1);
        if (r < 0) {
            return r;
        }
    }
    c->wlen += frame_encode(c->wbuf + c->wlen, op, flags, sid, subject, subject_len, reply,
                            reply_len, headers, header_len, payload, payload_len);
    return 0;
}

int client_send_encoded(sb_client *c, const uint8_t *frame, size_t size)
{
    if (c->closed_err) {
        return c->closed_err;
    }
    if (size >= CLIENT_DIRECT_MIN) {
        int r = client_write_all(c, -1);
        if (r < 0) {
            return r;
        }
        struct iovec iov = {(void *)frame, size};
        return client_write_iov(c, &iov, 1);
    }
    if (CLIENT_WBUF_SIZE - c->wlen < size) {
        int r = client_write_all(c, -1);
        if (r < 0) {
            return r;
        }
    }
    memcpy(c->wbuf + c->wlen, frame, size);
    c->wlen += size;
    return 0;
}

/* ---- input -------------------------------------------------------------- */

/* Make room to read: drop consumed bytes, and make the buffer hold at
 * least `need` bytes from rhead. Called only before a read, never while a
 * handed-out message may still be in use. */
static int client_reserve(sb_client *c, size_t need)
{
    if (c->rhead > 0) {
        memmove(c->rbuf, c->rbuf + c->rhead, c->rtail - c->rhead);
        c->rscan -= c->rhead;
        c->rtail -= c->rhead;
        c->rhead = 0;
    }
    if (need <= c->rcap) {
        return 0;
    }
    if (need > CLIENT_RBUF_MAX) {
        return -ENOBUFS;
    }
    size_t cap = c->rcap * 2;
    while (cap < need) {
        cap *= 2;
    }
    uint8_t *p = realloc(c->rbuf, cap);
    if (p == NULL) {
        return -ENOMEM;
    }
    c->rbuf = p;
    c->rcap = cap;
    return 0;
}

int client_read_some(sb_client *c)
{
    /* Room for the frame being received, or a good chunk more. */
    size_t need = c->rtail - c->rhead + 4096;
    if (c->rtail - c->rscan >= 4) {
        uint32_t size = frame_get_u32(c->rbuf + c->rscan);
        if (size <= (uint64_t)c->max_frame + FRAME_META_SIZE) {
            size_t frame_need = c->rscan - c->rhead + size;
            need = frame_need > need ? frame_need : need;
        }
    }
    int r = client_reserve(c, need);
    if (r < 0) {
        return client_fail(c, r);
    }
    for (;;) {
        ssize_t n = client_recv(c, c->rbuf + c->rtail, c->rcap - c->rtail);
        if (n < 0) {
            errno = (int)-n;
            n = -1;
        }
        if (n > 0) {
            c->rtail += (size_t)n;
            return (int)(n > INT_MAX ? INT_MAX : n);
        }
        if (n == 0) {
            return client_fail(c, SB_E_CLOSED);
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        }
        return client_fail(c, -errno);
    }
}

/* ---- control frames ----------------------------------------------------- */

/* An ERR code as the SB_E_* code the API returns; a code no broker sends
 * counts as a protocol error. */
static int broker_error_code(uint32_t code)
{
    if (code == 0 || code > 100) {
        return SB_E_PROTOCOL;
    }
    return SB_E_BROKER_BASE - (int)code;
}

/* Does the broker close the connection after this ERR? */
static bool broker_error_fatal(uint32_t code)
{
    return code == FRAME_ERR_PROTOCOL || code == FRAME_ERR_TOO_LARGE ||
           code == FRAME_ERR_SLOW_CONSUMER || code == FRAME_ERR_HELLO_REQUIRED ||
           code == FRAME_ERR_SHUTDOWN || code == FRAME_ERR_VERSION;
}

/* ERR: record it (and tell the error callback); before WELCOME it ends
 * the handshake, a fatal one ends the connection, and the first other one
 * waits for the next sb_flush(). */
static void client_handle_err(sb_client *c, const struct frame *f)
{
    int err = broker_error_code(f->sid);
    char subject[SB_SUBJECT_MAX + 1];
    size_t sl = f->subject_len > SB_SUBJECT_MAX ? SB_SUBJECT_MAX : f->subject_len;
    memcpy(subject, f->subject, sl);
    subject[sl] = '\0';
    size_t tl = f->payload_len >= sizeof(c->last_err) ? sizeof(c->last_err) - 1 : f->payload_len;
    memcpy(c->last_err, f->payload, tl);
    c->last_err[tl] = '\0';
    if (c->error_cb) {
        c->error_cb(c, err, subject, c->last_err, c->error_arg);
    }
    client_refuse_request(c, err, subject, sl);
    if (!c->welcomed) {
        /* Any ERR before WELCOME ends the handshake. */
        c->refusal = err;
        client_fail(c, err);
    } else if (broker_error_fatal(f->sid)) {
        client_fail(c, err);
    } else if (c->pending_err == 0) {
        c->pending_err = err;
    }
}

/* ---- scanning and handing out ------------------------------------------ */

/*
 * The common case of a scan, first: a run of MSGs that are only to be
 * kept, with nothing else to do for any of them (no meta block, not for
 * the inbox, no auto-unsubscribe count to keep, no error to stop at).
 * Moves rscan past the run. Each is checked here as frame_parse() would
 * accept it, once, without describing it: anything else (a frame not
 * whole yet included) stops the run, for client_scan() to judge in full.
 */
static void client_scan_run(sb_client *c)
{
    if (c->closed_err != 0 || c->subs_counted != 0) {
        return;
    }
    const uint8_t *buf = c->rbuf;
    size_t at = c->rscan;
    size_t end = c->rtail;
    uint32_t max = c->max_frame; /* a MSG without the meta block */
    uint32_t inbox = c->inbox_sid;
    while (end - at >= FRAME_HEADER_SIZE) {
        const uint8_t *p = buf + at;
        uint32_t size = frame_get_u32(p);
        uint32_t sl = frame_get_u16(p + 6);
        uint32_t rl = frame_get_u16(p + 8);
        uint32_t hl = frame_get_u16(p + 10);
        /* No overflow: the sum is at most 16 + 3 * 65535. */
        if (p[4] != FRAME_OP_MSG || (p[5] & FRAME_MSG_META) || size > max || size > end - at ||
            FRAME_HEADER_SIZE + sl + rl + hl > size || sl > SB_SUBJECT_MAX || rl > SB_SUBJECT_MAX ||
            (inbox != 0 && frame_get_u32(p + 12) == inbox)) {
            break;
        }
        at += size;
    }
    c->rscan = at;
}

/* Check every complete frame after rscan; handle control frames now. */
int client_scan(sb_client *c)
{
    for (;;) {
        client_scan_run(c);
        struct frame f;
        uint8_t *p = c->rbuf + c->rscan;
        /* A MSG with the meta block may be that much over max_frame. */
        uint32_t max = c->max_frame > UINT32_MAX - FRAME_META_SIZE ? UINT32_MAX
                                                                   : c->max_frame + FRAME_META_SIZE;
        int r = frame_parse(p, c->rtail - c->rscan, max, &f);
        if (r == FRAME_NEED_MORE) {
            return 0;
        }
        if (r < 0) {
            return client_fail(c, -EPROTO);
        }
        bool keep = false;
        switch (f.op) {
        case FRAME_OP_MSG:
            /* Subjects are copied to be NUL terminated: hold a peer that is
             * not a real broker to the limit before copying anything. */
            if (f.subject_len > SB_SUBJECT_MAX || f.reply_len > SB_SUBJECT_MAX ||
                ((f.flags & FRAME_MSG_META) && f.payload_len < FRAME_META_SIZE)) {
                return client_fail(c, -EPROTO);
            }
            keep = f.sid == 0 || f.sid != c->inbox_sid || client_take_reply(c, &f) == 0;
            if ((f.flags & FRAME_MSG_META) && (r = client_fds_scanned(c, &f, keep)) < 0) {
                return client_fail(c, r);
            }
            if (c->subs_counted > 0 && f.sid != c->inbox_sid) {
                client_subs_count(c, f.sid); /* to replay what is left */
            }
            break;
        case FRAME_OP_PONG:
            c->pong_seen = f.sid;
            break;
        case FRAME_OP_DROPPED:
            if (f.payload_len >= 8) {
                uint64_t n = frame_get_u64(f.payload);
                c->dropped += n;
                if (c->dropped_cb) {
                    c->dropped_cb(c, n, c->dropped_arg);
                }
            }
            break;
        case FRAME_OP_ERR:
            client_handle_err(c, &f);
            break;
        case FRAME_OP_WELCOME:
            if (!c->welcomed) {
                r = client_handle_welcome(c, &f);
                if (r < 0) {
                    return client_fail(c, r);
                }
            }
            break;
        default:
            break; /* ops a client never receives: ignore */
        }
        if (!keep) {
            if (c->rhead == c->rscan) {
                c->rhead += f.size; /* nothing pending before it */
            } else {
                p[4] = 0; /* tombstone: skipped by client_take_msg() */
            }
        }
        c->rscan += f.size;
        if (c->closed_err) {
            return c->closed_err;
        }
    }
}

/*
 * Describe the MSG at p[0..size) in *m: subject and reply copied to be NUL
 * terminated, the rest pointing into the frame. The frame was checked by
 * client_scan(): this only locates its parts.
 */
void client_fill_msg(sb_client *c, const uint8_t *p, uint32_t size, sb_msg *m)
{
    client_msg_describe(c, p, size, frame_get_u16(p + 6), frame_get_u16(p + 8),
                        frame_get_u16(p + 10), m);
}

void client_take_full(sb_client *c, const uint8_t *p, uint32_t size, sb_msg *m)
{
    client_fds_take(c, p);
    client_fill_msg(c, p, size, m);
}

/* client_pump() on a connection: see below. */
static int client_pump_connected(sb_client *c, bool (*done)(const sb_client *), int64_t deadline)
{
    /* Right after sending (a request, a PING) the answer cannot be there
     * yet: wait first instead of a read that would say EAGAIN. A round trip
     * is then a send, a poll and a recv. */
    bool try_read = c->wlen == c->woff;
    int r = client_write_all(c, deadline);
    if (r < 0) {
        return r;
    }
    for (;;) {
        r = client_scan(c);
        if (r < 0) {
            return r;
        }
        if (done(c)) {
            return 0;
        }
        if (try_read) {
            r = client_read_some(c);
            if (r < 0) {
                return r;
            }
            if (r > 0) {
                continue;
            }
        }
        r = client_wait(c, POLLIN, deadline);
        if (r < 0) {
            return r == -ETIMEDOUT ? r : client_fail(c, r);
        }
        try_read = true;
    }
}

/*
 * Read and scan until `done(c)` holds or the deadline passes. Output is
 * flushed first: nobody blocks for input with requests unsent. A client
 * that reconnects goes on across a lost connection: it waits for the
 * broker (client_reconnect_wait()) and pumps the new connection; the loss
 * itself makes a flush or request in flight done (it failed).
 */
int client_pump(sb_client *c, bool (*done)(const sb_client *), int64_t deadline)
{
    for (;;) {
        if (c->state == SB_STATE_DISCONNECTED && !c->dialing) {
            if (done(c)) {
                return 0;
            }
            int r = client_reconnect_wait(c, deadline);
            if (r < 0) {
                return r;
            }
            continue;
        }
        int r = client_pump_connected(c, done, deadline);
        if (r < 0 && client_lost_check(c)) {
            continue;
        }
        return r;
    }
}

bool client_have_msg(const sb_client *c)
{
    for (size_t at = c->rhead; at < c->rscan; at += frame_get_u32(c->rbuf + at)) {
        if (c->rbuf[at + 4] == FRAME_OP_MSG) {
            return true;
        }
    }
    return false;
}
