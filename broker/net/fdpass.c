/*
 * fdpass.c - descriptors received with frames, and a message's shared set
 * of them (see fdpass.h).
 *
 * No descriptor may leak, whatever a peer does: every one the kernel
 * installs is, from that moment, either in a connection's queue (closed
 * with the connection, fdq_free()) or in a message's set (closed with its
 * last reference). recvmsg() asks for MSG_CMSG_CLOEXEC, so none is
 * inherited by a child even for the instant before it is queued, and its
 * control buffer has room for the kernel's most per call (SCM_MAX_FD, 253):
 * a stream socket hands over at most one sendmsg()'s descriptors per
 * recvmsg(), so MSG_CTRUNC only means that this process ran out of
 * descriptors, and the kernel has closed those it could not install.
 */
#include "fdpass.h"

#include "array.h"
#include "frame.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

uint64_t fdpass_held;

/* Room for the most descriptors one recvmsg() can bring. */
#define FDPASS_CMSG_SPACE CMSG_SPACE(FRAME_FDS_MAX * sizeof(int))

void fdq_free(struct fdq *q)
{
    for (uint32_t i = 0; i < q->len; i++) {
        close(q->fds[q->head + i]);
    }
    free(q->fds);
    *q = (struct fdq){0};
}

/* Room for n more at the end, moving the unclaimed ones to the front. */
static int fdq_reserve(struct fdq *q, uint32_t n)
{
    if (q->head > 0) {
        memmove(q->fds, q->fds + q->head, q->len * sizeof(int));
        q->head = 0;
    }
    return array_reserve(q->fds, q->cap, q->len, n, 16);
}

int fdq_take(struct fdq *q, uint32_t n, struct conn_fds **out)
{
    if (n > q->len) {
        return -ENOENT;
    }
    struct conn_fds *set = malloc(sizeof(*set) + n * sizeof(int));
    if (set == NULL) {
        return -ENOMEM;
    }
    set->refs = 0;
    set->n = n;
    memcpy(set->fd, q->fds + q->head, n * sizeof(int));
    q->head += n;
    q->len -= n;
    if (q->len == 0) {
        q->head = 0;
    }
    fdpass_held += n;
    *out = set;
    return 0;
}

void fdpass_release(struct conn_fds *set)
{
    if (set == NULL || (set->refs > 0 && --set->refs > 0)) {
        return;
    }
    for (uint32_t i = 0; i < set->n; i++) {
        close(set->fd[i]);
    }
    fdpass_held -= set->n;
    free(set);
}

ssize_t fdpass_recv(int fd, void *buf, size_t len, struct fdq *q)
{
    union {
        char buf[FDPASS_CMSG_SPACE];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = control.buf,
        .msg_controllen = sizeof(control.buf),
    };
    ssize_t n;
    do {
        n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return -errno;
    }
    if (msg.msg_flags & MSG_CTRUNC) {
        q->lost = 1;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        uint32_t k = (uint32_t)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        const unsigned char *data = CMSG_DATA(c);
        if (fdq_reserve(q, k) < 0) {
            /* Nowhere to keep them: closed here, and the frames that
             * claim them are refused. */
            for (uint32_t i = 0; i < k; i++) {
                int d;
                memcpy(&d, data + i * sizeof(int), sizeof(int));
                close(d);
            }
            q->lost = 1;
            continue;
        }
        memcpy(q->fds + q->len, data, k * sizeof(int));
        q->len += k;
    }
    return n;
}

ssize_t fdpass_send(int fd, const struct iovec *iov, int iovcnt, const int *fds, uint32_t nfds)
{
    union {
        char buf[FDPASS_CMSG_SPACE];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    if (nfds > 0) {
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        /* The header's padding goes to the kernel too: no stack garbage. */
        memset(control.buf, 0, msg.msg_controllen);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    ssize_t n;
    do {
        n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

void fdpass_own_add(struct fdpass_own *own, int fd)
{
    socklen_t len = sizeof(own->addr[0]);
    if (own->n < FDPASS_OWN_MAX &&
        getsockname(fd, (struct sockaddr *)&own->addr[own->n], &len) == 0) {
        own->n++;
    }
}

/* Does `peer` reach the listening address `own`? A TCP listener on the
 * unspecified address is reached on any address of its port. */
static bool fdpass_reaches(const struct sockaddr_storage *peer, const struct sockaddr_storage *own)
{
    if (peer->ss_family != own->ss_family) {
        return false;
    }
    if (own->ss_family == AF_UNIX) {
        const struct sockaddr_un *p = (const struct sockaddr_un *)peer;
        const struct sockaddr_un *o = (const struct sockaddr_un *)own;
        return o->sun_path[0] != '\0' &&
               strncmp(p->sun_path, o->sun_path, sizeof(o->sun_path)) == 0;
    }
    if (own->ss_family == AF_INET) {
        const struct sockaddr_in *p = (const struct sockaddr_in *)peer;
        const struct sockaddr_in *o = (const struct sockaddr_in *)own;
        return p->sin_port == o->sin_port && (o->sin_addr.s_addr == htonl(INADDR_ANY) ||
                                              p->sin_addr.s_addr == o->sin_addr.s_addr);
    }
    if (own->ss_family == AF_INET6) {
        const struct sockaddr_in6 *p = (const struct sockaddr_in6 *)peer;
        const struct sockaddr_in6 *o = (const struct sockaddr_in6 *)own;
        return p->sin6_port == o->sin6_port &&
               (IN6_IS_ADDR_UNSPECIFIED(&o->sin6_addr) ||
                memcmp(&p->sin6_addr, &o->sin6_addr, sizeof(o->sin6_addr)) == 0);
    }
    return false;
}

bool fdpass_is_own_connection(const struct fdpass_own *own, int fd)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    /* Not a connected socket: getpeername() fails (ENOTSOCK, ENOTCONN). */
    if (own->n == 0 || getpeername(fd, (struct sockaddr *)&peer, &len) < 0) {
        return false;
    }
    for (unsigned i = 0; i < own->n; i++) {
        if (fdpass_reaches(&peer, &own->addr[i])) {
            return true;
        }
    }
    return false;
}
