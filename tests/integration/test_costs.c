/*
 * test_costs.c - what a client can make the broker spend: memory for its
 * subscriptions and retained values, and CPU that would stall everyone
 * else. Each case is one a client could once grow without bound: patterns
 * of many one-byte tokens (about 290 bytes of broker memory per token),
 * memory not given back after unsubscribing, tiny retained values costing
 * twenty times what was counted, removal quadratic in the subscriptions
 * of one pattern or one node, a wildcard SUB scanning the whole retained
 * store, and tokens crafted to collide in an unkeyed hash table.
 *
 * Memory is the broker's VmRSS (/proc/PID/status), CPU its utime + stime
 * (/proc/PID/stat), both read from outside; the bounds are generous
 * multiples of what the broker needs, and a small fraction of what these
 * cases cost before. Latency bounds ("an unrelated PING is answered within
 * a second") only catch stalls of several seconds. RSS bounds are skipped
 * under AddressSanitizer (its quarantine keeps freed memory on purpose)
 * and under a wrapper such as valgrind; CPU and latency bounds under a
 * wrapper.
 */
#include "harness.h"

#include "frame.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define COSTS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COSTS_ASAN 1
#endif
#endif
#ifndef COSTS_ASAN
#define COSTS_ASAN 0
#endif

static struct harness_broker broker;

static void teardown(void)
{
    harness_cleanup(&broker);
}

TestSuite(costs, .fini = teardown, .timeout = 300);

static void start(const char *const *args)
{
    int r = harness_start(&broker, false, args);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
}

static bool rss_checked(void)
{
    return !COSTS_ASAN && !harness_wrapped();
}

/* ---- raw frames, in bulk -------------------------------------------------- */

/* A growing buffer of frames to send in one write. */
struct batch {
    uint8_t *data;
    size_t len;
    size_t cap;
};

static void batch_add(struct batch *bt, uint8_t op, uint8_t flags, uint32_t sid,
                      const char *subject, size_t subject_len, const char *reply, size_t reply_len,
                      const void *payload, size_t payload_len)
{
    size_t size = frame_encoded_size(subject_len, reply_len, 0, payload_len);
    if (bt->cap - bt->len < size) {
        bt->cap = (bt->cap + size) * 2;
        bt->data = realloc(bt->data, bt->cap);
        cr_assert_not_null(bt->data);
    }
    bt->len += frame_encode(bt->data + bt->len, op, flags, sid, subject, subject_len, reply,
                            reply_len, NULL, 0, payload, payload_len);
}

static void batch_sub(struct batch *bt, uint32_t sid, const char *pattern, const char *queue)
{
    batch_add(bt, FRAME_OP_SUB, 0, sid, pattern, strlen(pattern), queue, queue ? strlen(queue) : 0,
              NULL, 0);
}

static void batch_free(struct batch *bt)
{
    free(bt->data);
    *bt = (struct batch){0};
}

static uint8_t body[1 << 16];

/* Send the batch (if any), then a PING, and read up to its PONG: the broker
 * has handled everything before it. Returns the ERR frames read, and
 * asserts there were no others but MSGs. */
static unsigned send_and_sync(int fd, struct batch *bt)
{
    static uint32_t token;
    if (bt != NULL && bt->len > 0) {
        harness_write(fd, bt->data, bt->len);
        bt->len = 0;
    }
    uint8_t ping[FRAME_HEADER_SIZE];
    frame_encode_header(ping, FRAME_HEADER_SIZE, FRAME_OP_PING, 0, 0, 0, 0, ++token);
    harness_write(fd, ping, sizeof(ping));
    unsigned errs = 0;
    for (;;) {
        uint8_t hdr[FRAME_HEADER_SIZE];
        long size = harness_read_frame(fd, hdr, body, sizeof(body), 60000);
        cr_assert_gt(size, 0, "no PONG from the broker");
        if (hdr[4] == FRAME_OP_PONG && frame_get_u32(hdr + 12) == token) {
            return errs;
        }
        if (hdr[4] == FRAME_OP_ERR) {
            errs++;
        } else {
            cr_assert_eq(hdr[4], FRAME_OP_MSG, "unexpected op 0x%02x", hdr[4]);
        }
    }
}

