/*
 * conn.h - connections: frames in, bytes out, and the end of a connection.
 *
 * A `struct conn` is one client's socket as the network layer sees it: a
 * libuv handle opened by its transport (transport.h), an input buffer for
 * a frame cut by a read, an output queue written once per loop iteration
 * (schedule.h), and the state of its end. It knows nothing of what the frames
 * mean: each complete frame goes to the layer above through the ops table
 * that layer gave net_init(), and so do the connection's end and the
 * release of its memory.
 *
 * Ownership, as with a libuv handle: the layer above allocates the memory
 * (typically embedding the conn in its own per-client struct), calls
 * conn_init() and conn_open(), and frees it only when ops->closed() says
 * the handle is closed. conn_close() is idempotent and may be called at
 * any time; a conn is never freed while any list links it.
 *
 * The lists a connection can be on, each left in conn_close() (or
 * on_close(), for `all`), since a freed connection still on a list would
 * be a use-after-free:
 * - net->conns (`all`): every connection, from conn_init() until its
 *   handle is closed; for shutdown and the trim timer.
 * - net->schedule.dirty (`dirty`): output to write at the end of this loop
 *   iteration; never a closing connection.
 * - net->schedule.ready (`ready`): whole frames held for the next iteration
 *   (SCHEDULE_SLICE); never a closing connection.
 * - net->draining (`drain`, while `draining`): ending after a fatal ERR,
 *   from conn_end() until closed; closed CONN_DRAIN_MS after it began
 *   (conn_drain_expired()) if its peer has not taken its last frames.
 */
#ifndef SOCKBUS_CONN_H
#define SOCKBUS_CONN_H

#include "bytes.h"
#include "connbuf.h"
#include "deadline.h"
#include "fdpass.h"
#include "frame.h"
#include "list.h"
#include "schedule.h"
#include "transport.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

/* How long a connection that is being closed may take to receive its last
 * frames (a fatal ERR, or ERR 9 at shutdown) before it is closed anyway. */
#define CONN_DRAIN_MS 500u

/* Size of the read buffer shared by all connections of a loop (conn.c). */
#define NET_READ_CHUNK (64u * 1024u)

struct conn;
struct net;

/*
 * What the layer above a connection is told. Each is called on the loop
 * thread; none may free the conn but closed().
 */
struct conn_ops {
    /* A complete frame `f`, parsed in place: `f` itself is valid until the
     * call returns, the bytes it points to until `frames_done`. The callee
     * may queue output, end or close the connection. */
    void (*frame)(struct conn *c, const struct frame *f);
    /* The frames handed to `frame` since the last call are about to be
     * moved or overwritten (the read buffer is reused): the layer above
     * may keep pointers into them until then, never after. May be NULL. */
    void (*frames_done)(struct conn *c);
    /* conn_end(): a fatal ERR is queued and no more input will be handled.
     * Called once, before the connection is closed. */
    void (*ending)(struct conn *c);
    /* conn_close(): the connection is closing now; it still has its id and
     * credentials, but takes no more output. Called once. */
    void (*closing)(struct conn *c);
    /* The handle is closed and the conn on no list: its memory may go. */
    void (*closed)(struct conn *c);
    /* conn_watch_drain() was called and the connection's queued output has
     * fallen to net->drain_mark or below (writes made room). Called once
     * per conn_watch_drain(). */
    void (*drained)(struct conn *c);
    /* Text mode (docs/protocol.md, Text mode; may be NULL: never). The
     * first four bytes of `c` are printable ASCII: may it speak lines from
     * now on? Called once, before any frame was handed up; `c->text` is
     * already true and stays so when it answers true. */
    bool (*text_begin)(struct conn *c);
    /* One line of a text-mode connection, without its "\n" and a "\r"
     * before it: valid until the call returns. */
    void (*text_line)(struct conn *c, const uint8_t *line, size_t len);
};

typedef void net_close_cb(struct net *n);

