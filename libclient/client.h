/*
 * client.h - the insides of an sb_client, shared by the files of the client
 * (not installed; the public API is include/sockbus.h):
 *
 *   client.c          the public API: publish, subscribe, flush, receive,
 *                     process, accessors
 *   client_io.c       the buffers, writing, reading and scanning frames,
 *                     waiting with poll()
 *   client_connect.c  connecting (Unix, TCP), the trust check, the
 *                     handshake, closing; reconnecting (the dialer): the
 *                     live subscriptions, the publishes held meanwhile
 *   client_request.c  the inbox and the requests in flight
 *
 * Functions return 0 or a negative code (-errno or SB_E_*) unless said
 * otherwise. A connection error is sticky: client_fail() records the first
 * one in closed_err, and every call returns it from then on; unless the
 * client reconnects, when client_lost_check() turns it into the
 * DISCONNECTED state at the next call's boundary.
 */
#ifndef SOCKBUS_CLIENT_H
#define SOCKBUS_CLIENT_H

#include "sockbus.h"

#include "bytes.h"
#include "frame.h"
#include "handshake.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

/* Output is batched into this much before a write. */
#define CLIENT_WBUF_SIZE (128u * 1024u)
/* Frames larger than this bypass the write buffer (no copy). */
#define CLIENT_DIRECT_MIN (CLIENT_WBUF_SIZE / 2u)
/* Initial read buffer; it grows to hold the largest frame seen. */
#define CLIENT_RBUF_SIZE (128u * 1024u)
/* How much unconsumed input a client keeps (messages not yet taken, while
 * it waits for a PONG, a reply, or room to write) before it gives up with
 * -ENOBUFS. */
#define CLIENT_RBUF_MAX           (256u * 1024u * 1024u)
#define CLIENT_CONNECT_TIMEOUT_MS 5000
#define CLIENT_ERRTEXT_MAX        256
/* Reconnecting: the first wait, doubled up to the last, each with jitter;
 * and the publishes held while disconnected, unless the options say. */
#define CLIENT_BACKOFF_MIN_MS       10
#define CLIENT_BACKOFF_MAX_MS       1000
#define CLIENT_RECONNECT_BUFFER_DEF (8u * 1024u * 1024u)

/* A byte buffer reused across requests. */
struct client_buf {
    uint8_t *data;
    size_t cap;
};

/* A request in flight: its token, and its reply once it has arrived (a
 * copy of the MSG frame, since it may arrive behind other messages that
 * stay in the read buffer). */
struct client_request {
    uint32_t token;
    bool done;
    int err;            /* the broker refused the request (ERR) */
    size_t subject_len; /* its subject, to match such an ERR */
    struct client_buf subject;
    struct client_buf reply;
};

/* A live subscription, as the dialer replays it (tracked only by a client
 * that reconnects). */
struct client_sub {
    uint32_t sid;
    uint8_t flags;
    bool live;          /* false: unsubscribed, waiting to be compacted */
    uint32_t remaining; /* auto-unsubscribe: messages still to take; 0: none */
    char *pattern;      /* pattern, then the queue group, in one allocation */
    char *queue;        /* NULL: none */
};

struct sb_client {
    int fd;
    int closed_err; /* 0 while open; the error every call returns after */

    /* Who answered: SO_PEERCRED on a Unix socket, -1 on TCP. */
    pid_t broker_pid;
    uid_t broker_uid;

    /* What WELCOME said. */
    uint64_t client_id;
    uint32_t max_frame;
    char server_version[WELCOME_TEXT_MAX];
    char endpoint[SB_ENDPOINT_MAX];

    /* Output: bytes [woff, wlen) of wbuf are waiting for the socket. */
    uint8_t *wbuf;
    size_t woff;
    size_t wlen;

    /* Input; see the picture at the top of client_io.c. */
    uint8_t *rbuf;
    size_t rcap;
    size_t rhead;
    size_t rscan;
    size_t rtail;

    uint32_t next_sid;
    uint32_t ping_sent; /* token of the last PING */
    uint32_t pong_seen; /* token of the last PONG */
    bool welcomed;
    bool dispatching; /* inside a message callback */

    uint64_t dropped;
    int pending_err; /* first non-fatal ERR since the last flush */
    int refusal;     /* an ERR received before WELCOME */
    char last_err[CLIENT_ERRTEXT_MAX];

    sb_msg_cb msg_cb;
    void *msg_arg;
    sb_dropped_cb dropped_cb;
    void *dropped_arg;
    sb_error_cb error_cb;
    void *error_arg;

