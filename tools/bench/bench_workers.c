/*
 * bench_workers.c - the processes of a job that go through the broker:
 * publisher, subscriber, responder and requester, each a plain libsockbus
 * client in its own process, as an application would be.
 *
 * The hot loops do what an application should do and nothing more:
 * sb_publish() copies a message into the library's output buffer (the one
 * copy per message on the sending side), sb_next_msg() hands out a message
 * that points into the library's input buffer (no copy on the receiving
 * side). No allocation and no syscall per message here: the library
 * batches writes and reads, the clock is read once per few messages on the
 * sender and twice in all on a receiver (first message, end marker).
 * Payloads carry a sequence number (BENCH_SEQ_SIZE), written in place into
 * one reused buffer; receivers check it, so a loss or a reordering cannot
 * hide in a count.
 *
 * The publisher keeps to the credit window (bench_shared.c); while it waits,
 * its pump pushes out what the library still buffers, since the receivers
 * can only catch up with what has left.
 *
 * scale is thru with many subjects: the subscriber holds one subscription
 * per subject, all made and confirmed before it says it is ready, and the
 * publisher steps through the subjects in order, counting the subject's
 * digits up in place (no table to read, no formatting: with 1 subject or
 * with 100,000 the publisher does the same work per message). There is
 * still one publisher and one subscriber, so the broker keeps global
 * publish order and the sequence check holds as for thru; on top of it the
 * subscriber checks that each message came through the subscription of its
 * subject (sids are handed out in order), so a misrouted message cannot
 * pass for a fast one.
 */
#include "bench.h"
#include "cli.h"

#include "frame.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A waiting publisher sleeps at most this long for its socket to take
 * more output before it looks at the counters again. */
#define WORKER_PUMP_POLL_MS 10

/* While a receiver waits for messages, it looks at the abort and done
 * flags this often. */
#define WORKER_IDLE_POLL_MS 50

typedef struct worker {
    sb_client *client;
    bench_shared *sh;
    const bench_job *job;
    char who[32]; /* "publisher", "subscriber 3", ... for error lines */
} worker;

static int worker_connect(worker *w, const bench_job *job, bench_shared *sh, const char *who)
{
    sb_options opts = {
        .endpoint = job->endpoint,
        .name = "sockbus bench",
        .no_echo = true,
        .timeout_ms = BENCH_WAIT_MS,
    };

    w->client = NULL;
    w->sh = sh;
    w->job = job;
    snprintf(w->who, sizeof(w->who), "%s", who);
    int r = sb_connect(&w->client, &opts);
    if (r < 0) {
        return bench_fail(sh, "%s: cannot connect to %s: %s; is sockbusd running there?", who,
                          job->endpoint, sb_strerror(r));
    }
    return 0;
}

/* One line for an error on the connection, with the broker's own text. */
static int worker_error(worker *w, const char *what, int err)
{
    char escaped[CLI_ESCAPE_MAX(255)];
    const char *text = cli_escape(sb_last_error(w->client), escaped, sizeof(escaped));
    bool detail = text[0] != '\0' && strcmp(text, sb_strerror(err)) != 0;

    return bench_fail(w->sh,
                      "%s: lost connection to %s while %s: %s%s%s%s; is sockbusd still running?",
                      w->who, sb_endpoint(w->client), what, sb_strerror(err),
                      detail ? " (broker: " : "", detail ? text : "", detail ? ")" : "");
}

void bench_scale_subject(const bench_job *job, unsigned index, char *buf, size_t len)
{
    size_t n = strnlen(job->subject, sizeof(job->subject));

    if (n + BENCH_SCALE_SUFFIX_LEN + 1 > len) {
        buf[0] = '\0'; /* the callers' buffers are sized for it: never here */
        return;
    }
    memcpy(buf, job->subject, n);
    buf[n] = '.';
    /* ".NNNNNN": BENCH_SCALE_SUFFIX_LEN - 1 digits; an index is below
     * BENCH_SCALE_SUBS_MAX, so none is lost. */
    for (size_t d = BENCH_SCALE_SUFFIX_LEN - 1; d >= 1; d--) {
        buf[n + d] = (char)('0' + index % 10);
        index /= 10;
    }
    buf[n + BENCH_SCALE_SUFFIX_LEN] = '\0';
}

/* Subscribe and wait for the broker to confirm, so that the sender starts
 * only once every message will find its subscriber. */
static int worker_subscribe(worker *w, const char *subject)
{
    int r = sb_subscribe(w->client, subject, NULL, NULL);
    if (r == 0) {
        r = sb_flush(w->client, BENCH_WAIT_MS);
    }
    if (r == -ETIMEDOUT) {
        return bench_fail(w->sh,
                          "%s: the broker at %s did not confirm the subscription to '%s' "
                          "within %d s; is it overloaded?",
                          w->who, sb_endpoint(w->client), subject, BENCH_WAIT_MS / 1000);
    }
    if (r < 0) {
        return worker_error(w, "subscribing", r);
    }
    return 0;
}

