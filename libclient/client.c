/*
 * client.c - the sockbus client: one connection to a broker.
 *
 * Output: frames are encoded straight into one write buffer and leave in
 * batches, when the buffer is full, on sb_flush(), before any call blocks
 * for input, and from sb_process(). A frame too large for the buffer goes
 * out with one sendmsg() of its parts, so a big payload is never copied.
 *
 * Input: one read buffer, reused. Bytes land at `rtail`; every complete
 * frame is checked once by client_scan(), which advances `rscan`. Control
 * frames (PONG, ERR, DROPPED) are handled as they are scanned and their op
 * is overwritten with 0, a tombstone, so that MSG frames before and after
 * them stay where they are: messages are handed out from `rhead` in arrival
 * order, pointing into the buffer, without a copy. The buffer is compacted
 * only before a read, which is why a message is valid until the next call.
 *
 *     rbuf: [ consumed | MSG ... MSG tombstone MSG | unscanned | free ]
 *           0          rhead                       rscan       rtail   rcap
 *
 * The socket is always non-blocking; the blocking calls wait with poll().
 */
#include "sockbus.h"

#include "endpoint.h"
#include "frame.h"
#include "handshake.h"
#include "text.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

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

    /* Input; see the picture at the top. */
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
};

/* ---- time ------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Deadline for a timeout: -1 for "forever". */
static int64_t deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Milliseconds left until the deadline, for poll(). */
static int remaining_ms(int64_t deadline)
{
    if (deadline < 0) {
        return -1;
    }
    int64_t left = deadline - now_ms();
    if (left <= 0) {
        return 0;
    }
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* ---- connection state --------------------------------------------------- */

/* Mark the connection dead; the first error sticks. */
static int client_fail(sb_client *c, int err)
{
    if (c->closed_err == 0) {
        c->closed_err = err;
    }
    return c->closed_err;
}

/* Wait for `events` on the socket. Returns the events that occurred (> 0),
 * -ETIMEDOUT, or a negative errno. */
static int client_wait(sb_client *c, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = c->fd, .events = events};
        int n = poll(&p, 1, remaining_ms(deadline));
        if (n > 0) {
            return p.revents; /* > 0: POLLNVAL cannot happen on our own fd */
        }
        if (n == 0) {
            return -ETIMEDOUT;
        }
        if (errno != EINTR) {
            return -errno;
        }
    }
}

/* ---- output ------------------------------------------------------------- */

/* Write what the socket takes now. Returns 0 (possibly with output left),
 * or a connection error. */
static int client_write_some(sb_client *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        }
        return client_fail(c, n < 0 ? -errno : -EPIPE);
    }
    c->woff = 0;
    c->wlen = 0;
    return 0;
}

static int client_read_some(sb_client *c);
static int client_scan(sb_client *c);

/*
 * Wait until the socket takes more output, reading meanwhile (see
 * client_write_all() for why) but not from inside a callback, where reading
 * may move the buffer that the message being handled points into.
 * Returns 0, -ETIMEDOUT, or a connection error.
 */
static int client_wait_writable(sb_client *c, int64_t deadline)
{
    short events = c->dispatching ? POLLOUT : POLLOUT | POLLIN;
    int r = client_wait(c, events, deadline);
    if (r < 0) {
        return r == -ETIMEDOUT ? r : client_fail(c, r);
    }
    if (c->dispatching || !(r & (POLLIN | POLLHUP | POLLERR))) {
        return 0;
    }
    r = client_read_some(c);
    if (r > 0) {
        r = client_scan(c);
    }
    return r < 0 ? r : 0;
}

/*
 * Write everything buffered, waiting for the socket until the deadline
 * (-1: as long as it takes). While it waits it also reads: the broker
 * drops messages for slow consumers rather than block, but it does stop
 * reading from a client that leaves its own replies (PONG, ERR) unread, so
 * a writer that never read could wait for ever. What is read stays in the
 * read buffer for later calls. A timeout leaves the rest buffered and the
 * connection usable.
 */
static int client_write_all(sb_client *c, int64_t deadline)
{
    if (c->closed_err) {
        return c->closed_err;
    }
    for (;;) {
        int r = client_write_some(c);
        if (r < 0 || c->wlen == 0) {
            return r;
        }
        r = client_wait_writable(c, deadline);
        if (r < 0) {
            return r;
        }
    }
}

/* Send a frame's parts with sendmsg() until all is written. Used for frames
 * too big for the write buffer; the buffer is empty when this is called. */
static int client_write_iov(sb_client *c, struct iovec *iov, int iovcnt)
{
    while (iovcnt > 0) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int r = client_wait_writable(c, -1);
                if (r < 0) {
                    return client_fail(c, r);
                }
                continue;
            }
            return client_fail(c, -errno);
        }
        size_t left = (size_t)n;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* Queue one frame. The body parts are copied into the write buffer (small
 * frames: one memcpy beats a syscall) or sent directly (large frames). */