/* What every connection of one loop shares. */
struct net {
    uv_loop_t *loop;
    const struct conn_ops *ops;
    struct schedule schedule;
    struct list_link conns; /* struct conn.all */
    uint32_t nconns;        /* accepted and not yet closed */
    uint64_t next_id;
    /* The largest frame a peer may send (judged as soon as its size is
     * read). */
    uint32_t max_frame;
    /* Descriptors a connection may hold that no frame has claimed; more
     * end it with ERR 1 (the layer above sets it: 2 x max_fds_per_msg). */
    uint32_t fdq_max;
    /* SO_SNDBUF of each Unix connection accepted from now on (the layer
     * above sets it: unix_send_buffer; transport.c). */
    uint32_t unix_send_buffer;
    /* The sizes of it already checked against what the kernel granted. */
    struct transport_sndbuf_checked sndbuf_checked;
    /* Where the broker listens: a descriptor of a connection to it is
     * refused (fdpass_is_own_connection()). */
    struct fdpass_own own;
    /* A connection whose queued output is over this many bytes handles no
     * more of its frames and is not read from until writes bring it back
     * under: the layer above sets it (bus/flow.c); UINT64_MAX: never. */
    uint64_t backlog_max;
    /* What ops->drained() waits for: queued output at or below this. */
    uint64_t drain_mark;
    struct deadline_list draining; /* struct conn.drain */
    struct connbuf_iov iov;        /* conn_flush() describes a queue here */
    net_close_cb *close_cb;        /* net_close() was called */
    bool closing;
    /* Every connection reads here unless it holds a large part of a frame
     * (conn.c): libuv runs one read callback at a time. */
    uint8_t read_chunk[NET_READ_CHUNK];
};

struct conn {
    union transport_handle h;
    const struct transport_ops *transport;
    struct net *net;
    struct list_link all;   /* net->conns */
    struct list_link dirty; /* net->schedule.dirty */
    struct list_link ready; /* net->schedule.ready */

    uint64_t id;   /* unique in this process, from 1 */
    bool has_cred; /* `cred` holds the peer's credentials */
    struct transport_cred cred;

    bool opened; /* conn_open() succeeded: `fd` and the poll handle are ours */
    int fd;
    bool draining;   /* a fatal ERR is queued: write it, then close */
    bool closing;    /* uv_close() called */
    bool reading;    /* reading frames (the poll handle wants UV_READABLE) */
    bool writing;    /* `wbuf` waits for the socket to be writable */
    int poll_events; /* what the poll handle was last started with */
    bool held;       /* `in` holds whole frames not handled yet */
    bool paused;     /* conn_pause(): no frames handled, no reading */
    bool watched;    /* conn_watch_drain(): ops->drained() is owed */
    bool text;       /* speaks lines (conn_ops.text_begin); output is encoded
                      * as text when it is written (textout.h) */

    struct schedule_slice slice;

    /* Input: bytes of an incomplete frame (or of frames held), kept
     * between reads. */
    struct conn_buf in;
    /* While its frames are handed up (conn_ops.frame): the end of the bytes
     * they come from, so that the frames after the one handled may be
     * looked at (never kept: they are not checked yet); else NULL. */
    const uint8_t *frames_end;

    /* Output: `out` is being filled; `wbuf` is being written. */
    struct conn_buf out;
    struct conn_buf wbuf;
    size_t wbuf_off; /* bytes of wbuf written */

    /* Descriptors received and not yet claimed by a frame (fdpass.h). */
    struct fdq fdq;

    /* Messages lost for this connection since the last DROPPED notice. */
    uint64_t dropped_unreported;

    struct deadline_link drain; /* net->draining, while `draining` */
};

/*
 * Set up the connections of `loop`: each complete frame, and each
 * connection's end, goes to `ops`. Frames over max_frame are refused.
 * Does not allocate.
 */
void net_init(struct net *n, uv_loop_t *loop, const struct conn_ops *ops, uint32_t max_frame);

