/*
 * transport.h - what differs between a Unix and a TCP connection, in one
 * table each.
 *
 * A connection (conn.h) knows its transport only as a pointer to a
 * `struct transport_ops`, and asks it whatever depends on the kind of
 * socket: how to put a libuv handle on an accepted fd, who the peer is
 * (the kernel's credentials, on a Unix socket), how to tune the socket,
 * and how to name the peer in a log line. Nothing else in the broker tests
 * which transport it has: a new one (or a new Unix-only feature, such as
 * passing file descriptors with SCM_RIGHTS or reading the sender's
 * credentials of each message) is a field here and one function in
 * transport.c, not a branch in every file.
 */
#ifndef SOCKBUS_TRANSPORT_H
#define SOCKBUS_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <uv.h>

/* The kernel's word on who is at the other end (SO_PEERCRED). */
struct transport_cred {
    pid_t pid;
    uid_t uid;
    gid_t gid;
};

/* The libuv handle of a connection: a uv_poll_t on its socket, for both
 * transports (transport.c says why). */
union transport_handle {
    uv_handle_t handle;
    uv_poll_t poll;
};

struct fdq;

/* Send buffer sizes already checked against what the kernel grants: the
 * first Unix connection accepted with a size reads back what it got (and
 * the log says so if that is less); later ones do not ask again. A few
 * sizes are kept, for reloads that go back and forth; past that the
 * oldest is forgotten. */
#define TRANSPORT_SNDBUF_CHECKED 8
struct transport_sndbuf_checked {
    uint32_t size[TRANSPORT_SNDBUF_CHECKED]; /* 0: an empty slot */
    uint32_t next;                           /* the slot to fill next, modulo */
};

struct transport_ops {
    /* "unix" or "tcp": $SYS.CLIENTS "transport", log lines. */
    const char *name;
    /* The meta block's transport byte (frame.h, FRAME_META_UNIX, ...). */
    uint8_t meta_id;
    /* Its peers fall under the ACL's "tcp" rule: they come with no
     * credentials and may be anywhere the listening address reaches. */
    bool acl_tcp;
    /* Descriptors can travel with frames (SCM_RIGHTS): recv() queues
     * those that arrive, send() passes those it is given. */
    bool fds;
    /* The peer's credentials: 0 and *out written, or a negative errno
     * (-ENOTSUP where the transport has none). */
    int (*credentials)(int fd, struct transport_cred *out);
    /* Set the socket options the broker wants on this kind of socket;
     * `sndbuf`: the send buffer a Unix socket gets (0: the kernel's
     * default; TCP sizes its buffers itself). A size not yet in `checked`
     * is checked against what the kernel granted, and added. */
    void (*tune)(int fd, uint32_t sndbuf, struct transport_sndbuf_checked *checked);
    /* The peer for a log line, into buf[len]: "unix pid 42 uid 1000 gid
     * 1000", "tcp 127.0.0.1:51234". `cred`: what credentials() gave, or
     * NULL. */
    void (*describe)(int fd, const struct transport_cred *cred, char *buf, size_t len);
    /* Read up to len bytes: their number, 0 at the end, or a negative
     * errno (-EAGAIN). Descriptors that came with them go to q. */
    ssize_t (*recv)(int fd, void *buf, size_t len, struct fdq *q);
    /* Write iov[0..iovcnt): the bytes written or a negative errno. With
     * nfds > 0 (only where `fds`), the descriptors go with the first
     * byte. */
    ssize_t (*send)(int fd, const struct iovec *iov, int iovcnt, const int *fds, uint32_t nfds);
};

extern const struct transport_ops transport_unix;
extern const struct transport_ops transport_tcp;

/* Room describe() needs at most. */
#define TRANSPORT_DESCRIBE_MAX 96

#endif /* SOCKBUS_TRANSPORT_H */
