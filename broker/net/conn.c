/*
 * conn.c - a client connection: reading frames, dispatching them, and
 * queueing output.
 *
 * Reading. All connections read into the broker's one shared chunk
 * (libuv runs one read callback at a time), and every complete frame in it
 * is handled in place, without a copy. Only the tail of an incomplete frame
 * is copied into the connection's own `in` buffer. Before the next read, a
 * small partial frame is copied back to the front of the chunk and the read
 * lands right behind it; only a frame larger than half a chunk is assembled
 * in `in`, which grows with what has arrived, never with what a frame
 * header claims: its capacity doubles only as bytes arrive, so it stays
 * within about four times what has arrived plus one chunk. A size
 * field is judged (16 <= size <= max_frame) as soon as its 4 bytes are
 * there.
 *
 * Fairness. A connection gets a slice of each loop iteration (CONN_SLICE:
 * bytes of its frames plus the output they cause). Frames past it stay in
 * `in`, reading from that connection stops, and the connection is resumed
 * from the broker's ready list in the next iteration, after everyone else
 * has had their turn: one client's expensive requests ($SYS answers, big
 * fan-outs) cannot hold the loop. The same holding keeps a connection
 * whose own replies pile up (output over max_pending) from handling more
 * until a write makes room.
 *
 * Writing. Output is appended to `out` and written once per loop iteration
 * by conn_flush(), called from the broker's check handle: first with
 * uv_try_write(), and if the socket takes less than all of it, the rest is
 * handed to uv_write() and new output goes to the other buffer until the
 * write completes. A small message is copied into `out`; the body of a
 * large one sent to several subscribers is copied once into a shared,
 * reference-counted buffer that each queue points to, and goes out through
 * the same writev as the bytes around it. `out` plus the in-flight buffer never exceeds
 * max_pending for messages: a MSG that does not fit is dropped for this
 * connection only, counted, and reported with DROPPED as soon as the write
 * in flight completes. Replies to the client's own requests (PONG, ERR) are
 * never dropped; instead, reading from a connection stops while its queue
 * is over max_pending, so a client that sends PINGs but never reads can
 * only block itself.
 */
#include "conn.h"

#include "acl.h"
#include "array.h"
#include "broker.h"
#include "frame.h"
#include "hello.h"
#include "log.h"
#include "router.h"
#include "sockbus.h"
#include "sys.h"
#include "text.h"
#include "version.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Buffers up to this size stay with a connection for good; larger ones
 * (a burst) are kept while busy, since freeing and faulting in megabytes
 * every loop iteration costs more than the copying, and given back by
 * conn_trim() once they sit empty. */
#define CONN_BUF_KEEP     (64u * 1024u)
#define CONN_ERR_TEXT_MAX 256u

/* Send buffer of the broker's end of a Unix connection (the default is
 * about 200 KiB). Measured with `sockbus bench thru fanout -z 128 -T
 * unix,tcp -n 3`, twice each: 1 MiB gave fanout 1->4 over unix 19.3M and
 * 19.6M msgs/s against 17.6M and 17.1M with the default, thru unchanged
 * (11.3M-11.5M). */
#define CONN_UNIX_SNDBUF (1024 * 1024)

static void conn_read_start(struct conn *c);
static void conn_consume_in(struct conn *c);

/* ---- buffers ------------------------------------------------------------ */

/* A buffer's first allocation; it doubles from there. */
#define CONN_BUF_MIN 4096u

static int buf_reserve(struct conn_buf *b, size_t need)
{
    return array_reserve(b->data, b->cap, b->len, need, CONN_BUF_MIN);
}

struct conn_shared *conn_shared_new(const struct frame *pub)
{
    uint32_t len = pub->size - FRAME_HEADER_SIZE;
    struct conn_shared *body = malloc(sizeof(*body) + len);
    if (body != NULL) {
        body->refs = 0;
        body->len = len;
        memcpy(body->data, pub->subject, len);
    }
    return body;
}

void conn_shared_release(struct conn_shared *body)
{
    if (body != NULL && (body->refs == 0 || --body->refs == 0)) {
        free(body);
    }
}

/* Drop the buffer's references to shared bodies. */
static void buf_release_segs(struct conn_buf *b)
{
    for (size_t i = 0; i < b->nsegs; i++) {
        conn_shared_release(b->segs[i].body);
    }
    b->nsegs = 0;
    b->seg_bytes = 0;
}

/* Empty the buffer, keeping its memory. */
static void buf_clear(struct conn_buf *b)
{
    buf_release_segs(b);
    b->len = 0;
}

static void buf_free(struct conn_buf *b)
{
    buf_release_segs(b);
    free(b->segs);
    free(b->data);
    *b = (struct conn_buf){0};
}

