/*
 * test_stress.c - a seeded, randomized attack on a real broker by dozens
 * of clients at once, bounded in time.
 *
 * Example-based tests check what their author thought of; this one lets a
 * random schedule find orderings nobody thought of, such as a connection
 * that is flushed, reported DROPPED and closed in one loop iteration. One
 * process drives every client over raw sockets (Unix and TCP) from one
 * poll() loop, so that it can do what the library never does: stop
 * reading, close in the middle of a frame, reset a TCP connection, send
 * garbage.
 *
 * Two kinds of clients share the broker:
 *
 *   - checked clients behave: publishers count every message they send
 *     on "s.<k>.<j>"; subscribers hold plain or queue-group subscriptions
 *     on patterns under "s.", pause their reading at random (so the broker
 *     drops messages for them) and resume. Some subscribers speak text
 *     mode (docs/protocol.md, Text mode): their MSG and DROPPED lines are
 *     counted like the frames of the others. At the end, for every checked
 *     subscriber, messages received + DROPPED counts must equal what was
 *     published to its patterns, and each publisher's messages must have
 *     arrived in order; for a queue group, the same holds summed over its
 *     members. Some bursts stay on one subject under "r.", where each
 *     subscriber holds one plain subscription, so that the broker takes
 *     them as runs (one copy per subscriber, headers rewritten in place).
 *     Other bursts cycle over the subjects "y.<i>.<k>", each of which one
 *     subscription of subscriber i matches, so that the broker takes them
 *     as runs to one subscriber, each MSG under its own sid: every MSG
 *     must come under a sid whose pattern matches its subject. Fillers
 *     hold 600 subscriptions on subjects nobody publishes on, so that
 *     those runs go through the broker's match index.
 *     Lossless subscribers (SUB flag LOSSLESS) pause their
 *     reading too, but must receive exactly what was published to them, in
 *     order, and never a DROPPED: the broker holds the publishers back
 *     instead.
 *   - chaos clients misbehave, each in a randomly chosen way, and die
 *     abruptly: bursts on "c.*", wildcard and queue-group subscriptions
 *     they never read, requests, retained values, $SYS requests (pages of
 *     $SYS.CLIENTS, and nonsense), UNSUB of random sids, protocol
 *     violations, silence until the HELLO deadline, a close in the middle
 *     of a frame, a close with a full queue, a close right after DROPPED,
 *     a TCP reset, and a lossless subscriber that stops reading for good,
 *     which the stall bound (a short --lossless-stall-ms) must cut with
 *     ERR 6 so that the publishers it holds go on; and text mode: random
 *     verbs in any case, mistakes, lines too long, a line cut by the close.
 *
 * File descriptors travel too (docs/protocol.md, "File descriptors"): Unix
 * publishers attach a memfd to some of their counted messages (a TCP
 * subscriber counts those as dropped, so the sums above still hold), some
 * checked subscriptions ask for the sender (SENDER) and check that the
 * meta block names a real publisher as the kernel saw it, and a chaos kind
 * passes descriptors every way the rules allow and forbid (unclaimed,
 * too many, a count of 0, more claimed than sent). At the end the broker
 * holds no descriptor beyond those it had before the first client.
 *
 * The broker must survive all of it, answer a final barrier, shut down
 * with exit 0 and leave no sanitizer report in its log (harness_stop()).
 *
 * SOCKBUS_STRESS_SEED replays a run (the seed is printed at the start);
 * SOCKBUS_STRESS_SECONDS sets the length of the random phase (default 15).
 */
#include "frame.h"
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STRESS_SECONDS_DEFAULT 15

/* Checked clients. */
#define N_PUBLISHERS    4
#define N_SUBSCRIBERS   6
#define N_TEXT_SUBS     2
#define N_GROUPS        2
#define GROUP_MEMBERS   3
#define SUBS_PER_CLIENT 3
#define N_LOSSLESS      2
#define N_RUN_SUBS      6 /* one plain subscription each under "r." */
#define N_CYCLE_SUBS    2 /* plain subscriptions on subjects of their own: "y.<i>.<k>" */
/* Subscribers to subjects nobody publishes on, 60 each: enough for the
 * broker's match index (MATCHCACHE_INDEX_MIN_SUBS, 512), through which
 * the cycling bursts then go, with the frames ahead prefetched. */
#define N_FILLERS   10
#define FILLER_SUBS 60
/* Chaos clients alive at once. */
#define N_CHAOS 24

#define N_CLIENTS                                                                                  \
    (N_PUBLISHERS + N_SUBSCRIBERS + N_LOSSLESS + N_TEXT_SUBS + N_RUN_SUBS + N_CYCLE_SUBS +         \
     N_FILLERS + N_GROUPS * GROUP_MEMBERS + N_CHAOS)

/* Small limits, so that queues fill and messages drop often. */
#define MAX_FRAME   16384
#define MAX_PENDING 65536

/* A publisher stops adding bursts while this much of its output waits. */
#define PUB_BACKLOG_MAX (256 * 1024)
/* How long the final drain may take, at most. */
#define DRAIN_MS 60000
/* The broker's lossless_stall_ms: longer than any pause of a checked
 * lossless subscriber (LOSSLESS_PAUSE_MS), on a loaded machine too. */
#define LOSSLESS_STALL_MS 2000
#define LOSSLESS_PAUSE_MS 200

enum kind {
    K_PUB,
    K_SUB, /* binary, or text mode (`text`) */
    K_GROUP,
    K_LOSSLESS, /* checked, lossless: nothing may be dropped */
    K_CHAOS,
};

/* How a chaos client behaves, and how it dies. */
enum chaos {
    C_BURST,        /* publishes bursts on c.*, reads */
    C_STUCK_SUB,    /* subscribes to s.> and c.>, never reads, closes with a full queue */
    C_DROPPED_EXIT, /* subscribes, stops reading, resumes, closes right after DROPPED */
    C_REQUESTER,    /* requests on c.req.*, $SYS.STATS and $SYS.CLIENTS */
    C_RESPONDER,    /* answers requests on c.req.* */
    C_RETAINER,     /* retained values on c.ret.*, subscribes to c.ret.> */
    C_CHURN,        /* SUB / UNSUB of random patterns and sids, queue groups */
    C_HALF_FRAME,   /* starts a frame and closes in the middle of it */
    C_GARBAGE,      /* protocol violations */
    C_SILENT,       /* connects and says nothing */
    C_LOSSLESS,     /* a lossless subscriber that never reads: cut by ERR 6 */
    C_TEXT,         /* text mode: random commands, mistakes, long and cut lines */
    C_FDS,          /* passes descriptors, by the rules and against them */
    C_KINDS,
};

struct sub_info {
    uint32_t sid;
    bool sender; /* subscribed with SENDER */
    char pattern[32];
};

