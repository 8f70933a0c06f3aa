/*
 * conn.c - connections: reading frames, writing queues, and ending.
 *
 * Reading. All connections read into the net's one shared chunk (libuv
 * runs one read callback at a time), and every complete frame in it is
 * handed to the layer above in place, without a copy. Only the tail of an
 * incomplete frame is copied into the connection's own `in` buffer. Before
 * the next read, a small partial frame is copied back to the front of the
 * chunk and the read lands right behind it; only a frame larger than half a
 * chunk is assembled in `in`, which grows with what has arrived, never with
 * what a frame header claims: its capacity doubles only as bytes arrive,
 * so it stays within about four times what has arrived plus one chunk. A
 * size field is judged (16 <= size <= max_frame) as soon as its 4 bytes
 * are there.
 *
 * Fairness. A connection gets a slice of each loop iteration (schedule.h:
 * bytes of its frames plus the output they cause). Frames past it stay in
 * `in`, reading from that connection stops, and the connection is resumed
 * from the ready list in the next iteration, after everyone else has had
 * their turn. The same holding keeps a connection whose own output is over
 * net->backlog_max (its replies pile up unread: bus/flow.c) from handling
 * more until a write makes room: backpressure on that connection only.
 * The layer above may hold a connection the same way for the sake of
 * another (conn_pause(): a publisher waits for a lossless subscriber's
 * queue, bus/flow.c), and asks to hear when a queue has drained
 * (conn_watch_drain()).
 *
 * Writing. Output is appended to `out` and written once per loop iteration
 * by conn_flush(), called from the schedule's check handle: one write at
 * once, and if the socket takes less than all of it, the rest waits in
 * `wbuf` for the socket to be writable and new output goes to the other
 * buffer until it is all written. A small message is copied into `out`; the body of a
 * large one sent to several subscribers is shared (connbuf.h) and goes out
 * through the same writev as the bytes around it. Which messages are
 * queued and which dropped is not decided here (bus/flow.c); a DROPPED
 * notice for those dropped goes out with the next write.
 *
 * Text mode (docs/protocol.md, Text mode). A connection whose first four
 * bytes are printable ASCII cannot be sending a frame (its size would pass
 * any max_frame), so the frame parser refuses it as too large; only on
 * that error path is the layer above asked whether it is a text client
 * (conn_ops.text_begin). From then on its input is cut into lines
 * (conn_process_lines(), with the same slices and holding), and its output
 * is written as text (textout.c): one test of `text` per read and one per
 * write, none per message.
 *
 * Ending. conn_end() queues a fatal ERR, stops reading and closes the
 * connection once the flush has made one attempt to write it (or when a
 * write in flight has not completed CONN_DRAIN_MS later); conn_close()
 * closes at once. The handle's close callback releases the buffers and
 * hands the memory back to its owner (conn_ops.closed).
 *
 * The socket itself is the transport's (transport.h): libuv only says when
 * it is readable or writable (a uv_poll_t), and the transport's recv() and
 * send() move the bytes, with the descriptors that travel with them on a
 * Unix socket (fdpass.h). A message with descriptors starts a write of its
 * own, which carries them (connbuf_iov_cut()).
 *
 * Why one file of about 630 lines: reading, writing and ending move one
 * connection's state between them through a few helpers (pause, resume,
 * close) that would otherwise have to be public; what needs no connection
 * state has a file of its own (connbuf.c, schedule.c, transport.c).
 */
#include "conn.h"

#include "frame.h"
#include "log.h"
#include "text.h"
#include "textout.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONN_ERR_TEXT_MAX 256u

static void conn_consume_in(struct conn *c);
static void conn_poll_update(struct conn *c);
static void on_poll(uv_poll_t *h, int status, int events);

/* ---- output ------------------------------------------------------------- */

/* Append one frame to `out`, without asking for a flush: for conn_flush()
 * itself, which writes it in the same go. Returns 0 or -ENOMEM. */
static int conn_append(struct conn *c, uint8_t op, uint8_t flags, uint32_t sid, const void *subject,
                       size_t subject_len, const void *payload, size_t payload_len)
{
    size_t size = frame_encoded_size(subject_len, 0, 0, payload_len);
    if (connbuf_reserve(&c->out, size) < 0) {
        return -ENOMEM;
    }
    c->out.len += frame_encode(c->out.data + c->out.len, op, flags, sid, subject, subject_len, NULL,
                               0, NULL, 0, payload, payload_len);
    schedule_charge(&c->net->schedule, size);
    return 0;
}