static int buf_add_seg(struct conn_buf *b, struct conn_shared *body)
{
    if (array_reserve(b->segs, b->segs_cap, b->nsegs, 1, 8) < 0) {
        return -ENOMEM;
    }
    body->refs++;
    b->segs[b->nsegs++] = (struct conn_seg){.at = b->len, .body = body};
    b->seg_bytes += body->len;
    return 0;
}

/*
 * Describe what `b` holds after its first `skip` bytes as iovecs in the
 * broker's reusable array (*iov). Returns the number of entries, or -ENOMEM.
 */
static int buf_iov(struct broker *b, const struct conn_buf *q, size_t skip, uv_buf_t **iov)
{
    if (array_reserve(b->iov, b->iov_cap, 0, 2 * q->nsegs + 1, 16) < 0) {
        return -ENOMEM;
    }
    int n = 0;
    size_t pos = 0;
    for (size_t i = 0; i <= q->nsegs; i++) {
        size_t end = i < q->nsegs ? q->segs[i].at : q->len;
        const uint8_t *parts[2] = {q->data + pos, i < q->nsegs ? q->segs[i].body->data : NULL};
        size_t lens[2] = {end - pos, i < q->nsegs ? q->segs[i].body->len : 0};
        for (int k = 0; k < 2; k++) {
            size_t len = lens[k];
            const uint8_t *p = parts[k];
            if (skip >= len) {
                skip -= len;
                continue;
            }
            b->iov[n++] = uv_buf_init((char *)p + skip, (unsigned)(len - skip));
            skip = 0;
        }
        pos = end;
    }
    *iov = b->iov;
    return n;
}

static void buf_trim(struct conn_buf *b)
{
    if (b->len == 0 && b->cap > CONN_BUF_KEEP) {
        buf_free(b);
    }
}

void conn_trim(struct conn *c)
{
    buf_trim(&c->out); /* only when empty: no shared bodies then */
    if (!c->writing) {
        buf_trim(&c->wbuf);
    }
    buf_trim(&c->in);
}

/* ---- output ------------------------------------------------------------- */

static void conn_mark_dirty(struct conn *c)
{
    broker_mark_dirty(c->broker, c);
}

/* Append one frame to `out`, without asking for a flush: for conn_flush()
 * itself, which writes it in the same go. Returns 0 or -ENOMEM. */
static int conn_append(struct conn *c, uint8_t op, uint8_t flags, uint32_t sid, const void *subject,
                       size_t subject_len, const void *payload, size_t payload_len)
{
    size_t size = frame_encoded_size(subject_len, 0, 0, payload_len);
    if (buf_reserve(&c->out, size) < 0) {
        return -ENOMEM;
    }
    c->out.len += frame_encode(c->out.data + c->out.len, op, flags, sid, subject, subject_len, NULL,
                               0, NULL, 0, payload, payload_len);
    c->broker->work += size;
    return 0;
}

/* Append one frame and have it written at the end of this iteration.
 * Returns 0 or -ENOMEM. */
static int conn_queue(struct conn *c, uint8_t op, uint8_t flags, uint32_t sid, const void *subject,
                      size_t subject_len, const void *payload, size_t payload_len)
{
    int r = conn_append(c, op, flags, sid, subject, subject_len, payload, payload_len);
    if (r == 0) {
        conn_mark_dirty(c);
    }
    return r;
}

/* Queue a MSG header for `pub`, and its body: a reference to `body` when
 * given, else a copy (the one copy per subscriber of a small message). */
static bool conn_queue_msg_body(struct conn *c, uint32_t sid, uint8_t flags,
                                const struct frame *pub, struct conn_shared *body)
{
    struct broker *b = c->broker;
    if (c->draining || c->closing) {
        return false;
    }
    size_t own = body ? FRAME_HEADER_SIZE : pub->size;
    /* What this costs the slice of whoever caused it: the bytes queued, or
     * a header's worth for a message dropped. */
    b->work += own;
    if (conn_pending(c) + pub->size > b->cfg.max_pending || buf_reserve(&c->out, own) < 0) {
        c->dropped++;
        c->dropped_unreported++;
        b->stats.dropped++;
        conn_mark_dirty(c);
        return false;
    }
    uint8_t *p = c->out.data + c->out.len;
    frame_encode_header(p, pub->size, FRAME_OP_MSG, flags, pub->subject_len, pub->reply_len,
                        pub->header_len, sid);
    if (body == NULL) {
        memcpy(p + FRAME_HEADER_SIZE, pub->subject, pub->size - FRAME_HEADER_SIZE);
    }
    c->out.len += own;
    if (body != NULL && buf_add_seg(&c->out, body) < 0) {
        c->out.len -= own; /* take the header back: nothing was queued */
        c->dropped++;
        c->dropped_unreported++;
        b->stats.dropped++;
        conn_mark_dirty(c);
        return false;
    }
    c->msgs_out++;
    c->bytes_out += pub->size;
    b->stats.msgs_out++;
    b->stats.bytes_out += pub->size;
    conn_mark_dirty(c);
    return true;
}

