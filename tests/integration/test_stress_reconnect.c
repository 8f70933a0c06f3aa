/*
 * test_stress_reconnect.c - a seeded, randomized run of library clients
 * that reconnect (sb_options.reconnect) while the broker is restarted
 * under them, again and again: stopped (ERR 9), killed (end of file), or
 * killed and left away for a while (its socket refusing). One thread
 * drives every client from one poll() loop through the event-loop API
 * (sb_fd(), sb_events(), sb_timeout_ms(), sb_process()), with blocking
 * flushes mixed in at random, while publishers keep publishing (held while
 * disconnected, some with a small reconnect buffer that fills).
 *
 * What must hold:
 *   - each subscription receives each publisher's messages in order, with
 *     gaps (what was lost with a broker) but never a repeat;
 *   - a subscription with an auto-unsubscribe count never receives more
 *     than its count in total, across the restarts (the count is replayed
 *     with what is left of it);
 *   - the state callback alternates DISCONNECTED and RECONNECTED, with
 *     times that make sense, and every client is connected again at the
 *     end;
 *   - once all are back, a final round reaches every subscription: all of
 *     it to each plain one, each message to exactly one member of a queue
 *     group; so every subscription was replayed, queue group included.
 * The library runs in this process, so the sanitizers check it too.
 *
 * SOCKBUS_STRESS_SEED replays a run (the seed is printed at the start);
 * SOCKBUS_STRESS_SECONDS sets the length of the random phase (default 10).
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SECONDS_DEFAULT 10
#define N_PUBS          3
#define N_SUBS          5
#define N_GROUPS        2
#define GROUP_MEMBERS   3
#define N_CLIENTS       (N_PUBS + N_SUBS + N_GROUPS * GROUP_MEMBERS)
#define SUBS_MAX        3
#define FINAL_PER_PUB   20
#define STATES_MAX      256

static struct harness_broker broker;
static uint64_t rng_state;
static uint64_t seed;

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned rnd_below(unsigned n)
{
    return (unsigned)(rnd() % n);
}

struct sub {
    uint32_t sid;
    char pattern[32];
    int group;            /* -1: none */
    uint32_t max;         /* auto-unsubscribe count; 0: none */
    uint64_t received;    /* in all */
    int64_t last[N_PUBS]; /* last sequence number seen from each publisher */
    uint64_t final_got;
};

struct client {
    int id;
    bool publisher;
    sb_client *c;
    struct sub subs[SUBS_MAX];
    int nsubs;
    uint64_t next_seq;   /* publisher */
    uint64_t held_fails; /* SB_E_DISCONNECTED from a full reconnect buffer */
    int64_t next_c_at;   /* when to publish on the slow topic */
    int nstates;
    sb_state_change states[STATES_MAX];
};

static struct client clients[N_CLIENTS];

static void fail_at(const struct client *cl, const char *what)
{
    cr_assert_fail("client %d: %s (seed %" PRIu64 ")", cl->id, what, seed);
}

static void on_state(sb_client *c, const sb_state_change *change, void *arg)
{
    (void)c;
    struct client *cl = arg;
    if (cl->nstates < STATES_MAX) {
        cl->states[cl->nstates] = *change;
    }
    cl->nstates++;
}

/* "<publisher> <seq> [final]" on "r.<publisher>.<topic>". */
static void on_msg(sb_client *c, const sb_msg *m, void *arg)
{
    (void)c;
    struct client *cl = arg;
    struct sub *s = NULL;
    for (int i = 0; i < cl->nsubs; i++) {
        if (cl->subs[i].sid == m->sid) {
            s = &cl->subs[i];
        }
    }
    if (s == NULL) {
        fail_at(cl, "a message on an sid it never subscribed");
        return;
    }
    char text[64];
    size_t n = m->payload_len < sizeof(text) - 1 ? m->payload_len : sizeof(text) - 1;
    memcpy(text, m->payload, n);
    text[n] = '\0';
    int p;
    int64_t seq;
    char final[8] = "";
    if (sscanf(text, "%d %" SCNd64 " %7s", &p, &seq, final) < 2 || p < 0 || p >= N_PUBS) {
        fail_at(cl, "a message it cannot read");
        return;
    }
    if (seq <= s->last[p]) {
        char why[160];
        snprintf(why, sizeof(why), "sid %u (%s): seq %" PRId64 " of publisher %d after %" PRId64,
                 s->sid, s->pattern, seq, p, s->last[p]);
        fail_at(cl, why);
    }
    s->last[p] = seq;
    s->received++;
    if (s->max > 0 && s->received > s->max) {
        char why[160];
        snprintf(why, sizeof(why), "sid %u got %" PRIu64 " messages, its count is %u", s->sid,
                 s->received, s->max);
        fail_at(cl, why);
    }
    if (strcmp(final, "final") == 0) {
        s->final_got++;
    }
}

