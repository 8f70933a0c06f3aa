/*
 * conn.h - one client connection of the broker.
 *
 * A connection embeds its libuv handle and is freed only in the handle's
 * close callback. Output is queued into `out` and written at most once per
 * loop iteration (conn_flush(), from the broker's check handle); while a
 * write is in flight, new output goes into the other buffer.
 *
 * The broker's lists a connection can be on; a connection is freed in
 * on_close(), and a freed connection left on a list is a use-after-free,
 * so each list is left in conn_close() (or on_close(), for `conns`):
 * - broker->conns (`next`, `prev`): every connection, from conn_accept()
 *   until on_close(); for shutdown and introspection.
 * - broker->dirty (`dirty`): output to write at the end of this loop
 *   iteration; never a closing connection.
 * - broker->ready (`ready`): whole frames held for the next iteration
 *   (CONN_SLICE); never a closing connection.
 * - broker->unwelcomed (`wait`): accepted and waiting for its HELLO, in
 *   accept order, from conn_accept() until a HELLO is handled or the
 *   connection ends; hello_timeout_ms after it was accepted, it gets ERR 8
 *   (conn_hello_expired()). Bounded by max_unwelcomed.
 * - broker->draining (`drain`, while `draining`): ending after a fatal ERR,
 *   from conn_end() until closed; closed CONN_DRAIN_MS after it began
 *   (conn_drain_expired()) if its peer has not taken its last frames.
 */
#ifndef SOCKBUS_CONN_H
#define SOCKBUS_CONN_H

#include "list.h"
#include "deadline.h"
#include "sidmap.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

/* How long a connection that is being closed may take to receive its last
 * frames (a fatal ERR, or ERR 9 at shutdown) before it is closed anyway. */
#define CONN_DRAIN_MS 500u

/*
 * The work one connection may cause in one loop iteration before the
 * others get their turn: bytes of its frames handled plus bytes those
 * frames queued as output (a $SYS answer, a fan-out). Past it, the rest of
 * what it sent waits in its input buffer for the next iteration, and the
 * broker stops reading from it meanwhile, so a client that sends many
 * expensive requests delays others by about one slice, not by all of its
 * requests. 1 MiB lets a whole 64 KiB read of small messages fan out to
 * about 12 subscribers unsplit: at 256 KiB, fanout 1->4 of 128 B (260 KiB
 * of output per read) split every read and lost about 7% in `sockbus bench
 * fanout -T unix`.
 */
#define CONN_SLICE (1024u * 1024u)

struct acl_rule;
struct broker;
struct frame;

enum conn_transport {
    CONN_UNIX,
    CONN_TCP,
};

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

/*
 * A queue of output: its own bytes (allocated on first use), and shared
 * bodies spliced in between them. What it holds, in order, is `len +
 * seg_bytes` bytes.
 */
struct conn_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    struct conn_seg *segs;
    size_t nsegs;
    size_t segs_cap;
    size_t seg_bytes;
};

struct conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } h;
    struct broker *broker;
    struct conn *next; /* broker->conns */
    struct conn *prev;
    /* On broker->dirty while it has output to write this iteration. Taken
     * off in conn_close(): a closing connection is never flushed, and a
     * connection is never freed while any list links it. */
    struct list_link dirty;
    /* On broker->ready while `in` holds whole frames that wait for a later
     * loop iteration: this connection's slice of the current one is used
     * up (CONN_SLICE). Taken off in conn_close(), like `dirty`. */
    struct list_link ready;

    uint64_t id;
    enum conn_transport transport;
    bool has_cred; /* pid/uid/gid valid (Unix sockets) */
    pid_t pid;
    uid_t uid;
    gid_t gid;
    char *name; /* from HELLO; NULL if none */
    /* The ACL rule that decides for this connection, resolved once at
     * accept (acl.h); NULL: none applies. Used only when the broker has an
     * ACL. */
    const struct acl_rule *acl_rule;

    /* 1 + its index in broker->listed while $SYS.CLIENTS lists it; 0 when
     * not listed (sys_list()). */
    uint32_t listed_slot;

    bool hello_done;
    bool echo;
    bool draining; /* a fatal ERR is queued: write it, then close */
    bool closing;  /* uv_close() called */
    bool reading;  /* uv_read_start() in effect */
    bool writing;  /* a uv_write() is in flight on `wbuf` */
    bool held;     /* `in` holds whole frames not handled yet */

    /* Work done for this connection in loop iteration `slice_iter`: bytes
     * of its frames handled plus bytes they queued to anyone. */
    uint64_t slice_iter;
    size_t slice_used;

    /* Input: bytes of an incomplete frame, kept between reads. */
    struct conn_buf in;

    /* Output: `out` is being filled; `wbuf` is being written. */
    struct conn_buf out;
    struct conn_buf wbuf;
    size_t wbuf_off; /* bytes of wbuf written before uv_write() took the rest */
    uv_write_t wreq;

    /* Messages lost for this connection since the last DROPPED notice. */
    uint64_t dropped_unreported;

    struct sidmap subs; /* sid -> struct sub */
    /* What its subscriptions are charged (router_sub_cost()), against
     * max_subscription_bytes. */
    uint64_t sub_bytes;

    uint64_t msgs_in;
    uint64_t msgs_out;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t dropped;

    /* The timed lists (cold: touched at HELLO and at the end only). */
    struct deadline_link wait;  /* broker->unwelcomed, until HELLO */
    struct deadline_link drain; /* broker->draining, while `draining` */
};

