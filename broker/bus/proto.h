/*
 * proto.h - the ops of the protocol: each frame of a peer to the handler
 * of its op, and each refusal to its ERR.
 *
 * Frames come from net (conn_ops.frame, installed by session.c). Before a
 * peer's HELLO only HELLO is taken; after it, the op indexes a table of
 * handlers (PUB, SUB, UNSUB, PING; the ops only the broker sends end the
 * connection). A handler returns 0, a positive code (ROUTER_E_*, SYS_E_*,
 * PROTO_E_*: one numbering, one table) or a negative errno, and the table
 * of errors turns the code into what the client is told: the wire ERR
 * code, the text (docs/protocol.md, Errors), whether it names the frame's
 * subject, counts as a denial in $SYS.STATS, or ends the connection.
 */
#ifndef SOCKBUS_PROTO_H
#define SOCKBUS_PROTO_H

#include "sys.h"

#include <stdbool.h>
#include <stddef.h>

struct conn;
struct frame;
struct peer;

/* Refusals of the protocol itself (after those of router.h and sys.h). */
enum proto_error {
    PROTO_E_PUB_FAILED = SYS_E_END, /* PUB: a real failure (-ENOMEM) */
    PROTO_E_SUB_FAILED,             /* SUB: a real failure (-ENOMEM) */
    PROTO_E_HELLO_REQUIRED,         /* fatal: a frame before HELLO */
    PROTO_E_HELLO_TIMEOUT,          /* fatal: no HELLO within hello_timeout_ms */
    PROTO_E_HELLO_INVALID,          /* fatal: not a JSON object with "protocol" */
    PROTO_E_HELLO_FIELDS,           /* fatal: "name" or "echo" of the wrong type */
    PROTO_E_VERSION,                /* fatal: a protocol this broker does not speak */
    PROTO_E_MAX_CONNECTIONS,        /* fatal: max_connections welcomed already */
    PROTO_E_MAX_UNWELCOMED,         /* fatal: max_unwelcomed wait for HELLO */
    PROTO_E_SECOND_HELLO,           /* fatal */
    PROTO_E_OP_FORBIDDEN,           /* fatal: an op only the broker sends */
    PROTO_E_SUB_REVOKED,            /* a reloaded ACL ended a subscription */
    PROTO_E_SLOW_CONSUMER,          /* fatal: over max_pending past lossless_stall_ms */
    PROTO_E_END
};

/* Room for the detail a handler may give with its refusal. */
#define PROTO_DETAIL_MAX 128u

/* conn_ops.frame: handle frame `f` of the peer whose connection is `c`.
 * A PUB may be left in place, noted in a run (router_publish_deferred()),
 * until proto_frames_done(). */
void proto_frame(struct conn *c, const struct frame *f);

/* conn_ops.frames_done: the frames just handed to proto_frame() are about
 * to be moved or overwritten: the run they may have left is queued. */
void proto_frames_done(struct conn *c);

/*
 * Let the welcomed peer `p` in, as its HELLO does (text mode: with name
 * "text" and echo on, at its first line): it counts against
 * max_connections and is listed in $SYS.CLIENTS. Returns 0,
 * PROTO_E_MAX_CONNECTIONS or -ENOMEM; the caller tells it and announces
 * it ($SYS.EVENT.CONNECT).
 */
int proto_admit(struct peer *p, const char *name, bool echo);

/*
 * Handle frame `f` (PUB, SUB, UNSUB or PING, built by the broker for a
 * welcomed peer: text mode) as if `p` had sent it, refusals told as for a
 * frame. Returns 0 when it was done, nonzero when it was refused.
 */
int proto_dispatch(struct peer *p, const struct frame *f);

/*
 * Tell `p` it was refused for `code` (a positive code above): queue the
 * ERR with its text, naming f's subject when the table says so (`f` may be
 * NULL), with `detail` for the text's %d (may be NULL); count a denial;
 * end the connection when the code is fatal.
 */
void proto_fail(struct peer *p, int code, const struct frame *f, const char *detail);

#endif /* SOCKBUS_PROTO_H */