static const char *const patterns[] = {"r.>", "r.0.>", "r.*.a", "r.1.b", "r.2.*", "r.*.*"};

static void subscribe(struct client *cl, const char *pattern, int group, uint32_t max)
{
    struct sub *s = &cl->subs[cl->nsubs++];
    snprintf(s->pattern, sizeof(s->pattern), "%s", pattern);
    s->group = group;
    s->max = max;
    for (int p = 0; p < N_PUBS; p++) {
        s->last[p] = -1;
    }
    char queue[8];
    snprintf(queue, sizeof(queue), "g%d", group);
    cr_assert_eq(sb_subscribe(cl->c, pattern, group >= 0 ? queue : NULL, &s->sid), 0);
    if (max > 0) {
        cr_assert_eq(sb_unsubscribe(cl->c, s->sid, max), 0);
    }
}

static void connect_all(void)
{
    for (int i = 0; i < N_CLIENTS; i++) {
        struct client *cl = &clients[i];
        *cl = (struct client){.id = i, .publisher = i < N_PUBS};
        sb_options o = {
            .endpoint = broker.socket,
            .name = cl->publisher ? "stress-pub" : "stress-sub",
            .reconnect = true,
            /* One publisher with a small buffer, so that it fills. */
            .reconnect_buffer = i == 0 ? 2048 : 0,
        };
        int r = sb_connect(&cl->c, &o);
        cr_assert_eq(r, 0, "connect: %s", sb_strerror(r));
        sb_set_state_cb(cl->c, on_state, cl);
        sb_set_msg_cb(cl->c, on_msg, cl);
        if (cl->publisher) {
            continue;
        }
        if (i < N_PUBS + N_SUBS) {
            int n = 1 + (int)rnd_below(SUBS_MAX);
            for (int k = 0; k < n; k++) {
                /* Every other subscription of the last subscriber takes a
                 * count of the slow topic. */
                if (i == N_PUBS + N_SUBS - 1 && k % 2 == 0) {
                    subscribe(cl, "r.*.c", -1, 100 + rnd_below(200));
                    continue;
                }
                subscribe(cl, patterns[rnd_below(sizeof(patterns) / sizeof(patterns[0]))], -1, 0);
            }
        } else {
            subscribe(cl, "r.>", (i - N_PUBS - N_SUBS) / GROUP_MEMBERS, 0);
        }
        cr_assert_eq(sb_flush(cl->c, HARNESS_IO_MS), 0);
    }
}

/* One publish of publisher `cl` on topic a, b, or c (the slow one the
 * counted subscriptions take, so that their counts last across restarts);
 * while disconnected it is held, or fails
 * when the buffer is full (then the sequence number is not used up). */
static void publish(struct client *cl, char topic)
{
    char subject[32];
    char payload[64];
    snprintf(subject, sizeof(subject), "r.%d.%c", cl->id, topic);
    int n = snprintf(payload, sizeof(payload), "%d %" PRIu64, cl->id, cl->next_seq);
    int r = sb_publish(cl->c, subject, NULL, payload, (size_t)n);
    if (r == SB_E_DISCONNECTED) {
        cl->held_fails++;
        return;
    }
    cr_assert_eq(r, 0, "publish (seed %" PRIu64 "): %s", seed, sb_strerror(r));
    cl->next_seq++;
}

/* One turn of the loop: poll every client as the library asks, process
 * each, and now and then a blocking flush. */
