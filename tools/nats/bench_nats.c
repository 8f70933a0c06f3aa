/*
 * bench_nats.c - sockbus-nats-bench: the bridged path measured against
 * NATS alone (scripts/bench-nats starts the servers and runs this).
 *
 *   sockbus-nats-bench BUS_A BUS_B NATS_URL [N]
 *
 * Four figures, one line each:
 *   - bridged throughput: N messages of 128 bytes published on bus A and
 *     received on bus B, through A's bridge, NATS and B's bridge;
 *   - direct throughput: the same through nats-server alone, one libnats
 *     publisher and one libnats subscriber;
 *   - bridged round trip: a request on A answered by a responder on B;
 *   - direct round trip: natsConnection_Request() to a libnats responder.
 * Each stream keeps the publisher within WINDOW messages of the
 * subscriber (a credit window), so that it measures the path, not a
 * queue's drop policy; a message missing fails the run. Both publishers
 * refill the window once half of it has arrived, in one burst: topping
 * it up message by message made the bus publisher send (a system call)
 * once per message, where libnats gathers a publisher's messages in its
 * buffer, so the harness, not the path, set the pace.
 */
#include "sockbus.h"

#include <errno.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WINDOW  4000
#define SIZE    128
#define RTT_N   5000
#define WAIT_MS 10000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static sb_client *connect_bus(const char *endpoint)
{
    sb_options o = {.endpoint = endpoint, .name = "sockbus-nats-bench"};
    char err[SB_CONNECT_ERR_MAX];
    sb_client *c;
    if (sb_connect_ex(&c, &o, err, sizeof(err)) < 0) {
        fprintf(stderr, "sockbus-nats-bench: %s\n", err);
        exit(1);
    }
    return c;
}

static void fail(const char *what, const char *why)
{
    fprintf(stderr, "sockbus-nats-bench: %s: %s\n", what, why);
    exit(1);
}

/* N messages A -> B through the bridges; messages per second. */
static double bridged_stream(const char *a, const char *b, long n, const char *subject)
{
    sb_client *pub = connect_bus(a);
    sb_client *sub = connect_bus(b);
    sb_subscribe(sub, subject, NULL, NULL);
    sb_flush(sub, WAIT_MS);
    char payload[SIZE];
    memset(payload, 'x', sizeof(payload));
    /* The path is up once one message crosses. */
    sb_msg m;
    for (int i = 0;; i++) {
        sb_publish(pub, subject, NULL, payload, sizeof(payload));
        sb_flush(pub, WAIT_MS);
        if (sb_next_msg(sub, &m, 100) == 0) {
            break;
        }
        if (i > 100) {
            fail("bridged stream", "nothing crosses from bus A to bus B");
        }
    }
    while (sb_next_msg(sub, &m, 200) == 0) {
    }
    long sent = 0, got = 0;
    double t0 = now_s();
    while (got < n) {
        if (sent - got <= WINDOW / 2) {
            while (sent < n && sent < got + WINDOW) {
                sb_publish(pub, subject, NULL, payload, sizeof(payload));
                sent++;
            }
            sb_process(pub);
        }
        int r = sb_next_msg(sub, &m, 0);
        if (r == -ETIMEDOUT) {
            sb_flush(pub, WAIT_MS);
            r = sb_next_msg(sub, &m, WAIT_MS);
        }
        if (r < 0) {
            fail("bridged stream", "a message did not arrive (see the bridges' stats)");
        }
        got++;
    }
    double t = now_s() - t0;
    sb_close(pub);
    sb_close(sub);
    return (double)n / t;
}

static double direct_stream(const char *url, long n)
{
    natsConnection *pub, *subc;
    natsSubscription *sub;
    if (natsConnection_ConnectTo(&pub, url) != NATS_OK ||
        natsConnection_ConnectTo(&subc, url) != NATS_OK) {
        fail("direct stream", "cannot connect to NATS");
    }
    natsConnection_SubscribeSync(&sub, subc, "direct.stream");
    natsSubscription_SetPendingLimits(sub, -1, -1);
    natsConnection_Flush(subc);
    char payload[SIZE];
    memset(payload, 'x', sizeof(payload));
    long sent = 0, got = 0;
    double t0 = now_s();
    while (got < n) {
        if (sent - got <= WINDOW / 2) {
            while (sent < n && sent < got + WINDOW) {
                natsConnection_Publish(pub, "direct.stream", payload, SIZE);
                sent++;
            }
        }
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, sub, 0);
        if (s == NATS_TIMEOUT) {
            natsConnection_Flush(pub);
            s = natsSubscription_NextMsg(&m, sub, WAIT_MS);
        }
        if (s != NATS_OK) {
            fail("direct stream", natsStatus_GetText(s));
        }
        natsMsg_Destroy(m);
        got++;
    }
    double t = now_s() - t0;
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(pub);
    natsConnection_Destroy(subc);
    return (double)n / t;
}

