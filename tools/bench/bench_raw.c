/*
 * bench_raw.c - the "raw" transports: the same frames a subscriber or a
 * requester would exchange with the broker, sent straight from one process
 * to another over a Unix socket pair or a TCP loopback connection, with no
 * broker between them. That is the ceiling the broker's rows are compared
 * with: what is left when routing costs nothing.
 *
 * The frames are made and read with the one implementation of the wire
 * format, frame_encode() and frame_parse() from libclient/wire/frame.h. The
 * sender encodes MSG frames, exactly as the broker would deliver them,
 * into a reused buffer and writes it in batches of the library's size
 * (BENCH_RAW_BATCH, like CLIENT_WBUF_SIZE); the receiver reads into a
 * reused buffer and parses every frame in place, checking the sequence
 * number as a subscriber does. The credit window (bench_shared.c) is the
 * same, so the raw rows measure the same pipeline minus the broker. For
 * rtt, a request goes out with one write and its reply comes back with one
 * read on blocking sockets: the least a round trip can cost.
 */
#include "bench.h"

#include "frame.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Output is batched into this much before a write, like the library. */
#define BENCH_RAW_BATCH (128u * 1024u)
/* Input buffer: a few batches per read. */
#define BENCH_RAW_READ (256u * 1024u)
/* The sid the raw "subscription" carries, as a broker would set it. */
#define BENCH_RAW_SID 1u
/* Send buffer of both ends of a Unix pair: what the library sets on its
 * end of a Unix connection and the broker on its own (unix_send_buffer's
 * default), so that raw and relay rows have the same room in flight as
 * the broker's rows. TCP sizes its buffers itself, for all rows alike. */
#define BENCH_RAW_UNIX_SNDBUF (1024 * 1024)

size_t bench_frame_size(const bench_job *job)
{
    size_t subject = strlen(job->subject) + (job->subjects > 0 ? BENCH_SCALE_SUFFIX_LEN : 0);
    return frame_encoded_size(subject, 0, 0, job->size);
}

int bench_raw_pair(bench_transport t, int fds[2])
{
    if (t == BENCH_RAW_UNIX || t == BENCH_RELAY_UNIX) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
            return -errno;
        }
        /* The kernel caps the size at net.core.wmem_max without an
         * error, as it does the broker's and the library's, so all rows
         * stay alike; an error here means the pair is unusable. */
        int sndbuf = BENCH_RAW_UNIX_SNDBUF;
        if (setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) < 0 ||
            setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) < 0) {
            int err = -errno;
            close(fds[0]);
            close(fds[1]);
            return err;
        }
        return 0;
    }

    struct sockaddr_in addr = {
        .sin_family = AF_INET,
        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        .sin_port = 0,
    };
    socklen_t alen = sizeof(addr);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int client = -1;
    int server = -1;
    int err = 0;

    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        listen(listener, 1) < 0 || getsockname(listener, (struct sockaddr *)&addr, &alen) < 0) {
        err = -errno;
        goto out;
    }
    client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* Loopback: the connect completes into the backlog, accept follows. */
    if (client < 0 || connect(client, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        err = -errno;
        goto out;
    }
    server = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (server < 0) {
        err = -errno;
        goto out;
    }
    /* Like the library: we batch ourselves, Nagle would only add delay. */
    int one = 1;
    if (setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
        err = -errno;
        goto out;
    }
    fds[0] = client;
    fds[1] = server;
    client = server = -1;
out:
    if (listener >= 0) {
        close(listener);
    }
    if (client >= 0) {
        close(client);
    }
    if (server >= 0) {
        close(server);
    }
    return err;
}

int bench_write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* A reused input buffer and what it holds: bytes [head, tail). */
typedef struct raw_input {
    uint8_t *buf;
    size_t cap;
    size_t head;
    size_t tail;
    uint32_t max_frame;
} raw_input;