/* Milliseconds until the broker answers a PING on fd. */
static int64_t pong_ms(int fd)
{
    int64_t t0 = harness_now_ms();
    send_and_sync(fd, NULL);
    return harness_now_ms() - t0;
}

/* The broker's CPU time (user + system), in milliseconds. */
static int64_t broker_cpu_ms(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)broker.pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char line[1024];
    cr_assert_not_null(fgets(line, sizeof(line), f));
    fclose(f);
    /* After "(comm)": state is field 3; utime and stime are 14 and 15. */
    const char *p = strrchr(line, ')');
    cr_assert_not_null(p);
    unsigned long long utime;
    unsigned long long stime;
    int n = sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime);
    cr_assert_eq(n, 2, "cannot parse %s", path);
    return (int64_t)((utime + stime) * 1000 / (unsigned long long)sysconf(_SC_CLK_TCK));
}

static long rss_kib(void)
{
    long kib = harness_status_kib(&broker, "VmRSS");
    cr_assert_gt(kib, 0, "no VmRSS for the broker");
    return kib;
}

/* A numeric key of $SYS.STATS. Waits long: a broker that stalls must fail
 * the test's bounds, not this request. */
static long long stat_of(sb_client *c, const char *key)
{
    sb_msg reply;
    int r = sb_request(c, "$SYS.STATS", NULL, 0, &reply, 60000);
    cr_assert_eq(r, 0, "$SYS.STATS: %s", sb_strerror(r));
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, reply.payload, (int)reply.payload_len);
    json_tokener_free(tok);
    json_object *v;
    cr_assert(json_object_object_get_ex(o, key, &v), "no %s in $SYS.STATS", key);
    long long n = json_object_get_int64(v);
    json_object_put(o);
    return n;
}

/* ---- memory per subscription --------------------------------------------- */

enum {
    LONG_CONNS = 3,
    LONG_PER_CONN = 700, /* 2,100 patterns of 1,023 bytes: 2.2 MB of SUB frames */
    LONG_TOKENS = 512,
};

/* Pattern i: 512 one-byte tokens, the first two spelling i, so that no two
 * patterns share more than their first node. */
static size_t long_pattern(char *out, unsigned i)
{
    static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    size_t len = 0;
    for (unsigned t = 0; t < LONG_TOKENS; t++) {
        if (t > 0) {
            out[len++] = '.';
        }
        out[len++] = t == 0 ? letters[i % 52] : t == 1 ? letters[i / 52 % 52] : 'x';
    }
    out[len] = '\0';
    return len;
}

/* Subscribe every connection to its share of the long patterns. */
static void subscribe_long(const int *fds)
{
    char pattern[SB_SUBJECT_MAX + 1];
    for (unsigned c = 0; c < LONG_CONNS; c++) {
        struct batch bt = {0};
        for (unsigned k = 0; k < LONG_PER_CONN; k++) {
            unsigned i = c * LONG_PER_CONN + k;
            size_t len = long_pattern(pattern, i);
            batch_add(&bt, FRAME_OP_SUB, 0, k + 1, pattern, len, NULL, 0, NULL, 0);
        }
        cr_assert_eq(send_and_sync(fds[c], &bt), 0, "a SUB was refused");
        batch_free(&bt);
    }
}

/*
 * 2,100 subscriptions to distinct patterns of 512 one-byte tokens: 2.2 MB
 * of SUB frames. They cost about 17 KiB of broker memory each (512 nodes
 * of 32 bytes); the bound is 24 KiB. They cost about 148 KiB each (290 MB
 * in all) while every node was 120 bytes with an 8-slot table. Then
 * unsubscribing them all gives the memory back to the system: RSS falls to
 * within a quarter of the growth (it kept 111 of 144 MB).
 */