/*
 * Stop: end every connection with ERR 9 (each gets one attempt to write
 * it, after any write in flight, for at most CONN_DRAIN_MS), and once the
 * last one is closed, close the net's own handles and call cb (at once if
 * there are no connections). Idempotent.
 */
void net_close(struct net *n, net_close_cb *cb);

/* The broker listens on socket `fd` (bound): a descriptor of a connection
 * to that address, sent on a message, is refused. */
static inline void net_listening_on(struct net *n, int fd)
{
    fdpass_own_add(&n->own, fd);
}

/* Release what the net still holds, after the loop has ended. */
void net_deinit(struct net *n);

/* Give back the buffers bursts left large and empty; call periodically. */
void net_trim(struct net *n);

/*
 * Set up `c` (memory the caller owns, zeroed or not) as a connection of
 * `n` over `transport`, with the next id, its handle initialized but not
 * open. Returns 0, or a libuv error when the handle cannot be initialized
 * (the caller may then free c at once). After 0, c lives until
 * ops->closed(c): end it with conn_close().
 */
int conn_init(struct conn *c, struct net *n, const struct transport_ops *transport);

/*
 * Give the connection the accepted socket `fd`, read the peer's
 * credentials if the transport has them, and tune the socket. Returns 0
 * (the connection owns fd), or a libuv error (fd is still the caller's;
 * close the connection).
 */
int conn_open(struct conn *c, int fd);

/* Start reading frames (after conn_open()). */
void conn_read_start(struct conn *c);

/* The socket, or -1 when the connection is not open. */
int conn_fd(const struct conn *c);

/* Bytes queued to this connection and not yet written. */
static inline size_t conn_pending(const struct conn *c)
{
    return c->out.len + c->out.seg_bytes + c->wbuf.len + c->wbuf.seg_bytes - c->wbuf_off;
}

/* Does the connection still take output? Not once it is ending. */
static inline bool conn_takes_output(const struct conn *c)
{
    return !c->draining && !c->closing;
}

/* Have the queue written at the end of this iteration. */
static inline void conn_mark_dirty(struct conn *c)
{
    if (!c->closing) {
        schedule_mark_dirty(&c->net->schedule, &c->dirty);
    }
}

/*
 * Queue one frame with no reply subject and no headers, to be written at
 * the end of this iteration, whatever is already queued (replies to a
 * client's own frames are never dropped). Returns 0 or -ENOMEM.
 */
int conn_queue_frame(struct conn *c, uint8_t op, uint8_t flags, uint32_t sid, const void *subject,
                     size_t subject_len, const void *payload, size_t payload_len);

/*
 * Queue a MSG for subscription `sid` built from the PUB frame `pub`: a new
 * header, and the body copied behind it, or, when `body` is given (the
 * shared copy of pub's body, conn_shared_new()), a reference to it. The
 * caller has decided that it fits (bus/flow.c); this only fails for
 * memory. Returns 0 or -ENOMEM (nothing queued). Inline: it runs once per
 * message and subscriber.
 */
static inline int conn_queue_msg(struct conn *c, uint32_t sid, uint8_t flags,
                                 const struct frame *pub, struct conn_shared *body)
{
    size_t own = body ? FRAME_HEADER_SIZE : pub->size;
    if (connbuf_reserve(&c->out, own) < 0) {
        return -ENOMEM;
    }
    uint8_t *p = c->out.data + c->out.len;
    frame_encode_header(p, pub->size, FRAME_OP_MSG, flags, pub->subject_len, pub->reply_len,
                        pub->header_len, sid);
    if (body == NULL) {
        /* The one copy per subscriber of a small message: the read chunk
         * it comes from is reused by the next read. */
        bytes_copy_short(p + FRAME_HEADER_SIZE, pub->subject, pub->size - FRAME_HEADER_SIZE);
    }
    c->out.len += own;
    if (body != NULL && connbuf_add_shared(&c->out, body) < 0) {
        c->out.len -= own; /* take the header back: nothing was queued */
        return -ENOMEM;
    }
    conn_mark_dirty(c);
    return 0;
}