struct client {
    enum kind kind;
    enum chaos chaos;
    int fd; /* -1: not connected */
    bool tcp;
    bool text; /* speaks text mode: lines, not frames */
    bool welcomed;
    bool reading;
    int64_t resume_at; /* when a paused reader reads again */
    int64_t die_at;    /* chaos: when it closes */
    int id;            /* index in the client table */

    uint8_t *in;
    size_t in_len;
    size_t in_cap;
    uint8_t *out;
    size_t out_len;
    size_t out_off;
    size_t out_cap;

    /* Checked subscribers. */
    struct sub_info subs[SUBS_PER_CLIENT];
    int nsubs;
    int group; /* K_GROUP: its group */
    uint64_t received;
    uint64_t dropped;
    uint64_t expected;
    /* Last sequence number seen from each publisher, per subscription. */
    uint64_t last_seq[SUBS_PER_CLIENT][N_PUBLISHERS];

    /* Checked publishers. */
    uint64_t seq;

    uint32_t next_sid;
    uint32_t pings;
    uint32_t pongs;
    bool saw_dropped;
};

static struct harness_broker broker;
static struct client clients[N_CLIENTS];
/* Descriptors: the memfd publishers attach, how many went out with
 * messages, and how many the clients received (and closed). */
static int stress_memfd = -1;
static uint64_t fds_sent;
static uint64_t fds_received;
static uint64_t rng_state;
static uint64_t seed;

/* Subscription patterns of the checked subscribers and groups. */
static const char *const sub_patterns[] = {
    "s.>", "s.0.>", "s.1.*", "s.*.2", "s.3.3", "s.*.*", "s.2.>", "s.*.0",
};
static const char *const group_patterns[N_GROUPS] = {"s.>", "s.1.*"};
/* Runs (router_publish_deferred()) form only where every subscription a
 * subject matches is plain and on a connection of its own: under "r.",
 * a subscriber of its own holds one plain subscription each, in binary
 * or text mode, over Unix or TCP, and bursts stay on one subject. */
static const char *const run_patterns[] = {"r.>", "r.*", "r.1", "r.2"};
static uint64_t group_expected[N_GROUPS];
/* Stuck lossless chaos clients that found themselves cut (EOF) at their
 * end, and those that lived long enough that they must have been. */
static uint64_t lossless_cut;
static uint64_t lossless_due;

/* ---- randomness --------------------------------------------------------- */

static uint64_t rnd(void)
{
    /* splitmix64: small, fast, and every seed gives a good stream. */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned rnd_below(unsigned n)
{
    return (unsigned)(rnd() % n);
}

static bool chance(unsigned percent)
{
    return rnd_below(100) < percent;
}

/* ---- buffers ------------------------------------------------------------ */

static void grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need) {
        return;
    }
    size_t c = *cap ? *cap : 4096;
    while (c < need) {
        c *= 2;
    }
    *buf = realloc(*buf, c);
    cr_assert_not_null(*buf);
    *cap = c;
}

static void queue_frame(struct client *c, uint8_t op, uint8_t flags, uint32_t sid,
                        const char *subject, const char *reply, const void *headers,
                        size_t header_len, const void *payload, size_t payload_len)
{
    size_t sl = subject ? strlen(subject) : 0;
    size_t rl = reply ? strlen(reply) : 0;
    size_t size = frame_encoded_size(sl, rl, header_len, payload_len);
    grow(&c->out, &c->out_cap, c->out_len + size);
    c->out_len += frame_encode(c->out + c->out_len, op, flags, sid, subject, sl, reply, rl, headers,
                               header_len, payload, payload_len);
}

/* ---- connections -------------------------------------------------------- */

static int connect_unix(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", broker.socket);
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int connect_tcp(void)
{
    const char *port = strrchr(broker.tcp, ':');
    cr_assert_not_null(port);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)atoi(port + 1)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void checked_lost(const struct client *c, const char *what);

static void client_open(struct client *c, bool tcp, bool hello)
{
    c->tcp = tcp;
    c->fd = tcp ? connect_tcp() : connect_unix();
    if (c->fd < 0) {
        checked_lost(c, "cannot connect");
    }
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
    c->in_len = 0;
    c->out_len = 0;
    c->out_off = 0;
    c->welcomed = false;
    c->reading = true;
    c->next_sid = 1;
    c->pings = 0;
    c->pongs = 0;
    c->saw_dropped = false;
    c->text = false;
    if (hello) {
        static const char json[] = "{\"protocol\":1,\"name\":\"stress\"}";
        queue_frame(c, FRAME_OP_HELLO, 0, 0, NULL, NULL, NULL, 0, json, sizeof(json) - 1);
    }
}

/* A stuck lossless chaos client at its end: was it cut? Everything the
 * broker wrote is read; an end of file means it was. */
static void lossless_check_cut(struct client *c)
{
    int64_t now = harness_now_ms();
    bool eof = false;
    static uint8_t sink[65536];
    for (;;) {
        ssize_t n = recv(c->fd, sink, sizeof(sink), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            eof = true;
            break;
        }
        if (n < 0 && errno == EAGAIN) {
            break;
        }
    }
    /* Two stall bounds after it subscribed, its queue has been over for
     * a whole one, if anyone published there meanwhile. */
    lossless_due += now - c->resume_at >= 2 * LOSSLESS_STALL_MS;
    lossless_cut += eof;
}

/* Close abruptly; over TCP, sometimes with a reset instead of a FIN. */
static void client_kill(struct client *c)
{
    if (c->fd < 0) {
        return;
    }
    if (c->kind == K_CHAOS && c->chaos == C_LOSSLESS) {
        lossless_check_cut(c); /* however it ends: by its time, or a failed write */
    }
    if (c->tcp && chance(50)) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->fd);
    c->fd = -1;
}

static void queue_text(struct client *c, const void *text, size_t len)
{
    grow(&c->out, &c->out_cap, c->out_len + len);
    memcpy(c->out + c->out_len, text, len);
    c->out_len += len;
}

static void queue_line(struct client *c, const char *line)
{
    queue_text(c, line, strlen(line));
}

static void ping(struct client *c)
{
    c->pings++;
    if (c->text) {
        queue_line(c, chance(50) ? "PING\r\n" : "ping\n");
        return;
    }
    queue_frame(c, FRAME_OP_PING, 0, c->pings, NULL, NULL, NULL, 0, NULL, 0);
}

static uint32_t subscribe_flags(struct client *c, const char *pattern, const char *queue,
                                uint8_t flags)
{
    uint32_t sid = c->next_sid++;
    if (c->text) {
        /* The broker numbers a text client's subscriptions 1, 2, ... */
        char line[96];
        snprintf(line, sizeof(line), "SUB %s%s%s\n", pattern, queue ? " " : "", queue ? queue : "");
        queue_line(c, line);
        return sid;
    }
    queue_frame(c, FRAME_OP_SUB, flags, sid, pattern, queue, NULL, 0, NULL, 0);
    return sid;
}