static int client_send_frame(sb_client *c, uint8_t op, uint8_t flags, uint32_t sid,
                             const void *subject, size_t subject_len, const void *reply,
                             size_t reply_len, const void *headers, size_t header_len,
                             const void *payload, size_t payload_len)
{
    if (c->closed_err) {
        return c->closed_err;
    }
    size_t size = frame_encoded_size(subject_len, reply_len, header_len, payload_len);
    if (subject_len > UINT16_MAX || reply_len > UINT16_MAX || header_len > UINT16_MAX ||
        size > c->max_frame) {
        return -EMSGSIZE;
    }
    if (size >= CLIENT_DIRECT_MIN) {
        int r = client_write_all(c, -1);
        if (r < 0) {
            return r;
        }
        uint8_t hdr[FRAME_HEADER_SIZE];
        frame_encode_header(hdr, (uint32_t)size, op, flags, (uint16_t)subject_len,
                            (uint16_t)reply_len, (uint16_t)header_len, sid);
        struct iovec iov[5];
        int n = 0;
        iov[n++] = (struct iovec){hdr, sizeof(hdr)};
        const void *parts[4] = {subject, reply, headers, payload};
        size_t lens[4] = {subject_len, reply_len, header_len, payload_len};
        for (int i = 0; i < 4; i++) {
            if (lens[i] > 0) {
                iov[n++] = (struct iovec){(void *)parts[i], lens[i]};
            }
        }
        return client_write_iov(c, iov, n);
    }
    if (CLIENT_WBUF_SIZE - c->wlen < size) {
        int r = client_write_all(c, -1);
        if (r < 0) {
            return r;
        }
    }
    c->wlen += frame_encode(c->wbuf + c->wlen, op, flags, sid, subject, subject_len, reply,
                            reply_len, headers, header_len, payload, payload_len);
    return 0;
}

/* ---- input -------------------------------------------------------------- */

/* Make room to read: drop consumed bytes, and make the buffer hold at
 * least `need` bytes from rhead. Called only before a read, never while a
 * handed-out message may still be in use. */
static int client_reserve(sb_client *c, size_t need)
{
    if (c->rhead > 0) {
        memmove(c->rbuf, c->rbuf + c->rhead, c->rtail - c->rhead);
        c->rscan -= c->rhead;
        c->rtail -= c->rhead;
        c->rhead = 0;
    }
    if (need <= c->rcap) {
        return 0;
    }
    if (need > CLIENT_RBUF_MAX) {
        return -ENOBUFS;
    }
    size_t cap = c->rcap * 2;
    while (cap < need) {
        cap *= 2;
    }
    uint8_t *p = realloc(c->rbuf, cap);
    if (p == NULL) {
        return -ENOMEM;
    }
    c->rbuf = p;
    c->rcap = cap;
    return 0;
}

/* Read what the socket has, without blocking. Returns the bytes read (0
 * when nothing is there) or a connection error. */
static int client_read_some(sb_client *c)
{
    /* Room for the frame being received, or a good chunk more. */
    size_t need = c->rtail - c->rhead + 4096;
    if (c->rtail - c->rscan >= 4) {
        uint32_t size = frame_get_u32(c->rbuf + c->rscan);
        if (size <= c->max_frame) {
            size_t frame_need = c->rscan - c->rhead + size;
            need = frame_need > need ? frame_need : need;
        }
    }
    int r = client_reserve(c, need);
    if (r < 0) {
        return client_fail(c, r);
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf + c->rtail, c->rcap - c->rtail, 0);
        if (n > 0) {
            c->rtail += (size_t)n;
            return (int)(n > INT_MAX ? INT_MAX : n);
        }
        if (n == 0) {
            return client_fail(c, SB_E_CLOSED);
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        }
        return client_fail(c, -errno);
    }
}

static int broker_error_code(uint32_t code)
{
    if (code == 0 || code > 100) {
        return SB_E_PROTOCOL;
    }
    return SB_E_BROKER_BASE - (int)code;
}

static bool broker_error_fatal(uint32_t code)
{
    return code == FRAME_ERR_PROTOCOL || code == FRAME_ERR_TOO_LARGE ||
           code == FRAME_ERR_SLOW_CONSUMER || code == FRAME_ERR_HELLO_REQUIRED ||
           code == FRAME_ERR_SHUTDOWN || code == FRAME_ERR_VERSION;
}

/* An ERR naming the subject of a request in flight (permission denied, a
 * $SYS answer too large) fails the oldest such request now, rather than
 * leaving it to its timeout. */