bool conn_queue_msg(struct conn *c, uint32_t sid, uint8_t flags, const struct frame *pub)
{
    return conn_queue_msg_body(c, sid, flags, pub, NULL);
}

bool conn_queue_msg_shared(struct conn *c, uint32_t sid, uint8_t flags, const struct frame *pub,
                           struct conn_shared *body)
{
    return conn_queue_msg_body(c, sid, flags, pub, body);
}

void conn_queue_err(struct conn *c, uint32_t code, const void *subject, size_t subject_len,
                    const char *fmt, ...)
{
    char raw[CONN_ERR_TEXT_MAX];
    char text[CONN_ERR_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    if (c->draining || c->closing) {
        return;
    }
    /* The texts quote what the client sent (a subject, a pattern), which
     * may be any bytes: escaped, the ERR payload is UTF-8 as the protocol
     * promises and the log line stays one line. Our own words are printable
     * ASCII without a backslash, so they pass unchanged. */
    size_t raw_len = n < 0 ? 0 : (size_t)n >= sizeof(raw) ? sizeof(raw) - 1 : (size_t)n;
    size_t len = text_escape(text, sizeof(text), raw, raw_len);
    if (c->has_cred) {
        log_verbose("client %llu (pid %ld, uid %lu): ERR %u: %s", (unsigned long long)c->id,
                    (long)c->pid, (unsigned long)c->uid, code, text);
    } else {
        log_verbose("client %llu (tcp): ERR %u: %s", (unsigned long long)c->id, code, text);
    }
    /* The ERR names the offending subject in full (DESIGN §4), even one
     * too long to be valid; only max_frame, which bounds what we send too,
     * may cut it (max_frame >= BROKER_MAX_FRAME_MIN > header + text). */
    size_t room = c->broker->cfg.max_frame - FRAME_HEADER_SIZE - len;
    if (subject_len > room) {
        subject_len = room;
    }
    if (conn_queue(c, FRAME_OP_ERR, 0, code, subject, subject_len, text, len) < 0) {
        conn_close(c);
    }
}

void conn_end(struct conn *c, uint32_t code, const char *text)
{
    conn_queue_err(c, code, NULL, 0, "%s", text);
    if (c->closing) {
        return;
    }
    sys_unlist(c->broker, c);
    /* Stop taking input and leave the routing table now; conn_flush()
     * writes what is queued, then closes, or the drain timer closes it if
     * its peer does not take the write within CONN_DRAIN_MS. */
    if (!c->draining) {
        c->draining = true;
        /* No longer waiting for a HELLO: its slot among max_unwelcomed is
         * free, and the drain deadline replaces the HELLO deadline. */
        deadline_list_remove(&c->wait);
        deadline_list_add(&c->broker->draining, &c->drain);
    }
    if (c->reading) {
        uv_read_stop(&c->h.stream);
        c->reading = false;
    }
    router_remove_conn(c->broker, c);
    conn_mark_dirty(c);
}

/* Called by conn_flush() only, right before it writes: appending without
 * marking the connection dirty keeps a flush from putting its own
 * connection back on the list it is being flushed from. */
static void conn_append_dropped(struct conn *c)
{
    uint8_t count[8];
    frame_put_u64(count, c->dropped_unreported);
    if (conn_append(c, FRAME_OP_DROPPED, 0, 0, NULL, 0, count, sizeof(count)) == 0) {
        c->dropped_unreported = 0;
    }
}

/* A connection paused for its backlog goes on once the backlog fits: with
 * the frames it holds, in the next iteration, else by reading again. */
static void conn_maybe_resume(struct conn *c)
{
    if (c->draining || c->closing || conn_pending(c) > c->broker->cfg.max_pending) {
        return;
    }
    if (c->held) {
        broker_mark_ready(c->broker, c);
    } else if (!c->reading) {
        conn_read_start(c);
    }
}

static void on_write(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    c->writing = false;
    buf_clear(&c->wbuf);
    c->wbuf_off = 0;
    if (status < 0) {
        /* UV_ECANCELED: closing already. Otherwise the peer is gone. */
        conn_close(c);
        return;
    }
    /* The queue has room again: DROPPED goes out now, and a connection that
     * was paused for its backlog reads again. */
    if (c->out.len > 0 || c->dropped_unreported > 0 || c->draining) {
        conn_mark_dirty(c);
    }
    conn_maybe_resume(c);
}

void conn_flush(struct conn *c)
{
    if (c->closing) {
        return;
    }
    if (c->writing) {
        /* on_write() marks it dirty again; a draining peer that never
         * takes its write is closed by the broker's drain timer. */
        return;
    }
    if (c->dropped_unreported > 0 && !c->draining) {
        conn_append_dropped(c);
    }
    size_t total = c->out.len + c->out.seg_bytes;
    size_t written = 0;
    uv_buf_t *iov;
    if (total > 0) {
        /* One writev for the whole queue: own bytes and shared bodies. */
        int n = buf_iov(c->broker, &c->out, 0, &iov);
        if (n > 0) {
            /* writev() takes at most IOV_MAX entries; uv_write() below
             * carries on from wherever this one stopped. */
            n = uv_try_write(&c->h.stream, iov, (unsigned)(n < IOV_MAX ? n : IOV_MAX));
        }
        if (n < 0 && n != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        written = n > 0 ? (size_t)n : 0;
    }
    if (c->draining) {
        /* Best effort for the last words: a peer that does not read them
         * does not get to keep its connection open. */
        conn_close(c);
        return;
    }
    if (written == total) {
        buf_clear(&c->out);
        conn_maybe_resume(c);
        return;
    }
    /* The socket is full: hand the rest to libuv and fill the other buffer
     * meanwhile. The in-flight bytes keep counting toward max_pending. */
    struct conn_buf tmp = c->wbuf;
    c->wbuf = c->out;
    c->wbuf_off = written; /* no memmove of what is left: write from here */
    c->out = tmp;
    int n = buf_iov(c->broker, &c->wbuf, written, &iov);
    c->wreq.data = c;
    int r = n < 0 ? n : uv_write(&c->wreq, &c->h.stream, iov, (unsigned)n, on_write);
    if (r < 0) {
        conn_close(c);
        return;
    }
    c->writing = true;
}

/* ---- frames ------------------------------------------------------------- */

static uint32_t errno_to_err(int r)
{
    switch (r) {
    case -EINVAL:
        return FRAME_ERR_SUBJECT;
    case -EEXIST:
    case -ENOENT:
        return FRAME_ERR_SID;
    case -EACCES:
        return FRAME_ERR_PERMISSION;
    default:
        return FRAME_ERR_LIMIT; /* -EDQUOT, -ENOMEM */
    }
}

static void conn_send_welcome(struct conn *c)
{
    struct broker *b = c->broker;
    char inbox[64];
    snprintf(inbox, sizeof(inbox), "_INBOX.%llu.", (unsigned long long)c->id);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "protocol", json_object_new_int(SB_PROTOCOL_VERSION));
    json_object_object_add(o, "server", json_object_new_string(BROKER_NAME));
    json_object_object_add(o, "version", json_object_new_string(BROKER_VERSION));
    json_object_object_add(o, "client_id", json_object_new_int64((int64_t)c->id));
    json_object_object_add(o, "max_frame", json_object_new_int64(b->cfg.max_frame));
    /* Not in the contract, but it lets a client pace itself (a publisher
     * that stays within it never makes a reading subscriber lose). */
    json_object_object_add(o, "max_pending", json_object_new_int64((int64_t)b->cfg.max_pending));
    json_object_object_add(o, "inbox_prefix", json_object_new_string(inbox));
    size_t len;
    const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
    if (conn_queue(c, FRAME_OP_WELCOME, 0, 0, NULL, 0, s, len) < 0) {
        conn_close(c);
    }
    json_object_put(o);
}

/* HELLO: {"protocol":1,"name":"...","echo":true} (hello_parse()). */
static void conn_handle_hello(struct conn *c, const struct frame *f)
{
    struct broker *b = c->broker;
    /* Welcomed or refused below: either way no longer waiting. */
    deadline_list_remove(&c->wait);
    struct hello h;
    int r = hello_parse(f->payload, f->payload_len, &h);
    if (r == -EPROTO) {
        conn_end(c, FRAME_ERR_PROTOCOL, "invalid HELLO: expected a JSON object with \"protocol\"");
        return;
    }
    if (r == -EPROTONOSUPPORT) {
        conn_end(c, FRAME_ERR_VERSION, "unsupported protocol version: this broker speaks 1");
        return;
    }
    if (r == -EINVAL) {
        conn_end(c, FRAME_ERR_PROTOCOL,
                 "invalid HELLO: \"name\" must be a string, \"echo\" a boolean");
        return;
    }
    if (r < 0) {
        conn_close(c); /* -ENOMEM */
        return;
    }
    /* max_connections bounds the welcomed clients (see conn_accept()). */
    if (b->nclients >= b->cfg.max_connections) {
        char text[96];
        snprintf(text, sizeof(text), "max_connections (%u) reached; try again later",
                 b->cfg.max_connections);
        conn_end(c, FRAME_ERR_LIMIT, text);
        return;
    }
    if (sys_list(b, c) < 0) {
        conn_close(c); /* -ENOMEM */
        return;
    }
    c->name = h.has_name ? strdup(h.name) : NULL;
    c->echo = h.echo;
    c->hello_done = true;
    b->nclients++;
    conn_send_welcome(c);
    sys_event(b, c, true);
    /* The name is printable UTF-8 already (hello_parse()); escaped all the
     * same, like everything a client sends that reaches the log. */
    char name[TEXT_ESCAPE_MAX(HELLO_NAME_MAX)];
    text_escape(name, sizeof(name), h.name, strlen(h.name));
    if (c->has_cred) {
        log_verbose("client %llu connected: %s pid %ld uid %lu gid %lu name '%s'",
                    (unsigned long long)c->id, "unix", (long)c->pid, (unsigned long)c->uid,
                    (unsigned long)c->gid, name);
    } else {
        log_verbose("client %llu connected: tcp name '%s'", (unsigned long long)c->id, name);
    }
}

static void conn_handle_frame(struct conn *c, const struct frame *f)
{
    struct broker *b = c->broker;
    int r;
    c->bytes_in += f->size;
    b->stats.bytes_in += f->size;

    if (!c->hello_done) {
        if (f->op == FRAME_OP_HELLO) {
            conn_handle_hello(c, f);
        } else {
            conn_end(c, FRAME_ERR_HELLO_REQUIRED, "HELLO required before any other frame");
        }
        return;
    }
    switch (f->op) {
    case FRAME_OP_PUB:
        c->msgs_in++;
        b->stats.msgs_in++;
        r = router_publish(b, c, f);
        if (r == -EDQUOT) {
            conn_queue_err(c, FRAME_ERR_LIMIT, f->subject, f->subject_len,
                           "cannot retain '%.*s': max_retained_bytes (%llu) reached; it was "
                           "delivered but not stored",
                           (int)f->subject_len, (const char *)f->subject,
                           (unsigned long long)b->cfg.max_retained_bytes);
        } else if (r == -E2BIG) {
            conn_queue_err(c, FRAME_ERR_LIMIT, f->subject, f->subject_len,
                           "the answer to '%.*s' exceeds max_frame (%u); raise --max-frame",
                           (int)f->subject_len, (const char *)f->subject, b->cfg.max_frame);
        } else if (r == -EACCES) {
            b->stats.denied++;
            conn_queue_err(c, FRAME_ERR_PERMISSION, f->subject, f->subject_len,
                           "permission denied: cannot publish on '%.*s'", (int)f->subject_len,
                           (const char *)f->subject);
        } else if (r == -EPERM) {
            b->stats.denied++;
            conn_queue_err(c, FRAME_ERR_PERMISSION, f->subject, f->subject_len,
                           "permission denied: cannot use '%.*s' as a reply subject: %s",
                           (int)f->reply_len, (const char *)f->reply,
                           sys_subject(f->reply, f->reply_len)
                               ? "$SYS. subjects are the broker's own"
                               : "not your inbox and not a subject you may publish on");
        } else if (r < 0) {
            conn_queue_err(c, errno_to_err(r), f->subject, f->subject_len,
                           "cannot publish on '%.*s': %s", (int)f->subject_len,
                           (const char *)f->subject,
                           r == -EINVAL ? "invalid subject or reply subject" : strerror(-r));
        }
        break;
    case FRAME_OP_SUB:
        r = router_subscribe(b, c, f);
        if (r == -EDQUOT) {
            conn_queue_err(c, FRAME_ERR_LIMIT, f->subject, f->subject_len,
                           "cannot subscribe to '%.*s': max_subscriptions (%u) reached",
                           (int)f->subject_len, (const char *)f->subject, b->cfg.max_subscriptions);
        } else if (r == -ENOSPC) {
            conn_queue_err(c, FRAME_ERR_LIMIT, f->subject, f->subject_len,
                           "cannot subscribe to '%.*s': max_subscription_bytes (%llu) reached",
                           (int)f->subject_len, (const char *)f->subject,
                           (unsigned long long)b->cfg.max_subscription_bytes);
        } else if (r == -EEXIST) {
            conn_queue_err(c, FRAME_ERR_SID, f->subject, f->subject_len,
                           "cannot subscribe to '%.*s': sid %u is zero or in use",
                           (int)f->subject_len, (const char *)f->subject, f->sid);
        } else if (r == -EACCES) {
            b->stats.denied++;
            conn_queue_err(c, FRAME_ERR_PERMISSION, f->subject, f->subject_len,
                           "permission denied: cannot subscribe to '%.*s'", (int)f->subject_len,
                           (const char *)f->subject);
        } else if (r < 0) {
            conn_queue_err(c, errno_to_err(r), f->subject, f->subject_len,
                           "cannot subscribe to '%.*s': %s", (int)f->subject_len,
                           (const char *)f->subject,
                           r == -EINVAL ? "invalid pattern or queue group" : strerror(-r));
        }
        break;
    case FRAME_OP_UNSUB: {
        uint32_t max = f->payload_len >= 4 ? frame_get_u32(f->payload) : 0;
        r = router_unsubscribe(b, c, f->sid, max);
        if (r < 0) {
            conn_queue_err(c, FRAME_ERR_SID, NULL, 0, "cannot unsubscribe: unknown sid %u", f->sid);
        }
        break;
    }
    case FRAME_OP_PING:
        if (conn_queue(c, FRAME_OP_PONG, 0, f->sid, NULL, 0, NULL, 0) < 0) {
            conn_close(c);
        }
        break;
    case FRAME_OP_HELLO:
        conn_end(c, FRAME_ERR_PROTOCOL, "a second HELLO");
        break;
    default: {
        /* Ops only the broker sends (WELCOME, MSG, PONG, ...). */
        char text[64];
        snprintf(text, sizeof(text), "a client may not send %s (op 0x%02x)", frame_op_name(f->op),
                 f->op);
        conn_end(c, FRAME_ERR_PROTOCOL, text);
        break;
    }
    }
}

/* May `c` handle another frame now? Not while its own output is over
 * max_pending (its replies would pile up unread), nor once it has used up
 * its slice of this loop iteration. */
static bool conn_may_go_on(struct conn *c)
{
    struct broker *b = c->broker;
    if (c->slice_iter != b->iteration) {
        c->slice_iter = b->iteration;
        c->slice_used = 0;
    }
    return c->slice_used < CONN_SLICE && conn_pending(c) <= b->cfg.max_pending;
}

/*
 * Handle the complete frames in buf[0..len) while conn_may_go_on(). Returns
 * the bytes consumed; sets `held` when whole frames are left for later.
 * Stops early when the connection ends.
 */
static size_t conn_process(struct conn *c, const uint8_t *buf, size_t len)
{
    struct broker *b = c->broker;
    size_t off = 0;
    c->held = false;
    while (!c->draining && !c->closing) {
        struct frame f;
        int r = frame_parse(buf + off, len - off, b->cfg.max_frame, &f);
        if (r == FRAME_NEED_MORE) {
            break;
        }
        if (r == -EMSGSIZE) {
            char text[96];
            snprintf(text, sizeof(text), "frame of %u bytes exceeds max_frame (%u)",
                     frame_get_u32(buf + off), b->cfg.max_frame);
            conn_end(c, FRAME_ERR_TOO_LARGE, text);
            break;
        }
        if (r < 0) {
            conn_end(c, FRAME_ERR_PROTOCOL,
                     frame_get_u32(buf + off) < FRAME_MIN_SIZE ? "frame size below 16"
                     : frame_op_known(buf[off + 4])            ? "frame lengths overrun the frame"
                                                               : "unknown op");
            break;
        }
        if (!conn_may_go_on(c)) {
            c->held = true;
            break;
        }
        uint64_t work = b->work;
        conn_handle_frame(c, &f);
        c->slice_used += f.size + (size_t)(b->work - work);
        off += f.size;
    }
    return off;
}

/*
 * After conn_process(): a connection that holds frames stops reading until
 * they are handled, in the next iteration or, when its own output is over
 * max_pending, once a write has made room (conn_maybe_resume()). One whose
 * output is over max_pending stops reading too: backpressure on this
 * connection only.
 */
static void conn_after_process(struct conn *c)
{
    if (c->draining || c->closing) {
        return;
    }
    bool full = conn_pending(c) > c->broker->cfg.max_pending;
    if (c->reading && (c->held || full)) {
        uv_read_stop(&c->h.stream);
        c->reading = false;
    }
    if (c->held && !full) {
        broker_mark_ready(c->broker, c);
    }
}

/* ---- reading ------------------------------------------------------------ */

/* How much room `in` should have to receive more of the frame it holds:
 * the missing bytes, but never more than what has arrived plus a chunk. */
static size_t conn_in_want(const struct conn *c)
{
    if (c->in.len < 4) {
        return FRAME_HEADER_SIZE;
    }
    size_t size = frame_get_u32(c->in.data);
    size_t missing = size > c->in.len ? size - c->in.len : 0;
    size_t step = c->in.len > BROKER_READ_CHUNK ? c->in.len : BROKER_READ_CHUNK;
    return missing < step ? missing : step;
}

/* Does the partial frame in `in` fit in the shared chunk with room to
 * spare? Then it is read there (see on_alloc()). */
static bool conn_in_small(const struct conn *c)
{
    return c->in.len < 4 || frame_get_u32(c->in.data) <= BROKER_READ_CHUNK / 2;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    uint8_t *chunk = c->broker->read_chunk;
    (void)suggested;
    if (c->in.len == 0) {
        *buf = uv_buf_init((char *)chunk, BROKER_READ_CHUNK);
        return;
    }
    if (conn_in_small(c)) {
        /* Put the head of the frame in front of the chunk and read the rest
         * behind it: a stream of small frames that happens to straddle
         * reads keeps reading whole chunks. `in` keeps its copy until the
         * read has succeeded. */
        memcpy(chunk, c->in.data, c->in.len);
        *buf = uv_buf_init((char *)chunk + c->in.len, BROKER_READ_CHUNK - (unsigned)c->in.len);
        return;
    }
    /* A large frame: assemble it in `in`, growing with what arrives. */
    size_t want = conn_in_want(c);
    if (want == 0 || buf_reserve(&c->in, want) < 0) {
        *buf = uv_buf_init(NULL, 0); /* UV_ENOBUFS in on_read */
        return;
    }
    *buf = uv_buf_init((char *)c->in.data + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

/* Keep the tail of an incomplete frame for the next read. */
static void conn_keep_partial(struct conn *c, const uint8_t *p, size_t len)
{
    if (buf_reserve(&c->in, len) < 0) {
        conn_close(c);
        return;
    }
    memcpy(c->in.data + c->in.len, p, len);
    c->in.len += len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (nread < 0) {
        if (nread != UV_EOF) {
            log_verbose("client %llu: read failed: %s", (unsigned long long)c->id,
                        uv_strerror((int)nread));
        }
        conn_close(c);
        return;
    }
    if (nread == 0 || c->closing) {
        return;
    }
    uint8_t *chunk = c->broker->read_chunk;
    const uint8_t *data = (const uint8_t *)buf->base;
    if (data >= chunk && data < chunk + BROKER_READ_CHUNK) {
        /* In the chunk, behind the partial frame on_alloc() put there. */
        size_t len = (size_t)(data - chunk) + (size_t)nread;
        c->in.len = 0;
        /* conn_process() has judged the size of a partial frame already.
         * What it left (a partial frame, or frames it holds for later) is
         * kept in `in`: the chunk belongs to the next read. */
        size_t used = conn_process(c, chunk, len);
        if (!c->draining && !c->closing && used < len) {
            conn_keep_partial(c, chunk + used, len - used);
        }
        conn_after_process(c);
        return;
    }
    c->in.len += (size_t)nread;
    conn_consume_in(c);
}

/* Handle what `in` holds, and keep the rest at its front. */
static void conn_consume_in(struct conn *c)
{
    size_t used = conn_process(c, c->in.data, c->in.len);
    if (c->draining || c->closing) {
        return;
    }
    memmove(c->in.data, c->in.data + used, c->in.len - used);
    c->in.len -= used;
    conn_after_process(c);
}

void conn_resume(struct conn *c)
{
    if (c->draining || c->closing) {
        return;
    }
    conn_consume_in(c);
    if (!c->held) {
        conn_maybe_resume(c); /* all handled: read again */
    }
}

static void conn_read_start(struct conn *c)
{
    int r = uv_read_start(&c->h.stream, on_alloc, on_read);
    if (r < 0) {
        conn_close(c);
        return;
    }
    c->reading = true;
}

/* ---- lifecycle ---------------------------------------------------------- */

static void on_close(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct broker *b = c->broker;
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        b->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    b->nconns--;
    /* conn_close() took it off every list, and nothing links a closing
     * connection again (broker_mark_dirty(), broker_mark_ready()). */
    assert(!list_linked(&c->dirty) && !list_linked(&c->ready) && !deadline_linked(&c->wait) &&
           !deadline_linked(&c->drain));
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->wbuf);
    sidmap_deinit(&c->subs);
    free(c->name);
    free(c);
    broker_conn_closed(b);
}

void conn_close(struct conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    c->reading = false;
    /* Off the timed lists now: their timers must never see it again. */
    deadline_list_remove(&c->wait);
    deadline_list_remove(&c->drain);
    sys_unlist(c->broker, c);
    if (c->hello_done) {
        /* Announced while its object still shows what it had; `closing`
         * keeps the event from being queued to itself. */
        c->broker->nclients--;
        sys_event(c->broker, c, false);
    }
    router_remove_conn(c->broker, c);
    if (c->hello_done) {
        if (c->has_cred) {
            log_verbose("client %llu disconnected: pid %ld uid %lu", (unsigned long long)c->id,
                        (long)c->pid, (unsigned long)c->uid);
        } else {
            log_verbose("client %llu disconnected: tcp", (unsigned long long)c->id);
        }
    }
    /* Off the flush and ready lists now: it is freed in on_close, possibly
     * before the next walk of either. */
    list_unlink(&c->dirty);
    list_unlink(&c->ready);
    uv_close(&c->h.handle, on_close);
}

static void conn_read_cred(struct conn *c)
{
    uv_os_fd_t fd;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (uv_fileno(&c->h.handle, &fd) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        c->has_cred = true;
        c->pid = cred.pid;
        c->uid = cred.uid;
        c->gid = cred.gid;
    }
}

/* -v: a connection arrived (before HELLO: it has no name yet). */
static void conn_log_accepted(const struct conn *c)
{
    if (log_level < LOG_VERBOSE) {
        return;
    }
    uint32_t waiting = c->broker->unwelcomed.len;
    if (c->has_cred) {
        log_verbose("client %llu accepted: unix pid %ld uid %lu gid %lu; waiting for HELLO (%u "
                    "waiting)",
                    (unsigned long long)c->id, (long)c->pid, (unsigned long)c->uid,
                    (unsigned long)c->gid, waiting);
        return;
    }
    char addr[INET6_ADDRSTRLEN + 8] = "?";
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (c->transport == CONN_TCP &&
        uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
            char ip[INET6_ADDRSTRLEN];
            uv_ip6_name(in6, ip, sizeof(ip));
            snprintf(addr, sizeof(addr), "[%s]:%u", ip, ntohs(in6->sin6_port));
        } else {
            const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
            char ip[INET_ADDRSTRLEN];
            uv_ip4_name(in, ip, sizeof(ip));
            snprintf(addr, sizeof(addr), "%s:%u", ip, ntohs(in->sin_port));
        }
    }
    log_verbose("client %llu accepted: %s %s; waiting for HELLO (%u waiting)",
                (unsigned long long)c->id, c->transport == CONN_TCP ? "tcp" : "unix", addr,
                waiting);
}

void conn_accept(struct broker *b, int fd, enum conn_transport transport)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        log_error("cannot accept a connection: out of memory");
        close(fd);
        return;
    }
    c->broker = b;
    c->transport = transport;
    c->h.handle.data = c;
    list_init(&c->dirty);
    list_init(&c->ready);
    sidmap_init(&c->subs);
    int r = transport == CONN_UNIX ? uv_pipe_init(b->loop, &c->h.pipe, 0)
                                   : uv_tcp_init(b->loop, &c->h.tcp);
    if (r < 0) {
        log_error("cannot accept a connection: %s", uv_strerror(r));
        free(c);
        close(fd);
        return;
    }
    c->h.handle.data = c;
    c->id = ++b->next_client_id;
    c->next = b->conns;
    if (b->conns) {
        b->conns->prev = c;
    }
    b->conns = c;
    b->nconns++;

    r = transport == CONN_UNIX ? uv_pipe_open(&c->h.pipe, fd) : uv_tcp_open(&c->h.tcp, fd);
    if (r < 0) {
        log_error("cannot accept a connection: %s", uv_strerror(r));
        close(fd); /* not the handle's: it did not take it */
        conn_close(c);
        return;
    }
    if (transport == CONN_UNIX) {
        conn_read_cred(c);
        /* A Unix socket's send buffer is all a subscriber can have in
         * flight: a larger one means fewer, larger writes and wakeups.
         * Kernel memory, used only while data is queued. */
        int sndbuf = CONN_UNIX_SNDBUF;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    } else {
        uv_tcp_nodelay(&c->h.tcp, 1);
    }
    /* Permissions are decided once, here: a PUB only walks this rule. */
    struct acl_peer peer = {
        .tcp = transport == CONN_TCP, .has_cred = c->has_cred, .uid = c->uid, .gid = c->gid};
    c->acl_rule = acl_find_for_socket(b->cfg.acl, fd, &peer);
    /* Until its HELLO a connection costs a descriptor and nothing else,
     * and counts against max_unwelcomed, not max_connections: idle
     * sockets cannot keep real clients out, and hello_timeout_ms ends
     * them. */
    if (b->unwelcomed.len >= b->cfg.max_unwelcomed) {
        conn_end(c, FRAME_ERR_LIMIT, "too many connections waiting for HELLO; try again later");
        return;
    }
    deadline_list_add(&b->unwelcomed, &c->wait);
    conn_log_accepted(c);
    conn_read_start(c);
}

void conn_hello_expired(struct deadline_link *wait, void *data)
{
    struct conn *c = (struct conn *)((char *)wait - offsetof(struct conn, wait));
    (void)data;
    char text[96];
    snprintf(text, sizeof(text), "no HELLO within hello_timeout_ms (%u ms)",
             c->broker->cfg.hello_timeout_ms);
    conn_end(c, FRAME_ERR_HELLO_REQUIRED, text); /* logged at -v, as every ERR */
}

void conn_drain_expired(struct deadline_link *drain, void *data)
{
    struct conn *c = (struct conn *)((char *)drain - offsetof(struct conn, drain));
    (void)data;
    conn_close(c);
}
