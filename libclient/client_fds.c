/*
 * client_fds.c - what a Unix socket carries beside bytes: the sender's
 * meta block and file descriptors (docs/protocol.md, "Sender credentials",
 * "File descriptors").
 *
 * Receiving. Every read is a recvmsg() with room for the most descriptors
 * one sendmsg() can pass (253), flagged MSG_CMSG_CLOEXEC; those that come
 * are queued in arrival order. A stream socket hands over one sendmsg()'s
 * descriptors with its first byte, and the broker starts a sendmsg() with
 * each MSG that has some, so when client_scan() meets a complete MSG whose
 * meta block says nfds, its descriptors are the first nfds not yet
 * claimed: the MSG claims them. A reply taken out of the stream has its
 * descriptors closed. Handing a message out (client_take_msg()) makes its
 * descriptors current, and closes the previous message's: like its
 * payload, they are valid until the next call, and an application dup()s
 * those it keeps. If this process runs out of descriptors the kernel
 * drops what it cannot install (MSG_CTRUNC): the connection fails then,
 * since a message would otherwise arrive without what it carries.
 *
 * Sending. sb_publish_fds() writes out what is buffered, then sends the
 * frame with one sendmsg() that starts at its first byte and carries the
 * descriptors (the rest of a large frame follows without them). The
 * caller keeps its own descriptors: the kernel passes copies.
 */
#include "client.h"

#include "array.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Descriptors received that no frame has claimed, at most: twice what one
 * frame may carry, as the broker allows (the next frame's may be there
 * before the current frame is complete). */
#define CLIENT_FDS_UNCLAIMED_MAX (2u * FRAME_FDS_MAX)

#define CLIENT_CMSG_SPACE CMSG_SPACE(FRAME_FDS_MAX * sizeof(int))

static int fds_reserve(sb_client *c, size_t n)
{
    return array_reserve(c->fds, c->fds_cap, c->fds_len, n, 16);
}

/* Remove fds[at .. at + n), closing them when `close_them`. */
static void fds_remove(sb_client *c, size_t at, size_t n, bool close_them)
{
    if (close_them) {
        for (size_t i = 0; i < n; i++) {
            close(c->fds[at + i]);
        }
    }
    if (n == 0) {
        return; /* fds may be NULL: memmove() must not see it */
    }
    memmove(c->fds + at, c->fds + at + n, (c->fds_len - at - n) * sizeof(int));
    c->fds_len -= n;
}

ssize_t client_recv(sb_client *c, void *buf, size_t len)
{
    union {
        char buf[CLIENT_CMSG_SPACE];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = control.buf,
        .msg_controllen = sizeof(control.buf),
    };
    ssize_t n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) {
        return -errno;
    }
    int err = 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&msg); h != NULL; h = CMSG_NXTHDR(&msg, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(h);
        if (err == 0 && fds_reserve(c, k) < 0) {
            err = -ENOMEM;
        }
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof(int), sizeof(int));
            if (err == 0) {
                c->fds[c->fds_len++] = fd;
            } else {
                close(fd);
            }
        }
    }
    if (err == 0 && (msg.msg_flags & MSG_CTRUNC)) {
        err = -EMFILE; /* the kernel dropped what it could not install */
    }
    if (err == 0 && c->fds_len - c->fds_claimed > CLIENT_FDS_UNCLAIMED_MAX) {
        err = -EPROTO;
    }
    return err < 0 ? err : n;
}

int client_fds_scanned(sb_client *c, const struct frame *f, bool keep)
{
    struct frame_meta m;
    if (frame_meta_parse(f, &m) < 0 || m.nfds > FRAME_FDS_MAX) {
        return -EPROTO;
    }
    if (m.nfds == 0) {
        return 0;
    }
    if (c->fds_len - c->fds_claimed < m.nfds) {
        return -EPROTO; /* a MSG that says it carries more than came */
    }
    if (keep) {
        c->fds_claimed += m.nfds;
    } else {
        fds_remove(c, c->fds_claimed, m.nfds, true);
    }
    return 0;
}

static void fds_close_current(sb_client *c)
{
    for (uint32_t i = 0; i < c->cur_nfds; i++) {
        close(c->cur_fds[i]);
    }
    c->cur_nfds = 0;
    c->cur_payload = NULL;
}

void client_fds_take(sb_client *c, const uint8_t *frame)
{
    fds_close_current(c);
    if (!(frame[5] & FRAME_MSG_META)) {
        return;
    }
    /* The block follows the headers; client_scan() checked that it fits,
     * and client_fds_scanned() claimed its descriptors. */
    const uint8_t *meta = frame + FRAME_HEADER_SIZE + frame_get_u16(frame + 6) +
                          frame_get_u16(frame + 8) + frame_get_u16(frame + 10);
    struct frame_meta m;
    frame_meta_decode(meta, &m);
    if (m.nfds == 0) {
        return;
    }
    memcpy(c->cur_fds, c->fds, m.nfds * sizeof(int));
    c->cur_nfds = m.nfds;
    c->cur_payload = meta + FRAME_META_SIZE;
    c->fds_claimed -= m.nfds;
    fds_remove(c, 0, m.nfds, false);
}