static uint32_t subscribe(struct client *c, const char *pattern, const char *queue)
{
    return subscribe_flags(c, pattern, queue, 0);
}

/* Send the frame at buf[0..len) now with `nfds` descriptors on its first
 * byte, the rest (if the socket took part of it) queued behind. Only with
 * nothing queued before it. Returns false (nothing sent) if the socket
 * took nothing. */
static bool send_with_fds(struct client *c, const uint8_t *buf, size_t len, const int *fds,
                          size_t nfds)
{
    ssize_t n = harness_sendmsg_fds(c->fd, buf, len, fds, nfds, MSG_DONTWAIT);
    if (n <= 0) {
        return false;
    }
    grow(&c->out, &c->out_cap, c->out_len + len - (size_t)n);
    memcpy(c->out + c->out_len, buf + n, len - (size_t)n);
    c->out_len += len - (size_t)n;
    return true;
}

/* ---- checked clients ---------------------------------------------------- */

/* A message was published on `subject`: count it for every checked
 * subscription whose pattern matches. */
static void count_published(const char *subject)
{
    size_t sl = strlen(subject);
    for (int i = 0; i < N_CLIENTS; i++) {
        struct client *c = &clients[i];
        if (c->kind != K_SUB && c->kind != K_LOSSLESS) {
            continue;
        }
        for (int s = 0; s < c->nsubs; s++) {
            const char *p = c->subs[s].pattern;
            if (sb_pattern_match(p, strlen(p), subject, sl)) {
                c->expected++;
            }
        }
    }
    for (int g = 0; g < N_GROUPS; g++) {
        if (sb_pattern_match(group_patterns[g], strlen(group_patterns[g]), subject, sl)) {
            group_expected[g]++;
        }
    }
}

/* A burst of counted messages: payload = publisher index, sequence, then
 * filler of a random size. */
static void publisher_burst(struct client *c, int pub_index)
{
    static uint8_t payload[MAX_FRAME];
    unsigned n = 1 + rnd_below(200);
    /* Some bursts stay on one subject under "r.": runs (run_patterns).
     * Others cycle over the subjects of one cycling subscriber, now and
     * then of another: runs to one subscriber. */
    unsigned kind = rnd_below(10);
    bool one_subject = kind < 3;
    bool cycling = kind == 3 || kind == 4;
    unsigned target = rnd_below(N_CYCLE_SUBS);
    char subject[32];
    for (unsigned i = 0; i < n && c->out_len - c->out_off < PUB_BACKLOG_MAX; i++) {
        if (cycling) {
            target = chance(10) ? rnd_below(N_CYCLE_SUBS) : target;
            snprintf(subject, sizeof(subject), "y.%u.%u", target, i % SUBS_PER_CLIENT);
        } else if (!one_subject) {
            snprintf(subject, sizeof(subject), "s.%u.%u", rnd_below(4), rnd_below(4));
        } else if (i == 0) {
            snprintf(subject, sizeof(subject), "r.%u", rnd_below(4));
        }
        size_t len = 16 + (chance(5) ? rnd_below(MAX_FRAME / 2) : rnd_below(256));
        uint64_t seq = ++c->seq;
        uint64_t who = (uint64_t)pub_index;
        memcpy(payload, &who, 8);
        memcpy(payload + 8, &seq, 8);
        uint8_t flags = chance(3) ? FRAME_PUB_RETAIN : 0;
        const char *hdr = chance(10) ? "h:1" : NULL;
        count_published(subject);
        if (!c->tcp && flags == 0 && c->out_off == c->out_len && chance(5)) {
            /* With the memfd, when nothing is queued before it. */
            static uint8_t frame[MAX_FRAME];
            size_t size = frame_encode(frame, FRAME_OP_PUB, FRAME_PUB_FDS, 1, subject,
                                       strlen(subject), NULL, 0, hdr, hdr ? 3 : 0, payload, len);
            if (send_with_fds(c, frame, size, &stress_memfd, 1)) {
                fds_sent++;
                continue;
            }
        }
        queue_frame(c, FRAME_OP_PUB, flags, 0, subject, NULL, hdr, hdr ? 3 : 0, payload, len);
    }
}

/* The meta block of a MSG to a checked subscriber: it names the
 * publisher as the kernel saw it. Returns the payload after it. */
static const uint8_t *checked_meta(struct client *c, const struct frame *f, bool sender,
                                   uint32_t *payload_len)
{
    if (!(f->flags & FRAME_MSG_META)) {
        cr_assert(!sender, "client %d sid %u: SENDER, and no meta block", c->id, f->sid);
        *payload_len = f->payload_len;
        return f->payload;
    }
    struct frame_meta m;
    cr_assert_eq(frame_meta_parse(f, &m), 0, "client %d: a short meta block", c->id);
    cr_assert(sender || m.nfds > 0, "client %d sid %u: a meta block not asked for", c->id, f->sid);
    cr_assert_neq(m.client_id, 0);
    if (f->payload_len >= FRAME_META_SIZE + 8) {
        uint64_t who;
        memcpy(&who, f->payload + FRAME_META_SIZE, 8);
        bool tcp = clients[who % N_PUBLISHERS].tcp;
        cr_assert_eq(m.transport, tcp ? FRAME_META_TCP : FRAME_META_UNIX);
        cr_assert_eq(m.pid, tcp ? FRAME_META_NONE : (uint32_t)getpid());
        cr_assert_eq(m.uid, tcp ? FRAME_META_NONE : (uint32_t)getuid());
        cr_assert(m.nfds == 0 || (!tcp && m.nfds == 1));
    }
    *payload_len = f->payload_len - FRAME_META_SIZE;
    return f->payload + FRAME_META_SIZE;
}

/* A MSG reached a checked subscriber: count it and check its order. */
static void checked_msg(struct client *c, const struct frame *f)
{
    c->received++;
    bool sender = false;
    for (int s = 0; s < c->nsubs; s++) {
        sender |= c->subs[s].sid == f->sid && c->subs[s].sender;
    }
    uint32_t payload_len;
    const uint8_t *payload = checked_meta(c, f, sender, &payload_len);
    if (payload_len < 16) {
        return; /* an empty retained delete, live: counted, no sequence */
    }
    uint64_t who;
    uint64_t seq;
    memcpy(&who, payload, 8);
    memcpy(&seq, payload + 8, 8);
    cr_assert_lt(who, N_PUBLISHERS, "client %d: bad payload", c->id);
    for (int s = 0; s < c->nsubs; s++) {
        if (c->subs[s].sid == f->sid) {
            const char *p = c->subs[s].pattern;
            cr_assert(sb_pattern_match(p, strlen(p), (const char *)f->subject, f->subject_len),
                      "client %d: MSG on %.*s under sid %u of %s", c->id, (int)f->subject_len,
                      (const char *)f->subject, f->sid, p);
            cr_assert_gt(seq, c->last_seq[s][who],
                         "client %d sid %u: publisher %" PRIu64 " seq %" PRIu64 " after %" PRIu64
                         " (out of order)",
                         c->id, f->sid, who, seq, c->last_seq[s][who]);
            c->last_seq[s][who] = seq;
            return;
        }
    }
    cr_assert_fail("client %d: MSG for unknown sid %u", c->id, f->sid);
}

