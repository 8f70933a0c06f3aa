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
#include <sys/types.h>
#include <uv.h>

/* The kernel's word on who is at the other end (SO_PEERCRED). */
struct transport_cred {
    pid_t pid;
    uid_t uid;
    gid_t gid;
};

/* The libuv handle of a connection: the one its transport opens. */
union transport_handle {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
};

struct transport_ops {
    /* "unix" or "tcp": $SYS.CLIENTS "transport", log lines. */
    const char *name;
    /* Its peers fall under the ACL's "tcp" rule: they come with no
     * credentials and may be anywhere the listening address reaches. */
    bool acl_tcp;
    /* Initialize the handle on `loop`. Returns 0 or a libuv error. */
    int (*init)(uv_loop_t *loop, union transport_handle *h);
    /* Give the initialized handle the accepted socket `fd`. Returns 0 (the
     * handle owns fd) or a libuv error (fd stays the caller's). */
    int (*open)(union transport_handle *h, int fd);
    /* The peer's credentials: 0 and *out written, or a negative errno
     * (-ENOTSUP where the transport has none). */
    int (*credentials)(int fd, struct transport_cred *out);
    /* Set the socket options the broker wants on this kind of socket. */
    void (*tune)(union transport_handle *h, int fd);
    /* The peer for a log line, into buf[len]: "unix pid 42 uid 1000 gid
     * 1000", "tcp 127.0.0.1:51234". `cred`: what credentials() gave, or
     * NULL. */
    void (*describe)(const union transport_handle *h, const struct transport_cred *cred, char *buf,
                     size_t len);
};

extern const struct transport_ops transport_unix;
extern const struct transport_ops transport_tcp;

/* Room describe() needs at most. */
#define TRANSPORT_DESCRIBE_MAX 96

#endif /* SOCKBUS_TRANSPORT_H */