/* scale: subscribe to every subject of the job, then confirm them all
 * with one flush. Writes the sid of the first subscription to *first_sid;
 * the others follow it in order (checked here, relied on when receiving). */
static int worker_subscribe_scale(worker *w, uint32_t *first_sid)
{
    const bench_job *job = w->job;
    char subject[sizeof(job->subject) + BENCH_SCALE_SUFFIX_LEN];
    int r = 0;

    for (unsigned i = 0; i < job->subjects && r == 0; i++) {
        uint32_t sid = 0;
        bench_scale_subject(job, i, subject, sizeof(subject));
        r = sb_subscribe(w->client, subject, NULL, &sid);
        if (r == 0 && i == 0) {
            *first_sid = sid;
        } else if (r == 0 && sid != *first_sid + i) {
            return bench_fail(w->sh,
                              "%s: subscription %u got sid %u, not %u: sids are not "
                              "handed out in order",
                              w->who, i + 1, sid, *first_sid + i);
        }
    }
    if (r == 0) {
        r = sb_flush(w->client, BENCH_WAIT_MS + job->setup_ms);
    }
    if (r == -ETIMEDOUT) {
        return bench_fail(w->sh,
                          "%s: the broker at %s did not confirm %u subscriptions within %d s; "
                          "is it overloaded?",
                          w->who, sb_endpoint(w->client), job->subjects,
                          (BENCH_WAIT_MS + job->setup_ms) / 1000);
    }
    if (r == SB_E_LIMIT) {
        char escaped[CLI_ESCAPE_MAX(255)];
        return bench_fail(w->sh,
                          "%s: the broker at %s refused %u subscriptions on one connection "
                          "(%s); give a smaller --scale-subs, or raise its max_subscriptions and "
                          "max_subscription_bytes",
                          w->who, sb_endpoint(w->client), job->subjects,
                          cli_escape(sb_last_error(w->client), escaped, sizeof(escaped)));
    }
    if (r < 0) {
        return worker_error(w, "subscribing", r);
    }
    return 0;
}

static void worker_close(worker *w)
{
    sb_close(w->client);
    w->client = NULL;
}

/* Messages between two looks at the clock: about 64 KiB of frames, at
 * most 64 messages, so a big-message run ends on time too. */
static unsigned worker_check_every(size_t frame_size)
{
    size_t n = (64u * 1024u) / (frame_size ? frame_size : 1);
    return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

/* The pump of a waiting publisher: write out what the library buffers,
 * sleeping in poll() (not spinning) while the socket is full. */
static int publisher_pump(void *arg)
{
    worker *w = arg;

    if ((sb_events(w->client) & POLLOUT) == 0) {
        return 0;
    }
    struct pollfd p = {.fd = sb_fd(w->client), .events = POLLOUT};
    poll(&p, 1, WORKER_PUMP_POLL_MS);
    int r = sb_process(w->client);
    return r < 0 ? worker_error(w, "publishing", r) : 0;
}

int bench_publisher_run(const bench_job *job, bench_shared *sh)
{
    worker w;
    int rc = -1;

    if (worker_connect(&w, job, sh, "publisher") < 0) {
        return -1;
    }
    /* scale: the subject of message seq is subject seq % job->subjects,
     * its digits (the last BENCH_SCALE_SUFFIX_LEN - 1 characters) counted
     * up in place after each publish. */
    char subject[sizeof(job->subject) + BENCH_SCALE_SUFFIX_LEN];
    char *digits = NULL;
    unsigned subject_index = 0;
    if (job->subjects > 0) {
        bench_scale_subject(job, 0, subject, sizeof(subject));
        digits = subject + strlen(subject) - (BENCH_SCALE_SUFFIX_LEN - 1);
    } else {
        snprintf(subject, sizeof(subject), "%s", job->subject);
    }
    uint8_t *payload = calloc(1, job->size);
    if (payload == NULL) {
        bench_fail(sh, "publisher: out of memory for a %zu-byte payload", job->size);
        goto out;
    }
    if (bench_wait_ready(sh, job->receivers, "subscribers", BENCH_WAIT_MS + job->setup_ms) < 0) {
        goto out;
    }

    const uint64_t window = job->window_msgs;
    const unsigned check_every = worker_check_every(bench_frame_size(job));
    const uint64_t deadline = bench_now_ns() + (uint64_t)job->duration_ns;
    uint64_t limit = window; /* may send while seq < limit */
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
            int64_t min =
                bench_credit_wait(sh, job->receivers, seq - window / 2, publisher_pump, &w);
            if (min < 0) {
                goto out;
            }
            limit = (uint64_t)min + window;
        }
        frame_put_u64(payload, seq);
        int r = sb_publish(w.client, subject, NULL, payload, job->size);
        if (r < 0) {
            worker_error(&w, "publishing", r);
            goto out;
        }
        seq++;
        if (digits != NULL) {
            if (++subject_index == job->subjects) {
                subject_index = 0;
                memset(digits, '0', BENCH_SCALE_SUFFIX_LEN - 1);
            } else {
                char *d = digits + BENCH_SCALE_SUFFIX_LEN - 2;
                while (*d == '9') {
                    *d-- = '0';
                }
                (*d)++;
            }
        }
    }
    if (bench_aborted(sh)) {
        goto out;
    }
    sh->published = seq;

    /* The end marker, then a barrier: when sb_flush() returns, the broker
     * has queued every message to the subscribers. */
    int r = sb_publish(w.client, subject, NULL, NULL, 0);
    if (r == 0) {
        r = sb_flush(w.client, BENCH_WAIT_MS);
    }
    if (r < 0) {
        worker_error(&w, "publishing", r);
        goto out;
    }
    atomic_store(&sh->sender_done, 1);
    rc = 0;