static void client_refuse_request(sb_client *c, int err, const char *subject, size_t len)
{
    for (size_t i = 0; i < c->nrequests; i++) {
        struct client_request *req = &c->requests[i];
        if (!req->done && req->subject_len == len && memcmp(req->subject.data, subject, len) == 0) {
            req->done = true;
            req->err = err;
            return;
        }
    }
}

static void client_handle_err(sb_client *c, const struct frame *f)
{
    int err = broker_error_code(f->sid);
    char subject[SB_SUBJECT_MAX + 1];
    size_t sl = f->subject_len > SB_SUBJECT_MAX ? SB_SUBJECT_MAX : f->subject_len;
    memcpy(subject, f->subject, sl);
    subject[sl] = '\0';
    size_t tl = f->payload_len >= sizeof(c->last_err) ? sizeof(c->last_err) - 1 : f->payload_len;
    memcpy(c->last_err, f->payload, tl);
    c->last_err[tl] = '\0';
    if (c->error_cb) {
        c->error_cb(c, err, subject, c->last_err, c->error_arg);
    }
    client_refuse_request(c, err, subject, sl);
    if (!c->welcomed) {
        /* Any ERR before WELCOME ends the handshake. */
        c->refusal = err;
        client_fail(c, err);
    } else if (broker_error_fatal(f->sid)) {
        client_fail(c, err);
    } else if (c->pending_err == 0) {
        c->pending_err = err;
    }
}

/* WELCOME: what the broker says about itself and this connection. */
static int client_handle_welcome(sb_client *c, const struct frame *f)
{
    struct handshake_welcome w;
    int r = handshake_welcome_parse(f->payload, f->payload_len, &w);
    if (r < 0) {
        return r;
    }
    c->client_id = w.client_id;
    if (w.max_frame != 0) {
        c->max_frame = w.max_frame;
    }
    memcpy(c->inbox_prefix, w.inbox_prefix, sizeof(c->inbox_prefix));
    memcpy(c->server_version, w.version, sizeof(c->server_version));
    c->welcomed = true;
    return 0;
}

static struct client_request *client_find_request(sb_client *c, uint32_t token)
{
    for (size_t i = 0; i < c->nrequests; i++) {
        if (c->requests[i].token == token) {
            return &c->requests[i];
        }
    }
    return NULL;
}

static int buf_hold(struct client_buf *b, const void *data, size_t len)
{
    if (len > b->cap) {
        uint8_t *p = realloc(b->data, len);
        if (p == NULL) {
            return -ENOMEM;
        }
        b->data = p;
        b->cap = len;
    }
    if (len > 0) {
        memcpy(b->data, data, len);
    }
    return 0;
}

/*
 * A MSG on the inbox: copy it to the request waiting for its token (the
 * last token of the subject), or drop it when nobody waits any more (a
 * reply after its request timed out). Returns 1 when it was taken, 0 to
 * keep it, or a negative errno.
 */
static int client_take_reply(sb_client *c, const struct frame *f)
{
    const char *subject = (const char *)f->subject;
    size_t plen = strlen(c->inbox_prefix);
    if (f->subject_len <= plen || memcmp(subject, c->inbox_prefix, plen) != 0) {
        return 0;
    }
    uint32_t token = 0;
    for (size_t i = plen; i < f->subject_len; i++) {
        if (subject[i] < '0' || subject[i] > '9') {
            return 0; /* someone else's subject under our inbox: a message */
        }
        token = token * 10 + (uint32_t)(subject[i] - '0');
    }
    struct client_request *req = client_find_request(c, token);
    if (req != NULL && !req->done) {
        int r = buf_hold(&req->reply, f->subject - FRAME_HEADER_SIZE, f->size);
        if (r < 0) {
            return r;
        }
        req->done = true;
    }
    return 1;
}