Test(costs, long_patterns_cost_little_and_memory_comes_back)
{
    start(NULL);
    int fds[LONG_CONNS];
    for (unsigned c = 0; c < LONG_CONNS; c++) {
        fds[c] = harness_raw(&broker, true);
    }
    long before = rss_kib();
    subscribe_long(fds);
    long after = rss_kib();
    long grown = after - before;
    fprintf(stderr,
            "costs: %d subscriptions of %d one-byte tokens: RSS %ld -> %ld KiB (%+ld KiB, %ld "
            "bytes each)\n",
            LONG_CONNS * LONG_PER_CONN, LONG_TOKENS, before, after, grown,
            grown * 1024 / (LONG_CONNS * LONG_PER_CONN));
    if (rss_checked()) {
        cr_assert_leq(grown, (long)LONG_CONNS * LONG_PER_CONN * 24,
                      "RSS grew by %ld KiB for %d subscriptions", grown,
                      LONG_CONNS * LONG_PER_CONN);
    }

    /* Unsubscribe everything, then wait (bounded) for the trim timer to
     * give the pages back. */
    for (unsigned c = 0; c < LONG_CONNS; c++) {
        struct batch bt = {0};
        for (unsigned k = 0; k < LONG_PER_CONN; k++) {
            batch_add(&bt, FRAME_OP_UNSUB, 0, k + 1, NULL, 0, NULL, 0, NULL, 0);
        }
        cr_assert_eq(send_and_sync(fds[c], &bt), 0, "an UNSUB was refused");
        batch_free(&bt);
    }
    long kept = rss_kib() - before;
    int64_t deadline = harness_now_ms() + 5000;
    while (kept > grown / 4 && harness_now_ms() < deadline) {
        poll(NULL, 0, 100);
        kept = rss_kib() - before;
    }
    fprintf(stderr, "costs: after unsubscribing everything, %+ld KiB of the %+ld KiB kept\n", kept,
            grown);
    if (rss_checked()) {
        cr_assert_leq(kept, grown / 4, "kept %ld of %ld KiB after unsubscribing everything", kept,
                      grown);
    }
    for (unsigned c = 0; c < LONG_CONNS; c++) {
        send_and_sync(fds[c], NULL);
        close(fds[c]);
    }
    harness_stop(&broker);
}

/* ---- memory per retained value ------------------------------------------- */

/*
 * Tiny retained values under --max-retained-bytes 3000000: the limit counts
 * what each value really takes (its frame, its trie node, its slot), so the
 * broker's RSS grows by about the limit, however small the values. It once
 * counted subject + payload: 752,092 one-byte values were "3.0 MB" and
 * 55 MB of RSS; here 200,000 of them would be about 14 MB.
 */
Test(costs, retained_values_cost_what_the_limit_says)
{
    enum { VALUES = 200000, LIMIT = 3000000, BATCH = 400 };
    const char *const args[] = {"--max-retained-bytes", "3000000", NULL};
    start(args);
    sb_client *asker = harness_client(&broker, "asker", true);
    int fd = harness_raw(&broker, true);
    send_and_sync(fd, NULL);
    long before = rss_kib();
    struct batch bt = {0};
    char subject[32];
    unsigned refused = 0;
    for (unsigned i = 0; i < VALUES; i++) {
        int len = snprintf(subject, sizeof(subject), "rb.%u", i);
        batch_add(&bt, FRAME_OP_PUB, FRAME_PUB_RETAIN, 0, subject, (size_t)len, NULL, 0, "v", 1);
        if ((i + 1) % BATCH == 0) {
            refused += send_and_sync(fd, &bt);
        }
    }
    refused += send_and_sync(fd, &bt);
    batch_free(&bt);
    long grown = rss_kib() - before;
    long long stored = stat_of(asker, "retained");
    long long bytes = stat_of(asker, "retained_bytes");
    fprintf(stderr,
            "costs: %d one-byte retained values under max_retained_bytes %d: %lld stored (%lld "
            "bytes each), %u refused; retained_bytes %lld; RSS %+ld KiB = %.2f x the limit\n",
            VALUES, LIMIT, stored, stored ? bytes / stored : 0, refused, bytes, grown,
            grown * 1024.0 / LIMIT);
    cr_assert_eq((unsigned long long)stored + refused, VALUES);
    cr_assert_leq(bytes, LIMIT);
    cr_assert_gt(refused, 0, "everything fit: the limit counted too little");
    if (rss_checked()) {
        /* The limit, plus slack for the allocator's free chunks and the
         * publisher's reply buffer: 1.25 times. */
        cr_assert_leq(grown * 1024, LIMIT * 5 / 4, "RSS grew by %ld KiB under a %d-byte limit",
                      grown, LIMIT);
    }
    close(fd);
    sb_close(asker);
    harness_stop(&broker);
}