void client_fds_lost(sb_client *c)
{
    /* Those no scanned frame claimed came with a frame the loss cut: the
     * broker discards it, so nothing will ever claim them. */
    fds_remove(c, c->fds_claimed, c->fds_len - c->fds_claimed, true);
}

void client_fds_free(sb_client *c)
{
    fds_close_current(c);
    for (size_t i = 0; i < c->fds_len; i++) {
        close(c->fds[i]);
    }
    free(c->fds);
    c->fds = NULL;
    c->fds_len = c->fds_cap = c->fds_claimed = 0;
}

/* ---- the public API ------------------------------------------------------ */

SB_EXPORT int sb_msg_sender(const sb_msg *msg, sb_sender *out)
{
    if (msg == NULL || out == NULL || !(msg->flags & SB_MSG_META) || msg->payload == NULL) {
        return -ENOENT;
    }
    /* The block sits right before the payload (client_fill_msg()). */
    const uint8_t *p = (const uint8_t *)msg->payload - FRAME_META_SIZE;
    struct frame_meta m;
    frame_meta_decode(p, &m);
    *out = (sb_sender){
        .client_id = m.client_id,
        .pid = m.pid == FRAME_META_NONE ? (pid_t)-1 : (pid_t)m.pid,
        .uid = (uid_t)m.uid,
        .gid = (gid_t)m.gid,
        .transport = m.transport,
        .nfds = m.nfds,
    };
    return 0;
}

SB_EXPORT size_t sb_msg_fds(const sb_client *c, const sb_msg *msg, const int **fds)
{
    if (c == NULL || msg == NULL || c->cur_nfds == 0 || msg->payload != c->cur_payload) {
        if (fds != NULL) {
            *fds = NULL;
        }
        return 0;
    }
    if (fds != NULL) {
        *fds = c->cur_fds;
    }
    return c->cur_nfds;
}

/* Send (*iov)[0..*n) with one sendmsg() that carries the descriptors; the
 * bytes it did not take are left described in *iov and *n. Waits for the
 * socket as client_send_frame() does for a large frame. */
static int send_with_fds(sb_client *c, struct iovec **iov, int *n, const int *fds, size_t nfds)
{
    union {
        char buf[CLIENT_CMSG_SPACE];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    for (;;) {
        struct msghdr mh = {
            .msg_iov = *iov,
            .msg_iovlen = (size_t)*n,
            .msg_control = control.buf,
            .msg_controllen = CMSG_SPACE(nfds * sizeof(int)),
        };
        struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(h), fds, nfds * sizeof(int));
        ssize_t sent = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int r = client_wait_writable(c, -1); /* reads meanwhile */
                if (r < 0) {
                    return r;
                }
                continue;
            }
            return client_fail(c, -errno);
        }
        client_iov_advance(iov, n, (size_t)sent);
        return 0;
    }
}

SB_EXPORT int sb_publish_fds(sb_client *c, const sb_pub *pub, const int *fds, size_t nfds)
{
    size_t sl = pub->subject ? strlen(pub->subject) : 0;
    size_t rl = pub->reply ? strlen(pub->reply) : 0;
    if (!sb_subject_valid(pub->subject, sl) || (rl > 0 && !sb_subject_valid(pub->reply, rl)) ||
        (pub->headers_len > 0 && pub->headers == NULL) ||
        (pub->payload_len > 0 && pub->payload == NULL) || (pub->flags & SB_PUB_RETAIN) ||
        nfds == 0 || nfds > FRAME_FDS_MAX || fds == NULL) {
        return -EINVAL;
    }
    int ready = client_ready(c);
    if (ready < 0) {
        return ready;
    }
    if (c->state == SB_STATE_DISCONNECTED) {
        /* Descriptors are not held across a reconnect: the caller keeps
         * them and may send again once connected. */
        return SB_E_DISCONNECTED;
    }
    if (c->closed_err) {
        return c->closed_err;
    }
    if (sb_endpoint_is_tcp(c->endpoint)) {
        return -EOPNOTSUPP;
    }
    size_t size;
    int r = client_frame_size(c, sl, rl, pub->headers_len, pub->payload_len, &size);
    if (r < 0) {
        return r;
    }
    /* What is buffered goes first: the descriptors must start this frame. */
    r = client_write_all(c, -1);
    if (r < 0) {
        return r;
    }
    uint8_t hdr[FRAME_HEADER_SIZE];
    frame_encode_header(hdr, (uint32_t)size, FRAME_OP_PUB, (uint8_t)(pub->flags | FRAME_PUB_FDS),
                        (uint16_t)sl, (uint16_t)rl, (uint16_t)pub->headers_len, (uint32_t)nfds);
    struct iovec parts[5];
    struct iovec *iov = parts;
    int n = client_frame_iov(parts, hdr, pub->subject, sl, pub->reply, rl, pub->headers,
                             pub->headers_len, pub->payload, pub->payload_len);
    r = send_with_fds(c, &iov, &n, fds, nfds);
    if (r < 0 || n == 0) {
        return r;
    }
    return client_write_iov(c, iov, n);
}