/* Check every complete frame after rscan; handle control frames now. */
static int client_scan(sb_client *c)
{
    while (c->rscan < c->rtail) {
        struct frame f;
        uint8_t *p = c->rbuf + c->rscan;
        int r = frame_parse(p, c->rtail - c->rscan, c->max_frame, &f);
        if (r == FRAME_NEED_MORE) {
            return 0;
        }
        if (r < 0) {
            return client_fail(c, -EPROTO);
        }
        bool keep = false;
        switch (f.op) {
        case FRAME_OP_MSG:
            /* Subjects are copied to be NUL terminated: hold a peer that is
             * not a real broker to the limit before copying anything. */
            if (f.subject_len > SB_SUBJECT_MAX || f.reply_len > SB_SUBJECT_MAX) {
                return client_fail(c, -EPROTO);
            }
            keep = f.sid == 0 || f.sid != c->inbox_sid || client_take_reply(c, &f) == 0;
            break;
        case FRAME_OP_PONG:
            c->pong_seen = f.sid;
            break;
        case FRAME_OP_DROPPED:
            if (f.payload_len >= 8) {
                uint64_t n = frame_get_u64(f.payload);
                c->dropped += n;
                if (c->dropped_cb) {
                    c->dropped_cb(c, n, c->dropped_arg);
                }
            }
            break;
        case FRAME_OP_ERR:
            client_handle_err(c, &f);
            break;
        case FRAME_OP_WELCOME:
            if (!c->welcomed) {
                r = client_handle_welcome(c, &f);
                if (r < 0) {
                    return client_fail(c, r);
                }
            }
            break;
        default:
            break; /* ops a client never receives: ignore */
        }
        if (!keep) {
            if (c->rhead == c->rscan) {
                c->rhead += f.size; /* nothing pending before it */
            } else {
                p[4] = 0; /* tombstone: skipped by client_take_msg() */
            }
        }
        c->rscan += f.size;
        if (c->closed_err) {
            return c->closed_err;
        }
    }
    return 0;
}

/* Describe a MSG frame in *m; subject and reply are copied to be NUL
 * terminated, the rest points into the frame. */
static void client_fill_msg(sb_client *c, const struct frame *f, sb_msg *m)
{
    memcpy(c->subject, f->subject, f->subject_len);
    c->subject[f->subject_len] = '\0';
    memcpy(c->reply, f->reply, f->reply_len);
    c->reply[f->reply_len] = '\0';
    *m = (sb_msg){
        .subject = c->subject,
        .subject_len = f->subject_len,
        .reply = c->reply,
        .reply_len = f->reply_len,
        .headers = f->headers,
        .headers_len = f->header_len,
        .payload = f->payload,
        .payload_len = f->payload_len,
        .sid = f->sid,
        .flags = f->flags,
    };
}

/* Hand out the first pending MSG, if any. */
static bool client_take_msg(sb_client *c, sb_msg *m)
{
    while (c->rhead < c->rscan) {
        const uint8_t *p = c->rbuf + c->rhead;
        uint32_t size = frame_get_u32(p);
        if (p[4] != FRAME_OP_MSG) {
            c->rhead += size;
            continue;
        }
        /* Validated by client_scan() already: only locate the parts. */
        struct frame f = {
            .size = size,
            .op = p[4],
            .flags = p[5],
            .subject_len = frame_get_u16(p + 6),
            .reply_len = frame_get_u16(p + 8),
            .header_len = frame_get_u16(p + 10),
            .sid = frame_get_u32(p + 12),
        };
        f.subject = p + FRAME_HEADER_SIZE;
        f.reply = f.subject + f.subject_len;
        f.headers = f.reply + f.reply_len;
        f.payload = f.headers + f.header_len;
        f.payload_len = size - (uint32_t)(f.payload - p);
        c->rhead += size;
        client_fill_msg(c, &f, m);
        return true;
    }
    return false;
}

/*
 * Read and scan until `done(c)` holds or the deadline passes. Output is
 * flushed first: nobody blocks for input with requests unsent.
 */
static int client_pump(sb_client *c, bool (*done)(const sb_client *), int64_t deadline)
{
    /* Right after sending (a request, a PING) the answer cannot be there
     * yet: wait first instead of a read that would say EAGAIN. A round trip
     * is then a send, a poll and a recv. */
    bool try_read = c->wlen == c->woff;
    int r = client_write_all(c, deadline);
    if (r < 0) {
        return r;
    }
    for (;;) {
        r = client_scan(c);
        if (r < 0) {
            return r;
        }
        if (done(c)) {
            return 0;
        }
        if (try_read) {
            r = client_read_some(c);
            if (r < 0) {
                return r;
            }
            if (r > 0) {
                continue;
            }
        }
        r = client_wait(c, POLLIN, deadline);
        if (r < 0) {
            return r == -ETIMEDOUT ? r : client_fail(c, r);
        }
        try_read = true;
    }
}

static bool have_msg(const sb_client *c)
{
    for (size_t at = c->rhead; at < c->rscan; at += frame_get_u32(c->rbuf + at)) {
        if (c->rbuf[at + 4] == FRAME_OP_MSG) {
            return true;
        }
    }
    return false;
}

static bool have_welcome(const sb_client *c)
{
    return c->welcomed;
}

static bool have_pong(const sb_client *c)
{
    /* Tokens increase; PONGs come back in order. */
    return (int32_t)(c->pong_seen - c->ping_sent) >= 0;
}

/* ---- connecting --------------------------------------------------------- */

