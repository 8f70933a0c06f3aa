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
};

/* Room for the line sb_connect_ex() writes, NUL included. */
#define SB_CONNECT_ERR_MAX 1024

/* Flags of sb_msg.flags, as on the wire (MSG). */
#define SB_MSG_NO_RESPONDERS 0x01u
#define SB_MSG_RETAINED      0x02u

/* Flags of sb_pub.flags, as on the wire (PUB). */
#define SB_PUB_RETAIN 0x01u
/* Answer a request with "no responders", as the broker does when nobody
 * receives it: the requester gets SB_E_NO_RESPONDERS. For a relay (such as
 * sockbus-nats) that learns elsewhere that nobody answered; publish it,
 * with an empty payload, on the request's reply subject. */
#define SB_PUB_NO_RESPONDERS 0x04u

/* Flags of sb_subscribe_ex(), as on the wire (SUB). */
#define SB_SUB_LOSSLESS 0x02u /* never dropped from: the publisher waits */

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
 * sb_subscribe() with flags (SB_SUB_*). With SB_SUB_LOSSLESS the broker
 * never drops a message for this subscription: when this client's queue in
 * the broker is full, the publisher waits (docs/protocol.md, Lossless
 * subscriptions). Read steadily: a queue that stays full for the broker's
 * lossless_stall_ms ends the connection with SB_E_SLOW_CONSUMER. Returns
 * as sb_subscribe().
 */
SB_EXPORT int sb_subscribe_ex(sb_client *client, const char *pattern, const char *queue,
                              uint32_t flags, uint32_t *sid);

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

#ifdef __cplusplus
}
#endif

#endif /* SOCKBUS_H */
