/*
 * sockbus.h - the sockbus client library (libsockbus).
 *
 * A client is one connection to a sockbusd broker over a Unix domain socket
 * or TCP loopback. It can be used two ways:
 *
 *   - blocking: sb_publish() buffers, sb_next_msg() waits for the next
 *     message with a timeout, sb_flush() waits until the broker has
 *     processed everything sent so far;
 *   - from an event loop: poll sb_fd() for sb_events(), call sb_process()
 *     when it is ready; messages are handed to the callback set with
 *     sb_set_msg_cb().
 *
 * Publishes are buffered in user space and written in batches: when the
 * buffer fills, on sb_flush(), and before any call blocks for input. Call
 * sb_flush() (or sb_process() from a loop) to push out what is buffered.
 *
 * Errors are negative: either -errno values (-ECONNREFUSED, -ETIMEDOUT,
 * -EINVAL, ...) or the SB_E_* codes below. sb_strerror() names any of them.
 *
 * Threads: a client is not thread-safe: use one client per thread, or
 * serialize every call on a client with your own lock (then a message or
 * reply stays valid only until the next call by any thread). Different
 * clients are independent; the library has no global state.
 */
#ifndef SOCKBUS_H
#define SOCKBUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SB_BUILDING_LIBRARY)
#define SB_EXPORT __attribute__((visibility("default")))
#else
#define SB_EXPORT
#endif

/* Protocol version spoken by this library. */
#define SB_PROTOCOL_VERSION 1

/* Longest subject or pattern, in bytes. */
#define SB_SUBJECT_MAX 1024

/* The system broker's socket (sockbusd --system, the sockbusd.socket
 * unit): what a client's --system names. */
#define SB_ENDPOINT_SYSTEM "/run/sockbus/sockbus.sock"

/* Longest endpoint string sb_endpoint_resolve() produces (a sun_path, or
 * "tcp://HOST:PORT"), terminating NUL included. */
#define SB_ENDPOINT_MAX 256

/* Default largest frame, header included (1 MiB + 64 KiB). */
#define SB_MAX_FRAME_DEFAULT 1114112u

/* Errors of our own, beside -errno values. The broker's ERR codes map to
 * SB_E_BROKER_BASE - code, so -2003 is "invalid subject" from the broker. */
enum {
    SB_E_BROKER_BASE = -2000,
    SB_E_PROTOCOL = -2001,       /* broker: protocol violation (fatal) */
    SB_E_TOO_LARGE = -2002,      /* broker: frame too large (fatal) */
    SB_E_SUBJECT = -2003,        /* broker: invalid subject or pattern */
    SB_E_PERMISSION = -2004,     /* broker: permission denied */
    SB_E_LIMIT = -2005,          /* broker: a limit was reached */
    SB_E_SLOW_CONSUMER = -2006,  /* broker: a lossless subscriber stalled (fatal) */
    SB_E_SID = -2007,            /* broker: unknown, reused or zero sid */
    SB_E_HELLO_REQUIRED = -2008, /* broker: HELLO required (fatal) */
    SB_E_SHUTDOWN = -2009,       /* broker: shutting down (fatal) */
    SB_E_VERSION = -2010,        /* broker: unsupported protocol (fatal) */
    SB_E_REQUEST = -2011,        /* broker: a request it cannot use ($SYS) */
    SB_E_NO_RESPONDERS = -2100,  /* a request found no subscriber */
    SB_E_CLOSED = -2101,         /* the connection is closed */
    SB_E_UNTRUSTED = -2102,      /* a default socket served by another user */
    SB_E_DISCONNECTED = -2103,   /* the broker is gone; reconnecting (below) */
};

/* Room for the line sb_connect_ex() writes, NUL included. */
#define SB_CONNECT_ERR_MAX 1024

/* Flags of sb_msg.flags, as on the wire (MSG). */
#define SB_MSG_NO_RESPONDERS 0x01u
#define SB_MSG_RETAINED      0x02u
#define SB_MSG_META          0x04u /* it says who sent it: sb_msg_sender() */