out:
    free(payload);
    worker_close(&w);
    return rc;
}

/* The receiver loop shared by the subscriber: count, check the sequence,
 * report credit, stop at the end marker. scale (first_sid != 0): message
 * `seq` went to subject seq % subjects, so it must come through the
 * subscription first_sid + seq % subjects; that index is counted along
 * with `expected`, and divided out only after a gap. */
static int subscriber_loop(worker *w, bench_receiver *rc, uint32_t first_sid)
{
    const uint64_t report_every = w->job->report_every;
    const uint32_t subjects = w->job->subjects;
    uint32_t subject = 0; /* expected % subjects */
    uint64_t received = 0;
    uint64_t expected = 0;
    uint64_t next_report = report_every;
    uint64_t done_seen_ns = 0;
    uint64_t drained_ns = 0;
    sb_msg m;

    for (;;) {
        int r = sb_next_msg(w->client, &m, 0);
        if (r == -ETIMEDOUT) {
            /* About to block: the sender must know what we have. The
             * clock is read here, once per pause in the stream, so that
             * a lost end marker still leaves the time of the last
             * message (give or take one poll). */
            drained_ns = bench_now_ns();
            bench_credit_report(rc, received);
            for (;;) {
                r = sb_next_msg(w->client, &m, WORKER_IDLE_POLL_MS);
                if (r != -ETIMEDOUT) {
                    break;
                }
                if (bench_aborted(w->sh)) {
                    return -1;
                }
                if (atomic_load(&w->sh->sender_done) != 0) {
                    uint64_t now = bench_now_ns();
                    if (done_seen_ns == 0) {
                        done_seen_ns = now;
                    } else if (now - done_seen_ns >= (uint64_t)BENCH_END_GRACE_MS * 1000000u) {
                        /* The marker was lost with the rest: count and go. */
                        rc->last_ns = drained_ns;
                        goto done;
                    }
                }
            }
        }
        if (r < 0) {
            return worker_error(w, "receiving", r);
        }
        if (m.payload_len < BENCH_SEQ_SIZE) {
            rc->last_ns = bench_now_ns();
            rc->got_end = 1;
            break;
        }
        if (received == 0) {
            rc->first_ns = bench_now_ns();
        }
        uint64_t seq = frame_get_u64(m.payload);
        if (seq != expected) {
            if (seq < expected) {
                return bench_fail(w->sh,
                                  "%s: message %llu arrived after message %llu: the broker "
                                  "reordered messages of one publisher",
                                  w->who, (unsigned long long)seq,
                                  (unsigned long long)(expected - 1));
            }
            rc->gaps += seq - expected;
            if (first_sid != 0) {
                subject = (uint32_t)(seq % subjects);
            }
        }
        if (first_sid != 0) {
            if (m.sid != first_sid + subject) {
                return bench_fail(w->sh,
                                  "%s: message %llu on '%s' came through subscription %u, not "
                                  "%u: the broker misrouted it",
                                  w->who, (unsigned long long)seq, m.subject, m.sid,
                                  first_sid + subject);
            }
            if (++subject == subjects) {
                subject = 0;
            }
        }
        expected = seq + 1;
        if (++received == next_report) {
            bench_credit_report(rc, received);
            next_report += report_every;
        }
    }
done:
    rc->dropped += sb_take_dropped(w->client);
    bench_credit_report(rc, received);
    return 0;
}