/* ---- CPU: removal, groups, retained wildcards, crafted tokens ------------ */

enum { MANY = 65536 };

/*
 * Three connections with 65,536 subscriptions each on one pattern; the
 * oldest disconnects. Each subscription leaves in O(1), so the broker
 * spends milliseconds, and an unrelated client's PING is answered at once.
 * Removal used to search the pattern's vector and close the gap: 4.2 s of
 * CPU, with every other client waiting.
 */
Test(costs, disconnect_of_many_subscriptions_on_one_pattern)
{
    start(NULL);
    int fds[3];
    for (int c = 0; c < 3; c++) {
        fds[c] = harness_raw(&broker, true);
        struct batch bt = {0};
        for (uint32_t sid = 1; sid <= MANY; sid++) {
            batch_sub(&bt, sid, "same.pattern", NULL);
        }
        cr_assert_eq(send_and_sync(fds[c], &bt), 0);
        batch_free(&bt);
    }
    sb_client *probe = harness_client(&broker, "probe", true);
    int probe_fd = harness_raw(&broker, true);
    /* The probe's own inbox subscription is the one more. */
    cr_assert_eq(stat_of(probe, "subscriptions"), 3 * MANY + 1);

    int64_t cpu0 = broker_cpu_ms();
    int64_t t0 = harness_now_ms();
    close(fds[0]);
    /* PING until the subscriptions are gone, keeping the slowest answer
     * (to a PING or to the request that checks). */
    int64_t worst = 0;
    for (;;) {
        int64_t t = harness_now_ms();
        bool gone = stat_of(probe, "subscriptions") == 2 * MANY + 1;
        int64_t ms = harness_now_ms() - t;
        worst = ms > worst ? ms : worst;
        if (gone) {
            break;
        }
        ms = pong_ms(probe_fd);
        worst = ms > worst ? ms : worst;
        cr_assert_lt(harness_now_ms() - t0, 60000, "the subscriptions never went");
    }
    int64_t cpu = broker_cpu_ms() - cpu0;
    int64_t wall = harness_now_ms() - t0;
    fprintf(stderr,
            "costs: disconnect with %d subscriptions on one pattern: %lld ms of broker CPU, gone "
            "after %lld ms, slowest PONG %lld ms\n",
            MANY, (long long)cpu, (long long)wall, (long long)worst);
    if (!harness_wrapped()) {
        cr_assert_leq(worst, 1000, "a PING waited %lld ms", (long long)worst);
        cr_assert_leq(cpu, 500, "the disconnect took %lld ms of CPU", (long long)cpu);
    }
    close(fds[1]);
    close(fds[2]);
    close(probe_fd);
    sb_close(probe);
    harness_stop(&broker);
}

/*
 * 65,536 distinct queue groups on one pattern, then the connection goes:
 * each group is found by name with one keyed lookup, each member removed
 * in O(1). Finding a group used to scan the node's groups (6 s of CPU for
 * the SUBs alone), and removing one closed the gap in that vector.
 */
