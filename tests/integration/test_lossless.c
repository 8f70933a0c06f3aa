/*
 * test_lossless.c - lossless subscriptions (docs/protocol.md, Lossless
 * subscriptions): a slow lossless subscriber receives everything, in
 * order, with no DROPPED, and holds its publisher back instead; the
 * broker's memory stays bounded; a publisher and subscriber of another
 * subject are not slowed; a subscriber that stops reading is cut with
 * ERR 6 after lossless_stall_ms and its publisher goes on; a client that
 * publishes to its own lossless subscription cannot wedge the broker; the
 * ACL's "lossless": false; the $SYS counters and client fields.
 *
 * A publisher that the broker holds back blocks in sb_publish(), so each
 * client that may block runs on a thread of its own (one client per
 * thread, as the library requires).
 */
#include "frame.h"
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct harness_broker broker;
static char config_path[64];

static void teardown(void)
{
    harness_cleanup(&broker);
    if (config_path[0] != '\0') {
        unlink(config_path);
        config_path[0] = '\0';
    }
}

TestSuite(lossless, .fini = teardown, .timeout = 240);

static void start(const char *const *extra)
{
    int r = harness_start(&broker, false, extra);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
}

/* Start a broker whose config file is `json`, with extra flags after it. */
static void start_config(const char *json)
{
    snprintf(config_path, sizeof(config_path), "/tmp/sbtest-ll-XXXXXX");
    int fd = mkstemp(config_path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    const char *const args[] = {"--config", config_path, NULL};
    start(args);
}

/* Is the broker built with AddressSanitizer? (Its RSS is then no
 * measure.) */
static bool broker_sanitized(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)broker.pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        found = strstr(line, "libasan") != NULL;
    }
    fclose(f);
    return found;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Ask the broker; the caller owns the returned JSON. */
static json_object *ask(sb_client *c, const char *subject)
{
    sb_msg reply;
    int r = sb_request(c, subject, NULL, 0, &reply, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "%s: %s", subject, sb_strerror(r));
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, reply.payload, (int)reply.payload_len);
    json_tokener_free(tok);
    cr_assert_not_null(o, "%s answered invalid JSON", subject);
    return o;
}

static int64_t field(json_object *o, const char *key)
{
    json_object *v;
    cr_assert(json_object_object_get_ex(o, key, &v), "missing key %s", key);
    return json_object_get_int64(v);
}

/* The $SYS.CLIENTS object of the client named `name`, or NULL (owned by
 * `all`). */
static json_object *client_named(json_object *all, const char *name)
{
    json_object *list;
    cr_assert(json_object_object_get_ex(all, "clients", &list));
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *o = json_object_array_get_idx(list, i);
        json_object *n;
        if (json_object_object_get_ex(o, "name", &n) && n != NULL &&
            strcmp(json_object_get_string(n), name) == 0) {
            return o;
        }
    }
    return NULL;
}

/* ---- a publisher on a thread of its own ---------------------------------- */

struct publisher {
    sb_client *c;
    const char *subject;
    uint32_t count;
    size_t size;
    pthread_t thread;
    atomic_bool done;
    int result;         /* of the last publish, or of the final flush */
    int64_t elapsed_ms; /* from the first publish to the flush's return */
};

/* Publish `count` messages of `size` bytes, each starting with its index,
 * then a flush barrier: when it returns, the broker has handled them all. */
static void *publisher_run(void *arg)
{
    struct publisher *p = arg;
    uint8_t *payload = calloc(1, p->size);
    int64_t t0 = harness_now_ms();
    int r = 0;
    for (uint32_t i = 0; i < p->count && r == 0; i++) {
        memcpy(payload, &i, sizeof(i));
        r = sb_publish(p->c, p->subject, NULL, payload, p->size);
    }
    if (r == 0) {
        r = sb_flush(p->c, 120000);
    }
    p->elapsed_ms = harness_now_ms() - t0;
    p->result = r;
    free(payload);
    atomic_store(&p->done, true);
    return NULL;
}