int bench_subscriber_run(const bench_job *job, bench_shared *sh, unsigned index)
{
    char who[32];
    worker w;

    if (job->receivers > 1) {
        snprintf(who, sizeof(who), "subscriber %u", index + 1);
    } else {
        snprintf(who, sizeof(who), "subscriber");
    }
    if (worker_connect(&w, job, sh, who) < 0) {
        return -1;
    }
    uint32_t first_sid = 0;
    int r = job->subjects > 0 ? worker_subscribe_scale(&w, &first_sid)
                              : worker_subscribe(&w, job->subject);
    if (r == 0) {
        atomic_fetch_add(&sh->ready, 1);
        r = subscriber_loop(&w, &sh->receivers[index], first_sid);
    }
    worker_close(&w);
    return r;
}

int bench_responder_run(const bench_job *job, bench_shared *sh)
{
    worker w;

    if (worker_connect(&w, job, sh, "responder") < 0) {
        return -1;
    }
    int r = worker_subscribe(&w, job->subject);
    if (r < 0) {
        goto out;
    }
    atomic_fetch_add(&sh->ready, 1);

    for (;;) {
        sb_msg m;
        /* sb_next_msg() writes out the previous reply before it waits:
         * one write and one read per round trip. */
        r = sb_next_msg(w.client, &m, WORKER_IDLE_POLL_MS);
        if (r == -ETIMEDOUT) {
            if (bench_aborted(sh)) {
                r = -1;
                goto out;
            }
            continue;
        }
        if (r < 0) {
            r = worker_error(&w, "waiting for requests", r);
            goto out;
        }
        if (m.payload_len == 0) {
            break; /* end marker */
        }
        if (m.reply_len == 0) {
            r = bench_fail(sh, "responder: a request on '%s' came without a reply subject",
                           m.subject);
            goto out;
        }
        /* The payload points into the library's input buffer; publishing
         * copies it into the output buffer before anything is read. */
        r = sb_publish(w.client, m.reply, NULL, m.payload, m.payload_len);
        if (r < 0) {
            r = worker_error(&w, "replying", r);
            goto out;
        }
    }
    r = 0;
out:
    worker_close(&w);
    return r;
}

int bench_requester_run(const bench_job *job, bench_shared *sh)
{
    worker w;
    int rc = -1;

    if (worker_connect(&w, job, sh, "requester") < 0) {
        return -1;
    }
    uint8_t *payload = calloc(1, job->size);
    if (payload == NULL) {
        bench_fail(sh, "requester: out of memory for a %zu-byte payload", job->size);
        goto out;
    }
    if (worker_subscribe(&w, job->reply) < 0 ||
        bench_wait_ready(sh, 1, "responder", BENCH_WAIT_MS) < 0) {
        goto out;
    }

    bench_rtt rtt;
    bench_rtt_init(&rtt);
    for (uint64_t i = 0;; i++) {
        sb_msg m;
        frame_put_u64(payload, i);
        uint64_t t0 = bench_now_ns();
        int r = sb_publish(w.client, job->subject, job->reply, payload, job->size);
        if (r == 0) {
            r = sb_next_msg(w.client, &m, BENCH_WAIT_MS);
        }
        uint64_t t1 = bench_now_ns();
        if (r == -ETIMEDOUT) {
            bench_fail(sh, "requester: no reply from the responder within %d s through %s",
                       BENCH_WAIT_MS / 1000, sb_endpoint(w.client));
            goto out;
        }
        if (r < 0) {
            worker_error(&w, "waiting for a reply", r);
            goto out;
        }
        if (m.flags & SB_MSG_NO_RESPONDERS) {
            bench_fail(sh, "requester: the broker at %s found no responder on '%s'",
                       sb_endpoint(w.client), job->subject);
            goto out;
        }
        if (m.payload_len != job->size || frame_get_u64(m.payload) != i) {
            bench_fail(sh,
                       "requester: reply %llu does not match its request (%zu bytes, "
                       "expected %zu)",
                       (unsigned long long)i, m.payload_len, job->size);
            goto out;
        }
        if (bench_rtt_record(&rtt, job, sh, i, t0, t1)) {
            break;
        }
    }
    if (bench_aborted(sh)) {
        goto out;
    }
    bench_rtt_finish(&rtt, sh);

    int r = sb_publish(w.client, job->subject, NULL, NULL, 0); /* end marker */
    if (r == 0) {
        r = sb_flush(w.client, BENCH_WAIT_MS);
    }
    if (r < 0) {
        worker_error(&w, "ending", r);
        goto out;
    }
    atomic_store(&sh->sender_done, 1);
    rc = 0;
out:
    free(payload);
    worker_close(&w);
    return rc;
}
