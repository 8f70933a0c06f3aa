/*
 * connbuf.h - a connection's buffers, and message bodies shared between
 * the output queues of several connections.
 *
 * A buffer holds its own bytes (allocated on first use, CONNBUF_MIN, then
 * doubled as needed) and, spliced between them, references to shared
 * bodies: a `struct conn_shared` is the body of one large message (subject
 * to payload), copied once for all its subscribers, with a count of the
 * queues that refer to it. A queue drops its references when what it holds
 * has been written or it is freed; the last reference frees the body. What
 * a buffer holds, in order, is `len + seg_bytes` bytes, which
 * connbuf_iov() describes for one writev(). A buffer also records where in
 * that stream a message's file descriptors go (fdpass.h): each such
 * message starts a sendmsg() of its own (connbuf_iov_cut()).
 *
 * Buffers of up to CONNBUF_KEEP stay with their connection for good. A
 * larger one, left by a burst, is kept while it is in use, since freeing
 * and faulting in megabytes every loop iteration would cost more than the
 * copying; connbuf_trim(), called once a second, frees it once it is empty.
 */
#ifndef SOCKBUS_CONNBUF_H
#define SOCKBUS_CONNBUF_H

#include "array.h"
#include "fdpass.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct frame;

/* A buffer's first allocation; it doubles from there. */
#define CONNBUF_MIN 4096u

/* Buffers up to this size are never trimmed. */
#define CONNBUF_KEEP (64u * 1024u)

/* Bodies of at least this many bytes are shared when a message goes to
 * more than one subscription (see conn_shared_new()). Below it, copying the
 * body into each queue costs less than the allocation and the extra iovec
 * entries. Measured with `sockbus bench fanout -z 1k,4k,16k,64k -T unix`,
 * sharing every body against copying every body, 1->4 delivered msgs/s:
 * 1 KiB 0.87x, 4 KiB 1.06x, 16 KiB 1.08x, 64 KiB 1.15x. */
#define CONN_SHARE_MIN (4u * 1024u)

/*
 * The body of a large message (subject .. payload of its PUB frame), copied
 * once and referenced from the queues of all its subscribers: a fan-out of
 * N costs one copy of the body instead of N. Freed when the last queue that
 * holds it has written it.
 */
struct conn_shared {
    uint32_t refs;
    uint32_t len;
    uint8_t data[];
};

/* A shared body that goes into the stream right after byte `at` of the
 * buffer's own bytes. */
struct conn_seg {
    size_t at;
    struct conn_shared *body;
};

/* The descriptors that go with the message starting at byte `at` of the
 * stream (own bytes and shared bodies). */
struct conn_fdmark {
    size_t at;
    struct conn_fds *set;
};

/* Zero-initialised: empty, nothing allocated. */
struct conn_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    struct conn_seg *segs;
    size_t nsegs;
    size_t segs_cap;
    size_t seg_bytes;
    struct conn_fdmark *marks;
    size_t nmarks;
    size_t marks_cap;
    size_t marks_sent; /* marks[0 .. marks_sent) went out with their bytes */
};

/* A reused array of iovecs, for describing a buffer (connbuf_iov()). */
struct connbuf_iov {
    uv_buf_t *v;
    size_t cap;
};

/* Room for `need` more own bytes. Returns 0 or -ENOMEM (unchanged). */
static inline int connbuf_reserve(struct conn_buf *b, size_t need)
{
    return array_reserve(b->data, b->cap, b->len, need, CONNBUF_MIN);
}

/* Splice a reference to `body` in after the own bytes so far. Returns 0 or
 * -ENOMEM (no reference taken). */
int connbuf_add_shared(struct conn_buf *b, struct conn_shared *body);

/* The message about to be appended starts with `set`'s descriptors.
 * Returns 0 or -ENOMEM (no reference taken). */
int connbuf_add_fds(struct conn_buf *b, struct conn_fds *set);

/*
 * Cut the n iovecs connbuf_iov(b, skip, iov) described so that one
 * sendmsg() does not pass the start of a message with descriptors, unless
 * it starts there: then *fds and *nfds are that message's. Returns the
 * entries left. Call only when b has marks not yet sent.
 */
int connbuf_iov_cut(const struct conn_buf *b, size_t skip, struct connbuf_iov *iov, int n,
                    const int **fds, uint32_t *nfds);

/* Empty the buffer, keeping its memory (its references are dropped). */
void connbuf_clear(struct conn_buf *b);

/* Free what the buffer holds and leave it empty. */
void connbuf_free(struct conn_buf *b);

/* Free the buffer if it is empty and larger than CONNBUF_KEEP. */
void connbuf_trim(struct conn_buf *b);

/*
 * Describe what `b` holds after its first `skip` bytes as iovecs in `iov`
 * (grown as needed). Returns the number of entries, or -ENOMEM.
 */
int connbuf_iov(const struct conn_buf *b, size_t skip, struct connbuf_iov *iov);

/* A shared copy of `pub`'s body with no references yet, or NULL when out of
 * memory (the caller then copies per subscriber). Free it with
 * conn_shared_release() if no queue took it. */
struct conn_shared *conn_shared_new(const struct frame *pub);

/* Drop one reference (or free a body nobody took). Accepts NULL. */
void conn_shared_release(struct conn_shared *body);

#endif /* SOCKBUS_CONNBUF_H */