/* ---- chaos clients ------------------------------------------------------ */

static void chaos_start(struct client *c, int64_t now)
{
    c->chaos = (enum chaos)rnd_below(C_KINDS);
    c->die_at = now + 20 + rnd_below(1500);
    c->nsubs = 0;
    client_open(c, chance(30), c->chaos != C_SILENT && c->chaos != C_GARBAGE);
    char pattern[64];
    switch (c->chaos) {
    case C_STUCK_SUB:
        subscribe(c, "s.>", NULL);
        subscribe(c, "c.>", chance(50) ? "cg" : NULL);
        c->reading = false;
        break;
    case C_DROPPED_EXIT:
        subscribe(c, "s.>", NULL);
        c->reading = false;
        c->resume_at = now + rnd_below(300);
        c->die_at = now + 5000; /* dies at its first DROPPED, or then */
        break;
    case C_RESPONDER:
        subscribe(c, "c.req.*", chance(50) ? "responders" : NULL);
        break;
    case C_LOSSLESS:
        /* Holds whoever publishes there, until the stall bound cuts it;
         * the checked publishers only now and then, so that they still
         * publish enough for the plain subscribers to lose some. */
        subscribe_flags(c, chance(25) ? "s.>" : "c.>", NULL, FRAME_SUB_LOSSLESS);
        c->reading = false;
        c->resume_at = now; /* when it began to hold on */
        c->die_at = now + LOSSLESS_STALL_MS * 3;
        break;
    case C_FDS:
        subscribe_flags(c, "c.fd.*", NULL, chance(50) ? FRAME_SUB_SENDER : 0);
        break;
    case C_RETAINER:
        subscribe(c, "c.ret.>", NULL);
        break;
    case C_CHURN:
        snprintf(pattern, sizeof(pattern), "c.%u.*", rnd_below(8));
        subscribe(c, pattern, chance(30) ? "cq" : NULL);
        break;
    case C_HALF_FRAME: {
        /* A PUB header that promises more than is ever sent. */
        uint8_t hdr[FRAME_HEADER_SIZE];
        frame_encode_header(hdr, MAX_FRAME, FRAME_OP_PUB, 0, 3, 0, 0, 0);
        grow(&c->out, &c->out_cap, c->out_len + sizeof(hdr) + 10);
        memcpy(c->out + c->out_len, hdr, sizeof(hdr));
        memcpy(c->out + c->out_len + sizeof(hdr), "c.xpartial", 10);
        c->out_len += sizeof(hdr) + 1 + rnd_below(9);
        c->die_at = now + rnd_below(200);
        break;
    }
    case C_GARBAGE: {
        uint8_t junk[64];
        for (size_t i = 0; i < sizeof(junk); i++) {
            junk[i] = (uint8_t)rnd();
        }
        bool hello = chance(50);
        if (hello) {
            /* A valid HELLO first, then the junk. */
            static const char json[] = "{\"protocol\":1}";
            queue_frame(c, FRAME_OP_HELLO, 0, 0, NULL, NULL, NULL, 0, json, sizeof(json) - 1);
        }
        size_t n = 1 + rnd_below(sizeof(junk));
        /* Four printable bytes first make it a text client. */
        c->text = !hello && n >= 4 && frame_text_start(junk);
        grow(&c->out, &c->out_cap, c->out_len + n);
        memcpy(c->out + c->out_len, junk, n);
        c->out_len += n;
        break;
    }
    case C_TEXT:
        c->text = true;
        if (chance(50)) {
            subscribe(c, chance(50) ? "s.>" : "c.>", chance(30) ? "tq" : NULL);
        }
        break;
    default:
        break;
    }
}

/* A random text-mode command, well formed or not. */
static void text_act(struct client *c, int64_t now)
{
    static char line[2 * MAX_FRAME];
    static const char *const wrong[] = {"FOO bar",          "PUB",     "SUB",
                                        "SUB a b c",        "UNSUB x", "PUB a.* x",
                                        "PUB $SYS.STATS x", "   ",     ""};
    unsigned k = rnd_below(16);
    int n = 0;
    switch (k) {
    case 0:
        n = snprintf(line, sizeof(line), "sUb c.%u.* %s\n", rnd_below(8), chance(30) ? "tq" : "");
        break;
    case 1:
        n = snprintf(line, sizeof(line), "UNSUB %u\n", rnd_below(6));
        break;
    case 2:
    case 3:
        n = snprintf(line, sizeof(line), "PUB c.%u.%u text %u\r\n", rnd_below(8), rnd_below(8),
                     rnd_below(1000));
        break;
    case 4:
        n = snprintf(line, sizeof(line), "req c.req.%u please\n", rnd_below(4));
        break;
    case 5:
        n = snprintf(line, sizeof(line), "REQ nobody.%u\n", rnd_below(4));
        break;
    case 6:
        n = snprintf(line, sizeof(line), "%s\n", chance(50) ? "STATS" : "help");
        break;
    case 7:
        n = snprintf(line, sizeof(line), "%s\n", wrong[rnd_below(sizeof(wrong) / sizeof(*wrong))]);
        break;
    case 8: {
        /* A long line: over max_frame now and then, which ends it. */
        size_t len = chance(20) ? MAX_FRAME - 8 + rnd_below(16) : rnd_below(MAX_FRAME / 2);
        memcpy(line, "PUB c.long ", 11);
        memset(line + 11, 'y', len);
        line[11 + len] = '\n';
        n = (int)(12 + len);
        break;
    }
    case 9:
        /* A line cut by the close. */
        n = snprintf(line, sizeof(line), "PUB c.cut unfinish");
        c->die_at = now;
        break;
    case 10:
        if (chance(10)) {
            n = snprintf(line, sizeof(line), "QUIT\n");
        }
        break;
    case 11:
        /* A binary frame after text: more (odd) text. */
        queue_frame(c, FRAME_OP_PING, 0, 1, NULL, NULL, NULL, 0, NULL, 0);
        break;
    default:
        n = snprintf(line, sizeof(line), "PING\n");
        break;
    }
    if (n > 0) {
        queue_text(c, line, (size_t)n);
    }
}

