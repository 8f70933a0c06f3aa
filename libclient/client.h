/*
 * client.h - the insides of an sb_client, shared by the files of the client
 * (not installed; the public API is include/sockbus.h):
 *
 *   client.c          the public API: publish, subscribe, flush, receive,
 *                     process, accessors
 *   client_io.c       the buffers, writing, reading and scanning frames,
 *                     waiting with poll()
 *   client_connect.c  connecting (Unix, TCP), the trust check, the
 *                     handshake, closing
 *   client_request.c  the inbox and the requests in flight
 *
 * Functions return 0 or a negative code (-errno or SB_E_*) unless said
 * otherwise. A connection error is sticky: client_fail() records the first
 * one in closed_err, and every call returns it from then on.
 */
#ifndef SOCKBUS_CLIENT_H
#define SOCKBUS_CLIENT_H

#include "sockbus.h"

#include "frame.h"
#include "handshake.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

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

/* A deadline `timeout_ms` from now (-1 for "forever", timeout_ms < 0), and
 * the milliseconds left until one, for poll(). */
int64_t client_deadline_after(int timeout_ms);
int client_remaining_ms(int64_t deadline);

/* Mark the connection dead; the first error sticks and is returned. */
int client_fail(sb_client *c, int err);

/* Wait for `events` on the socket. Returns the events that occurred (> 0),
 * -ETIMEDOUT, or a negative errno. */
int client_wait(sb_client *c, short events, int64_t deadline);

/* Write what the socket takes now, without blocking. Returns 0 (possibly
 * with output left) or a connection error. */
int client_write_some(sb_client *c);

/* Write everything buffered, waiting (and reading) until the deadline (-1:
 * as long as it takes). A timeout leaves the rest buffered. */
int client_write_all(sb_client *c, int64_t deadline);

/* Write iov[0..iovcnt) with sendmsg() until all is written, waiting for
 * the socket. Returns 0 or a connection error. */
int client_write_iov(sb_client *c, struct iovec *iov, int iovcnt);

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

/* Hand out the first pending MSG, if any (true). */
bool client_take_msg(sb_client *c, sb_msg *m);

/* Is a MSG pending? */
bool client_have_msg(const sb_client *c);

/* Describe the MSG frame `f` in *m: subject and reply copied to be NUL
 * terminated, the rest pointing into the frame. */
void client_fill_msg(sb_client *c, const struct frame *f, sb_msg *m);

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

/* The MSG `f` is being handed out: the previous message's descriptors are
 * closed and this one's become current. */
void client_fds_take(sb_client *c, const struct frame *f);

/* Close every descriptor the client holds (for sb_close()). */
void client_fds_free(sb_client *c);

/* ---- client_connect.c --------------------------------------------------- */

/* A new client with its buffers and no connection yet (fd -1): what
 * sb_connect_ex() starts from. Free it with sb_close(). Returns 0 or
 * -ENOMEM; *out is written only on success. */
int client_new(sb_client **out);

/* WELCOME: take what the broker says about itself and this connection.
 * Returns 0, -EPROTO for a payload that is not a JSON object, or
 * -ENOMEM. */
int client_handle_welcome(sb_client *c, const struct frame *f);

/* ---- client_request.c --------------------------------------------------- */

/* A MSG on the inbox subscription: take it if it is a reply (1), keep it
 * as a message (0), or a negative errno. */
int client_take_reply(sb_client *c, const struct frame *f);

/* An ERR naming subject[0..len): fail the oldest request in flight on that
 * subject with `err`, if there is one. */
void client_refuse_request(sb_client *c, int err, const char *subject, size_t len);

/* Free the request slots and their buffers (for sb_close()). */
void client_requests_deinit(sb_client *c);

#endif /* SOCKBUS_CLIENT_H */