int conn_queue_frame(struct conn *c, uint8_t op, uint8_t flags, uint32_t sid, const void *subject,
                     size_t subject_len, const void *payload, size_t payload_len)
{
    int r = conn_append(c, op, flags, sid, subject, subject_len, payload, payload_len);
    if (r == 0) {
        conn_mark_dirty(c);
    }
    return r;
}

void conn_note_dropped(struct conn *c)
{
    c->dropped_unreported++;
    conn_mark_dirty(c);
}

void conn_describe(const struct conn *c, char *buf, size_t len)
{
    c->transport->describe(c->opened ? c->fd : -1, c->has_cred ? &c->cred : NULL, buf, len);
}

void conn_queue_err_text(struct conn *c, uint32_t code, const void *subject, size_t subject_len,
                         const char *raw, size_t raw_len)
{
    if (!conn_takes_output(c)) {
        return;
    }
    /* The texts quote what the client sent (a subject, a pattern), which
     * may be any bytes: escaped, the ERR payload is UTF-8 as the protocol
     * promises and the log line stays one line. Our own words are printable
     * ASCII without a backslash, so they pass unchanged. */
    char text[CONN_ERR_TEXT_MAX];
    size_t len = text_escape(text, sizeof(text), raw, raw_len);
    if (log_level >= LOG_VERBOSE) {
        char peer[TRANSPORT_DESCRIBE_MAX];
        conn_describe(c, peer, sizeof(peer));
        log_verbose("client %llu (%s): ERR %u: %s", (unsigned long long)c->id, peer, code, text);
    }
    /* The ERR names the offending subject in full (docs/protocol.md, ERR),
     * even one too long to be valid; only max_frame, which bounds what we
     * send too, may cut it (max_frame >= BROKER_MAX_FRAME_MIN > header +
     * text). */
    size_t room = c->net->max_frame - FRAME_HEADER_SIZE - len;
    if (subject_len > room) {
        subject_len = room;
    }
    if (conn_queue_frame(c, FRAME_OP_ERR, 0, code, subject, subject_len, text, len) < 0) {
        conn_close(c);
    }
}