static void chaos_act(struct client *c, int64_t now)
{
    static uint8_t payload[MAX_FRAME];
    char subject[64];
    char reply[64];
    switch (c->chaos) {
    case C_BURST:
        for (unsigned i = rnd_below(100); i > 0 && c->out_len - c->out_off < PUB_BACKLOG_MAX; i--) {
            snprintf(subject, sizeof(subject), "c.%u.%u", rnd_below(8), rnd_below(8));
            queue_frame(c, FRAME_OP_PUB, 0, 0, subject, NULL, NULL, 0, payload,
                        rnd_below(MAX_FRAME - 128));
        }
        break;
    case C_REQUESTER:
        if (chance(20)) {
            /* $SYS requests, $SYS.CLIENTS with a page asked for, with
             * nonsense, or with nothing. */
            char page[64];
            int n = 0;
            if (chance(50)) {
                n = snprintf(page, sizeof(page), "{\"offset\":%u,\"limit\":%u}", rnd_below(40),
                             rnd_below(300));
            } else if (chance(20)) {
                n = snprintf(page, sizeof(page), "{\"offset\":-%u", rnd_below(9));
            }
            snprintf(reply, sizeof(reply), "_INBOX.stress.%u", rnd_below(1000));
            bool stats = chance(30);
            queue_frame(c, FRAME_OP_PUB, 0, 0, stats ? "$SYS.STATS" : "$SYS.CLIENTS", reply, NULL,
                        0, page, stats ? 0 : (size_t)n);
        } else {
            snprintf(subject, sizeof(subject), "c.req.%u", rnd_below(4));
            snprintf(reply, sizeof(reply), "_INBOX.stress.%u", rnd_below(1000));
            queue_frame(c, FRAME_OP_PUB, 0, 0, subject, reply, NULL, 0, payload, rnd_below(64));
        }
        break;
    case C_RETAINER:
        snprintf(subject, sizeof(subject), "c.ret.%u", rnd_below(50));
        queue_frame(c, FRAME_OP_PUB, FRAME_PUB_RETAIN, 0, subject, NULL, NULL, 0, payload,
                    chance(20) ? 0 : rnd_below(2048));
        break;
    case C_CHURN:
        if (chance(50)) {
            snprintf(subject, sizeof(subject), "%s.%u.>", chance(50) ? "c" : "s", rnd_below(8));
            subscribe(c, chance(10) ? "c.*" : subject, chance(30) ? "cq" : NULL);
        } else {
            /* Known and unknown sids alike. */
            uint8_t max[4];
            frame_put_u32(max, rnd_below(3));
            queue_frame(c, FRAME_OP_UNSUB, 0, 1 + rnd_below(c->next_sid + 2), NULL, NULL, NULL, 0,
                        max, chance(50) ? 4 : 0);
        }
        break;
    case C_DROPPED_EXIT:
        if (!c->reading && now >= c->resume_at) {
            c->reading = true;
        }
        break;
    case C_TEXT:
        text_act(c, now);
        return;
    case C_FDS:
        if (c->out_off == c->out_len) {
            /* Mostly by the rules (1 to 4 claimed, as many sent), else a
             * count of 0, too many, more claimed than sent, or
             * descriptors no frame claims. */
            unsigned k = 1 + rnd_below(4);
            unsigned count = k;
            uint8_t flags = FRAME_PUB_FDS;
            switch (rnd_below(12)) {
            case 0:
                count = 0;
                break;
            case 1:
                count = k = 17 + rnd_below(8); /* over max_fds_per_msg */
                break;
            case 2:
                count = k + 1;
                break;
            case 3:
                flags = 0; /* unclaimed */
                break;
            case 4:
                flags |= FRAME_PUB_RETAIN;
                break;
            default:
                break;
            }
            int fds[32];
            for (unsigned i = 0; i < k; i++) {
                fds[i] = i % 2 ? stress_memfd : c->fd;
            }
            /* On c.fd.*, never s.*: the checked counts stay exact. */
            snprintf(subject, sizeof(subject), "c.fd.%u", rnd_below(4));
            uint8_t frame[128];
            size_t size = frame_encode(frame, FRAME_OP_PUB, flags, count, subject, strlen(subject),
                                       NULL, 0, NULL, 0, "chaos", 5);
            send_with_fds(c, frame, size, fds, k);
        }
        break;
    default:
        break;
    }
    if (chance(5) && !c->text) {
        ping(c);
    }
}

/* A frame arrived for a chaos client. */
static void chaos_frame(struct client *c, const struct frame *f)
{
    if (f->op == FRAME_OP_DROPPED) {
        c->saw_dropped = true;
        if (c->chaos == C_DROPPED_EXIT) {
            client_kill(c); /* right after DROPPED */
        }
        return;
    }
    if (f->op == FRAME_OP_MSG && c->chaos == C_RESPONDER && f->reply_len > 0 && f->reply_len < 64) {
        char reply[64];
        memcpy(reply, f->reply, f->reply_len);
        reply[f->reply_len] = '\0';
        queue_frame(c, FRAME_OP_PUB, 0, 0, reply, NULL, NULL, 0, "ok", 2);
    }
}

/* ---- I/O ---------------------------------------------------------------- */

/* A client could not connect, or a checked client lost its connection or
 * could not write: if the broker died, say so with its log rather than
 * blame the client. */
static void checked_lost(const struct client *c, const char *what)
{
    /* A sanitizer takes a moment to write its report before the broker
     * dies: give it that (bounded) before judging. */
    int status = 0;
    bool died = false;
    for (int64_t until = harness_now_ms() + 5000; !died && harness_now_ms() < until;) {
        died = waitpid(broker.pid, &status, WNOHANG) == broker.pid;
        if (!died) {
            poll(NULL, 0, 10);
        }
    }
    static char log[64 * 1024];
    harness_read_log(&broker, log, sizeof(log));
    fprintf(stderr, "---- sockbusd log ----\n%s\n----\n", log);
    if (died) {
        broker.pid = -1;
        cr_assert_fail("sockbusd died (%s %d) (seed %" PRIu64 ")",
                       WIFSIGNALED(status) ? "signal" : "exit status",
                       WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), seed);
    }
    cr_assert_fail("client %d: %s (seed %" PRIu64 ")", c->id, what, seed);
}

static void handle_frame(struct client *c, const struct frame *f)
{
    switch (f->op) {
    case FRAME_OP_WELCOME:
        c->welcomed = true;
        return;
    case FRAME_OP_PONG:
        c->pongs = f->sid;
        return;
    default:
        break;
    }
    if (c->kind == K_CHAOS) {
        chaos_frame(c, f);
        return;
    }
    switch (f->op) {
    case FRAME_OP_MSG:
        cr_assert(c->kind != K_PUB, "publisher %d received a MSG", c->id);
        checked_msg(c, f);
        break;
    case FRAME_OP_DROPPED:
        cr_assert_geq(f->payload_len, 8);
        c->dropped += frame_get_u64(f->payload);
        break;
    case FRAME_OP_ERR: {
        /* RETAIN over max_retained_bytes is the one ERR a checked client
         * may get (the message was still delivered). */
        cr_assert_eq(f->sid, FRAME_ERR_LIMIT, "checked client %d got ERR %u: %.*s", c->id, f->sid,
                     (int)f->payload_len, (const char *)f->payload);
        break;
    }
    default:
        break;
    }
}