static int connect_unix(const char *path, int64_t deadline, int *out)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sun.sun_path)) {
        return -ENAMETOOLONG;
    }
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
            *out = fd;
            return 0;
        }
        int err = errno;
        if (err == EINTR) {
            continue;
        }
        /* A full backlog says EAGAIN on a non-blocking Unix socket: retry
         * shortly rather than fail a client during a connection burst. */
        if (err == EAGAIN && remaining_ms(deadline) != 0) {
            poll(NULL, 0, 1);
            continue;
        }
        close(fd);
        return err == EAGAIN ? -ETIMEDOUT : -err;
    }
}

static int connect_tcp(const char *endpoint, int64_t deadline, int *out)
{
    char host[256];
    char port[8];
    int r = endpoint_parse_tcp(endpoint, host, sizeof(host), port, sizeof(port));
    if (r < 0) {
        return r;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    if (getaddrinfo(host, port, &hints, &res) != 0) {
        return -EHOSTUNREACH;
    }
    r = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            r = -errno;
            continue;
        }
        /* EINTR, like EINPROGRESS, leaves the connect going on: the poll
         * and SO_ERROR below learn how it ends. */
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS &&
            errno != EINTR) {
            r = -errno;
            close(fd);
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n;
        do {
            n = poll(&p, 1, remaining_ms(deadline));
        } while (n < 0 && errno == EINTR);
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (n == 0) {
            soerr = ETIMEDOUT;
        } else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
            soerr = errno;
        }
        if (soerr != 0) {
            r = -soerr;
            close(fd);
            continue;
        }
        /* Small frames must not wait for Nagle: we batch ourselves. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        *out = fd;
        r = 0;
        break;
    }
    freeaddrinfo(res);
    return r;
}

static int client_send_hello(sb_client *c, const sb_options *opts)
{
    char *json;
    size_t len;
    int r = handshake_hello_encode(opts->name, !opts->no_echo, &json, &len);
    if (r < 0) {
        return r;
    }
    r = client_send_frame(c, FRAME_OP_HELLO, 0, 0, NULL, 0, NULL, 0, NULL, 0, json, len);
    free(json);
    return r;
}

/* Was the endpoint named explicitly (opts->endpoint, $SOCKBUS_SOCKET),
 * rather than found by the default rule? */
static bool endpoint_explicit(const sb_options *opts)
{
    const char *env = getenv("SOCKBUS_SOCKET");
    return (opts->endpoint != NULL && opts->endpoint[0] != '\0') || (env != NULL && env[0] != '\0');
}

/*
 * Learn who serves the Unix socket just connected (SO_PEERCRED), and with
 * `check`, refuse a broker that is neither us nor root: on a default path
 * anyone who can write to the directory (anyone at all, in /tmp) may have
 * bound the socket first, and what we would send it (publishes, requests)
 * is ours. Runs before anything is sent. Returns 0, SB_E_UNTRUSTED with a
 * line in err, or a negative errno.
 */
static int client_check_broker(sb_client *c, bool check, char *err, size_t err_len)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        return check ? -errno : 0; /* cannot tell: trust only a named one */
    }
    c->broker_pid = cred.pid;
    c->broker_uid = cred.uid;
    if (!check || cred.uid == 0 || cred.uid == getuid() || cred.uid == geteuid()) {
        return 0;
    }
    if (err != NULL && err_len > 0) {
        snprintf(err, err_len,
                 "refusing the broker at %s: its socket is served by uid %lu (pid %ld), not by "
                 "you (uid %lu) or root, so another user may be posing as your broker; if you "
                 "trust it, name it explicitly (SOCKBUS_SOCKET=%s, or the program's socket "
                 "option), otherwise start your own on a private socket (with XDG_RUNTIME_DIR "
                 "set)",
                 c->endpoint, (unsigned long)cred.uid, (long)cred.pid, (unsigned long)getuid(),
                 c->endpoint);
    }
    return SB_E_UNTRUSTED;
}

/* The line sb_connect_ex() gives for a failure other than SB_E_UNTRUSTED:
 * the broker's own words when it refused us, else what went wrong. */
static void client_connect_error(const sb_client *c, const sb_options *opts, int r, char *err,
                                 size_t err_len)
{
    const char *where = c->endpoint[0] != '\0' ? c->endpoint
                        : opts->endpoint != NULL && opts->endpoint[0] != '\0'
                            ? opts->endpoint
                            : "the default endpoint";
    if (c->refusal != 0 && c->last_err[0] != '\0') {
        char text[TEXT_ESCAPE_MAX(CLIENT_ERRTEXT_MAX)];
        text_escape(text, sizeof(text), c->last_err, strlen(c->last_err));
        snprintf(err, err_len, "the broker at %s refused the connection: %s (%s)", where, text,
                 sb_strerror(r));
    } else {
        snprintf(err, err_len, "cannot connect to %s: %s", where, sb_strerror(r));
    }
}