    /* Requests: replies come to one subscription, inbox_prefix + ">", and
     * are told apart by the last token of the subject, a request token. */
    char inbox_prefix[WELCOME_TEXT_MAX];
    uint32_t inbox_sid; /* 0 until the first request */
    uint32_t next_token;
    uint32_t wait_token;             /* what sb_request_wait() waits for */
    struct client_request *requests; /* [0, nrequests) in flight */
    size_t nrequests;
    size_t requests_cap;
    struct client_buf reply_held; /* the reply last handed out */

    /* Staying connected (client_connect.c). `state` is SB_STATE_CONNECTED,
     * _DISCONNECTED or _CLOSED (given up); `dialing` while an attempt
     * waits for WELCOME. What a new connection needs is kept from the
     * options: the name, echo, the trust check, the timeout. */
    int state;
    bool reconnect;
    bool dialing;
    bool replaying;
    bool no_echo;
    bool trust_check;
    char *name;
    int connect_timeout_ms;
    int reconnect_max_ms;
    size_t reconnect_buffer;
    int lost_err;            /* what lost the connection */
    uint32_t losses;         /* connections lost so far */
    struct timespec lost_at; /* CLOCK_REALTIME of the loss */
    int64_t lost_ms;         /* the same, on the monotonic clock */
    int64_t next_attempt_ms; /* monotonic */
    int backoff_ms;
    uint64_t jitter;        /* xorshift state */
    struct client_buf held; /* PUB frames kept while disconnected */
    size_t held_len;
    struct client_sub *subs; /* by increasing sid */
    size_t nsubs;
    size_t subs_cap;
    size_t subs_dead;
    size_t subs_counted; /* live ones with an auto-unsubscribe count */
    sb_state_cb state_cb;
    void *state_arg;

    /* The subject last found valid by a publish on this client: the same
     * subject again (the common case, a stream on one subject) is
     * compared, not validated again. */
    size_t pub_subject_len; /* 0: none yet */
    char pub_subject[SB_SUBJECT_MAX];

    /* NUL-terminated copies of the current message's subject and reply. */
    char subject[SB_SUBJECT_MAX + 1];
    char reply[SB_SUBJECT_MAX + 1];

    /* Descriptors received (client_fds.c): fds[0..fds_len) in arrival
     * order, the first fds_claimed of them belonging to MSGs scanned and
     * not yet handed out. */
    int *fds;
    size_t fds_len;
    size_t fds_cap;
    size_t fds_claimed;
    /* The descriptors of the message handed out last (closed when the
     * next one is), and its payload, which tells that message apart. */
    int cur_fds[FRAME_FDS_MAX];
    uint32_t cur_nfds;
    const void *cur_payload;
};

/* ---- client_io.c -------------------------------------------------------- */

/* CLOCK_MONOTONIC in milliseconds. */
int64_t client_now_ms(void);

/* A deadline `timeout_ms` from now (-1 for "forever", timeout_ms < 0), and
 * the milliseconds left until one, for poll(). */
int64_t client_deadline_after(int timeout_ms);
int client_remaining_ms(int64_t deadline);

/* Mark the connection dead; the first error sticks and is returned. */
int client_fail(sb_client *c, int err);

/* Wait for `events` on the socket. Returns the events that occurred (> 0),
 * -ETIMEDOUT, or a negative errno. */
int client_wait(sb_client *c, short events, int64_t deadline);

/* Wait until the socket takes more output, reading meanwhile (the broker
 * stops reading from a client that leaves its own queue unread). Returns
 * 0, -ETIMEDOUT, or a connection error. */
int client_wait_writable(sb_client *c, int64_t deadline);

/* Write what the socket takes now, without blocking. Returns 0 (possibly
 * with output left) or a connection error. */
int client_write_some(sb_client *c);

/* Write everything buffered, waiting (and reading) until the deadline (-1:
 * as long as it takes). A timeout leaves the rest buffered. */
int client_write_all(sb_client *c, int64_t deadline);

/* Write iov[0..iovcnt) with sendmsg() until all is written, waiting for
 * the socket. Returns 0 or a connection error. */
int client_write_iov(sb_client *c, struct iovec *iov, int iovcnt);

/* Describe a frame as its header `hdr` and its non-empty parts in
 * iov[0..5); returns how many entries were used. */
int client_frame_iov(struct iovec iov[5], const uint8_t *hdr, const void *subject,
                     size_t subject_len, const void *reply, size_t reply_len, const void *headers,
                     size_t header_len, const void *payload, size_t payload_len);