/* Flags of sb_subscribe_ex(), as on the wire (SUB). */
#define SB_SUB_SENDER      0x01u /* every message says who sent it */
#define SB_SUB_LOSSLESS    0x02u /* never dropped from: the publisher waits */
#define SB_SUB_FLAGS_KNOWN 0x03u

/* Flags of sb_pub.flags, as on the wire (PUB). */
#define SB_PUB_RETAIN 0x01u
/* Answer a request with "no responders", as the broker does when nobody
 * receives it: the requester gets SB_E_NO_RESPONDERS. For a relay (such as
 * sockbus-nats) that learns elsewhere that nobody answered; publish it,
 * with an empty payload, on the request's reply subject. */
#define SB_PUB_NO_RESPONDERS 0x04u

typedef struct sb_client sb_client;

/*
 * A received message. Every pointer points into the client's buffers and is
 * valid until the next call on the same client. subject and reply are NUL
 * terminated (reply is "" when there is none); headers and payload are not.
 */
typedef struct sb_msg {
    const char *subject;
    size_t subject_len;
    const char *reply;
    size_t reply_len;
    const void *headers;
    size_t headers_len;
    const void *payload;
    size_t payload_len;
    uint32_t sid;   /* the subscription that matched */
    uint32_t flags; /* SB_MSG_* */
} sb_msg;

/* Options for sb_connect(). Zero-initialize, then set what you need. */
typedef struct sb_options {
    const char *endpoint; /* socket path or tcp://HOST:PORT; NULL: default */
    const char *name;     /* client name shown by the broker; may be NULL */
    bool no_echo;         /* do not receive our own publishes */
    int timeout_ms;       /* connect + handshake; 0: 5000, <0: forever */
    /* Staying connected (below, "Reconnecting"). */
    bool reconnect;          /* reconnect when the broker goes away */
    int reconnect_max_ms;    /* give up after this long without it; 0: never */
    size_t reconnect_buffer; /* bytes of publishes held meanwhile; 0: 8 MiB */
} sb_options;

/* A publish with everything the wire allows. reply and headers optional. */
typedef struct sb_pub {
    const char *subject;
    const char *reply;   /* NULL or "" for none */
    const void *headers; /* opaque, forwarded verbatim; may be NULL */
    size_t headers_len;
    const void *payload;
    size_t payload_len;
    uint32_t flags; /* SB_PUB_* */
} sb_pub;

/* Who sent a message, as the kernel said when the sender connected
 * (sb_msg_sender(); docs/protocol.md, "Sender credentials"). */
typedef struct sb_sender {
    uint64_t client_id; /* the sender's client id; 0: the broker itself */
    pid_t pid;          /* -1 over TCP */
    uid_t uid;          /* (uid_t)-1 over TCP */
    gid_t gid;          /* (gid_t)-1 over TCP */
    int transport;      /* 0 the broker, 1 unix, 2 tcp */
    unsigned nfds;      /* file descriptors that came with the message */
} sb_sender;

/* Called by sb_process() for each message. The message is valid only
 * during the call. */
typedef void (*sb_msg_cb)(sb_client *client, const sb_msg *msg, void *arg);

/* Called by sb_process() when the broker reports DROPPED: `count` messages
 * for this connection were lost since the last notice. */
typedef void (*sb_dropped_cb)(sb_client *client, uint64_t count, void *arg);

/* Called when the broker reports an error: `err` is an SB_E_* code,
 * `subject` the offending subject or pattern ("" if none), `text` the
 * broker's message. Fatal errors also close the connection. */
typedef void (*sb_error_cb)(sb_client *client, int err, const char *subject, const char *text,
                            void *arg);

/*
 * Endpoints (docs/security.md, "The socket directory").
 *
 * sb_endpoint_resolve() writes to `out` (size `len`) the endpoint a client
 * or broker should use: `explicit_endpoint` when neither NULL nor "", else
 * $SOCKBUS_SOCKET, else $XDG_RUNTIME_DIR/sockbus.sock, else
 * /tmp/sockbus-<uid>.sock (empty variables count as unset). A path may be
 * written unix://PATH, in either place; `out` gets the PATH. Returns 0,
 * -EINVAL for "unix://" with no path, or -ENAMETOOLONG if it does not fit
 * (or a Unix path exceeds sun_path); `out`
 * is written only on success.
 */
