/*
 * fdpass.h - file descriptors that travel with frames over a Unix socket
 * (SCM_RIGHTS; docs/protocol.md, "File descriptors").
 *
 * Two things live here. A connection's queue of descriptors received and
 * not yet claimed by a frame (`struct fdq`): the kernel hands them over
 * with the bytes they were sent with, in arrival order, and each PUB with
 * FDS takes its count from the front. And a message's descriptors once
 * claimed (`struct conn_fds`): the broker's one copy, shared by every
 * queue the message goes to, reference-counted like a shared body
 * (connbuf.h), and closed when the last queue that holds it has written
 * or dropped it. Every descriptor the broker holds for messages is
 * counted in `fdpass_held` against max_fds.
 *
 * What crosses the socket is the transport's business (transport.c):
 * fdpass_recv() and fdpass_send() are the Unix transport's recvmsg() and
 * sendmsg(), here because they share the queue.
 */
#ifndef SOCKBUS_FDPASS_H
#define SOCKBUS_FDPASS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Descriptors received and not yet claimed, in arrival order.
 * Zero-initialised: empty. */
struct fdq {
    int *fds;
    uint32_t head; /* the first unclaimed one */
    uint32_t len;  /* fds[head .. head + len) */
    size_t cap;
    /* The kernel could not hand over every descriptor that came (out of
     * descriptors: MSG_CTRUNC): what arrived with them is unusable. */
    uint8_t lost;
};

/* One message's descriptors, shared by the queues it goes to. */
struct conn_fds {
    uint32_t refs;
    uint32_t n;
    int fd[];
};

/* Descriptors held for messages by this process, against max_fds. */
extern uint64_t fdpass_held;

/* Close and forget every descriptor in q; free its memory. */
void fdq_free(struct fdq *q);

/*
 * Take the first n descriptors of q as a message's set (no references
 * yet; fdpass_release() frees one nobody took). Returns 0 and *out,
 * -ENOENT when q holds fewer than n, or -ENOMEM (then q is unchanged).
 */
int fdq_take(struct fdq *q, uint32_t n, struct conn_fds **out);

/* Drop one reference to `set` (or free one nobody took): the last closes
 * its descriptors. Accepts NULL. */
void fdpass_release(struct conn_fds *set);

/*
 * recvmsg() into buf[0..len) on socket `fd`, the descriptors that came
 * appended to q (close-on-exec). Returns the bytes read, 0 at the end, or
 * a negative errno (-EAGAIN). Descriptors the kernel had to drop
 * (MSG_CTRUNC) set q->lost; any it did hand over are kept.
 */
ssize_t fdpass_recv(int fd, void *buf, size_t len, struct fdq *q);

/* sendmsg() of iov[0..iovcnt) on socket `fd`, with fds[0..nfds) attached
 * to its first byte when nfds > 0. Returns the bytes written or a negative
 * errno (-EAGAIN: nothing was written, the descriptors neither). */
ssize_t fdpass_send(int fd, const struct iovec *iov, int iovcnt, const int *fds, uint32_t nfds);

/*
 * The addresses the broker listens on. A descriptor of a connection to the
 * broker itself must not be held by it: while the broker holds the
 * client's end, that connection never sees its client go (no end of file
 * ever comes), and neither it nor the descriptors it holds are ever freed.
 * Such a descriptor is refused as it arrives.
 */
#define FDPASS_OWN_MAX 2

struct fdpass_own {
    struct sockaddr_storage addr[FDPASS_OWN_MAX];
    unsigned n;
};

/* Remember the address the listening socket `fd` is bound to. */
void fdpass_own_add(struct fdpass_own *own, int fd);

/* Is `fd` a socket connected to one of the addresses in `own`? One
 * getpeername() per descriptor, only on the path of messages that carry
 * some. */
bool fdpass_is_own_connection(const struct fdpass_own *own, int fd);

#endif /* SOCKBUS_FDPASS_H */