/* A line the broker sent a text client: what it says, checked for the
 * checked ones. `payload` is the body of a MSG. */
static void text_line(struct client *c, const char *line, size_t len, const uint8_t *payload,
                      size_t payload_len)
{
    if (len >= 4 && memcmp(line, "PONG", 4) == 0) {
        c->pongs++;
        return;
    }
    if (len >= 8 && memcmp(line, "DROPPED ", 8) == 0) {
        if (c->kind != K_CHAOS) {
            c->dropped += strtoull(line + 8, NULL, 10);
        }
        return;
    }
    if (len >= 4 && memcmp(line, "MSG ", 4) == 0) {
        if (c->kind != K_CHAOS) {
            /* MSG <subject> <sid> <nbytes>: the sid is the third word. */
            const char *sp = memchr(line + 4, ' ', len - 4);
            cr_assert_not_null(sp, "client %d: bad MSG line", c->id);
            struct frame f = {.sid = (uint32_t)strtoul(sp + 1, NULL, 10),
                              .subject = (const uint8_t *)line + 4,
                              .subject_len = (uint16_t)(sp - (line + 4)),
                              .payload = payload,
                              .payload_len = (uint32_t)payload_len};
            checked_msg(c, &f);
        }
        return;
    }
    cr_assert(len >= 2 &&
                  (memcmp(line, "+OK", len < 3 ? len : 3) == 0 ||
                   memcmp(line, "-ERR ", len < 5 ? len : 5) == 0 || memcmp(line, "# ", 2) == 0),
              "client %d: the broker sent an unknown line [%.*s]", c->id, (int)len, line);
    cr_assert(c->kind == K_CHAOS || line[0] == '+', "checked text client %d got [%.*s]", c->id,
              (int)len, line);
}

/* The lines (and MSG bodies) in c->in; returns the bytes used. */
static size_t text_lines(struct client *c)
{
    size_t off = 0;
    while (c->fd >= 0) {
        const uint8_t *end = memmem(c->in + off, c->in_len - off, "\r\n", 2);
        if (end == NULL) {
            cr_assert_lt(c->in_len - off, 4096, "client %d: a line without end", c->id);
            break;
        }
        size_t len = (size_t)(end - (c->in + off));
        const char *line = (const char *)c->in + off;
        size_t body = 0;
        if (len >= 4 && memcmp(line, "MSG ", 4) == 0) {
            const char *last = line + len;
            while (last > line && last[-1] != ' ') {
                last--;
            }
            body = strtoull(last, NULL, 10);
            cr_assert_leq(body, MAX_FRAME, "client %d: MSG of %zu bytes", c->id, body);
            if (c->in_len - off < len + 2 + body + 2) {
                break; /* the body is not all here yet */
            }
            cr_assert(memcmp(c->in + off + len + 2 + body, "\r\n", 2) == 0,
                      "client %d: a MSG body not followed by CR LF", c->id);
            text_line(c, line, len, c->in + off + len + 2, body);
            off += len + 2 + body + 2;
            continue;
        }
        text_line(c, line, len, NULL, 0);
        off += len + 2;
    }
    return off;
}

/* recv() that takes (and closes) descriptors that come along. */
static ssize_t recv_fds(int fd, void *buf, size_t len)
{
    union {
        char buf[CMSG_SPACE(253 * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control.buf,
                        .msg_controllen = sizeof(control.buf)};
    ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0) {
        return n;
    }
    cr_assert_eq(mh.msg_flags & MSG_CTRUNC, 0);
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h != NULL; h = CMSG_NXTHDR(&mh, h)) {
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
            size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) {
                int d;
                memcpy(&d, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
                close(d);
                fds_received++;
            }
        }
    }
    return n;
}

static void client_read(struct client *c)
{
    for (;;) {
        grow(&c->in, &c->in_cap, c->in_len + 65536);
        ssize_t n = recv_fds(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            if (c->kind != K_CHAOS) {
                checked_lost(c, n == 0 ? "the broker closed its connection" : strerror(errno));
            }
            client_kill(c);
            return;
        }
        if (n < 0) {
            break;
        }
        c->in_len += (size_t)n;
        size_t off = 0;
        if (c->text) {
            off = text_lines(c);
            if (c->fd < 0) {
                return;
            }
        }
        while (!c->text) {
            struct frame f;
            int r = frame_parse(c->in + off, c->in_len - off, MAX_FRAME + 64, &f);
            if (r == FRAME_NEED_MORE) {
                break;
            }
            cr_assert_eq(r, 0, "client %d: the broker sent an invalid frame", c->id);
            handle_frame(c, &f);
            off += f.size;
            if (c->fd < 0) {
                return;
            }
        }
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
        if ((size_t)n < 65536) {
            break;
        }
    }
}

static void client_write(struct client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return;
            }
            if (c->kind != K_CHAOS) {
                checked_lost(c, strerror(errno));
            }
            client_kill(c);
            return;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = 0;
    c->out_len = 0;
}

/* One round of poll() over every open client; `timeout` in ms. */
static void pump(int timeout)
{
    struct pollfd pfd[N_CLIENTS];
    int idx[N_CLIENTS];
    int n = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        struct client *c = &clients[i];
        if (c->fd < 0) {
            continue;
        }
        short ev = 0;
        if (c->reading) {
            ev |= POLLIN;
        }
        if (c->out_off < c->out_len) {
            ev |= POLLOUT;
        }
        pfd[n] = (struct pollfd){.fd = c->fd, .events = ev};
        idx[n++] = i;
    }
    int r = poll(pfd, (nfds_t)n, timeout);
    if (r <= 0) {
        return;
    }
    for (int k = 0; k < n; k++) {
        struct client *c = &clients[idx[k]];
        if (c->fd >= 0 && (pfd[k].revents & POLLOUT)) {
            client_write(c);
        }
        if (c->fd >= 0 && (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) && c->reading) {
            client_read(c);
        }
    }
}

/* Connect a checked client and wait (bounded) for its WELCOME: one at a
 * time, so that they never crowd max_unwelcomed. */
static void checked_open(struct client *c, bool tcp)
{
    client_open(c, tcp, true);
    for (int64_t until = harness_now_ms() + DRAIN_MS; !c->welcomed;) {
        cr_assert_lt(harness_now_ms(), until, "client %d: no WELCOME", c->id);
        pump(10);
    }
}

/* Pump until every checked client has its PONG for its last PING. */
static void checked_barrier(int64_t deadline)
{
    for (int i = 0; i < N_CLIENTS; i++) {
        if (clients[i].kind != K_CHAOS) {
            clients[i].reading = true;
            ping(&clients[i]);
        }
    }
    for (;;) {
        bool done = true;
        for (int i = 0; i < N_CLIENTS; i++) {
            struct client *c = &clients[i];
            done &= c->kind == K_CHAOS || c->pongs == c->pings;
        }
        if (done) {
            return;
        }
        cr_assert_lt(harness_now_ms(), deadline, "the broker did not answer the barrier in time");
        pump(10);
    }
}