SB_EXPORT int sb_endpoint_resolve(const char *explicit_endpoint, char *out, size_t len);

/* Is `endpoint` a tcp://HOST:PORT endpoint? */
SB_EXPORT bool sb_endpoint_is_tcp(const char *endpoint);

/*
 * Subjects (docs/protocol.md, "Subjects and patterns").
 *
 * sb_subject_valid(): a publishable subject (no wildcards).
 * sb_pattern_valid(): a subscription pattern ('*' tokens, '>' last).
 * sb_pattern_match(): does `pattern` match `subject`? Both must be valid.
 * Lengths are explicit; the strings need no terminator.
 */
SB_EXPORT bool sb_subject_valid(const char *subject, size_t len);
SB_EXPORT bool sb_pattern_valid(const char *pattern, size_t len);
SB_EXPORT bool sb_pattern_match(const char *pattern, size_t pattern_len, const char *subject,
                                size_t subject_len);

/* A static string describing `err` (any negative code from this API). */
SB_EXPORT const char *sb_strerror(int err);

/*
 * Connect to a broker and perform the HELLO/WELCOME handshake.
 * On success *out owns a new client (release it with sb_close()).
 * Returns 0, -ECONNREFUSED / -ENOENT when no broker listens, -ETIMEDOUT,
 * the broker's refusal (SB_E_LIMIT at max_connections, SB_E_SHUTDOWN,
 * SB_E_VERSION, ...), SB_E_UNTRUSTED (below), or another negative code;
 * *out is untouched on failure.
 *
 * Who answers. A socket on a default path (no opts->endpoint and no
 * $SOCKBUS_SOCKET: $XDG_RUNTIME_DIR/sockbus.sock or /tmp/sockbus-UID.sock)
 * may have been created by anyone who can write there, /tmp above all. So
 * on such a path the client reads the broker's credentials (SO_PEERCRED)
 * right after connecting, before it sends anything, and refuses a broker
 * whose uid is neither its own (real or effective) nor 0 (root):
 * SB_E_UNTRUSTED. An endpoint named explicitly (opts->endpoint, or
 * $SOCKBUS_SOCKET) is trusted as named, and TCP carries no credentials.
 */
SB_EXPORT int sb_connect(sb_client **out, const sb_options *opts);

/*
 * sb_connect(), and on failure one line for a person in err[err_len]
 * (when err is not NULL and err_len > 0; NUL terminated, no newline, cut
 * to fit; SB_CONNECT_ERR_MAX bytes always hold it): what failed, on which
 * endpoint, and what to try. For SB_E_UNTRUSTED it names the socket path
 * and the uid (and pid) that serves it. Text the broker sent is escaped.
 * err is written only on failure.
 */
SB_EXPORT int sb_connect_ex(sb_client **out, const sb_options *opts, char *err, size_t err_len);

/* Flush what can be flushed without blocking, close the socket and free the
 * client. Accepts NULL. */
SB_EXPORT void sb_close(sb_client *client);

/* The endpoint this client is connected to, and what WELCOME said. */
SB_EXPORT const char *sb_endpoint(const sb_client *client);

/* The broker's process id and user id, as the kernel gave them when the
 * client connected (SO_PEERCRED: the broker's credentials when it began to
 * listen). Over TCP, which carries none: -1 and (uid_t)-1. */
SB_EXPORT pid_t sb_broker_pid(const sb_client *client);
SB_EXPORT uid_t sb_broker_uid(const sb_client *client);
SB_EXPORT uint64_t sb_client_id(const sb_client *client);
SB_EXPORT uint32_t sb_max_frame(const sb_client *client);
SB_EXPORT const char *sb_server_version(const sb_client *client);

/* The largest payload a publish with these subject, reply and header
 * lengths may carry on this connection (the broker's max_frame less the
 * frame header and those fields), or 0 if they alone do not fit. */