struct responder {
    const char *endpoint;
    volatile int stop;
};

static void *respond(void *arg)
{
    struct responder *r = arg;
    sb_client *c = connect_bus(r->endpoint);
    sb_subscribe(c, "svc.bench.rtt", NULL, NULL);
    sb_flush(c, WAIT_MS);
    while (!r->stop) {
        sb_msg m;
        if (sb_next_msg(c, &m, 100) == 0 && m.reply_len > 0) {
            char to[SB_SUBJECT_MAX + 1];
            memcpy(to, m.reply, m.reply_len + 1);
            sb_publish(c, to, NULL, m.payload, m.payload_len);
            sb_process(c);
        }
    }
    sb_close(c);
    return NULL;
}

/* Round trips A -> B -> A; microseconds each, the median. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double bridged_rtt(const char *a, const char *b)
{
    struct responder r = {.endpoint = b};
    pthread_t t;
    pthread_create(&t, NULL, respond, &r);
    sb_client *c = connect_bus(a);
    char payload[SIZE];
    memset(payload, 'x', sizeof(payload));
    sb_msg m;
    for (int i = 0; sb_request(c, "svc.bench.rtt", payload, SIZE, &m, 1000) != 0; i++) {
        if (i > 100) {
            fail("bridged round trip", "no answer from bus B");
        }
    }
    static double us[RTT_N];
    for (int i = 0; i < RTT_N; i++) {
        double t0 = now_s();
        int rc = sb_request(c, "svc.bench.rtt", payload, SIZE, &m, WAIT_MS);
        if (rc < 0) {
            fail("bridged round trip", sb_strerror(rc));
        }
        us[i] = (now_s() - t0) * 1e6;
    }
    r.stop = 1;
    pthread_join(t, NULL);
    sb_close(c);
    qsort(us, RTT_N, sizeof(us[0]), cmp_double);
    return us[RTT_N / 2];
}

static void nats_respond(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
    natsConnection_Publish(nc, natsMsg_GetReply(m), natsMsg_GetData(m), natsMsg_GetDataLength(m));
    natsMsg_Destroy(m);
}

static double direct_rtt(const char *url)
{
    natsConnection *svc, *c;
    natsSubscription *sub;
    if (natsConnection_ConnectTo(&svc, url) != NATS_OK ||
        natsConnection_ConnectTo(&c, url) != NATS_OK) {
        fail("direct round trip", "cannot connect to NATS");
    }
    natsConnection_Subscribe(&sub, svc, "direct.rtt", nats_respond, NULL);
    natsConnection_Flush(svc);
    char payload[SIZE];
    memset(payload, 'x', sizeof(payload));
    static double us[RTT_N];
    for (int i = 0; i < RTT_N; i++) {
        natsMsg *m = NULL;
        double t0 = now_s();
        natsStatus s = natsConnection_Request(&m, c, "direct.rtt", payload, SIZE, WAIT_MS);
        if (s != NATS_OK) {
            fail("direct round trip", natsStatus_GetText(s));
        }
        us[i] = (now_s() - t0) * 1e6;
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(svc);
    natsConnection_Destroy(c);
    qsort(us, RTT_N, sizeof(us[0]), cmp_double);
    return us[RTT_N / 2];
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: sockbus-nats-bench BUS_A BUS_B NATS_URL [N]\n");
        return 2;
    }
    long n = argc > 4 ? atol(argv[4]) : 500000;
    double bs = bridged_stream(argv[1], argv[2], n, "bench.stream");
    double ds = direct_stream(argv[3], n);
    double br = bridged_rtt(argv[1], argv[2]);
    double dr = direct_rtt(argv[3]);
    printf("throughput, %d B, %ld messages, window %d:\n", SIZE, n, WINDOW);
    printf("  bridged (bus A -> bridge -> NATS -> bridge -> bus B): %9.0f msg/s\n", bs);
    printf("  direct  (libnats -> nats-server -> libnats):          %9.0f msg/s\n", ds);
    printf("  bridged / direct: %.2f\n", bs / ds);
    printf("round trip, %d B, median of %d:\n", SIZE, RTT_N);
    printf("  bridged (request on A, responder on B): %7.1f us\n", br);
    printf("  direct  (libnats request, libnats responder): %7.1f us\n", dr);
    nats_Close();
    return 0;
}