static void publisher_start(struct publisher *p, sb_client *c, const char *subject, uint32_t count,
                            size_t size)
{
    *p = (struct publisher){.c = c, .subject = subject, .count = count, .size = size};
    atomic_init(&p->done, false);
    cr_assert_eq(pthread_create(&p->thread, NULL, publisher_run, p), 0);
}

/* Wait (bounded) for the publisher to finish; its result. */
static int publisher_join(struct publisher *p, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (!atomic_load(&p->done) && harness_now_ms() < deadline) {
        sleep_ms(5);
    }
    cr_assert(atomic_load(&p->done), "the publisher did not finish within %d ms", timeout_ms);
    pthread_join(p->thread, NULL);
    return p->result;
}

/* ---- an unrelated pair, measured ------------------------------------------- */

/* Messages per second an unrelated publisher got through to its
 * subscriber in `ms` milliseconds, in lockstep batches (publish, flush,
 * read them all), so that the pair itself never loses anything; 0 if
 * anything failed (no criterion assertions: it also runs on a thread). */
static uint64_t pair_rate(sb_client *pub, sb_client *sub, int64_t ms)
{
    enum { BATCH = 200, SIZE = 128 };
    uint8_t payload[SIZE] = {0};
    uint64_t n = 0;
    int64_t end = harness_now_ms() + ms;
    while (harness_now_ms() < end) {
        for (int i = 0; i < BATCH; i++) {
            if (sb_publish(pub, "free.x", NULL, payload, SIZE) != 0) {
                return 0;
            }
        }
        if (sb_flush(pub, HARNESS_IO_MS) != 0) {
            return 0;
        }
        for (int i = 0; i < BATCH; i++) {
            sb_msg m;
            if (sb_next_msg(sub, &m, HARNESS_IO_MS) != 0) {
                return 0;
            }
        }
        n += BATCH;
    }
    return sb_take_dropped(sub) == 0 ? n * 1000 / (uint64_t)ms : 0;
}

struct pair {
    sb_client *pub;
    sb_client *sub;
    int64_t ms;
    pthread_t thread;
    atomic_bool done;
    uint64_t rate;
};

static void *pair_run(void *arg)
{
    struct pair *p = arg;
    p->rate = pair_rate(p->pub, p->sub, p->ms);
    atomic_store(&p->done, true);
    return NULL;
}

/* ---- the tests -------------------------------------------------------------- */

/*
 * 64 MiB through a lossless subscription whose reader is slower than the
 * publisher: every message, in order, no DROPPED; the publisher is held
 * back (stalls > 0); the broker's RSS stays under max_pending + 16 MiB;
 * and an unrelated pair runs meanwhile about as fast as alone.
 */