Test(costs, many_queue_groups_on_one_pattern)
{
    start(NULL);
    int fd = harness_raw(&broker, true);
    int probe_fd = harness_raw(&broker, true);
    sb_client *probe = harness_client(&broker, "probe", true);
    cr_assert_eq(stat_of(probe, "subscriptions"), 1); /* its inbox */
    struct batch bt = {0};
    char queue[16];
    for (uint32_t sid = 1; sid <= MANY; sid++) {
        snprintf(queue, sizeof(queue), "q%u", sid);
        batch_sub(&bt, sid, "groups.x", queue);
    }
    int64_t cpu0 = broker_cpu_ms();
    cr_assert_eq(send_and_sync(fd, &bt), 0);
    batch_free(&bt);
    int64_t cpu_sub = broker_cpu_ms() - cpu0;

    cpu0 = broker_cpu_ms();
    close(fd);
    int64_t t0 = harness_now_ms();
    int64_t worst = 0;
    for (;;) {
        int64_t t = harness_now_ms();
        bool gone = stat_of(probe, "subscriptions") == 1; /* the probe's inbox */
        int64_t ms = harness_now_ms() - t;
        worst = ms > worst ? ms : worst;
        if (gone) {
            break;
        }
        ms = pong_ms(probe_fd);
        worst = ms > worst ? ms : worst;
        cr_assert_lt(harness_now_ms() - t0, 60000, "the subscriptions never went");
    }
    int64_t cpu_close = broker_cpu_ms() - cpu0;
    fprintf(stderr,
            "costs: %d queue groups on one pattern: SUBs %lld ms of broker CPU, disconnect %lld "
            "ms, slowest PONG %lld ms\n",
            MANY, (long long)cpu_sub, (long long)cpu_close, (long long)worst);
    if (!harness_wrapped()) {
        cr_assert_leq(worst, 1000, "a PING waited %lld ms", (long long)worst);
        cr_assert_leq(cpu_sub, 1000, "the SUBs took %lld ms of CPU", (long long)cpu_sub);
        cr_assert_leq(cpu_close, 1000, "the disconnect took %lld ms of CPU", (long long)cpu_close);
    }
    close(probe_fd);
    sb_close(probe);
    harness_stop(&broker);
}

/*
 * 500,000 retained values, and a client that subscribes and unsubscribes
 * in a loop with wildcard patterns that match none of them: each SUB walks
 * along its pattern in the retained trie and stops at once. An unrelated
 * client's PING, sent right behind the loop, is answered at once. Each
 * wildcard SUB used to scan every value (54.7 ms), and such a loop froze
 * the broker for 10.8 s.
 */
Test(costs, wildcard_subscriptions_do_not_scan_the_retained_store)
{
    enum { VALUES = 500000, BATCH = 5000, LOOPS = 200 };
    const char *const args[] = {"--max-retained-bytes", "1000000000", NULL};
    start(args);
    int fd = harness_raw(&broker, true);
    struct batch bt = {0};
    char subject[32];
    for (unsigned i = 0; i < VALUES; i++) {
        int len = snprintf(subject, sizeof(subject), "rs.%u", i);
        batch_add(&bt, FRAME_OP_PUB, FRAME_PUB_RETAIN, 0, subject, (size_t)len, NULL, 0, "v", 1);
        if ((i + 1) % BATCH == 0) {
            cr_assert_eq(send_and_sync(fd, &bt), 0, "a value was refused");
        }
    }
    sb_client *asker = harness_client(&broker, "asker", true);
    cr_assert_eq(stat_of(asker, "retained"), VALUES);

    int attacker = harness_raw(&broker, true);
    int probe_fd = harness_raw(&broker, true);
    static const char *const patterns[] = {"none.>", "*.none", "none.*.x", "rs.none.>"};
    for (uint32_t i = 0; i < LOOPS; i++) {
        batch_sub(&bt, i + 1, patterns[i % 4], NULL);
        batch_add(&bt, FRAME_OP_UNSUB, 0, i + 1, NULL, 0, NULL, 0, NULL, 0);
    }
    int64_t cpu0 = broker_cpu_ms();
    harness_write(attacker, bt.data, bt.len);
    int64_t ms = pong_ms(probe_fd);
    cr_assert_eq(send_and_sync(attacker, NULL), 0);
    int64_t cpu = broker_cpu_ms() - cpu0;
    batch_free(&bt);
    fprintf(stderr,
            "costs: %d wildcard SUB/UNSUB over %d retained values: %lld ms of broker CPU, PONG "
            "after %lld ms\n",
            LOOPS, VALUES, (long long)cpu, (long long)ms);
    if (!harness_wrapped()) {
        cr_assert_leq(ms, 1000, "a PING waited %lld ms", (long long)ms);
        cr_assert_leq(cpu, 500, "the loop took %lld ms of CPU", (long long)cpu);
    }
    close(probe_fd);
    close(attacker);
    close(fd);
    sb_close(asker);
    harness_stop(&broker);
}