SB_EXPORT size_t sb_max_payload(const sb_client *client, size_t subject_len, size_t reply_len,
                                size_t headers_len);

/* Text of the last ERR the broker sent ("" if none). */
SB_EXPORT const char *sb_last_error(const sb_client *client);

/*
 * Publish `len` bytes of `data` on `subject`, with an optional reply
 * subject (NULL for none). The data is copied into the output buffer (or,
 * for a large message, written before this returns): the caller keeps
 * ownership. Blocks only when the buffer is full and the socket cannot take
 * more. Nothing is written per message: buffered output leaves on
 * sb_flush(), sb_process(), when the buffer fills, or before a call waits
 * for input. Returns 0, -EINVAL for an invalid subject or reply subject,
 * -EMSGSIZE for a message larger than the broker's max_frame (see
 * sb_max_payload()), or a connection error.
 */
SB_EXPORT int sb_publish(sb_client *client, const char *subject, const char *reply,
                         const void *data, size_t len);

/* Like sb_publish(), with headers and flags (SB_PUB_RETAIN). */
SB_EXPORT int sb_publish_ex(sb_client *client, const sb_pub *pub);

/*
 * Subscribe to `pattern`, optionally in queue group `queue` (NULL: none;
 * a queue group name follows the subject rules). On success writes the new
 * subscription id to *sid (if sid is not NULL). The broker's answer is not
 * awaited: a refusal arrives as an error, which the next sb_flush()
 * returns. Returns 0 or -EINVAL for a bad pattern or queue group.
 */
SB_EXPORT int sb_subscribe(sb_client *client, const char *pattern, const char *queue,
                           uint32_t *sid);

/*
 * sb_subscribe() with flags (SB_SUB_*). SB_SUB_SENDER makes every message
 * of this subscription say who sent it (sb_msg_sender()). With
 * SB_SUB_LOSSLESS the broker never drops a message for this subscription:
 * when this client's queue in the broker is full, the publisher waits
 * (docs/protocol.md, Lossless subscriptions). Read steadily: a queue that
 * stays full for the broker's lossless_stall_ms ends the connection with
 * SB_E_SLOW_CONSUMER. Returns 0, or -EINVAL for a bad pattern, queue group
 * or flag, or as sb_subscribe().
 */
SB_EXPORT int sb_subscribe_ex(sb_client *client, const char *pattern, const char *queue,
                              uint32_t flags, uint32_t *sid);

/*
 * Who sent `msg`: its sender's client id, and the pid, uid and gid the
 * kernel gave the broker when that client connected (never anything the
 * sender said), for a message of a subscription made with SB_SUB_SENDER
 * or one that carries descriptors. Works on any message or reply while it
 * is valid. Returns 0 and *out, or -ENOENT when the message does not say
 * (no SB_MSG_META).
 */
SB_EXPORT int sb_msg_sender(const sb_msg *msg, sb_sender *out);

/*
 * Publish with file descriptors (Unix sockets only): the kernel passes
 * copies of fds[0..nfds) (1 to the broker's max_fds_per_msg, default 16)
 * to every Unix subscriber; the caller keeps its own. Writes out what is
 * buffered first, and the frame before it returns. Returns what
 * sb_publish_ex() does, -EINVAL for nfds 0 or over 253 or with
 * SB_PUB_RETAIN (descriptors are never retained), -EOPNOTSUPP over TCP,
 * or SB_E_DISCONNECTED while a reconnecting client is away (descriptors are
 * not held for the replay: send again once it is back).
 */
SB_EXPORT int sb_publish_fds(sb_client *client, const sb_pub *pub, const int *fds, size_t nfds);

/*
 * The file descriptors that came with `msg`, the message sb_next_msg() or
 * the message callback handed out last: their number, and in *fds (may be
 * NULL) a pointer to them. They belong to the message: they are closed
 * when the next message is handed out or the client closes; dup() those
 * you keep. 0 for any other message.
 */