static int raw_input_init(raw_input *in, size_t frame_size)
{
    size_t cap = BENCH_RAW_READ;
    while (cap < 2 * frame_size) {
        cap *= 2;
    }
    in->buf = malloc(cap);
    in->cap = cap;
    in->head = in->tail = 0;
    in->max_frame = frame_size > SB_MAX_FRAME_DEFAULT ? (uint32_t)frame_size : SB_MAX_FRAME_DEFAULT;
    return in->buf == NULL ? -ENOMEM : 0;
}

/* Read once (blocking) after moving what is left to the front. Returns the
 * bytes read, 0 at end of stream, or -errno. */
static ssize_t raw_input_read(raw_input *in, int fd)
{
    if (in->head > 0) {
        memmove(in->buf, in->buf + in->head, in->tail - in->head);
        in->tail -= in->head;
        in->head = 0;
    }
    for (;;) {
        ssize_t n = recv(fd, in->buf + in->tail, in->cap - in->tail, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        in->tail += (size_t)n;
        return n;
    }
}

/* The next whole frame in the buffer: 0 with *f, FRAME_NEED_MORE, or
 * -EPROTO / -EMSGSIZE. */
static int raw_input_next(raw_input *in, struct frame *f)
{
    int r = frame_parse(in->buf + in->head, in->tail - in->head, in->max_frame, f);
    if (r == 0) {
        in->head += f->size;
    }
    return r;
}

/* Read until one whole frame is there. Returns 0 with *f, or -1 after
 * bench_fail(). `who` names the peer for the error line. */
static int raw_read_frame(raw_input *in, int fd, struct frame *f, bench_shared *sh, const char *who)
{
    for (;;) {
        int r = raw_input_next(in, f);
        if (r == 0) {
            return 0;
        }
        if (r < 0) {
            return bench_fail(sh, "%s: received a malformed frame: %s", who, strerror(-r));
        }
        ssize_t n = raw_input_read(in, fd);
        if (n == 0) {
            return bench_fail(sh, "%s: the peer closed the connection", who);
        }
        if (n < 0) {
            return bench_fail(sh, "%s: cannot read from the peer: %s", who, strerror((int)-n));
        }
    }
}

/* The batch of a sender, written to every receiver's socket. */
typedef struct raw_output {
    uint8_t *buf;
    size_t cap;
    size_t len;
    const int *fds;
    unsigned count;
} raw_output;

static int raw_output_flush(raw_output *out, bench_shared *sh)
{
    for (unsigned i = 0; i < out->count; i++) {
        int r = bench_write_all(out->fds[i], out->buf, out->len);
        if (r < 0) {
            if (bench_aborted(sh)) {
                return -1; /* the receiver stopped because of another error */
            }
            return bench_fail(sh, "sender: cannot write to %s %u: %s",
                              out->count == 1 ? "its peer" : "receiver", i + 1, strerror(-r));
        }
    }
    out->len = 0;
    return 0;
}

int bench_raw_sender_run(const bench_job *job, bench_shared *sh, const int *fds, unsigned count)
{
    const size_t subject_len = strlen(job->subject);
    const size_t frame_size = bench_frame_size(job);
    raw_output out = {.fds = fds, .count = count, .cap = BENCH_RAW_BATCH};
    int rc = -1;

    if (out.cap < frame_size) {
        out.cap = frame_size;
    }
    out.buf = malloc(out.cap);
    uint8_t *payload = calloc(1, job->size);
    if (out.buf == NULL || payload == NULL) {
        bench_fail(sh, "sender: out of memory for a %zu-byte batch", out.cap);
        goto done;
    }
    /* Through a relay, `count` is 1 (the relay's socket) while the
     * receivers, whose readiness and credit count, are job->receivers. */
    if (bench_wait_ready(sh, job->receivers, "receivers", BENCH_WAIT_MS) < 0) {
        goto done;
    }

    const uint64_t window = job->window_msgs;
    size_t per_check = (64u * 1024u) / frame_size;
    const unsigned check_every = per_check < 1 ? 1 : per_check > 64 ? 64 : (unsigned)per_check;
    const uint64_t deadline = bench_now_ns() + (uint64_t)job->duration_ns;
    uint64_t limit = window;
    uint64_t seq = 0;
    unsigned until_check = 1;

    for (;;) {
        if (--until_check == 0) {
            until_check = check_every;
            if (bench_now_ns() >= deadline || bench_aborted(sh)) {
                break;
            }
        }
        if (seq == limit) {
            /* What is batched must leave before we wait for it. */
            if (raw_output_flush(&out, sh) < 0) {
                goto done;
            }
            int64_t min = bench_credit_wait(sh, job->receivers, seq - window / 2, NULL, NULL);
            if (min < 0) {
                goto done;
            }
            limit = (uint64_t)min + window;
        }
        if (out.cap - out.len < frame_size && raw_output_flush(&out, sh) < 0) {
            goto done;
        }
        frame_put_u64(payload, seq);
        out.len += frame_encode(out.buf + out.len, FRAME_OP_MSG, 0, BENCH_RAW_SID, job->subject,
                                subject_len, NULL, 0, NULL, 0, payload, job->size);
        seq++;
    }
    if (bench_aborted(sh)) {
        goto done;
    }
    sh->published = seq;
    if (out.cap - out.len < FRAME_HEADER_SIZE + subject_len && raw_output_flush(&out, sh) < 0) {
        goto done;
    }
    out.len += frame_encode(out.buf + out.len, FRAME_OP_MSG, 0, BENCH_RAW_SID, job->subject,
                            subject_len, NULL, 0, NULL, 0, NULL, 0);
    if (raw_output_flush(&out, sh) < 0) {
        goto done;
    }
    atomic_store(&sh->sender_done, 1);
    rc = 0;
done:
    free(out.buf);
    free(payload);
    for (unsigned i = 0; i < count; i++) {
        close(fds[i]);
    }
    return rc;
}

int bench_raw_receiver_run(const bench_job *job, bench_shared *sh, unsigned index, int fd)
{
    bench_receiver *rc = &sh->receivers[index];
    char who[32];
    raw_input in;
    uint64_t received = 0;
    uint64_t expected = 0;
    int result = -1;

    if (job->receivers > 1) {
        snprintf(who, sizeof(who), "receiver %u", index + 1);
    } else {
        snprintf(who, sizeof(who), "receiver");
    }
    if (raw_input_init(&in, bench_frame_size(job)) < 0) {
        bench_fail(sh, "%s: out of memory for the input buffer", who);
        goto out;
    }
    atomic_fetch_add(&sh->ready, 1);

    for (;;) {
        ssize_t n = raw_input_read(&in, fd);
        if (n <= 0) {
            if (bench_aborted(sh)) {
                goto out;
            }
            bench_fail(sh, "%s: %s before the end marker", who,
                       n == 0 ? "the sender closed the connection" : strerror((int)-n));
            goto out;
        }
        struct frame f;
        int r;
        while ((r = raw_input_next(&in, &f)) == 0) {
            if (f.payload_len < BENCH_SEQ_SIZE) {
                rc->last_ns = bench_now_ns();
                rc->got_end = 1;
                bench_credit_report(rc, received);
                result = 0;
                goto out;
            }
            if (received == 0) {
                rc->first_ns = bench_now_ns();
            }
            uint64_t seq = frame_get_u64(f.payload);
            if (seq != expected) {
                bench_fail(sh, "%s: message %llu arrived where %llu was expected", who,
                           (unsigned long long)seq, (unsigned long long)expected);
                goto out;
            }
            expected = seq + 1;
            received++;
        }
        if (r < 0) {
            bench_fail(sh, "%s: received a malformed frame: %s", who, strerror(-r));
            goto out;
        }
        /* Once per read: a batch at a time, never per message. */
        bench_credit_report(rc, received);
    }
out:
    free(in.buf);
    close(fd);
    return result;
}

int bench_raw_responder_run(const bench_job *job, bench_shared *sh, int fd)
{
    raw_input in;
    uint8_t *out = NULL;
    int result = -1;

    if (raw_input_init(&in, frame_encoded_size(SB_SUBJECT_MAX, SB_SUBJECT_MAX, 0, job->size)) < 0) {
        bench_fail(sh, "responder: out of memory for the input buffer");
        goto done;
    }
    out = malloc(frame_encoded_size(SB_SUBJECT_MAX, 0, 0, job->size));
    if (out == NULL) {
        bench_fail(sh, "responder: out of memory for the reply buffer");
        goto done;
    }
    atomic_fetch_add(&sh->ready, 1);

    for (;;) {
        struct frame f;
        if (raw_read_frame(&in, fd, &f, sh, "responder") < 0) {
            goto done;
        }
        if (f.payload_len == 0) {
            break;
        }
        /* The reply as the broker would deliver it: a MSG on the
         * requester's reply subject, the payload copied once. */
        size_t n = frame_encode(out, FRAME_OP_MSG, 0, BENCH_RAW_SID, f.reply, f.reply_len, NULL, 0,
                                NULL, 0, f.payload, f.payload_len);
        int r = bench_write_all(fd, out, n);
        if (r < 0) {
            bench_fail(sh, "responder: cannot write to the requester: %s", strerror(-r));
            goto done;
        }
    }
    result = 0;
done:
    free(in.buf);
    free(out);
    close(fd);
    return result;
}

int bench_raw_requester_run(const bench_job *job, bench_shared *sh, int fd)
{
    const size_t subject_len = strlen(job->subject);
    const size_t reply_len = strlen(job->reply);
    raw_input in = {0};
    uint8_t *out = malloc(frame_encoded_size(subject_len, reply_len, 0, job->size));
    uint8_t *payload = calloc(1, job->size);
    int result = -1;

    if (out == NULL || payload == NULL ||
        raw_input_init(&in, bench_frame_size(job) + reply_len) < 0) {
        bench_fail(sh, "requester: out of memory for the buffers");
        goto done;
    }
    if (bench_wait_ready(sh, 1, "responder", BENCH_WAIT_MS) < 0) {
        goto done;
    }

    bench_rtt rtt;
    bench_rtt_init(&rtt);
    for (uint64_t i = 0;; i++) {
        struct frame f;
        frame_put_u64(payload, i);
        uint64_t t0 = bench_now_ns();
        /* Encoded inside the timed span, as sb_publish() encodes. */
        size_t n = frame_encode(out, FRAME_OP_MSG, 0, BENCH_RAW_SID, job->subject, subject_len,
                                job->reply, reply_len, NULL, 0, payload, job->size);
        int r = bench_write_all(fd, out, n);
        if (r < 0) {
            bench_fail(sh, "requester: cannot write to the responder: %s", strerror(-r));
            goto done;
        }
        if (raw_read_frame(&in, fd, &f, sh, "requester") < 0) {
            goto done;
        }
        uint64_t t1 = bench_now_ns();
        if (f.payload_len != job->size || frame_get_u64(f.payload) != i) {
            bench_fail(sh, "requester: reply %llu does not match its request",
                       (unsigned long long)i);
            goto done;
        }
        if (bench_rtt_record(&rtt, job, sh, i, t0, t1)) {
            break;
        }
    }
    if (bench_aborted(sh)) {
        goto done;
    }
    bench_rtt_finish(&rtt, sh);

    /* End marker: an empty request. */
    size_t n = frame_encode(out, FRAME_OP_MSG, 0, BENCH_RAW_SID, job->subject, subject_len, NULL, 0,
                            NULL, 0, NULL, 0);
    if (bench_write_all(fd, out, n) < 0 && !bench_aborted(sh)) {
        bench_fail(sh, "requester: cannot write the end marker to the responder");
        goto done;
    }
    atomic_store(&sh->sender_done, 1);
    result = 0;
done:
    free(in.buf);
    free(out);
    free(payload);
    close(fd);
    return result;
}