static void turn(int max_wait_ms)
{
    struct pollfd fds[N_CLIENTS];
    int timeout = max_wait_ms;
    for (int i = 0; i < N_CLIENTS; i++) {
        fds[i] = (struct pollfd){.fd = sb_fd(clients[i].c), .events = sb_events(clients[i].c)};
        int t = sb_timeout_ms(clients[i].c);
        if (t >= 0 && t < timeout) {
            timeout = t;
        }
    }
    poll(fds, N_CLIENTS, timeout);
    for (int i = 0; i < N_CLIENTS; i++) {
        struct client *cl = &clients[i];
        int r = sb_process(cl->c);
        if (r < 0) {
            char why[96];
            snprintf(why, sizeof(why), "sb_process: %s", sb_strerror(r));
            fail_at(cl, why);
        }
        if (rnd_below(200) == 0) {
            r = sb_flush(cl->c, 50);
            if (r != 0 && r != -ETIMEDOUT && r != SB_E_DISCONNECTED) {
                char why[96];
                snprintf(why, sizeof(why), "sb_flush: %s", sb_strerror(r));
                fail_at(cl, why);
            }
        }
    }
}

static void run_for(int ms, bool publishing)
{
    int64_t end = harness_now_ms() + ms;
    while (harness_now_ms() < end) {
        if (publishing) {
            for (int p = 0; p < N_PUBS; p++) {
                unsigned burst = rnd_below(8);
                for (unsigned k = 0; k < burst; k++) {
                    publish(&clients[p], "ab"[rnd_below(2)]);
                }
                if (harness_now_ms() >= clients[p].next_c_at) {
                    publish(&clients[p], 'c'); /* 20 a second */
                    clients[p].next_c_at = harness_now_ms() + 50;
                }
            }
        }
        turn(publishing ? 5 : 20);
    }
}

static void check_states(const struct client *cl)
{
    cr_assert_leq(cl->nstates, STATES_MAX);
    for (int k = 0; k < cl->nstates; k++) {
        const sb_state_change *s = &cl->states[k];
        int want = k % 2 == 0 ? SB_STATE_DISCONNECTED : SB_STATE_RECONNECTED;
        if (s->state != want) {
            fail_at(cl, "the state callback did not alternate DISCONNECTED and RECONNECTED");
        }
        if (want == SB_STATE_RECONNECTED) {
            const sb_state_change *d = &cl->states[k - 1];
            if (s->lost_at.tv_sec != d->lost_at.tv_sec ||
                s->lost_at.tv_nsec != d->lost_at.tv_nsec || s->fd < 0 ||
                s->back_at.tv_sec < s->lost_at.tv_sec) {
                fail_at(cl, "RECONNECTED with times or socket that make no sense");
            }
        } else if (s->fd != -1 || s->err == 0) {
            fail_at(cl, "DISCONNECTED without an error, or with a socket");
        }
    }
    if (cl->nstates % 2 != 0 || sb_state(cl->c) != SB_STATE_CONNECTED) {
        fail_at(cl, "not connected at the end");
    }
}

static void teardown(void)
{
    harness_cleanup(&broker);
}

TestSuite(stress_reconnect, .fini = teardown, .timeout = 300);