/* The encoded size of a frame with these parts into *size, or -EMSGSIZE
 * when a part's length field cannot say it or it exceeds max_frame. */
int client_frame_size(const sb_client *c, size_t subject_len, size_t reply_len, size_t header_len,
                      size_t payload_len, size_t *size);

/* Step *iov and *iovcnt past `sent` bytes written from them. */
void client_iov_advance(struct iovec **iov, int *iovcnt, size_t sent);
/* Queue one encoded frame (the publishes held while disconnected), as
 * client_send_frame() does. */
int client_send_encoded(sb_client *c, const uint8_t *frame, size_t size);

/* Queue one frame: copied into the write buffer, or written at once when
 * it is large. Returns 0, -EMSGSIZE, or a connection error. */
int client_send_frame(sb_client *c, uint8_t op, uint8_t flags, uint32_t sid, const void *subject,
                      size_t subject_len, const void *reply, size_t reply_len, const void *headers,
                      size_t header_len, const void *payload, size_t payload_len);

/* Read what the socket has, without blocking. Returns the bytes read (0
 * when nothing is there) or a connection error (-ENOBUFS when the input
 * kept would pass CLIENT_RBUF_MAX). */
int client_read_some(sb_client *c);

/* Check every complete frame read and not yet scanned; handle the control
 * frames (PONG, DROPPED, ERR, WELCOME) now. Returns 0 or a connection
 * error. */
int client_scan(sb_client *c);

/* client_take_msg() for any MSG at p[0..size): with its descriptors
 * (client_fds_take()), a reply, a meta block. */
void client_take_full(sb_client *c, const uint8_t *p, uint32_t size, sb_msg *m);

/*
 * Describe in *m the MSG at p[0..size), checked by client_scan(), of these
 * subject, reply and header lengths: subject and reply copied to
 * be NUL terminated, the rest pointing into the frame. Inline for
 * client_take_msg(), where for a plain message it folds to the subject's
 * copy and the pointers.
 */
__attribute__((always_inline)) static inline void
client_msg_describe(sb_client *c, const uint8_t *p, uint32_t size, uint16_t sl, uint16_t rl,
                    uint16_t hl, sb_msg *m)
{
    const uint8_t *headers = p + FRAME_HEADER_SIZE + sl + rl;
    const uint8_t *payload = p + FRAME_HEADER_SIZE + sl + rl + hl;
    uint32_t pl = size - (uint32_t)(payload - p);
    if (p[5] & FRAME_MSG_META) {
        /* The meta block (checked by client_scan()) stays right before the
         * payload, where sb_msg_sender() finds it. */
        payload += FRAME_META_SIZE;
        pl -= FRAME_META_SIZE;
    }
    *m = (sb_msg){
        .subject = c->subject,
        .subject_len = sl,
        .reply = c->reply,
        .reply_len = rl,
        .headers = headers,
        .headers_len = hl,
        .payload = payload,
        .payload_len = pl,
        .sid = frame_get_u32(p + 12),
        .flags = p[5],
    };
    /* The copies last: less to keep across the calls. */
    bytes_copy_short(c->subject, p + FRAME_HEADER_SIZE, sl);
    c->subject[sl] = '\0';
    if (rl > 0) {
        memcpy(c->reply, p + FRAME_HEADER_SIZE + sl, rl);
    }
    c->reply[rl] = '\0';
}

/*
 * Hand out the first pending MSG, if any (true); tombstones are skipped.
 * Inline, since it runs once per message: the frames were checked by
 * client_scan(), so this only locates the parts. A plain message (no meta
 * block, no reply, no descriptors to close) is described here; any other
 * goes to client_take_full().
 */
static inline bool client_take_msg(sb_client *c, sb_msg *m)
{
    while (c->rhead < c->rscan) {
        const uint8_t *p = c->rbuf + c->rhead;
        uint32_t size = frame_get_u32(p);
        c->rhead += size;
        if (p[4] != FRAME_OP_MSG) {
            continue;
        }
        uint16_t sl = frame_get_u16(p + 6);
        uint16_t rl = frame_get_u16(p + 8);
        if (c->cur_nfds != 0 || (p[5] & FRAME_MSG_META) || rl != 0) {
            client_take_full(c, p, size, m);
            return true;
        }
        client_msg_describe(c, p, size, sl, 0, frame_get_u16(p + 10), m);
        return true;
    }
    return false;
}

/* Is a MSG pending? */
bool client_have_msg(const sb_client *c);

/* Describe the MSG frame at p[0..size), checked already, in *m: subject
 * and reply copied to be NUL terminated, the rest pointing into the
 * frame. */
