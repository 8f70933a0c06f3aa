/*
 * transport.c - the Unix and the TCP transport (see transport.h).
 *
 * Both hand an accepted socket to libuv as a stream (uv_pipe_open(),
 * uv_tcp_open()): the broker accepts by itself (acceptor.c) and binds the
 * Unix socket by itself (listener.c), so libuv never learns the path.
 * They differ in what the kernel says about the peer (a Unix socket has
 * SO_PEERCRED, a TCP one an address) and in tuning: a Unix connection gets
 * a large send buffer, a TCP one TCP_NODELAY.
 */
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>

/* Send buffer of the broker's end of a Unix connection (the default is
 * about 200 KiB). Measured with `sockbus bench thru fanout -z 128 -T
 * unix,tcp -n 3`, twice each: 1 MiB gave fanout 1->4 over unix 19.3M and
 * 19.6M msgs/s against 17.6M and 17.1M with the default, thru unchanged
 * (11.3M-11.5M). */
#define TRANSPORT_UNIX_SNDBUF (1024 * 1024)

/* ---- unix ---------------------------------------------------------------- */

static int unix_init(uv_loop_t *loop, union transport_handle *h)
{
    return uv_pipe_init(loop, &h->pipe, 0);
}

static int unix_open(union transport_handle *h, int fd)
{
    return uv_pipe_open(&h->pipe, fd);
}

static int unix_credentials(int fd, struct transport_cred *out)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        return -errno;
    }
    *out = (struct transport_cred){.pid = cred.pid, .uid = cred.uid, .gid = cred.gid};
    return 0;
}

static void unix_tune(union transport_handle *h, int fd)
{
    (void)h;
    /* A Unix socket's send buffer is all a subscriber can have in flight:
     * a larger one means fewer, larger writes and wakeups. Kernel memory,
     * used only while data is queued. */
    int sndbuf = TRANSPORT_UNIX_SNDBUF;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
}

static void unix_describe(const union transport_handle *h, const struct transport_cred *cred,
                          char *buf, size_t len)
{
    (void)h;
    if (cred == NULL) {
        snprintf(buf, len, "unix");
        return;
    }
    snprintf(buf, len, "unix pid %ld uid %lu gid %lu", (long)cred->pid, (unsigned long)cred->uid,
             (unsigned long)cred->gid);
}

const struct transport_ops transport_unix = {
    .name = "unix",
    .acl_tcp = false,
    .init = unix_init,
    .open = unix_open,
    .credentials = unix_credentials,
    .tune = unix_tune,
    .describe = unix_describe,
};

/* ---- tcp ----------------------------------------------------------------- */

static int tcp_init(uv_loop_t *loop, union transport_handle *h)
{
    return uv_tcp_init(loop, &h->tcp);
}

static int tcp_open(union transport_handle *h, int fd)
{
    return uv_tcp_open(&h->tcp, fd);
}

static int tcp_credentials(int fd, struct transport_cred *out)
{
    (void)fd;
    (void)out;
    return -ENOTSUP;
}

static void tcp_tune(union transport_handle *h, int fd)
{
    (void)fd;
    uv_tcp_nodelay(&h->tcp, 1);
}

static void tcp_describe(const union transport_handle *h, const struct transport_cred *cred,
                         char *buf, size_t len)
{
    (void)cred;
    char addr[INET6_ADDRSTRLEN + 8] = "?";
    struct sockaddr_storage ss;
    int ss_len = sizeof(ss);
    if (uv_tcp_getpeername(&h->tcp, (struct sockaddr *)&ss, &ss_len) == 0) {
        char ip[INET6_ADDRSTRLEN];
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
            uv_ip6_name(in6, ip, sizeof(ip));
            snprintf(addr, sizeof(addr), "[%s]:%u", ip, ntohs(in6->sin6_port));
        } else {
            const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
            uv_ip4_name(in, ip, sizeof(ip));
            snprintf(addr, sizeof(addr), "%s:%u", ip, ntohs(in->sin_port));
        }
    }
    snprintf(buf, len, "tcp %s", addr);
}

const struct transport_ops transport_tcp = {
    .name = "tcp",
    .acl_tcp = true,
    .init = tcp_init,
    .open = tcp_open,
    .credentials = tcp_credentials,
    .tune = tcp_tune,
    .describe = tcp_describe,
};