/* Take the newly accepted socket `fd` (owned from here on, also on
 * failure) as a connection and start reading. Errors are logged; the broker
 * goes on. */
void conn_accept(struct broker *b, int fd, enum conn_transport transport);

/* Bytes queued to this connection and not yet written. */
static inline size_t conn_pending(const struct conn *c)
{
    return c->out.len + c->out.seg_bytes + c->wbuf.len + c->wbuf.seg_bytes - c->wbuf_off;
}

/*
 * Queue a MSG to `c` for subscription `sid`, built from the PUB frame `pub`
 * (its body is copied after a new header). When the connection's queue
 * would exceed max_pending, the message is dropped, counted, and reported
 * later with DROPPED; returns false then.
 */
bool conn_queue_msg(struct conn *c, uint32_t sid, uint8_t flags, const struct frame *pub);

/* Bodies of at least this many bytes are shared when a message goes to
 * more than one subscription (see conn_shared_new()). Below it, copying the
 * body into each queue costs less than the allocation and the extra iovec
 * entries. Measured with `sockbus bench fanout -z 1k,4k,16k,64k -T unix`,
 * sharing every body against copying every body, 1->4 delivered msgs/s:
 * 1 KiB 0.87x, 4 KiB 1.06x, 16 KiB 1.08x, 64 KiB 1.15x. */
#define CONN_SHARE_MIN (4u * 1024u)

/* A shared copy of `pub`'s body with no references yet, or NULL when out of
 * memory (the caller then copies per subscriber). Free it with
 * conn_shared_release() if no queue took it. */
struct conn_shared *conn_shared_new(const struct frame *pub);
void conn_shared_release(struct conn_shared *body);

/* conn_queue_msg() that queues a header and a reference to `body` (the
 * body of `pub`) instead of a copy. */
bool conn_queue_msg_shared(struct conn *c, uint32_t sid, uint8_t flags, const struct frame *pub,
                           struct conn_shared *body);

/* Queue an ERR with `code`, the offending subject (may be NULL) and a
 * message. A fatal code also ends the connection once the ERR is written. */
void conn_queue_err(struct conn *c, uint32_t code, const void *subject, size_t subject_len,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Give back buffers a burst left large and empty; called periodically. */
void conn_trim(struct conn *c);

/* Write queued output; called once per loop iteration for dirty
 * connections. */
void conn_flush(struct conn *c);

/* Handle the frames a connection on broker->ready holds, with a fresh
 * slice; called once per loop iteration for those connections. */
void conn_resume(struct conn *c);

/* Close now: unsubscribe everything, close the handle (freed in the close
 * callback). Idempotent. */
void conn_close(struct conn *c);

/* Queue ERR code (fatal) and close after writing it. */
void conn_end(struct conn *c, uint32_t code, const char *text);

/* The deadline_list callbacks of broker->unwelcomed (no HELLO in time:
 * ERR 8) and broker->draining (last frames not taken in time: close). */
void conn_hello_expired(struct deadline_link *wait, void *data);
void conn_drain_expired(struct deadline_link *drain, void *data);

#endif /* SOCKBUS_CONN_H */