/* Descriptors open in process `pid` (/proc/PID/fd). */
static int count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
    DIR *d = opendir(path);
    cr_assert_not_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

/* What the broker's descriptors are, one "N -> target" each, for a
 * failure to show. */
static void list_fds(pid_t pid, char *out, size_t len)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
    DIR *d = opendir(path);
    size_t used = 0;
    out[0] = '\0';
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL && used + 128 < len;) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char link[384];
        char target[96] = "?";
        snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        target[n > 0 ? n : 1] = '\0';
        used += (size_t)snprintf(out + used, len - used, " %s->%s", e->d_name, target);
    }
    if (d != NULL) {
        closedir(d);
    }
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? strtoull(v, NULL, 0) : dflt;
}

static void teardown(void)
{
    harness_cleanup(&broker);
}

TestSuite(stress, .fini = teardown, .timeout = 300);

Test(stress, random_clients_cannot_hurt_the_broker_or_each_other)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = env_u64("SOCKBUS_STRESS_SEED",
                   (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 20 ^ (uint64_t)getpid());
    uint64_t seconds = env_u64("SOCKBUS_STRESS_SECONDS", STRESS_SECONDS_DEFAULT);
    rng_state = seed;
    fprintf(stderr,
            "stress: seed %" PRIu64 " (replay with SOCKBUS_STRESS_SEED=%" PRIu64 "), %" PRIu64
            " s\n",
            seed, seed, seconds);

    /* Small limits, so that they are reached: silent chaos clients meet
     * the HELLO deadline, and a crowd of them the bound on those waiting. */
    const char *const args[] = {"--max-frame",
                                "16384",
                                "--max-pending",
                                "65536",
                                "--max-retained-bytes",
                                "262144",
                                "--max-subscriptions",
                                "64",
                                "--max-subscription-bytes",
                                "65536",
                                "--hello-timeout-ms",
                                "300",
                                "--max-unwelcomed",
                                "6",
                                "--lossless-stall-ms",
                                "2000",
                                NULL};
    int r = harness_start(&broker, true, args);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    /* The broker's own descriptors: the socket of the harness's readiness
     * probe may still be open (its end of file not yet read), so the
     * fewest seen over a moment. */
    int broker_fds = count_fds(broker.pid);
    for (int64_t settle = harness_now_ms() + 500; harness_now_ms() < settle;) {
        poll(NULL, 0, 10);
        int n = count_fds(broker.pid);
        broker_fds = n < broker_fds ? n : broker_fds;
    }
    stress_memfd = memfd_create("stress", MFD_CLOEXEC);
    cr_assert(stress_memfd >= 0);
    cr_assert_eq(write(stress_memfd, "attached", 8), 8);

    /* Checked clients first, subscribed and confirmed before anything is
     * published, so that what each should receive is known exactly. */
    int n = 0;
    for (int i = 0; i < N_PUBLISHERS; i++, n++) {
        clients[n] = (struct client){.kind = K_PUB, .id = n};
        checked_open(&clients[n], i % 2 == 1);
    }
    for (int i = 0; i < N_SUBSCRIBERS; i++, n++) {
        struct client *c = &clients[n];
        *c = (struct client){.kind = K_SUB, .id = n};
        checked_open(c, i % 3 == 2);
        c->nsubs = 1 + (int)rnd_below(SUBS_PER_CLIENT);
        for (int s = 0; s < c->nsubs; s++) {
            const char *p = sub_patterns[rnd_below(sizeof(sub_patterns) / sizeof(*sub_patterns))];
            snprintf(c->subs[s].pattern, sizeof(c->subs[s].pattern), "%s", p);
            c->subs[s].sender = chance(50);
            c->subs[s].sid = subscribe_flags(c, p, NULL, c->subs[s].sender ? FRAME_SUB_SENDER : 0);
        }
    }
    for (int i = 0; i < N_LOSSLESS; i++, n++) {
        struct client *c = &clients[n];
        *c = (struct client){.kind = K_LOSSLESS, .id = n};
        /* Over Unix: a message with descriptors cannot reach a TCP
         * subscriber, lossless or not (it is counted as dropped), and a
         * lossless one here must see no DROPPED at all. */
        checked_open(c, false);
        c->nsubs = 1 + (int)rnd_below(2);
        for (int s = 0; s < c->nsubs; s++) {
            const char *p = sub_patterns[rnd_below(sizeof(sub_patterns) / sizeof(*sub_patterns))];
            snprintf(c->subs[s].pattern, sizeof(c->subs[s].pattern), "%s", p);
            c->subs[s].sid = subscribe_flags(c, p, NULL, FRAME_SUB_LOSSLESS);
        }
    }
    for (int i = 0; i < N_TEXT_SUBS; i++, n++) {
        /* Text mode, over Unix and TCP: let in at its first line, so
         * "welcomed" at once; its subscriptions are confirmed by the
         * barrier below (PONG comes after their +OK). */
        struct client *c = &clients[n];
        *c = (struct client){.kind = K_SUB, .id = n};
        client_open(c, i % 2 == 1, false);
        c->text = true;
        c->welcomed = true;
        c->nsubs = 1 + (int)rnd_below(SUBS_PER_CLIENT);
        for (int s = 0; s < c->nsubs; s++) {
            const char *p = sub_patterns[rnd_below(sizeof(sub_patterns) / sizeof(*sub_patterns))];
            snprintf(c->subs[s].pattern, sizeof(c->subs[s].pattern), "%s", p);
            c->subs[s].sid = subscribe(c, p, NULL);
        }
    }
    for (int i = 0; i < N_RUN_SUBS; i++, n++) {
        struct client *c = &clients[n];
        *c = (struct client){.kind = K_SUB, .id = n};
        if (i % 3 == 2) {
            client_open(c, i % 2 == 1, false); /* text mode, as above */
            c->text = true;
            c->welcomed = true;
        } else {
            checked_open(c, i % 2 == 1);
        }
        c->nsubs = 1;
        const char *p = run_patterns[i % (sizeof(run_patterns) / sizeof(*run_patterns))];
        snprintf(c->subs[0].pattern, sizeof(c->subs[0].pattern), "%s", p);
        c->subs[0].sid = subscribe(c, p, NULL);
    }
    for (int i = 0; i < N_CYCLE_SUBS; i++, n++) {
        struct client *c = &clients[n];
        *c = (struct client){.kind = K_SUB, .id = n};
        checked_open(c, i == 1);
        c->nsubs = SUBS_PER_CLIENT;
        for (int s = 0; s < c->nsubs; s++) {
            snprintf(c->subs[s].pattern, sizeof(c->subs[s].pattern), "y.%d.%d", i, s);
            c->subs[s].sid = subscribe(c, c->subs[s].pattern, NULL);
        }
    }
    for (int i = 0; i < N_FILLERS; i++, n++) {
        struct client *c = &clients[n];
        *c = (struct client){.kind = K_SUB, .id = n};
        checked_open(c, false);
        for (int k = 0; k < FILLER_SUBS; k++) {
            char subject[32];
            snprintf(subject, sizeof(subject), "z.%d.%d", i, k);
            subscribe(c, subject, NULL); /* not in c->subs: no MSG may come */
        }
    }
    for (int g = 0; g < N_GROUPS; g++) {
        for (int m = 0; m < GROUP_MEMBERS; m++, n++) {
            struct client *c = &clients[n];
            *c = (struct client){.kind = K_GROUP, .id = n, .group = g};
            checked_open(c, m == 1);
            char queue[16];
            snprintf(queue, sizeof(queue), "g%d", g);
            c->nsubs = 1;
            snprintf(c->subs[0].pattern, sizeof(c->subs[0].pattern), "%s", group_patterns[g]);
            c->subs[0].sid = subscribe(c, group_patterns[g], queue);
        }
    }
    for (; n < N_CLIENTS; n++) {
        clients[n] = (struct client){.kind = K_CHAOS, .id = n, .fd = -1};
    }
    checked_barrier(harness_now_ms() + DRAIN_MS);
    for (int i = 0; i < N_CLIENTS; i++) {
        cr_assert(clients[i].kind == K_CHAOS || clients[i].welcomed, "client %d: no WELCOME", i);
    }

    /* The random phase. */
    int64_t end = harness_now_ms() + (int64_t)seconds * 1000;
    uint64_t rounds = 0;
    uint64_t chaos_started = 0;
    while (harness_now_ms() < end) {
        int64_t now = harness_now_ms();
        for (int i = 0; i < N_CLIENTS; i++) {
            struct client *c = &clients[i];
            switch (c->kind) {
            case K_PUB:
                if (chance(30)) {
                    publisher_burst(c, i);
                }
                break;
            case K_SUB:
            case K_GROUP:
            case K_LOSSLESS:
                /* Paused about a fifth of the time, in spells of up to
                 * 300 ms (a round takes well under a millisecond); a
                 * lossless one for less than its stall bound. */
                if (c->reading && rnd_below(10000) < 5) {
                    c->reading = false; /* stop reading for a while */
                    c->resume_at =
                        now + 10 + rnd_below(c->kind == K_LOSSLESS ? LOSSLESS_PAUSE_MS : 300);
                } else if (!c->reading && now >= c->resume_at) {
                    c->reading = true;
                }
                break;
            case K_CHAOS:
                if (c->fd < 0) {
                    chaos_start(c, now);
                    chaos_started++;
                } else if (now >= c->die_at) {
                    client_kill(c);
                } else if (chance(30)) {
                    chaos_act(c, now);
                }
                break;
            }
        }
        pump(1);
        rounds++;
    }

    /* Stop the chaos, then drain: every publisher's output is written
     * and processed (its PONG), then every subscriber has everything
     * queued to it, DROPPED notices included (PINGs until a round brings
     * nothing new). */
    for (int i = 0; i < N_CLIENTS; i++) {
        if (clients[i].kind == K_CHAOS) {
            client_kill(&clients[i]);
        }
    }
    int64_t deadline = harness_now_ms() + DRAIN_MS;
    checked_barrier(deadline);
    for (int quiet = 0; quiet < 3;) {
        uint64_t before = 0;
        for (int i = 0; i < N_CLIENTS; i++) {
            before += clients[i].received + clients[i].dropped;
        }
        checked_barrier(deadline);
        uint64_t after = 0;
        for (int i = 0; i < N_CLIENTS; i++) {
            after += clients[i].received + clients[i].dropped;
        }
        quiet = after == before ? quiet + 1 : 0;
    }

    uint64_t published = 0;
    uint64_t received = 0;
    uint64_t dropped = 0;
    uint64_t group_got[N_GROUPS] = {0};
    for (int i = 0; i < N_CLIENTS; i++) {
        struct client *c = &clients[i];
        published += c->kind == K_PUB ? c->seq : 0;
        received += c->received;
        dropped += c->dropped;
        if (c->kind == K_SUB) {
            cr_expect_eq(c->received + c->dropped, c->expected,
                         "subscriber %d: received %" PRIu64 " + dropped %" PRIu64
                         " != published to it %" PRIu64 " (seed %" PRIu64 ")",
                         i, c->received, c->dropped, c->expected, seed);
        } else if (c->kind == K_LOSSLESS) {
            cr_expect_eq(c->dropped, 0,
                         "lossless subscriber %d was told DROPPED %" PRIu64 " (seed %" PRIu64 ")",
                         i, c->dropped, seed);
            cr_expect_eq(c->received, c->expected,
                         "lossless subscriber %d: received %" PRIu64 " != published to it %" PRIu64
                         " (seed %" PRIu64 ")",
                         i, c->received, c->expected, seed);
        } else if (c->kind == K_GROUP) {
            group_got[c->group] += c->received + c->dropped;
        }
    }
    for (int g = 0; g < N_GROUPS; g++) {
        cr_expect_eq(group_got[g], group_expected[g],
                     "queue group g%d: received + dropped %" PRIu64 " != published %" PRIu64
                     " (seed %" PRIu64 ")",
                     g, group_got[g], group_expected[g], seed);
    }
    fprintf(stderr,
            "stress: %" PRIu64 " rounds, %" PRIu64 " chaos clients, %" PRIu64
            " counted messages published, %" PRIu64 " received, %" PRIu64 " dropped; %" PRIu64
            " stuck lossless subscribers cut, of %" PRIu64 " that lived long enough\n",
            rounds, chaos_started, published, received, dropped, lossless_cut, lossless_due);
    cr_expect_gt(lossless_cut, 0, "no stuck lossless subscriber was cut (seed %" PRIu64 ")", seed);
    cr_expect_gt(dropped, 0, "no message was dropped: the test did not exercise slow consumers");
    fprintf(stderr,
            "stress: %" PRIu64 " counted messages sent with a descriptor, %" PRIu64
            " descriptors received\n",
            fds_sent, fds_received);

    for (int i = 0; i < N_CLIENTS; i++) {
        client_kill(&clients[i]);
        free(clients[i].in);
        free(clients[i].out);
    }
    /* Every descriptor that came in with a message, claimed or not, is
     * closed once its connections are. */
    int64_t until = harness_now_ms() + 10000;
    while (count_fds(broker.pid) > broker_fds && harness_now_ms() < until) {
        poll(NULL, 0, 20);
    }
    if (count_fds(broker.pid) > broker_fds) {
        char fds[4096];
        list_fds(broker.pid, fds, sizeof(fds));
        cr_expect_fail("the broker holds %d descriptors, %d before the clients (seed %" PRIu64
                       "):%s",
                       count_fds(broker.pid), broker_fds, seed, fds);
    }
    close(stress_memfd);
    harness_stop(&broker);
}