SB_EXPORT int sb_connect_ex(sb_client **out, const sb_options *opts, char *err, size_t err_len)
{
    static const sb_options defaults = {0};
    if (opts == NULL) {
        opts = &defaults;
    }
    int timeout = opts->timeout_ms == 0 ? CLIENT_CONNECT_TIMEOUT_MS : opts->timeout_ms;
    int64_t deadline = deadline_after(timeout);
    if (err_len == 0) {
        err = NULL;
    }

    sb_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        if (err != NULL) {
            snprintf(err, err_len, "cannot connect: %s", sb_strerror(-ENOMEM));
        }
        return -ENOMEM;
    }
    c->fd = -1;
    c->broker_pid = -1;
    c->broker_uid = (uid_t)-1;
    c->max_frame = SB_MAX_FRAME_DEFAULT;
    c->next_sid = 1;
    c->wbuf = malloc(CLIENT_WBUF_SIZE);
    c->rbuf = malloc(CLIENT_RBUF_SIZE);
    c->rcap = CLIENT_RBUF_SIZE;
    int r = -ENOMEM;
    bool described = false;
    if (c->wbuf == NULL || c->rbuf == NULL) {
        goto fail;
    }
    r = sb_endpoint_resolve(opts->endpoint, c->endpoint, sizeof(c->endpoint));
    if (r < 0) {
        goto fail;
    }
    if (sb_endpoint_is_tcp(c->endpoint)) {
        r = connect_tcp(c->endpoint, deadline, &c->fd);
    } else {
        r = connect_unix(c->endpoint, deadline, &c->fd);
        if (r == 0) {
            r = client_check_broker(c, !endpoint_explicit(opts), err, err_len);
            described = r == SB_E_UNTRUSTED;
        }
    }
    if (r < 0) {
        goto fail;
    }
    r = client_send_hello(c, opts);
    if (r == 0) {
        r = client_pump(c, have_welcome, deadline);
    }
    if (r < 0 && r != -ETIMEDOUT) {
        /* A broker that refuses us (max_connections, shutting down) sends
         * ERR and closes: report its reason, not the broken pipe. */
        client_read_some(c);
        client_scan(c);
        if (c->refusal != 0) {
            r = c->refusal;
        }
        goto fail;
    }
    if (r < 0) {
        goto fail;
    }
    *out = c;
    return 0;
fail:
    if (err != NULL && !described) {
        client_connect_error(c, opts, r, err, err_len);
    }
    sb_close(c);
    return r;
}

SB_EXPORT int sb_connect(sb_client **out, const sb_options *opts)
{
    return sb_connect_ex(out, opts, NULL, 0);
}

SB_EXPORT void sb_close(sb_client *c)
{
    if (c == NULL) {
        return;
    }
    if (c->fd >= 0) {
        if (c->closed_err == 0) {
            client_write_some(c); /* best effort: never block in close */
        }
        close(c->fd);
    }
    for (size_t i = 0; i < c->requests_cap; i++) {
        free(c->requests[i].reply.data);
        free(c->requests[i].subject.data);
    }
    free(c->requests);
    free(c->reply_held.data);
    free(c->wbuf);
    free(c->rbuf);
    free(c);
}

/* ---- accessors ---------------------------------------------------------- */

SB_EXPORT const char *sb_endpoint(const sb_client *c)
{
    return c->endpoint;
}

SB_EXPORT pid_t sb_broker_pid(const sb_client *c)
{
    return c->broker_pid;
}

SB_EXPORT uid_t sb_broker_uid(const sb_client *c)
{
    return c->broker_uid;
}

SB_EXPORT uint64_t sb_client_id(const sb_client *c)
{
    return c->client_id;
}

SB_EXPORT uint32_t sb_max_frame(const sb_client *c)
{
    return c->max_frame;
}

SB_EXPORT size_t sb_max_payload(const sb_client *c, size_t subject_len, size_t reply_len,
                                size_t headers_len)
{
    size_t used = frame_encoded_size(subject_len, reply_len, headers_len, 0);
    return used >= c->max_frame ? 0 : c->max_frame - used;
}

SB_EXPORT const char *sb_server_version(const sb_client *c)
{
    return c->server_version;
}

SB_EXPORT const char *sb_last_error(const sb_client *c)
{
    return c->last_err;
}

SB_EXPORT int sb_fd(const sb_client *c)
{
    return c->fd;
}

SB_EXPORT short sb_events(const sb_client *c)
{
    return (short)(POLLIN | (c->wlen > c->woff ? POLLOUT : 0));
}

SB_EXPORT void sb_set_msg_cb(sb_client *c, sb_msg_cb cb, void *arg)
{
    c->msg_cb = cb;
    c->msg_arg = arg;
}