SB_EXPORT size_t sb_msg_fds(const sb_client *client, const sb_msg *msg, const int **fds);

/* Unsubscribe `sid` now (max_msgs == 0), or after `max_msgs` more
 * messages. Returns 0, or -ENOENT for an sid this client never issued. */
SB_EXPORT int sb_unsubscribe(sb_client *client, uint32_t sid, uint32_t max_msgs);

/*
 * Write out everything buffered and wait until the broker has processed it
 * (a PING/PONG barrier): when this returns 0, every frame sent before it
 * has been handled and its messages queued to their subscribers. Messages
 * that arrive meanwhile are kept for sb_next_msg()/sb_process().
 * timeout_ms (< 0: forever) bounds the writing and the waiting. Returns 0,
 * -ETIMEDOUT, a connection error, or the first non-fatal broker error
 * (SB_E_*) reported since the last flush.
 */
SB_EXPORT int sb_flush(sb_client *client, int timeout_ms);

/*
 * Wait up to timeout_ms (0: do not wait, <0: forever) for the next message
 * and describe it in *msg, which stays valid until the next call on this
 * client. Returns 0, -ETIMEDOUT, or a connection error. Signals do not
 * interrupt the wait. The error callback, if set, runs from here and from
 * sb_flush() too.
 */
SB_EXPORT int sb_next_msg(sb_client *client, sb_msg *msg, int timeout_ms);

/*
 * Request/reply. A request is a publish whose reply subject is on this
 * connection's inbox (WELCOME's inbox_prefix followed by a token); the
 * library subscribes to the inbox ("_INBOX.<client_id>.>") on the first
 * request. Replies are delivered only to the request that waits for them,
 * never to sb_next_msg() or the message callback; a reply that comes after
 * its request timed out is dropped.
 *
 * sb_request() publishes `len` bytes of `data` on `subject` and waits up to
 * timeout_ms (< 0: forever) for the reply, described in *reply (valid until
 * the next call on this client). Returns 0, SB_E_NO_RESPONDERS at once when
 * no subscription received the request, -ETIMEDOUT, -EINVAL for an invalid
 * subject, or a connection error.
 */
SB_EXPORT int sb_request(sb_client *client, const char *subject, const void *data, size_t len,
                         sb_msg *reply, int timeout_ms);

/* Like sb_request(), with headers (req->reply is ignored). */
SB_EXPORT int sb_request_ex(sb_client *client, const sb_pub *req, sb_msg *reply, int timeout_ms);

/*
 * Several requests in flight: sb_request_send() publishes a request and
 * writes its token to *token; sb_request_wait() waits for the reply to one
 * token (in any order), as sb_request() does. A token is forgotten once
 * sb_request_wait() returns for it; waiting for an unknown token gives
 * -ENOENT.
 */
SB_EXPORT int sb_request_send(sb_client *client, const sb_pub *req, uint32_t *token);
SB_EXPORT int sb_request_wait(sb_client *client, uint32_t token, sb_msg *reply, int timeout_ms);

/* Number of DROPPED messages the broker reported since the last call to
 * this function (and resets it). */
SB_EXPORT uint64_t sb_take_dropped(sb_client *client);

/*
 * Event-loop use. sb_fd() is the socket; poll it for the events returned
 * by sb_events() (POLLIN, plus POLLOUT while output is pending). When it is
 * ready call sb_process(): it writes what it can, reads what is readable,
 * and calls the message callback for every complete message, all without
 * blocking. Call it also after publishing, since it is what pushes buffered
 * output out (ask sb_events() again afterwards). Returns 0 or a connection
 * error. Without a message callback, messages wait for sb_next_msg().
 */
SB_EXPORT int sb_fd(const sb_client *client);
SB_EXPORT short sb_events(const sb_client *client);
SB_EXPORT int sb_process(sb_client *client);
SB_EXPORT void sb_set_msg_cb(sb_client *client, sb_msg_cb cb, void *arg);
SB_EXPORT void sb_set_dropped_cb(sb_client *client, sb_dropped_cb cb, void *arg);
SB_EXPORT void sb_set_error_cb(sb_client *client, sb_error_cb cb, void *arg);

