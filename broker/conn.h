/*
 * conn.h - one client connection of the broker.
 *
 * A connection embeds its libuv handle and is freed only in the handle's
 * close callback. Output is queued into `out` and written at most once per
 * loop iteration (conn_flush(), from the broker's check handle); while a
 * write is in flight, new output goes into the other buffer.
 */
#ifndef SOCKBUS_CONN_H
#define SOCKBUS_CONN_H

#include "sidmap.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

/* How long a connection that is being closed may take to receive its last
 * frames (a fatal ERR, or ERR 9 at shutdown) before it is closed anyway. */
#define CONN_DRAIN_MS 500u

struct acl_rule;
struct broker;
struct frame;

enum conn_transport {
    CONN_UNIX,
    CONN_TCP,
};

/* A growable byte buffer, allocated on first use. */
struct conn_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
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
    struct conn *dirty_next; /* broker->dirty, while `dirty` */

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

    bool hello_done;
    bool echo;
    bool dirty;
    bool draining; /* a fatal ERR is queued: write it, then close */
    uint64_t drain_since; /* loop time when draining began */
    bool closing;  /* uv_close() called */
    bool reading;  /* uv_read_start() in effect */
    bool writing;  /* a uv_write() is in flight on `wbuf` */

    /* Input: bytes of an incomplete frame, kept between reads. */
    struct conn_buf in;

    /* Output: `out` is being filled; `wbuf` is being written. */
    struct conn_buf out;
    struct conn_buf wbuf;
    size_t wbuf_off; /* wbuf[0, wbuf_off) was written before uv_write() */
    uv_write_t wreq;

    /* Messages lost for this connection since the last DROPPED notice. */
    uint64_t dropped_unreported;

    struct sidmap subs; /* sid -> struct sub */

    uint64_t msgs_in;
    uint64_t msgs_out;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t dropped;
};

/* Take the newly accepted socket `fd` (owned from here on, also on
 * failure) as a connection and start reading. Errors are logged; the broker
 * goes on. */
void conn_accept(struct broker *b, int fd, enum conn_transport transport);

/* Bytes queued to this connection and not yet written. */
static inline size_t conn_pending(const struct conn *c)
{
    return c->out.len + c->wbuf.len - c->wbuf_off;
}

/*
 * Queue a MSG to `c` for subscription `sid`, built from the PUB frame `pub`
 * (its body is copied after a new header). When the connection's queue
 * would exceed max_pending, the message is dropped, counted, and reported
 * later with DROPPED; returns false then.
 */
bool conn_queue_msg(struct conn *c, uint32_t sid, uint8_t flags, const struct frame *pub);

/* Queue an ERR with `code`, the offending subject (may be NULL) and a
 * message. A fatal code also ends the connection once the ERR is written. */
void conn_queue_err(struct conn *c, uint32_t code, const void *subject, size_t subject_len,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Give back buffers a burst left large and empty; called periodically. */
void conn_trim(struct conn *c);

/* Write queued output; called once per loop iteration for dirty
 * connections. */
void conn_flush(struct conn *c);

/* Close now: unsubscribe everything, close the handle (freed in the close
 * callback). Idempotent. */
void conn_close(struct conn *c);

/* Queue ERR code (fatal) and close after writing it. */
void conn_end(struct conn *c, uint32_t code, const char *text);

#endif /* SOCKBUS_CONN_H */