SB_EXPORT void sb_set_dropped_cb(sb_client *c, sb_dropped_cb cb, void *arg)
{
    c->dropped_cb = cb;
    c->dropped_arg = arg;
}

SB_EXPORT void sb_set_error_cb(sb_client *c, sb_error_cb cb, void *arg)
{
    c->error_cb = cb;
    c->error_arg = arg;
}

SB_EXPORT uint64_t sb_take_dropped(sb_client *c)
{
    uint64_t n = c->dropped;
    c->dropped = 0;
    return n;
}

/* ---- messaging ---------------------------------------------------------- */

SB_EXPORT int sb_publish_ex(sb_client *c, const sb_pub *pub)
{
    size_t sl = pub->subject ? strlen(pub->subject) : 0;
    size_t rl = pub->reply ? strlen(pub->reply) : 0;
    if (!sb_subject_valid(pub->subject, sl) || (rl > 0 && !sb_subject_valid(pub->reply, rl)) ||
        (pub->headers_len > 0 && pub->headers == NULL) ||
        (pub->payload_len > 0 && pub->payload == NULL)) {
        return -EINVAL;
    }
    return client_send_frame(c, FRAME_OP_PUB, (uint8_t)pub->flags, 0, pub->subject, sl, pub->reply,
                             rl, pub->headers, pub->headers_len, pub->payload, pub->payload_len);
}

SB_EXPORT int sb_publish(sb_client *c, const char *subject, const char *reply, const void *data,
                         size_t len)
{
    sb_pub pub = {.subject = subject, .reply = reply, .payload = data, .payload_len = len};
    return sb_publish_ex(c, &pub);
}

SB_EXPORT int sb_subscribe(sb_client *c, const char *pattern, const char *queue, uint32_t *sid)
{
    size_t pl = pattern ? strlen(pattern) : 0;
    size_t ql = queue ? strlen(queue) : 0;
    if (!sb_pattern_valid(pattern, pl) || (ql > 0 && !sb_subject_valid(queue, ql))) {
        return -EINVAL;
    }
    if (c->next_sid == 0) {
        return -ENOSPC; /* 2^32 - 1 subscriptions issued on one connection */
    }
    uint32_t id = c->next_sid;
    int r = client_send_frame(c, FRAME_OP_SUB, 0, id, pattern, pl, queue, ql, NULL, 0, NULL, 0);
    if (r < 0) {
        return r;
    }
    c->next_sid++;
    if (sid != NULL) {
        *sid = id;
    }
    return 0;
}

SB_EXPORT int sb_unsubscribe(sb_client *c, uint32_t sid, uint32_t max_msgs)
{
    if (sid == 0 || (c->next_sid != 0 && sid >= c->next_sid)) {
        return -ENOENT;
    }
    uint8_t count[4];
    frame_put_u32(count, max_msgs);
    return client_send_frame(c, FRAME_OP_UNSUB, 0, sid, NULL, 0, NULL, 0, NULL, 0, count,
                             max_msgs > 0 ? sizeof(count) : 0);
}

SB_EXPORT int sb_flush(sb_client *c, int timeout_ms)
{
    uint32_t token = c->ping_sent + 1;
    int r = client_send_frame(c, FRAME_OP_PING, 0, token, NULL, 0, NULL, 0, NULL, 0, NULL, 0);
    if (r < 0) {
        return r;
    }
    c->ping_sent = token;
    r = client_pump(c, have_pong, deadline_after(timeout_ms));
    if (r < 0) {
        return r;
    }
    r = c->pending_err;
    c->pending_err = 0;
    return r;
}

SB_EXPORT int sb_next_msg(sb_client *c, sb_msg *msg, int timeout_ms)
{
    if (client_take_msg(c, msg)) {
        return 0;
    }
    if (c->closed_err) {
        return c->closed_err;
    }
    int r = client_pump(c, have_msg, deadline_after(timeout_ms));
    if (r < 0) {
        return r;
    }
    client_take_msg(c, msg);
    return 0;
}

SB_EXPORT int sb_process(sb_client *c)
{
    int r = client_write_some(c);
    /* Bounded: a fast sender must not keep us here forever. */
    for (int i = 0; r >= 0 && i < 16; i++) {
        r = client_read_some(c);
        if (r <= 0) {
            break;
        }
    }
    if (r >= 0) {
        r = client_scan(c);
    }
    if (c->msg_cb != NULL) {
        sb_msg m;
        c->dispatching = true;
        while (client_take_msg(c, &m)) {
            c->msg_cb(c, &m, c->msg_arg);
        }
        c->dispatching = false;
    }
    return r < 0 ? r : 0;
}

/* ---- requests ----------------------------------------------------------- */