Test(lossless, slow_reader_receives_everything_in_order)
{
    /* A generous stall bound: this test is about a reader that keeps up
     * slowly, not about one that stops. */
    const char *const args[] = {"--lossless-stall-ms", "60000", NULL};
    start(args);
    bool sanitized = broker_sanitized();
    sb_client *sub = harness_client(&broker, "ll-sub", true);
    sb_client *pub = harness_client(&broker, "ll-pub", true);
    sb_client *fpub = harness_client(&broker, "free-pub", true);
    sb_client *fsub = harness_client(&broker, "free-sub", true);
    sb_client *probe = harness_client(&broker, "probe", true);
    cr_assert_eq(sb_subscribe(fsub, "free.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(fsub, HARNESS_IO_MS), 0);

    /* The pair alone first, before any lossless subscription exists, then
     * the same pair while the lossless flow runs: one run, one ratio. */
    const int64_t window = 500;
    uint64_t alone = pair_rate(fpub, fsub, window);
    cr_assert_gt(alone, 0);
    uint32_t sid;
    cr_assert_eq(sb_subscribe_ex(sub, "ll.>", NULL, SB_SUB_LOSSLESS, &sid), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    struct pair pair = {.pub = fpub, .sub = fsub, .ms = window};
    atomic_init(&pair.done, false);
    bool pair_started = false;
    long rss_before = harness_status_kib(&broker, "VmRSS");

    enum { SIZE = 1024, TOTAL = 64 * 1024 }; /* 64 MiB of payload */
    struct publisher p;
    publisher_start(&p, pub, "ll.data", TOTAL, SIZE);

    /* Read slowly: a pause after each 64 KiB, so that the queue in the
     * broker fills and the publisher is held back. Measure the pair while
     * the queue is full. */
    uint64_t during = 0;
    long rss_max = 0;
    uint32_t expect = 0;
    int64_t t0 = harness_now_ms();
    while (expect < TOTAL) {
        sb_msg m;
        int r = sb_next_msg(sub, &m, 30000);
        cr_assert_eq(r, 0, "after %u messages: %s", expect, sb_strerror(r));
        cr_assert_eq(m.sid, sid);
        cr_assert_eq(m.payload_len, SIZE);
        uint32_t v;
        memcpy(&v, m.payload, sizeof(v));
        cr_assert_eq(v, expect, "message %u arrived as message %u", v, expect);
        expect++;
        cr_assert_eq(sb_take_dropped(sub), 0, "a lossless subscriber was told DROPPED");
        if (expect % 64 == 0) {
            sleep_ms(2);
            long rss = harness_status_kib(&broker, "VmRSS");
            rss_max = rss > rss_max ? rss : rss_max;
        }
        if (expect == TOTAL / 16) {
            /* The queue is full by now (the publisher is far ahead): the
             * pair runs its window on a thread while this reader goes on,
             * and the publisher is held back and let go. */
            cr_assert_eq(pthread_create(&pair.thread, NULL, pair_run, &pair), 0);
            pair_started = true;
        }
    }
    cr_assert(pair_started);
    pthread_join(pair.thread, NULL);
    during = pair.rate;
    cr_assert_gt(during, 0, "the unrelated pair failed beside the lossless flow");
    cr_assert(atomic_load(&pair.done));
    int64_t took = harness_now_ms() - t0;
    cr_assert_eq(publisher_join(&p, 60000), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    sb_msg m;
    cr_assert_eq(sb_next_msg(sub, &m, 0), -ETIMEDOUT, "more than was published");
    cr_assert_eq(sb_take_dropped(sub), 0);

    json_object *stats = ask(probe, "$SYS.STATS");
    int64_t stalls = field(stats, "stalls");
    cr_assert_eq(field(stats, "dropped"), 0);
    cr_assert_eq(field(stats, "slow_consumers"), 0);
    cr_assert_gt(stalls, 0, "the publisher was never held back: the test did not test");
    json_object_put(stats);

    double ratio = (double)during / (double)(alone ? alone : 1);
    fprintf(stderr,
            "lossless: 64 MiB in %lld ms to a slow lossless reader, %lld stalls; broker RSS "
            "%ld KiB before, at most %ld KiB during; unrelated pair %llu msgs/s alone, %llu "
            "msgs/s beside the full queue (ratio %.2f)\n",
            (long long)took, (long long)stalls, rss_before, rss_max, (unsigned long long)alone,
            (unsigned long long)during, ratio);
    if (!sanitized && !harness_wrapped()) {
        long bound = (8L + 16L) * 1024L; /* max_pending (8 MiB) + 16 MiB */
        cr_assert_lt(rss_max, bound, "broker RSS %ld KiB >= %ld KiB", rss_max, bound);
    }
    /* The pair competes for the CPU with the lossless flow, but it is never
     * paused: held back it would make no progress at all in its window. A
     * loaded machine makes the ratio noisy, so the bound is generous. */
    cr_assert_gt(during, 0, "the unrelated pair made no progress beside the full queue");
    if (!harness_wrapped()) {
        /* Under valgrind the broker itself is the bottleneck of both. */
        cr_assert_gt(ratio, 0.2, "the unrelated pair ran at %.2f of its speed", ratio);
    }

    sb_close(probe);
    sb_close(fsub);
    sb_close(fpub);
    sb_close(pub);
    sb_close(sub);
    harness_stop(&broker);
}

/*
 * Several publishers held by one slow lossless subscriber at once: each
 * waits on it, all go on when it drains, and it receives every message of
 * each, in each one's order.
 */
Test(lossless, many_publishers_wait_and_resume)
{
    const char *const args[] = {
        "--max-frame", "65536", "--max-pending", "262144", "--lossless-stall-ms", "60000", NULL};
    start(args);
    enum { PUBS = 8, SIZE = 1024, EACH = 2048 }; /* 16 MiB */
    sb_client *sub = harness_client(&broker, "sub", true);
    sb_client *probe = harness_client(&broker, "probe", true);
    cr_assert_eq(sb_subscribe_ex(sub, "mp.>", NULL, SB_SUB_LOSSLESS, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    static const char *const subjects[PUBS] = {"mp.0", "mp.1", "mp.2", "mp.3",
                                               "mp.4", "mp.5", "mp.6", "mp.7"};
    sb_client *pubs[PUBS];
    struct publisher p[PUBS];
    for (int k = 0; k < PUBS; k++) {
        pubs[k] = harness_client(&broker, subjects[k], true);
        publisher_start(&p[k], pubs[k], subjects[k], EACH, SIZE);
    }
    /* Not reading at first: every publisher fills the queue or waits. */
    sleep_ms(300);
    uint32_t next[PUBS] = {0};
    for (uint32_t got = 0; got < PUBS * EACH; got++) {
        sb_msg m;
        int r = sb_next_msg(sub, &m, 30000);
        cr_assert_eq(r, 0, "after %u messages: %s", got, sb_strerror(r));
        int k = m.subject[3] - '0';
        cr_assert(k >= 0 && k < PUBS && m.subject_len == 4, "subject %s", m.subject);
        uint32_t v;
        memcpy(&v, m.payload, sizeof(v));
        cr_assert_eq(v, next[k], "publisher %d: message %u arrived as %u", k, v, next[k]);
        next[k]++;
        if (got % 256 == 0) {
            sleep_ms(1);
        }
    }
    for (int k = 0; k < PUBS; k++) {
        cr_assert_eq(publisher_join(&p[k], 60000), 0);
        sb_close(pubs[k]);
    }
    cr_assert_eq(sb_take_dropped(sub), 0);
    json_object *stats = ask(probe, "$SYS.STATS");
    cr_assert_eq(field(stats, "dropped"), 0);
    cr_assert_geq(field(stats, "stalls"), PUBS, "not every publisher was held");
    json_object_put(stats);
    sb_close(probe);
    sb_close(sub);
    harness_stop(&broker);
}

/* Record the error a client is told. */
static void on_error(sb_client *c, int err, const char *subject, const char *text, void *arg)
{
    (void)c;
    (void)subject;
    (void)text;
    *(int *)arg = err;
}

/*
 * A lossless subscriber that stops reading: its publisher is held
 * ($SYS.CLIENTS says "paused"), and lossless_stall_ms later the subscriber
 * is cut with ERR 6, counted in slow_consumers, and the publisher goes on.
 */
Test(lossless, stopped_reader_is_cut_and_publisher_resumes)
{
    const char *const args[] = {"--lossless-stall-ms", "1500",   "--max-frame", "65536",
                                "--max-pending",       "262144", "-v",          NULL};
    start(args);
    sb_client *sub = harness_client(&broker, "stopped", true);
    sb_client *pub = harness_client(&broker, "held", true);
    sb_client *probe = harness_client(&broker, "probe", true);
    int err = 0;
    sb_set_error_cb(sub, on_error, &err);
    cr_assert_eq(sb_subscribe_ex(sub, "st.>", NULL, SB_SUB_LOSSLESS, NULL), 0);
    cr_assert_eq(sb_subscribe(sub, "st.other", NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);

    /* 16 MiB: far more than the queue and both socket buffers hold. */
    struct publisher p;
    publisher_start(&p, pub, "st.data", 16 * 1024, 1024);

    /* Held: the broker says so while the subscriber does not read. */
    bool paused = false;
    int64_t deadline = harness_now_ms() + 1000;
    while (!paused && harness_now_ms() < deadline) {
        json_object *all = ask(probe, "$SYS.CLIENTS");
        json_object *held = client_named(all, "held");
        json_object *stopped = client_named(all, "stopped");
        cr_assert_not_null(held);
        cr_assert_not_null(stopped);
        cr_assert_eq(field(stopped, "lossless"), 1);
        cr_assert_eq(field(held, "lossless"), 0);
        json_object *v;
        cr_assert(json_object_object_get_ex(held, "paused", &v));
        paused = json_object_get_boolean(v);
        /* The bound: past max_pending by at most the one message that
         * went over (a 1047-byte MSG: header, "st.data", 1 KiB). */
        int64_t pending = field(stopped, "pending_bytes");
        cr_assert_leq(pending, 262144 + 1047, "the queue grew to %lld bytes", (long long)pending);
        /* Held, the queue is over the drain mark (half of max_pending):
         * at the mark its publishers go on. (Over max_pending it went; the
         * socket may have taken some of it since.) */
        if (paused) {
            cr_assert_gt(pending, 262144 / 2, "paused with %lld bytes queued", (long long)pending);
        }
        json_object_put(all);
        if (!paused) {
            sleep_ms(10);
        }
    }
    cr_assert(paused, "the publisher was not paused for the full lossless queue");
    cr_assert_not(atomic_load(&p.done), "the publisher finished past a full lossless queue");

    /* The stall bound ends it; the publisher then finishes. */
    cr_assert_eq(publisher_join(&p, 60000), 0);
    cr_assert_geq(p.elapsed_ms, 1400, "the publisher waited only %lld ms", (long long)p.elapsed_ms);

    /* The subscriber reads again: what was on its way, then ERR 6. */
    uint64_t got = 0;
    int r;
    sb_msg m;
    while ((r = sb_next_msg(sub, &m, HARNESS_IO_MS)) == 0) {
        got++;
    }
    cr_assert_eq(r, SB_E_SLOW_CONSUMER, "after %llu messages: %s", (unsigned long long)got,
                 sb_strerror(r));
    cr_assert_eq(err, SB_E_SLOW_CONSUMER);
    cr_assert_lt(got, 16 * 1024);

    json_object *stats = ask(probe, "$SYS.STATS");
    cr_assert_eq(field(stats, "slow_consumers"), 1);
    cr_assert_geq(field(stats, "stalls"), 1);
    json_object_put(stats);
    char log[65536];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert_not_null(strstr(log, "ERR 6: slow consumer"), "log: %s", log);
    /* `sockbus stat` shows the counters under their names. */
    const char *const stat[] = {"sockbus", "stat", "-s", broker.socket, NULL};
    char *out = NULL;
    size_t out_len = 0;
    char err_text[512];
    cr_assert_eq(
        harness_cli(stat, NULL, 0, &out, &out_len, err_text, sizeof(err_text), HARNESS_IO_MS), 0,
        "%s", err_text);
    cr_assert_not_null(strstr(out, "slow consumers   1"), "%s", out);
    cr_assert_not_null(strstr(out, "lossless stalls"), "%s", out);
    free(out);
    fprintf(stderr, "lossless: a stopped reader cut after %lld ms, %llu messages delivered\n",
            (long long)p.elapsed_ms, (unsigned long long)got);

    sb_close(probe);
    sb_close(pub);
    sb_close(sub);
    harness_stop(&broker);
}

/*
 * A client that publishes to its own lossless subscription: the library
 * reads while it waits to write, so it gets through; the broker stays
 * responsive for others meanwhile.
 */
Test(lossless, publishing_to_itself_does_not_deadlock)
{
    const char *const args[] = {"--max-frame", "65536", "--max-pending", "262144", NULL};
    start(args);
    sb_client *self = harness_client(&broker, "self", true);
    sb_client *other = harness_client(&broker, "other", true);
    cr_assert_eq(sb_subscribe_ex(self, "self.x", NULL, SB_SUB_LOSSLESS, NULL), 0);
    cr_assert_eq(sb_flush(self, HARNESS_IO_MS), 0);

    enum { SIZE = 1024, TOTAL = 16 * 1024 };
    struct publisher p;
    publisher_start(&p, self, "self.x", TOTAL, SIZE);
    /* Others are served while it goes on. */
    for (int i = 0; i < 5; i++) {
        int64_t t0 = harness_now_ms();
        cr_assert_eq(sb_flush(other, HARNESS_IO_MS), 0);
        cr_assert_lt(harness_now_ms() - t0, 1000);
    }
    cr_assert_eq(publisher_join(&p, 60000), 0);
    /* Everything it published is waiting in its own buffer, in order. */
    for (uint32_t i = 0; i < TOTAL; i++) {
        sb_msg m;
        cr_assert_eq(sb_next_msg(self, &m, HARNESS_IO_MS), 0, "message %u missing", i);
        uint32_t v;
        memcpy(&v, m.payload, sizeof(v));
        cr_assert_eq(v, i);
    }
    cr_assert_eq(sb_take_dropped(self), 0);
    sb_close(other);
    sb_close(self);
    harness_stop(&broker);
}

/* One frame: a PUB of `size` bytes of payload on `subject`. */
static size_t raw_pub(uint8_t *out, const char *subject, size_t size)
{
    static const uint8_t zeros[4096];
    return frame_encode(out, FRAME_OP_PUB, 0, 0, subject, strlen(subject), NULL, 0, NULL, 0, zeros,
                        size);
}

/*
 * The same with a client that never reads at all (a raw socket): it
 * subscribes losslessly, then writes publishes to itself until its socket
 * is full. The broker holds it, serves the others, and cuts it after the
 * stall bound.
 */
Test(lossless, raw_self_publisher_that_never_reads_is_cut)
{
    const char *const args[] = {"--lossless-stall-ms", "1000",   "--max-frame", "65536",
                                "--max-pending",       "262144", NULL};
    start(args);
    int fd = harness_raw(&broker, true);
    uint8_t frame[8192];
    size_t n = frame_encode(frame, FRAME_OP_SUB, FRAME_SUB_LOSSLESS, 1, "raw.x", 5, NULL, 0, NULL,
                            0, NULL, 0);
    harness_write(fd, frame, n);
    cr_assert_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    size_t len = raw_pub(frame, "raw.x", 4000);
    uint64_t written = 0;
    int64_t deadline = harness_now_ms() + 10000;
    /* Until the socket stays full for a while: the broker stopped reading. */
    int64_t full_since = 0;
    while (harness_now_ms() < deadline) {
        ssize_t w = send(fd, frame, len, MSG_NOSIGNAL);
        if (w > 0) {
            written += (uint64_t)w;
            full_since = 0;
            if ((size_t)w < len) {
                break; /* keep frames whole: stop at a partial write */
            }
            continue;
        }
        cr_assert(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "send: %s", strerror(errno));
        if (full_since == 0) {
            full_since = harness_now_ms();
        } else if (harness_now_ms() - full_since > 200) {
            break;
        }
        sleep_ms(5);
    }
    cr_assert_gt(written, 262144u * 2, "only %llu bytes went in", (unsigned long long)written);
    sb_client *other = harness_client(&broker, "other", true);
    int64_t t0 = harness_now_ms();
    cr_assert_eq(sb_flush(other, HARNESS_IO_MS), 0);
    cr_assert_lt(harness_now_ms() - t0, 1000, "the broker is wedged");
    /* Cut by the stall bound (it still reads nothing meanwhile). */
    int64_t cut_by = harness_now_ms() + 15000;
    int64_t cuts = 0;
    while (cuts == 0 && harness_now_ms() < cut_by) {
        json_object *stats = ask(other, "$SYS.STATS");
        cuts = field(stats, "slow_consumers");
        json_object_put(stats);
        if (cuts == 0) {
            sleep_ms(50);
        }
    }
    cr_assert_eq(cuts, 1, "the stalled raw client was never cut");
    /* And closed: what was on its way, then the end. */
    uint8_t sink[65536];
    int64_t end = harness_now_ms() + 15000;
    bool eof = false;
    while (!eof && harness_now_ms() < end) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0) {
            ssize_t r = recv(fd, sink, sizeof(sink), 0);
            eof = r == 0 || (r < 0 && errno == ECONNRESET);
        }
    }
    cr_assert(eof, "the stalled raw client was never closed");
    close(fd);
    sb_close(other);
    harness_stop(&broker);
}

/* The ACL: a rule with "lossless": false refuses a lossless SUB with
 * ERR 4 (and counts a denial), and takes the same pattern plainly. */
Test(lossless, acl_may_forbid_lossless)
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"acl\": [{\"uid\": %u, \"publish\": [\">\", \"$SYS.>\"], "
             "\"subscribe\": [\">\"], \"lossless\": false}]}",
             (unsigned)getuid());
    start_config(json);
    sb_client *c = harness_client(&broker, "c", true);
    cr_assert_eq(sb_subscribe_ex(c, "acl.x", NULL, SB_SUB_LOSSLESS, NULL), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), SB_E_PERMISSION);
    cr_assert_not_null(strstr(sb_last_error(c), "losslessly"), "%s", sb_last_error(c));
    cr_assert_eq(sb_subscribe(c, "acl.x", NULL, NULL), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    json_object *stats = ask(c, "$SYS.STATS");
    cr_assert_eq(field(stats, "denied"), 1);
    cr_assert_eq(field(stats, "subscriptions"), 2); /* acl.x and the inbox */
    json_object_put(stats);
    sb_close(c);
    harness_stop(&broker);
    teardown();
}

Test(lossless, acl_allows_lossless_by_default)
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"acl\": [{\"uid\": %u, \"publish\": [\">\"], \"subscribe\": [\">\"]}], "
             "\"lossless_stall_ms\": 2500}",
             (unsigned)getuid());
    start_config(json);
    sb_client *c = harness_client(&broker, "c", true);
    cr_assert_eq(sb_subscribe_ex(c, "acl.x", NULL, SB_SUB_LOSSLESS, NULL), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    sb_close(c);
    harness_stop(&broker);
    teardown();
}

/* The limit's flag and key are checked like every other limit. */
Test(lossless, stall_bound_is_checked)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    const char *const bad[] = {"--socket", broker.socket, "--lossless-stall-ms", "0", NULL};
    cr_assert_neq(harness_run_broker(&broker, bad, 10000), 0);
    char log[4096];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert_not_null(strstr(log, "--lossless-stall-ms"), "%s", log);
}

/* The first client of $SYS.CLIENTS with a lossless subscription, waited
 * for (bounded); the id, or 0. */
static int64_t wait_lossless_client(sb_client *probe)
{
    int64_t deadline = harness_now_ms() + HARNESS_READY_MS;
    while (harness_now_ms() < deadline) {
        json_object *all = ask(probe, "$SYS.CLIENTS");
        json_object *list;
        cr_assert(json_object_object_get_ex(all, "clients", &list));
        int64_t id = 0;
        for (size_t i = 0; id == 0 && i < json_object_array_length(list); i++) {
            json_object *o = json_object_array_get_idx(list, i);
            if (field(o, "lossless") > 0) {
                id = field(o, "id");
            }
        }
        json_object_put(all);
        if (id != 0) {
            return id;
        }
        sleep_ms(10);
    }
    return 0;
}

/* `sockbus sub --lossless` whose output is not read for a while: its
 * publisher is held back, and it prints every message. */
Test(lossless, cli_sub_lossless_prints_everything)
{
    const char *const args[] = {"--max-frame", "65536", "--max-pending", "1048576", NULL};
    start(args);
    enum { SIZE = 4096, TOTAL = 8192 }; /* 32 MiB */
    char count[16];
    snprintf(count, sizeof(count), "%d", TOTAL);
    const char *const argv[] = {"sockbus", "sub", "-s",  broker.socket, "--lossless",
                                "--raw",   "-n",  count, "cli.x",       NULL};
    int out;
    pid_t pid = harness_cli_spawn(argv, &out);
    sb_client *probe = harness_client(&broker, "probe", true);
    cr_assert_neq(wait_lossless_client(probe), 0, "sockbus sub --lossless never subscribed");
    sb_client *pub = harness_client(&broker, "pub", true);
    struct publisher p;
    publisher_start(&p, pub, "cli.x", TOTAL, SIZE);
    /* Not reading its output for a while: it stops reading the broker, and
     * the publisher is held back instead of anything being dropped. */
    sleep_ms(300);
    uint64_t got = 0;
    static uint8_t buf[65536];
    for (;;) {
        struct pollfd pfd = {.fd = out, .events = POLLIN};
        cr_assert_gt(poll(&pfd, 1, 30000), 0, "sockbus sub stalled after %llu bytes",
                     (unsigned long long)got);
        ssize_t n = read(out, buf, sizeof(buf));
        cr_assert_geq(n, 0);
        if (n == 0) {
            break;
        }
        got += (uint64_t)n;
    }
    close(out);
    cr_assert_eq(harness_wait_pid(pid, HARNESS_IO_MS), 0);
    cr_assert_eq(got, (uint64_t)TOTAL * SIZE);
    cr_assert_eq(publisher_join(&p, 60000), 0);
    json_object *stats = ask(probe, "$SYS.STATS");
    cr_assert_eq(field(stats, "dropped"), 0);
    cr_assert_gt(field(stats, "stalls"), 0, "the publisher was never held: the test did not test");
    json_object_put(stats);
    sb_close(pub);
    sb_close(probe);
    harness_stop(&broker);
}

/* `sockbus sub --lossless` that stops reading (its output is not taken) is
 * cut with ERR 6, and says so in one line and exits 1 once it can. */
Test(lossless, cli_sub_lossless_cut_says_why)
{
    const char *const args[] = {
        "--max-frame", "65536", "--max-pending", "262144", "--lossless-stall-ms", "500", NULL};
    start(args);
    char errpath[] = "/tmp/sbtest-llerr-XXXXXX";
    int errfd = mkstemp(errpath);
    cr_assert(errfd >= 0);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        dup2(errfd, STDERR_FILENO);
        execl(getenv("SOCKBUS"), "sockbus", "sub", "-s", broker.socket, "--lossless", "--raw",
              "cut.x", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    sb_client *probe = harness_client(&broker, "probe", true);
    cr_assert_neq(wait_lossless_client(probe), 0, "sockbus sub --lossless never subscribed");
    sb_client *pub = harness_client(&broker, "pub", true);
    struct publisher pb;
    publisher_start(&pb, pub, "cut.x", 4096, 4096); /* 16 MiB, never read */
    cr_assert_eq(publisher_join(&pb, 60000), 0);
    /* The publisher went on: the subscriber was cut. Let it go on at once
     * (its ERR waits at most CONN_DRAIN_MS behind the write in progress):
     * it prints what it got, then the reason, and exits 1. */
    static uint8_t buf[65536];
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    while (poll(&pfd, 1, HARNESS_IO_MS) > 0 && read(p[0], buf, sizeof(buf)) > 0) {
    }
    close(p[0]);
    json_object *stats = ask(probe, "$SYS.STATS");
    cr_assert_eq(field(stats, "slow_consumers"), 1);
    json_object_put(stats);
    cr_assert_eq(harness_wait_pid(pid, HARNESS_IO_MS), 1);
    char err[2048] = "";
    ssize_t n = pread(errfd, err, sizeof(err) - 1, 0);
    close(errfd);
    unlink(errpath);
    cr_assert_gt(n, 0);
    err[n] = '\0';
    cr_assert_not_null(strstr(err, "slow consumer"), "stderr: %s", err);
    cr_assert_not_null(strstr(err, "read faster"), "stderr: %s", err);
    sb_close(pub);
    sb_close(probe);
    harness_stop(&broker);
}