/*
 * Queue the PUB frames pubs[0..bytes), one behind the other, each with no
 * flag and no reply subject, as MSGs, frame k for subscription
 * sids[k * stride] (stride 0: all for sids[0]): in one copy, each header
 * then made a MSG's in place (its op and sid: the rest of a plain PUB's
 * header is a plain MSG's). The caller has decided that they fit
 * (bus/flow.c). Returns 0 or -ENOMEM (nothing queued).
 */
static inline int conn_queue_msgs(struct conn *c, const uint32_t *sids, size_t stride,
                                  const uint8_t *pubs, size_t bytes)
{
    if (connbuf_reserve(&c->out, bytes) < 0) {
        return -ENOMEM;
    }
    uint8_t *out = c->out.data + c->out.len;
    memcpy(out, pubs, bytes);
    for (uint8_t *m = out; m < out + bytes; m += frame_get_u32(m), sids += stride) {
        m[4] = FRAME_OP_MSG;
        frame_put_u32(m + 12, *sids);
    }
    c->out.len += bytes;
    conn_mark_dirty(c);
    return 0;
}

/*
 * Pause: handle no more of this connection's frames (those read already
 * wait in `in`) and stop reading from it, until conn_unpause(). The layer
 * above's backpressure (bus/flow.c): called while one of its frames is
 * being handled, it takes effect at the next frame.
 */
void conn_pause(struct conn *c);

/* Go on after conn_pause(): the frames held first, in the next iteration
 * (unless the connection's own output holds it back, as always). */
void conn_unpause(struct conn *c);

/* Forget the output queued and not yet handed to a write: for a
 * connection about to be ended (conn_end()), so that its ERR goes out
 * right behind what is being written. */
void conn_discard_output(struct conn *c);

/* Have ops->drained(c) called once the connection's queued output falls to
 * net->drain_mark or below. */
static inline void conn_watch_drain(struct conn *c)
{
    c->watched = true;
}

/*
 * conn_queue_msg() with the meta block (FRAME_META_SIZE bytes at `meta`,
 * its nfds set here) after the headers and flag FRAME_MSG_META, and, when
 * `set` is given, its descriptors with the write that starts this MSG (a
 * reference taken). Always a copy (conn_meta.c). Returns 0 or -ENOMEM
 * (nothing queued).
 */
int conn_queue_msg_meta(struct conn *c, uint32_t sid, uint8_t flags, const struct frame *pub,
                        const uint8_t *meta, struct conn_fds *set);

/* A message was dropped for this connection: a DROPPED notice with the
 * count goes out with its next write. */
void conn_note_dropped(struct conn *c);

/*
 * Queue an ERR with `code`, the offending subject (may be NULL) and the
 * text (escaped here: it may quote what the client sent), and log it at
 * -v. Nothing is queued to a connection that is ending. Out of memory, the
 * connection is closed.
 */
void conn_queue_err_text(struct conn *c, uint32_t code, const void *subject, size_t subject_len,
                         const char *text, size_t text_len);

/* conn_queue_err_text() with a printf-style text. */
void conn_queue_err(struct conn *c, uint32_t code, const void *subject, size_t subject_len,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * End the connection with a fatal ERR `code`: queue it, stop taking
 * input, tell ops->ending(), and close once the queue is written (or
 * CONN_DRAIN_MS later). With `text` NULL no ERR is queued: the end a
 * client asked for (text mode's QUIT).
 */
void conn_end(struct conn *c, uint32_t code, const char *text);

/* Close now (ops->closing(), then ops->closed() once the handle is
 * closed). Idempotent. */
void conn_close(struct conn *c);

/* The peer, for a log line (transport_ops.describe). */
void conn_describe(const struct conn *c, char *buf, size_t len);

#endif /* SOCKBUS_CONN_H */