/*
 * Reconnecting (docs/protocol.md, "Reconnecting").
 *
 * With sb_options.reconnect, a client that loses its broker (end of file,
 * a reset or write error, ERR 9 "shutting down", or ERR 8; not ERR 6,
 * "slow consumer", which tells a lossless subscriber it lost messages, nor
 * a protocol violation, a frame too large or an unsupported version) does
 * not fail: it becomes DISCONNECTED and dials again, from 10 ms doubling
 * to 1 s between attempts (with jitter). Each attempt connects, checks
 * the broker as sb_connect() does, and waits for WELCOME up to
 * sb_options.timeout_ms. Once back it replays every live subscription
 * with its sid, pattern, queue group and flags (and, for one with an
 * auto-unsubscribe count, the messages it still has to take), the inbox
 * of requests on the new client id, and then the publishes made
 * meanwhile, in order.
 *
 * While disconnected: sb_publish() keeps the message (up to
 * sb_options.reconnect_buffer bytes, 8 MiB by default; beyond that it
 * fails with SB_E_DISCONNECTED); sb_subscribe() and sb_unsubscribe()
 * take effect on the replay; sb_request_send() fails with
 * SB_E_DISCONNECTED; sb_next_msg(), sb_flush() and sb_request() wait for
 * the broker within their timeouts (-ETIMEDOUT if it is not back). A
 * flush or request in flight when the broker goes away fails with
 * SB_E_DISCONNECTED: what it covered may be lost. Messages published by
 * others during the gap are lost; how many is not knowable, so the gap
 * itself is what is reported, through the state callback.
 *
 * After reconnect_max_ms without a broker (or a broker that refuses the
 * client for good), the client gives up: every call returns the error
 * that lost the connection, as without reconnect, and sb_state() says
 * SB_STATE_CLOSED.
 *
 * Event loops: the socket changes. While disconnected sb_fd() is -1 and
 * sb_events() 0; sb_timeout_ms() says when sb_process() wants to be called
 * to try again (like curl_multi_timeout()): poll with that timeout and
 * call sb_process() when it passes. The state callback says when to stop
 * watching the old socket (on DISCONNECTED it is still open during the
 * callback, and closed right after) and which one to watch next (on
 * RECONNECTED, `fd` is the new sb_fd()). Attempts are made from the
 * calls, never from a message callback.
 */
enum sb_state {
    SB_STATE_CONNECTED = 1,    /* sb_state(): connected */
    SB_STATE_DISCONNECTED = 2, /* lost the broker, reconnecting */
    SB_STATE_RECONNECTED = 3,  /* callback only: back, replayed */
    SB_STATE_CLOSED = 4,       /* closed for good (the callback: gave up) */
};

/* What the state callback is told. Times are CLOCK_REALTIME. */
typedef struct sb_state_change {
    int state;               /* SB_STATE_DISCONNECTED, _RECONNECTED or _CLOSED */
    int err;                 /* what lost the connection (or, for CLOSED, why
                                the client gave up) */
    int fd;                  /* the socket to watch from now on; -1 if none */
    struct timespec lost_at; /* when the broker went away */
    struct timespec back_at; /* RECONNECTED: when it was back; else zero */
} sb_state_change;

/* Called on each change of state; do not call sb_close() from it. */
typedef void (*sb_state_cb)(sb_client *client, const sb_state_change *change, void *arg);

SB_EXPORT void sb_set_state_cb(sb_client *client, sb_state_cb cb, void *arg);

/* SB_STATE_CONNECTED, SB_STATE_DISCONNECTED or SB_STATE_CLOSED (the
 * connection failed for good, with or without reconnect). */
SB_EXPORT int sb_state(const sb_client *client);

/* Milliseconds until sb_process() wants to be called again, to dial the
 * broker (0: now), or -1 when it only needs sb_fd() to be ready. */
SB_EXPORT int sb_timeout_ms(const sb_client *client);

#ifdef __cplusplus
}
#endif

#endif /* SOCKBUS_H */
