/*
 * transport.c - the Unix and the TCP transport (see transport.h).
 *
 * The broker accepts by itself (acceptor.c) and binds the Unix socket by
 * itself (listener.c), so libuv never learns the path; and it reads and
 * writes by itself too: libuv only says when a socket is readable or
 * writable (a uv_poll_t, conn.c). The transports differ in what the kernel
 * says about the peer (a Unix socket has SO_PEERCRED, a TCP one an
 * address), in tuning (a Unix connection gets a large send buffer,
 * unix_send_buffer, a TCP one TCP_NODELAY), and in what travels with the
 * bytes: a Unix socket reads with recvmsg() and writes with sendmsg(), so
 * that descriptors (SCM_RIGHTS) come and go with the frames they belong to
 * (fdpass.c).
 *
 * Why one I/O model for both, rather than libuv's streams for TCP and a
 * poll handle for Unix only: libuv's non-IPC pipe reads with read(), which
 * silently drops (closes) descriptors sent along, and writes with
 * writev(), which cannot pass any; its IPC pipe passes one descriptor per
 * write, as a handle to accept. So the Unix transport needs its own reads
 * and writes, and once it has them, the TCP transport doing the same with
 * read() and writev() keeps conn.c to one path instead of two (one set of
 * pause, resume and partial-write rules), where two models would differ in
 * exactly the places that are hard to test. It costs about nothing:
 * uv_read_start()/uv_try_write() were a read() and a writev() per
 * readiness event too. Measured against libuv's streams, scripts/cost
 * (broker instructions per message, three runs each): thru16 454-459
 * before, 460-461 after; thru128 477-492 before, 486-487 after; fanout128
 * 910-979 before, 927-952 after. System calls of the broker for 100,000
 * messages of 64 bytes, one publisher to one subscriber (strace -c): 160
 * read() and 42 write() before, 143 recvmsg() and 28 sendmsg() after;
 * epoll_ctl() 31 before, 53 after (the poll handle's events change with
 * reading and writing, as libuv's did for its streams).
 */
#include "transport.h"

#include "fdpass.h"
#include "frame.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * Buffers. On a Unix stream socket the sender's SO_SNDBUF bounds all that
 * is in flight from it: the bytes queued at the receiver are charged to
 * the sender (skb truesize, so a small write costs more of it than its
 * bytes), and the receiver's SO_RCVBUF plays no part. So the broker sets
 * the send buffer of its end (unix_send_buffer, 1 MiB by default, which
 * the kernel doubles and caps at net.core.wmem_max) for what it sends,
 * and the library sets its own end's for what a client sends
 * (client_connect.c); neither sets SO_RCVBUF. TCP loopback grows its
 * buffers by itself (tcp_wmem, tcp_rmem), up to MiBs: with the default
 * Unix send buffer (net.core.wmem_default, about 208 KiB) a publisher
 * that runs ahead stalls twice as often as over TCP, and 16-byte messages
 * went faster over TCP. The buffer is kernel memory taken only while bytes
 * are queued: an idle connection costs no more for it.
 *
 * Measured: 1 MiB against the default, `sockbus bench thru fanout -z 128
 * -T unix,tcp -n 3`, twice each: fanout 1->4 over unix 19.3M and 19.6M
 * msgs/s against 17.6M and 17.1M, thru unchanged (11.3M-11.5M).
 */

/* ---- unix ---------------------------------------------------------------- */

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

/* Has `size` been checked? If not, it is from now on. */
static bool sndbuf_first_check(struct transport_sndbuf_checked *checked, uint32_t size)
{
    for (size_t i = 0; i < TRANSPORT_SNDBUF_CHECKED; i++) {
        if (checked->size[i] == size) {
            return false;
        }
    }
    checked->size[checked->next % TRANSPORT_SNDBUF_CHECKED] = size;
    checked->next = (checked->next + 1) % TRANSPORT_SNDBUF_CHECKED;
    return true;
}

/*
 * Linux takes any SO_SNDBUF but caps it at net.core.wmem_max without a
 * word (and reports back twice what it took), so a unix_send_buffer above
 * the cap has less effect than asked, silently. The first connection with
 * a size reads back what it got and says so, once: one getsockopt() per
 * size (per reload that changes it), not per connection.
 */
static void unix_tune(int fd, uint32_t sndbuf, struct transport_sndbuf_checked *checked)
{
    /* A Unix socket's send buffer is all a subscriber can have in flight:
     * a larger one means fewer, larger writes and wakeups. */
    if (sndbuf == 0) {
        return;
    }
    int v = (int)sndbuf; /* at most BROKER_UNIX_SEND_BUFFER_MAX */
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) < 0 ||
        !sndbuf_first_check(checked, sndbuf)) {
        return;
    }
    int got = 0;
    socklen_t len = sizeof(got);
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len) == 0 && got / 2 < v) {
        log_error("warning: unix_send_buffer is %d bytes, but the kernel grants Unix "
                  "connections only %d (its cap, net.core.wmem_max); raise the cap (sysctl -w "
                  "net.core.wmem_max=%d) or lower unix_send_buffer to %d",
                  v, got / 2, v, got / 2);
    }
}

static void unix_describe(int fd, const struct transport_cred *cred, char *buf, size_t len)
{
    (void)fd;
    if (cred == NULL) {
        snprintf(buf, len, "unix");
        return;
    }
    snprintf(buf, len, "unix pid %ld uid %lu gid %lu", (long)cred->pid, (unsigned long)cred->uid,
             (unsigned long)cred->gid);
}

const struct transport_ops transport_unix = {
    .name = "unix",
    .meta_id = FRAME_META_UNIX,
    .acl_tcp = false,
    .fds = true,
    .credentials = unix_credentials,
    .tune = unix_tune,
    .describe = unix_describe,
    .recv = fdpass_recv,
    .send = fdpass_send,
};

/* ---- tcp ----------------------------------------------------------------- */

static ssize_t tcp_recv(int fd, void *buf, size_t len, struct fdq *q)
{
    (void)q;
    ssize_t n;
    do {
        n = read(fd, buf, len);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static ssize_t tcp_send(int fd, const struct iovec *iov, int iovcnt, const int *fds, uint32_t nfds)
{
    (void)fds;
    (void)nfds;
    ssize_t n;
    do {
        n = writev(fd, iov, iovcnt);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static int tcp_credentials(int fd, struct transport_cred *out)
{
    (void)fd;
    (void)out;
    return -ENOTSUP;
}

static void tcp_tune(int fd, uint32_t sndbuf, struct transport_sndbuf_checked *checked)
{
    (void)sndbuf; /* setting SO_SNDBUF would stop TCP from sizing it */
    (void)checked;
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

static void tcp_describe(int fd, const struct transport_cred *cred, char *buf, size_t len)
{
    (void)cred;
    char addr[INET6_ADDRSTRLEN + 8] = "?";
    struct sockaddr_storage ss;
    socklen_t ss_len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &ss_len) == 0) {
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
    .meta_id = FRAME_META_TCP,
    .acl_tcp = true,
    .fds = false,
    .credentials = tcp_credentials,
    .tune = tcp_tune,
    .describe = tcp_describe,
    .recv = tcp_recv,
    .send = tcp_send,
};