Test(stress_reconnect, clients_survive_random_broker_restarts)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const char *env = getenv("SOCKBUS_STRESS_SEED");
    seed = env != NULL && *env != '\0'
               ? strtoull(env, NULL, 0)
               : (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 20 ^ (uint64_t)getpid();
    env = getenv("SOCKBUS_STRESS_SECONDS");
    uint64_t seconds = env != NULL && *env != '\0' ? strtoull(env, NULL, 0) : SECONDS_DEFAULT;
    rng_state = seed;
    fprintf(stderr,
            "stress_reconnect: seed %" PRIu64 " (replay with SOCKBUS_STRESS_SEED=%" PRIu64
            "), %" PRIu64 " s\n",
            seed, seed, seconds);
    int r = harness_start(&broker, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    connect_all();

    int restarts = 0;
    int64_t end = harness_now_ms() + (int64_t)seconds * 1000;
    while (harness_now_ms() < end) {
        run_for(300 + (int)rnd_below(1200), true);
        int how = (int)rnd_below(3);
        cr_assert_eq(harness_kill(&broker, how == 0 ? SIGTERM : SIGKILL),
                     how == 0 ? 0 : 128 + SIGKILL, "seed %" PRIu64, seed);
        if (how == 2) {
            run_for(100 + (int)rnd_below(900), true); /* the socket refuses meanwhile */
        }
        r = harness_restart(&broker, NULL);
        cr_assert_eq(r, 0, "sockbusd did not start again: %s", strerror(-r));
        restarts++;
    }
    run_for(200, true);

    /* Everyone back: within the backoff's bound, with a wide margin. */
    int64_t deadline = harness_now_ms() + 3 * HARNESS_IO_MS;
    for (;;) {
        int back = 0;
        for (int i = 0; i < N_CLIENTS; i++) {
            back += sb_state(clients[i].c) == SB_STATE_CONNECTED;
        }
        if (back == N_CLIENTS) {
            break;
        }
        cr_assert_lt(harness_now_ms(), deadline, "%d of %d clients back (seed %" PRIu64 ")", back,
                     N_CLIENTS, seed);
        turn(20);
    }
    for (int i = 0; i < N_CLIENTS; i++) {
        cr_assert_eq(sb_flush(clients[i].c, HARNESS_IO_MS), 0, "client %d (seed %" PRIu64 ")", i,
                     seed);
    }

    /* The final round: everything reaches every replayed subscription. */
    uint64_t final_subject[N_PUBS][2] = {{0}};
    for (int p = 0; p < N_PUBS; p++) {
        for (int k = 0; k < FINAL_PER_PUB; k++) {
            char subject[32];
            char payload[64];
            int topic = (int)rnd_below(2);
            snprintf(subject, sizeof(subject), "r.%d.%c", p, "ab"[topic]);
            int n = snprintf(payload, sizeof(payload), "%d %" PRIu64 " final", p,
                             clients[p].next_seq++);
            cr_assert_eq(sb_publish(clients[p].c, subject, NULL, payload, (size_t)n), 0);
            final_subject[p][topic]++;
        }
        cr_assert_eq(sb_flush(clients[p].c, HARNESS_IO_MS), 0);
    }
    deadline = harness_now_ms() + 3 * HARNESS_IO_MS;
    bool complete = false;
    while (!complete) {
        turn(20);
        complete = true;
        uint64_t group_got[N_GROUPS] = {0};
        for (int i = N_PUBS; i < N_CLIENTS; i++) {
            for (int k = 0; k < clients[i].nsubs; k++) {
                const struct sub *s = &clients[i].subs[k];
                if (s->group >= 0) {
                    group_got[s->group] += s->final_got;
                    continue;
                }
                uint64_t want = 0;
                for (int p = 0; p < N_PUBS; p++) {
                    for (int t = 0; t < 2; t++) {
                        char subject[32];
                        snprintf(subject, sizeof(subject), "r.%d.%c", p, "ab"[t]);
                        if (sb_pattern_match(s->pattern, strlen(s->pattern), subject,
                                             strlen(subject))) {
                            want += final_subject[p][t];
                        }
                    }
                }
                if (s->max > 0) {
                    continue; /* bounded by its count: checked as it arrives */
                }
                complete = complete && s->final_got == want;
                cr_assert_leq(s->final_got, want);
            }
        }
        for (int g = 0; g < N_GROUPS; g++) {
            cr_assert_leq(group_got[g], N_PUBS * FINAL_PER_PUB);
            complete = complete && group_got[g] == N_PUBS * FINAL_PER_PUB;
        }
        if (!complete && harness_now_ms() >= deadline) {
            cr_assert_fail("the final round did not reach every subscription (seed %" PRIu64 ")",
                           seed);
        }
    }

    uint64_t published = 0;
    uint64_t held_fails = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        check_states(&clients[i]);
        if (i < N_PUBS) {
            published += clients[i].next_seq;
            held_fails += clients[i].held_fails;
        }
        sb_close(clients[i].c);
    }
    fprintf(stderr,
            "stress_reconnect: %d restarts, %" PRIu64 " messages published, %" PRIu64
            " refused by a full reconnect buffer\n",
            restarts, published, held_fails);
    cr_assert_gt(restarts, 0);
    harness_stop(&broker);
}