void client_fill_msg(sb_client *c, const uint8_t *p, uint32_t size, sb_msg *m);

/* Write out what is buffered, then read and scan until `done(c)` holds or
 * the deadline passes (-ETIMEDOUT). */
int client_pump(sb_client *c, bool (*done)(const sb_client *), int64_t deadline);

/* ---- client_fds.c ------------------------------------------------------- */

/* recv() on the socket, with the descriptors that come along queued
 * (close-on-exec). Returns the bytes read, 0 at the end, or a negative
 * errno. */
ssize_t client_recv(sb_client *c, void *buf, size_t len);

/* A MSG with the meta block was scanned: check the block, and claim its
 * descriptors for it (`keep`) or close them (a reply taken out of the
 * stream). Returns 0 or -EPROTO. */
int client_fds_scanned(sb_client *c, const struct frame *f, bool keep);

/* The MSG frame at `frame` (checked by client_scan()) is being handed
 * out: the previous message's descriptors are closed and this one's
 * become current. */
void client_fds_take(sb_client *c, const uint8_t *frame);

/* The connection was lost: close the descriptors received that no scanned
 * frame claimed (they came with a frame the loss cut). */
void client_fds_lost(sb_client *c);

/* Close every descriptor the client holds (for sb_close()). */
void client_fds_free(sb_client *c);

/* ---- client_connect.c --------------------------------------------------- */

/* sb_connect_ex(), which client_connect_api.c (the static library) and
 * client_compat.c (the shared library, with symbol versions) export. */
int client_connect(sb_client **out, const sb_options *opts, char *err, size_t err_len);

/* A new client with its buffers and no connection yet (fd -1): what
 * sb_connect_ex() starts from. Free it with sb_close(). Returns 0 or
 * -ENOMEM; *out is written only on success. */
int client_new(sb_client **out);

/* WELCOME: take what the broker says about itself and this connection.
 * Returns 0, -EPROTO for a payload that is not a JSON object, or
 * -ENOMEM. */
int client_handle_welcome(sb_client *c, const struct frame *f);

/*
 * The dialer. client_lost_check(): if the connection just failed (a
 * closed_err) and the client reconnects and the error allows it, become
 * DISCONNECTED (true): keep the publishes not written in full, fail the
 * flush and requests in flight, report the loss. client_ready(): at the
 * start of a call, try to reconnect if disconnected and an attempt is due
 * (not from a message callback); returns 0 or the error of a client
 * closed for good. client_reconnect_wait(): for client_pump(), wait for
 * the next attempt (bounded by the deadline) and make it; returns 0,
 * -ETIMEDOUT or the error of a client that gave up.
 */
bool client_lost_check(sb_client *c);
int client_ready(sb_client *c);
/* Wait until connected (at once when it is), within the deadline:
 * returns 0, -ETIMEDOUT, or the error of a client closed for good. */
int client_await(sb_client *c, int64_t deadline);
int client_reconnect_wait(sb_client *c, int64_t deadline);

/* While disconnected: keep one publish for the replay. Returns 0,
 * -EMSGSIZE, or SB_E_DISCONNECTED when the reconnect buffer is full. */
int client_hold_frame(sb_client *c, uint8_t op, uint8_t flags, uint32_t sid, const void *subject,
                      size_t subject_len, const void *reply, size_t reply_len, const void *headers,
                      size_t header_len, const void *payload, size_t payload_len);

/* The live subscriptions (a client that reconnects): a new one, an
 * UNSUB (max_msgs 0: now), and a MSG counted against an auto-unsubscribe
 * count. */
int client_subs_add(sb_client *c, uint32_t sid, uint8_t flags, const char *pattern,
                    const char *queue);
void client_subs_unsubscribe(sb_client *c, uint32_t sid, uint32_t max_msgs);
void client_subs_count(sb_client *c, uint32_t sid);

/* ---- client_request.c --------------------------------------------------- */

/* A MSG on the inbox subscription: take it if it is a reply (1), keep it
 * as a message (0), or a negative errno. */
int client_take_reply(sb_client *c, const struct frame *f);

/* An ERR naming subject[0..len): fail the oldest request in flight on that
 * subject with `err`, if there is one. */
void client_refuse_request(sb_client *c, int err, const char *subject, size_t len);

/* Fail every request in flight with `err` (the broker went away). */
void client_fail_requests(sb_client *c, int err);

/* Free the request slots and their buffers (for sb_close()). */
void client_requests_deinit(sb_client *c);

#endif /* SOCKBUS_CLIENT_H */