void conn_queue_err(struct conn *c, uint32_t code, const void *subject, size_t subject_len,
                    const char *fmt, ...)
{
    char raw[CONN_ERR_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    size_t raw_len = n < 0 ? 0 : (size_t)n >= sizeof(raw) ? sizeof(raw) - 1 : (size_t)n;
    conn_queue_err_text(c, code, subject, subject_len, raw, raw_len);
}

static void conn_read_stop(struct conn *c)
{
    if (c->reading) {
        c->reading = false;
        conn_poll_update(c);
    }
}

void conn_end(struct conn *c, uint32_t code, const char *text)
{
    if (text != NULL) {
        conn_queue_err(c, code, NULL, 0, "%s", text);
    }
    if (c->closing) {
        return;
    }
    /* Stop taking input; conn_flush() writes what is queued, then closes,
     * or the drain timer closes it if its peer does not take the write
     * within CONN_DRAIN_MS. */
    if (!c->draining) {
        c->draining = true;
        deadline_list_add(&c->net->draining, &c->drain);
        c->net->ops->ending(c);
    }
    conn_read_stop(c);
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
 * the frames it holds, in the next iteration, else by reading again. One
 * whose drain is watched says when its output has fallen to the mark. */
static void conn_maybe_resume(struct conn *c)
{
    if (c->watched && conn_takes_output(c) && conn_pending(c) <= c->net->drain_mark) {
        c->watched = false;
        c->net->ops->drained(c); /* may unpause others, or end c */
    }
    if (!conn_takes_output(c) || c->paused || conn_pending(c) > c->net->backlog_max) {
        return;
    }
    if (c->held) {
        schedule_mark_ready(&c->net->schedule, &c->ready);
    } else if (!c->reading) {
        conn_read_start(c);
    }
}

/* Write what `b` holds from byte `skip` on: one write (a message with
 * descriptors starts one of its own). Returns the bytes written or a
 * negative errno. */
static ssize_t conn_send(struct conn *c, struct conn_buf *b, size_t skip)
{
    struct connbuf_iov *iov = &c->net->iov;
    int n = connbuf_iov(b, skip, iov);
    if (n <= 0) {
        return n;
    }
    /* writev() takes at most IOV_MAX entries; the next write carries on
     * from wherever this one stopped. */
    n = n < IOV_MAX ? n : IOV_MAX;
    const int *fds = NULL;
    uint32_t nfds = 0;
    if (b->marks_sent < b->nmarks) {
        n = connbuf_iov_cut(b, skip, iov, n, &fds, &nfds);
    }
    /* uv_buf_t is laid out as struct iovec on Unix. */
    ssize_t r = c->transport->send(c->fd, (const struct iovec *)iov->v, n, fds, nfds);
    if (r > 0 && nfds > 0) {
        b->marks_sent++; /* they went with the first byte */
    }
    return r;
}

/* All of `wbuf` is written. */
static void on_write(struct conn *c)
{
    c->writing = false;
    connbuf_clear(&c->wbuf);
    c->wbuf_off = 0;
    conn_poll_update(c);
    /* The queue has room again: DROPPED goes out now, and a connection that
     * was paused for its backlog reads again. */
    if (c->out.len > 0 || c->dropped_unreported > 0 || c->draining) {
        conn_mark_dirty(c);
    }
    conn_maybe_resume(c);
}

/* Write what is queued: one attempt now, the rest once the socket is writable. */
static void conn_flush(struct conn *c)
{
    if (c->closing) {
        return;
    }
    if (c->writing) {
        /* on_write() marks it dirty again; a draining peer that never
         * takes its write is closed by the drain timer. */
        return;
    }
    if (c->dropped_unreported > 0 && !c->draining) {
        conn_append_dropped(c);
    }
    /* The one place a text-mode connection costs the others anything: its
     * frames become lines here, once per write (textout.h). */
    if (c->text && textout_encode(&c->out) < 0) {
        conn_close(c);
        return;
    }
    size_t total = c->out.len + c->out.seg_bytes;
    size_t written = 0;
    if (total > 0) {
        /* One writev for the whole queue: own bytes and shared bodies. */
        ssize_t n = conn_send(c, &c->out, 0);
        if (n < 0 && n != -EAGAIN) {
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
        connbuf_clear(&c->out);
        conn_maybe_resume(c);
        return;
    }
    /* The socket is full (or the write stopped at a message with
     * descriptors): the rest waits for the socket to be writable, and the
     * other buffer fills meanwhile. The bytes not written keep counting as
     * pending. */
    struct conn_buf tmp = c->wbuf;
    c->wbuf = c->out;
    c->wbuf_off = written; /* no memmove of what is left: write from here */
    c->out = tmp;
    c->writing = true;
    conn_poll_update(c);
    /* What was written may have taken the queue down to the drain mark. */
    conn_maybe_resume(c);
}

/* The socket is writable: go on with `wbuf`. Each write that leaves some
 * of it lets a paused connection, or a drain that is watched, look at
 * what is pending now: a lossless subscriber that reads releases its
 * publishers once its queue is at the mark, not once all of `wbuf` is
 * written. */
static void conn_write_more(struct conn *c)
{
    while (c->writing && !c->closing) {
        ssize_t n = conn_send(c, &c->wbuf, c->wbuf_off);
        if (n == -EAGAIN) {
            conn_maybe_resume(c);
            return;
        }
        if (n < 0) {
            conn_close(c); /* the peer is gone */
            return;
        }
        c->wbuf_off += (size_t)n;
        if (c->wbuf_off == c->wbuf.len + c->wbuf.seg_bytes) {
            on_write(c);
            return;
        }
    }
}

void conn_pause(struct conn *c)
{
    /* Its slice is used up: conn_process() stops before its next frame,
     * with no test of its own per frame; and it no longer reads. The
     * schedule gives it a fresh slice only once conn_unpause() puts it
     * back on the ready list (or reading). */
    c->paused = true;
    c->slice.iteration = c->net->schedule.iteration;
    c->slice.used = SCHEDULE_SLICE;
    conn_read_stop(c);
}

void conn_unpause(struct conn *c)
{
    c->paused = false;
    conn_maybe_resume(c);
}

void conn_discard_output(struct conn *c)
{
    connbuf_clear(&c->out);
}

/* ---- frames ------------------------------------------------------------- */

/* May `c` handle another frame now? Not once it has used up its slice of
 * this loop iteration, nor while its own output is over backlog_max (its
 * replies would pile up unread). */
static bool conn_may_go_on(struct conn *c)
{
    return schedule_slice_left(&c->net->schedule, &c->slice) &&
           conn_pending(c) <= c->net->backlog_max;
}

/*
 * Text mode: hand the complete lines in buf[0..len) to the layer above,
 * like conn_process() does frames (the same slice, the same holding). A
 * line, "\n" included, is at most max_frame bytes; a longer one ends the
 * connection with ERR 2 as soon as that many bytes without a "\n" are
 * there. Each pass looks for the "\n" from the start of the partial line
 * again: at most max_frame bytes, a few times over.
 */
__attribute__((noinline)) static size_t conn_process_lines(struct conn *c, const uint8_t *buf,
                                                           size_t len)
{
    struct net *n = c->net;
    size_t off = 0;
    c->held = false;
    while (conn_takes_output(c) && off < len) {
        size_t left = len - off;
        size_t look = left < n->max_frame ? left : n->max_frame;
        const uint8_t *nl = memchr(buf + off, '\n', look);
        if (nl == NULL) {
            if (left >= n->max_frame) {
                char text[96];
                snprintf(text, sizeof(text), "line of more than max_frame (%u) bytes",
                         n->max_frame);
                conn_end(c, FRAME_ERR_TOO_LARGE, text);
            }
            break;
        }
        if (!conn_may_go_on(c)) {
            c->held = true;
            break;
        }
        size_t size = (size_t)(nl - (buf + off)) + 1;
        size_t line = size - 1;
        if (line > 0 && buf[off + line - 1] == '\r') {
            line--;
        }
        uint64_t work = n->schedule.work;
        n->ops->text_line(c, buf + off, line);
        c->slice.used += size + (size_t)(n->schedule.work - work);
        off += size;
    }
    return off;
}

/*
 * A frame that cannot be parsed at buf[off..len): either the first line
 * of a text-mode connection (four printable bytes, before any frame: the
 * layer above decides, conn_ops.text_begin), whose lines are then handled
 * here, or the end of the connection, with why in one line. Returns the
 * bytes consumed. Out of line, and given buf, off and len as the loop of
 * conn_process_frames() holds them anyway: that loop keeps its registers
 * whatever text mode needs (buf + off and len - off kept across its call
 * of frame_parse() cost 4 instructions a frame).
 */
__attribute__((noinline)) static size_t conn_refuse_frame(struct conn *c, const uint8_t *buf,
                                                          size_t off, size_t len, int err)
{
    const uint8_t *p = buf + off;
    len -= off;
    if (err == -EMSGSIZE && len >= 4 && frame_text_start(p) && c->net->ops->text_begin != NULL) {
        c->text = true;
        if (c->net->ops->text_begin(c)) {
            return conn_process_lines(c, p, len);
        }
        c->text = false;
    }
    if (err == -EMSGSIZE) {
        char text[96];
        snprintf(text, sizeof(text), "frame of %u bytes exceeds max_frame (%u)", frame_get_u32(p),
                 c->net->max_frame);
        conn_end(c, FRAME_ERR_TOO_LARGE, text);
        return 0;
    }
    conn_end(c, FRAME_ERR_PROTOCOL,
             frame_get_u32(p) < FRAME_MIN_SIZE ? "frame size below 16"
             : frame_op_known(p[4])            ? "frame lengths overrun the frame"
                                               : "unknown op");
    return 0;
}

/*
 * Hand the complete frames in buf[0..len) to the layer above while
 * conn_may_go_on(). Returns the bytes consumed; sets `held` when whole
 * frames are left for later. Stops early when the connection ends.
 */
static size_t conn_process_frames(struct conn *c, const uint8_t *buf, size_t len)
{
    struct net *n = c->net;
    size_t off = 0;
    c->held = false;
    c->frames_end = buf + len;
    while (conn_takes_output(c)) {
        struct frame f;
        int r = frame_parse(buf + off, len - off, n->max_frame, &f);
        if (r == FRAME_NEED_MORE) {
            break;
        }
        if (r < 0) {
            off += conn_refuse_frame(c, buf, off, len, r);
            break;
        }
        if (!conn_may_go_on(c)) {
            c->held = true;
            break;
        }
        uint64_t work = n->schedule.work;
        n->ops->frame(c, &f);
        c->slice.used += f.size + (size_t)(n->schedule.work - work);
        off += f.size;
    }
    c->frames_end = NULL;
    return off;
}

/* The frames, or the lines of a text-mode connection, in buf[0..len):
 * one test per read. The layer above is told when it must let go of
 * them (conn_ops.frames_done). */
static size_t conn_process(struct conn *c, const uint8_t *buf, size_t len)
{
    size_t used = c->text ? conn_process_lines(c, buf, len) : conn_process_frames(c, buf, len);
    if (c->net->ops->frames_done != NULL) {
        c->net->ops->frames_done(c);
    }
    return used;
}

/*
 * After conn_process(): a connection that holds frames stops reading until
 * they are handled, in the next iteration or, when its own output is over
 * backlog_max, once a write has made room (conn_maybe_resume()). One whose
 * output is over backlog_max stops reading too.
 */
static void conn_after_process(struct conn *c)
{
    if (!conn_takes_output(c)) {
        return;
    }
    bool full = conn_pending(c) > c->net->backlog_max;
    if (c->held || full || c->paused) {
        conn_read_stop(c);
    }
    if (c->held && !full && !c->paused) {
        schedule_mark_ready(&c->net->schedule, &c->ready);
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
    size_t step = c->in.len > NET_READ_CHUNK ? c->in.len : NET_READ_CHUNK;
    return missing < step ? missing : step;
}

/* Does the partial frame in `in` fit in the shared chunk with room to
 * spare? Then it is read there (see on_alloc()). */
static bool conn_in_small(const struct conn *c)
{
    return c->in.len < 4 || frame_get_u32(c->in.data) <= NET_READ_CHUNK / 2;
}

static void on_alloc(struct conn *c, uv_buf_t *buf)
{
    uint8_t *chunk = c->net->read_chunk;
    if (c->in.len == 0) {
        *buf = uv_buf_init((char *)chunk, NET_READ_CHUNK);
        return;
    }
    if (conn_in_small(c)) {
        /* Put the head of the frame in front of the chunk and read the rest
         * behind it: a stream of small frames that happens to straddle
         * reads keeps reading whole chunks. `in` keeps its copy until the
         * read has succeeded. */
        memcpy(chunk, c->in.data, c->in.len);
        *buf = uv_buf_init((char *)chunk + c->in.len, NET_READ_CHUNK - (unsigned)c->in.len);
        return;
    }
    /* A large frame: assemble it in `in`, growing with what arrives. */
    size_t want = conn_in_want(c);
    if (want == 0 || connbuf_reserve(&c->in, want) < 0) {
        *buf = uv_buf_init(NULL, 0); /* UV_ENOBUFS in on_read */
        return;
    }
    *buf = uv_buf_init((char *)c->in.data + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

/* Keep the tail of an incomplete frame for the next read. */
static void conn_keep_partial(struct conn *c, const uint8_t *p, size_t len)
{
    if (connbuf_reserve(&c->in, len) < 0) {
        conn_close(c);
        return;
    }
    memcpy(c->in.data + c->in.len, p, len);
    c->in.len += len;
}

/* A peer sent descriptors that no frame claims, more than the bound; or
 * some were lost on the way in (this process is out of descriptors). */
static void conn_fdq_refuse(struct conn *c)
{
    if (c->fdq.lost) {
        conn_end(c, FRAME_ERR_LIMIT,
                 "file descriptors sent were lost: the broker is out of descriptors; try again "
                 "later");
        return;
    }
    char text[128];
    snprintf(text, sizeof(text),
             "more than %u file descriptors sent and not claimed by a PUB with FDS; send each "
             "message's descriptors with its PUB",
             c->net->fdq_max);
    conn_end(c, FRAME_ERR_PROTOCOL, text);
}

/* Is one of the descriptors that came with the last read, those after
 * the first `had` of the queue, a connection to this broker? */
static bool conn_fdq_has_own(const struct conn *c, uint32_t had)
{
    for (uint32_t i = had; i < c->fdq.len; i++) {
        if (fdpass_is_own_connection(&c->net->own, c->fdq.fds[c->fdq.head + i])) {
            return true;
        }
    }
    return false;
}

static void on_read(struct conn *c, ssize_t nread, const uv_buf_t *buf)
{
    if (nread <= 0) {
        if (nread < 0) {
            log_verbose("client %llu: read failed: %s", (unsigned long long)c->id,
                        strerror((int)-nread));
        }
        conn_close(c);
        return;
    }
    if (c->closing) {
        return;
    }
    if (c->fdq.len > c->net->fdq_max || c->fdq.lost) {
        conn_fdq_refuse(c);
        return;
    }
    uint8_t *chunk = c->net->read_chunk;
    const uint8_t *data = (const uint8_t *)buf->base;
    if (data >= chunk && data < chunk + NET_READ_CHUNK) {
        /* In the chunk, behind the partial frame on_alloc() put there. */
        size_t len = (size_t)(data - chunk) + (size_t)nread;
        c->in.len = 0;
        /* conn_process() has judged the size of a partial frame already.
         * What it left (a partial frame, or frames it holds for later) is
         * kept in `in`: the chunk belongs to the next read. */
        size_t used = conn_process(c, chunk, len);
        if (conn_takes_output(c) && used < len) {
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
    if (!conn_takes_output(c)) {
        return;
    }
    memmove(c->in.data, c->in.data + used, c->in.len - used);
    c->in.len -= used;
    conn_after_process(c);
}

/* The frames a connection on the ready list holds, with a fresh slice. */
static void conn_resume(struct conn *c)
{
    if (!conn_takes_output(c) || c->paused) {
        return;
    }
    conn_consume_in(c);
    if (!c->held) {
        conn_maybe_resume(c); /* all handled: read again */
    }
}

void conn_read_start(struct conn *c)
{
    c->reading = true;
    conn_poll_update(c);
}

/* Reads per readiness event at most, as libuv's streams do: a connection
 * that always has more does not keep the loop to itself. */
#define CONN_READS_PER_EVENT 32

/* The socket is readable: read until it has no more, up to
 * CONN_READS_PER_EVENT times, handling the frames of each read. */
static void conn_read_ready(struct conn *c)
{
    for (int i = 0; i < CONN_READS_PER_EVENT && c->reading && !c->closing; i++) {
        uv_buf_t buf;
        on_alloc(c, &buf);
        if (buf.len == 0) {
            conn_close(c); /* out of memory for a large frame */
            return;
        }
        uint32_t had = c->fdq.len;
        ssize_t n = c->transport->recv(c->fd, buf.base, buf.len, &c->fdq);
        if (n == -EAGAIN) {
            return;
        }
        if (c->fdq.len > had && conn_fdq_has_own(c, had)) {
            conn_end(c, FRAME_ERR_PROTOCOL,
                     "a file descriptor of a connection to this broker was sent; the broker "
                     "holds none");
            return;
        }
        on_read(c, n, &buf);
        if (n > 0 && (size_t)n < buf.len) {
            return; /* the socket had no more */
        }
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct conn *c = h->data;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (events & UV_WRITABLE) {
        conn_write_more(c);
    }
    if ((events & (UV_READABLE | UV_DISCONNECT)) && c->reading) {
        conn_read_ready(c);
    }
}

/* Ask the poll handle for what the connection waits for now. */
static void conn_poll_update(struct conn *c)
{
    if (c->closing || !c->opened) {
        return;
    }
    int events = (c->reading ? UV_READABLE : 0) | (c->writing ? UV_WRITABLE : 0);
    if (events == c->poll_events) {
        return;
    }
    int r = events == 0 ? uv_poll_stop(&c->h.poll) : uv_poll_start(&c->h.poll, events, on_poll);
    if (r < 0) {
        conn_close(c);
        return;
    }
    c->poll_events = events;
}

/* ---- lifecycle ---------------------------------------------------------- */

static void net_close_handles(struct net *n)
{
    schedule_close(&n->schedule);
    deadline_list_close(&n->draining);
    if (n->close_cb != NULL) {
        net_close_cb *cb = n->close_cb;
        n->close_cb = NULL;
        cb(n);
    }
}

static void conn_closed(struct conn *c)
{
    struct net *n = c->net;
    list_unlink(&c->all);
    n->nconns--;
    /* conn_close() took it off every other list, and nothing links a
     * closing connection again (conn_mark_dirty(), conn_after_process()). */
    assert(!list_linked(&c->dirty) && !list_linked(&c->ready) && !deadline_linked(&c->drain));
    if (c->opened) {
        close(c->fd); /* the poll handle is closed: nothing watches it */
    }
    fdq_free(&c->fdq);
    connbuf_free(&c->in);
    connbuf_free(&c->out);
    connbuf_free(&c->wbuf);
    n->ops->closed(c); /* c may be gone from here on */
    if (n->closing && n->nconns == 0) {
        net_close_handles(n);
    }
}

static void on_close(uv_handle_t *h)
{
    conn_closed(h->data);
}

void conn_close(struct conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    c->reading = false;
    /* Off the timed list now: its timer must never see it again. */
    deadline_list_remove(&c->drain);
    c->net->ops->closing(c);
    /* Off the flush and ready lists now: it is freed in on_close, possibly
     * before the next walk of either. */
    list_unlink(&c->dirty);
    list_unlink(&c->ready);
    if (c->opened) {
        uv_close(&c->h.handle, on_close);
    } else {
        conn_closed(c); /* no handle to wait for */
    }
}

int conn_init(struct conn *c, struct net *n, const struct transport_ops *transport)
{
    memset(c, 0, sizeof(*c));
    c->net = n;
    c->transport = transport;
    list_init(&c->all);
    list_init(&c->dirty);
    list_init(&c->ready);
    c->fd = -1;
    c->id = ++n->next_id;
    list_append(&n->conns, &c->all);
    n->nconns++;
    return 0;
}

int conn_open(struct conn *c, int fd)
{
    int r = uv_poll_init_socket(c->net->loop, &c->h.poll, fd);
    if (r < 0) {
        return r;
    }
    c->h.handle.data = c;
    c->fd = fd;
    c->opened = true;
    c->has_cred = c->transport->credentials(fd, &c->cred) == 0;
    c->transport->tune(fd, c->net->unix_send_buffer, &c->net->sndbuf_checked);
    return 0;
}

int conn_fd(const struct conn *c)
{
    return c->opened ? c->fd : -1;
}

static void conn_drain_expired(struct deadline_link *drain, void *data)
{
    (void)data;
    conn_close(list_entry(drain, struct conn, drain));
}

static void conn_flush_link(struct list_link *dirty)
{
    conn_flush(list_entry(dirty, struct conn, dirty));
}

static void conn_resume_link(struct list_link *ready)
{
    conn_resume(list_entry(ready, struct conn, ready));
}

void net_init(struct net *n, uv_loop_t *loop, const struct conn_ops *ops, uint32_t max_frame)
{
    n->loop = loop;
    n->ops = ops;
    n->max_frame = max_frame;
    n->fdq_max = 0;
    n->unix_send_buffer = 0; /* the kernel's default */
    n->sndbuf_checked = (struct transport_sndbuf_checked){0};
    n->own.n = 0;
    n->backlog_max = UINT64_MAX;
    n->drain_mark = 0;
    n->nconns = 0;
    n->next_id = 0;
    n->iov = (struct connbuf_iov){0};
    n->close_cb = NULL;
    n->closing = false;
    list_init(&n->conns);
    schedule_init(&n->schedule, loop, conn_flush_link, conn_resume_link);
    deadline_list_init(&n->draining, loop, CONN_DRAIN_MS, conn_drain_expired, NULL);
}

void net_close(struct net *n, net_close_cb *cb)
{
    if (n->closing) {
        return;
    }
    n->closing = true;
    n->close_cb = cb;
    /* Every client gets ERR 9: one attempt to write it, after any write
     * still in flight, then it is closed. A write in flight is waited for at
     * most CONN_DRAIN_MS: a peer that does not read cannot hold the
     * broker. */
    struct list_link *l;
    for (l = n->conns.next; l != &n->conns; l = l->next) {
        conn_end(list_entry(l, struct conn, all), FRAME_ERR_SHUTDOWN, "broker shutting down");
    }
    if (n->nconns == 0) {
        net_close_handles(n);
    }
}

void net_deinit(struct net *n)
{
    free(n->iov.v);
    n->iov = (struct connbuf_iov){0};
}

void net_trim(struct net *n)
{
    for (struct list_link *l = n->conns.next; l != &n->conns; l = l->next) {
        struct conn *c = list_entry(l, struct conn, all);
        connbuf_trim(&c->out); /* only when empty: no shared bodies then */
        if (!c->writing) {
            connbuf_trim(&c->wbuf);
        }
        connbuf_trim(&c->in);
    }
}