/* The child-table hash before it was keyed: FNV-style steps and fmix64,
 * the same in every process. */
static uint64_t old_token_hash(const char *tok, size_t len)
{
    uint64_t h = 0xcbf29ce484222325u ^ len;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, tok, 8);
        h = (h ^ w) * 0x100000001b3u;
        h ^= h >> 29;
        tok += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, tok, len);
    h ^= w;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53u;
    h ^= h >> 33;
    return h;
}

/*
 * `n` 16-byte tokens whose old hash puts them, in any table of up to
 * 65,536 slots, at home slots within 256 of "sensors"'s: with linear
 * probing they form one run, and every insert or lookup among them walks
 * it. Found by brute force over random letters (1 in 256 qualifies).
 */
static char (*crafted_tokens(size_t n))[17]
{
    enum { WINDOW = 256 };
    char(*toks)[17] = calloc(n, sizeof(*toks));
    cr_assert_not_null(toks);
    uint64_t home = old_token_hash("sensors", 7) & 0xffff;
    uint64_t rng = 0x12345;
    for (size_t found = 0; found < n;) {
        char t[17];
        for (int i = 0; i < 16; i += 8) {
            rng = rng * 6364136223846793005u + 1442695040888963407u;
            for (int k = 0; k < 8; k++) {
                t[i + k] = (char)('A' + (rng >> (64 - 5 - 5 * k) & 0x1f)); /* A..` */
            }
        }
        t[16] = '\0';
        if (((old_token_hash(t, 16) - home) & 0xffff) < WINDOW) {
            memcpy(toks[found++], t, sizeof(t));
        }
    }
    return toks;
}

/*
 * 48,000 SUBs to "sensors.<token>" with tokens crafted against the old
 * unkeyed child-table hash: the keyed hash spreads them like any tokens,
 * and the SUBs take the broker milliseconds. With the old hash each SUB
 * probed one run as long as the SUBs before it (60,000 such SUBs: 4.2 s of
 * CPU, and publishes on sensors.* 220 times slower; 48,000 here: over
 * 1 s).
 */
Test(costs, crafted_tokens_do_not_flood_the_trie)
{
    enum { N = 48000 }; /* the most a 65,536-slot table holds */
    int64_t t = harness_now_ms();
    char(*toks)[17] = crafted_tokens(N);
    fprintf(stderr, "costs: crafted %d tokens in %lld ms\n", N, (long long)(harness_now_ms() - t));
    start(NULL);
    int fd = harness_raw(&broker, true);
    int probe_fd = harness_raw(&broker, true);
    struct batch bt = {0};
    char pattern[32];
    for (uint32_t i = 0; i < N; i++) {
        snprintf(pattern, sizeof(pattern), "sensors.%s", toks[i]);
        batch_sub(&bt, i + 1, pattern, NULL);
    }
    int64_t cpu0 = broker_cpu_ms();
    harness_write(fd, bt.data, bt.len);
    int64_t ms = pong_ms(probe_fd);
    cr_assert_eq(send_and_sync(fd, NULL), 0, "a SUB was refused");
    int64_t cpu = broker_cpu_ms() - cpu0;
    batch_free(&bt);
    fprintf(stderr,
            "costs: %d SUBs of tokens crafted against the old hash: %lld ms of broker CPU, PONG "
            "after %lld ms\n",
            N, (long long)cpu, (long long)ms);
    if (!harness_wrapped()) {
        cr_assert_leq(cpu, 250, "the SUBs took %lld ms of CPU", (long long)cpu);
    }
    close(probe_fd);
    close(fd);
    free(toks);
    harness_stop(&broker);
}