/* Subscribe to the inbox once, on the first request. */
static int client_inbox(sb_client *c)
{
    if (c->inbox_sid != 0) {
        return 0;
    }
    if (c->inbox_prefix[0] == '\0') {
        return -EPROTO; /* the broker did not say where replies go */
    }
    char pattern[sizeof(c->inbox_prefix) + 1];
    snprintf(pattern, sizeof(pattern), "%s>", c->inbox_prefix);
    return sb_subscribe(c, pattern, NULL, &c->inbox_sid);
}

/* A slot for a new request; slots past nrequests keep their buffers for
 * reuse, so steady request/reply allocates nothing. */
static struct client_request *client_new_request(sb_client *c)
{
    if (c->nrequests == c->requests_cap) {
        size_t cap = c->requests_cap ? c->requests_cap * 2 : 4;
        struct client_request *p = realloc(c->requests, cap * sizeof(*p));
        if (p == NULL) {
            return NULL;
        }
        memset(p + c->requests_cap, 0, (cap - c->requests_cap) * sizeof(*p));
        c->requests = p;
        c->requests_cap = cap;
    }
    return &c->requests[c->nrequests++];
}

/* Forget a request: swap the last one into its place, keeping buffers. */
static void client_end_request(sb_client *c, struct client_request *req)
{
    struct client_request *last = &c->requests[--c->nrequests];
    struct client_request tmp = *req;
    *req = *last;
    *last = tmp;
    last->done = false;
}

SB_EXPORT int sb_request_send(sb_client *c, const sb_pub *req, uint32_t *token)
{
    int r = client_inbox(c);
    if (r < 0) {
        return r;
    }
    struct client_request *slot = client_new_request(c);
    if (slot == NULL) {
        return -ENOMEM;
    }
    if (++c->next_token == 0) {
        c->next_token = 1;
    }
    slot->token = c->next_token;
    slot->done = false;
    slot->err = 0;
    slot->subject_len = req->subject ? strlen(req->subject) : 0;
    if (buf_hold(&slot->subject, req->subject, slot->subject_len) < 0) {
        client_end_request(c, slot);
        return -ENOMEM;
    }
    char reply[sizeof(c->inbox_prefix) + 12];
    snprintf(reply, sizeof(reply), "%s%u", c->inbox_prefix, slot->token);
    sb_pub pub = *req;
    pub.reply = reply;
    r = sb_publish_ex(c, &pub);
    if (r < 0) {
        client_end_request(c, slot);
        return r;
    }
    if (token != NULL) {
        *token = slot->token;
    }
    return 0;
}

static bool have_reply(const sb_client *c)
{
    for (size_t i = 0; i < c->nrequests; i++) {
        if (c->requests[i].token == c->wait_token) {
            return c->requests[i].done;
        }
    }
    return true; /* not in flight: nothing to wait for */
}

SB_EXPORT int sb_request_wait(sb_client *c, uint32_t token, sb_msg *reply, int timeout_ms)
{
    if (client_find_request(c, token) == NULL) {
        return -ENOENT;
    }
    c->wait_token = token;
    int r = client_pump(c, have_reply, deadline_after(timeout_ms));
    /* The pump may have moved the slots: look the request up again. */
    struct client_request *req = client_find_request(c, token);
    if (!req->done || req->err != 0) {
        /* Timed out, refused or disconnected: forget it (a late reply
         * will be dropped). */
        int err = req->done ? req->err : r < 0 ? r : -ETIMEDOUT;
        client_end_request(c, req);
        return err;
    }
    /* Hand the reply out from a buffer that stays put until the next
     * reply, and give the slot the old one to reuse. */
    struct client_buf b = c->reply_held;
    c->reply_held = req->reply;
    req->reply = b;
    client_end_request(c, req);
    struct frame f;
    frame_parse(c->reply_held.data, frame_get_u32(c->reply_held.data), UINT32_MAX, &f);
    if (f.flags & FRAME_MSG_NO_RESPONDERS) {
        return SB_E_NO_RESPONDERS;
    }
    client_fill_msg(c, &f, reply);
    return 0;
}

SB_EXPORT int sb_request_ex(sb_client *c, const sb_pub *req, sb_msg *reply, int timeout_ms)
{
    uint32_t token;
    int r = sb_request_send(c, req, &token);
    if (r < 0) {
        return r;
    }
    return sb_request_wait(c, token, reply, timeout_ms);
}

SB_EXPORT int sb_request(sb_client *c, const char *subject, const void *data, size_t len,
                         sb_msg *reply, int timeout_ms)
{
    sb_pub pub = {.subject = subject, .payload = data, .payload_len = len};
    return sb_request_ex(c, &pub, reply, timeout_ms);
}
