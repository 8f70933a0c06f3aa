/*
 * test_nats.c - sockbus-nats against real servers: two nats-servers
 * clustered with routes on loopback ports picked here, two sockbusd on
 * private sockets standing for two hosts, A and B, and a bridge on each
 * (A's to the first nats-server, B's to the second, so that messages cross
 * the route).
 *
 * The bridges (bridge_args()) both export and import t.>, h.> and ready.>,
 * the same subjects both ways, so that a loop would show as extra
 * messages; requests for services on A go to svc.a.> (exported by B,
 * imported by A), for services on B to svc.b.>, and nsvc.> (exported by
 * A, imported by nobody) reaches plain NATS clients only.
 *
 * Every wait is bounded; processes are started and killed by pid. The
 * programs come from $SOCKBUSD, $SOCKBUS, $SOCKBUS_NATS and $NATS_SERVER.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 15000

struct nats_server {
    pid_t pid;
    int port;
    int cluster_port;
    int peer_cluster_port;
    char url[64];
    char log[160];
};

static struct harness_broker bus_a, bus_b;
static struct nats_server nats1, nats2;
static pid_t bridge_a = -1, bridge_b = -1;
static char bridge_a_log[160], bridge_b_log[160];
/* More arguments for both bridges, NULL terminated, set by a test before
 * start_bridges(). */
static const char *bridge_extra[4];

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static bool tcp_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
    close(fd);
    return ok;
}

static pid_t spawn(const char *const *argv, const char *log)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            dup2(fd, STDOUT_FILENO);
            close(fd);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Start (or restart, on the same ports) a nats-server; bounded wait until
 * it accepts clients. */
static void nats_start(struct nats_server *s)
{
    char port[16], cluster[64], routes[64];
    snprintf(port, sizeof(port), "%d", s->port);
    snprintf(cluster, sizeof(cluster), "nats://127.0.0.1:%d", s->cluster_port);
    snprintf(routes, sizeof(routes), "nats://127.0.0.1:%d", s->peer_cluster_port);
    const char *argv[] = {
        getenv("NATS_SERVER"), "-a",           "127.0.0.1", "-p",   port, "--cluster", cluster,
        "--cluster_name",      "sockbus-test", "--routes",  routes, NULL};
    s->pid = spawn(argv, s->log);
    int64_t deadline = harness_now_ms() + WAIT_MS;
    while (!tcp_accepts(s->port)) {
        int status;
        cr_assert_neq(waitpid(s->pid, &status, WNOHANG), s->pid, "nats-server exited; see %s",
                      s->log);
        cr_assert_lt(harness_now_ms(), deadline, "nats-server did not listen on %d", s->port);
        poll(NULL, 0, 10);
    }
}

static void nats_kill(struct nats_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        harness_wait_pid(s->pid, WAIT_MS);
        s->pid = -1;
    }
}

static natsConnection *nats_client(const struct nats_server *s)
{
    natsConnection *nc = NULL;
    natsStatus st = natsConnection_ConnectTo(&nc, s->url);
    cr_assert_eq(st, NATS_OK, "cannot connect to %s: %s", s->url, natsStatus_GetText(st));
    return nc;
}

/* The route between the two servers carries interest: a subscriber on
 * the second receives what is published on the first. */
static void nats_wait_route(void)
{
    natsConnection *c1 = nats_client(&nats1);
    natsConnection *c2 = nats_client(&nats2);
    natsSubscription *sub;
    cr_assert_eq(natsConnection_SubscribeSync(&sub, c2, "route.probe"), NATS_OK);
    cr_assert_eq(natsConnection_Flush(c2), NATS_OK);
    int64_t deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        cr_assert_eq(natsConnection_PublishString(c1, "route.probe", "x"), NATS_OK);
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, sub, 50) == NATS_OK) {
            natsMsg_Destroy(m);
            break;
        }
        cr_assert_lt(harness_now_ms(), deadline, "the nats-servers' route did not come up");
    }
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(c1);
    natsConnection_Destroy(c2);
}

/* Counters of a bridge, asked on its bus: $BRIDGE.<name>.STATS. */
static json_object *bridge_stats(sb_client *c, const char *name)
{
    char subject[64];
    snprintf(subject, sizeof(subject), "$BRIDGE.%s.STATS", name);
    sb_msg reply;
    int r = sb_request(c, subject, NULL, 0, &reply, 2000);
    if (r < 0) {
        return NULL;
    }
    /* The payload is not NUL terminated. */
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, reply.payload, (int)reply.payload_len);
    json_tokener_free(tok);
    return o;
}

static int64_t stat_of(json_object *o, const char *key)
{
    json_object *v;
    cr_assert(json_object_object_get_ex(o, key, &v), "no '%s' in the stats", key);
    if (json_object_is_type(v, json_type_boolean)) {
        return json_object_get_boolean(v);
    }
    return json_object_get_int64(v);
}

static int64_t stat(sb_client *c, const char *name, const char *key)
{
    json_object *o = bridge_stats(c, name);
    cr_assert_not_null(o, "bridge %s did not answer its STATS", name);
    int64_t v = stat_of(o, key);
    json_object_put(o);
    return v;
}

/* Wait (bounded) until the bridge answers on its bus and says it is
 * connected to NATS. */
static void bridge_wait_ready(const struct harness_broker *bus, const char *name)
{
    sb_client *c = harness_client(bus, "probe", true);
    int64_t deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        json_object *o = bridge_stats(c, name);
        bool ready = o != NULL && stat_of(o, "nats_connected") && stat_of(o, "bus_connected");
        json_object_put(o);
        if (ready) {
            break;
        }
        cr_assert_lt(harness_now_ms(), deadline, "bridge %s did not become ready", name);
        poll(NULL, 0, 20);
    }
    sb_close(c);
}

static void read_log(const char *path, char *buf, size_t len)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        buf[fread(buf, 1, len - 1, f)] = '\0';
        fclose(f);
    }
}

/* A message on `subject` published on `from` reaches a subscriber on `to`
 * (retried, bounded): the whole path is up, interest crossed the route. */
static void wait_path(const struct harness_broker *from, const struct harness_broker *to,
                      const char *subject)
{
    sb_client *pub = harness_client(from, "probe-pub", true);
    sb_client *sub = harness_client(to, "probe-sub", true);
    cr_assert_eq(sb_subscribe(sub, subject, NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    int64_t deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        cr_assert_eq(sb_publish(pub, subject, NULL, "x", 1), 0);
        cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
        sb_msg m;
        if (sb_next_msg(sub, &m, 50) == 0) {
            break;
        }
        if (harness_now_ms() >= deadline) {
            char la[8192] = "", lb[8192] = "";
            read_log(bridge_a_log, la, sizeof(la));
            read_log(bridge_b_log, lb, sizeof(lb));
            cr_assert_fail("%s did not cross from %s to %s\nbridge A:\n%s\nbridge B:\n%s", subject,
                           from->socket, to->socket, la, lb);
        }
    }
    sb_close(pub);
    sb_close(sub);
}

static pid_t bridge_start(const struct harness_broker *bus, const char *name, const char *urls,
                          const char *mine, const char *theirs, const char *extra, const char *log)
{
    const char *argv[40];
    size_t n = 0;
    argv[n++] = getenv("SOCKBUS_NATS");
    argv[n++] = "-s";
    argv[n++] = bus->socket;
    argv[n++] = "--nats";
    argv[n++] = urls;
    argv[n++] = "--name";
    argv[n++] = name;
    argv[n++] = "-v";
    const char *both[] = {"t.>", "h.>", "ready.>"};
    for (size_t i = 0; i < 3; i++) {
        argv[n++] = "--export";
        argv[n++] = both[i];
        argv[n++] = "--import";
        argv[n++] = both[i];
    }
    argv[n++] = "--import";
    argv[n++] = mine; /* requests for services here */
    argv[n++] = "--export";
    argv[n++] = theirs; /* requests for services there */
    argv[n++] = "--export";
    argv[n++] = "nsvc.>"; /* plain NATS services */
    if (extra != NULL) {
        argv[n++] = "--reconnect-buffer";
        argv[n++] = extra;
    }
    for (size_t i = 0; bridge_extra[i] != NULL; i++) {
        argv[n++] = bridge_extra[i];
    }
    argv[n] = NULL;
    pid_t pid = spawn(argv, log);
    bridge_wait_ready(bus, name);
    return pid;
}

static void start_bridges(const char *a_urls, const char *a_buffer)
{
    bridge_a = bridge_start(&bus_a, "A", a_urls, "svc.a.>", "svc.b.>", a_buffer, bridge_a_log);
    bridge_b = bridge_start(&bus_b, "B", nats2.url, "svc.b.>", "svc.a.>", NULL, bridge_b_log);
    wait_path(&bus_a, &bus_b, "ready.ab");
    wait_path(&bus_b, &bus_a, "ready.ba");
}

/* Both bridges, holding "no responders" back for `delay_ms`
 * (--no-responders-delay). */
static void start_bridges_holding_no_responders(const char *delay_ms)
{
    bridge_extra[0] = "--no-responders-delay";
    bridge_extra[1] = delay_ms;
    start_bridges(nats1.url, NULL);
    bridge_extra[0] = NULL;
}

static void setup(void)
{
    cr_assert_eq(harness_start(&bus_a, false, NULL), 0);
    cr_assert_eq(harness_start(&bus_b, false, NULL), 0);
    snprintf(bridge_a_log, sizeof(bridge_a_log), "%s/bridge.log", bus_a.dir);
    snprintf(bridge_b_log, sizeof(bridge_b_log), "%s/bridge.log", bus_b.dir);
    nats1.port = free_port();
    nats1.cluster_port = free_port();
    nats2.port = free_port();
    nats2.cluster_port = free_port();
    nats1.peer_cluster_port = nats2.cluster_port;
    nats2.peer_cluster_port = nats1.cluster_port;
    snprintf(nats1.url, sizeof(nats1.url), "nats://127.0.0.1:%d", nats1.port);
    snprintf(nats2.url, sizeof(nats2.url), "nats://127.0.0.1:%d", nats2.port);
    snprintf(nats1.log, sizeof(nats1.log), "%s/nats.log", bus_a.dir);
    snprintf(nats2.log, sizeof(nats2.log), "%s/nats.log", bus_b.dir);
    nats_start(&nats1);
    nats_start(&nats2);
    nats_wait_route();
}

static void stop_bridge(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGTERM);
        harness_wait_pid(*pid, WAIT_MS);
        *pid = -1;
    }
}

static void teardown(void)
{
    bridge_extra[0] = NULL;
    stop_bridge(&bridge_a);
    stop_bridge(&bridge_b);
    nats_kill(&nats1);
    nats_kill(&nats2);
    harness_cleanup(&bus_a);
    harness_cleanup(&bus_b);
    nats_Close();
}

/* A bridge stops cleanly on SIGTERM, and says nothing a sanitizer
 * reported. */
static void stop_bridges_checked(void)
{
    pid_t pids[2] = {bridge_a, bridge_b};
    const char *logs[2] = {bridge_a_log, bridge_b_log};
    for (int i = 0; i < 2; i++) {
        kill(pids[i], SIGTERM);
        int status = harness_wait_pid(pids[i], WAIT_MS);
        char buf[65536] = "";
        FILE *f = fopen(logs[i], "r");
        if (f != NULL) {
            buf[fread(buf, 1, sizeof(buf) - 1, f)] = '\0';
            fclose(f);
        }
        /* The end of the log: where a sanitizer's report would be. */
        size_t len = strlen(buf);
        const char *tail = len > 3000 ? buf + len - 3000 : buf;
        cr_expect_eq(status, 0, "sockbus-nats exited %d; its log ends:\n%s", status, tail);
        cr_expect_null(strstr(buf, "Sanitizer"), "%s", buf);
        cr_expect_null(strstr(buf, "runtime error"), "%s", buf);
    }
    bridge_a = bridge_b = -1;
}

static void wait_stat(const struct harness_broker *bus, const char *name, const char *key,
                      int64_t min);

TestSuite(nats, .init = setup, .fini = teardown, .timeout = 240);

/* ---- streams ------------------------------------------------------------- */

#define STREAM_N      100000
#define STREAM_WINDOW 2000

/*
 * STREAM_N messages of 128 bytes from `from` to a subscriber on `to`, in
 * order, exactly once. The publisher stays within STREAM_WINDOW messages
 * of the subscriber (a credit window, as a real application would pace
 * itself), so that the count measures the bridges, not a queue's drop
 * policy. Then an end marker, and nothing after it: a loop would bring
 * copies back.
 */
static void stream(const struct harness_broker *from, const struct harness_broker *to,
                   const char *subject)
{
    sb_client *pub = harness_client(from, "stream-pub", true);
    sb_client *sub = harness_client(to, "stream-sub", true);
    cr_assert_eq(sb_subscribe(sub, "t.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    char payload[128];
    memset(payload, 'p', sizeof(payload));
    uint64_t sent = 0, got = 0;
    while (got < STREAM_N) {
        while (sent < STREAM_N && sent < got + STREAM_WINDOW) {
            memcpy(payload, &sent, sizeof(sent));
            cr_assert_eq(sb_publish(pub, subject, NULL, payload, sizeof(payload)), 0);
            sent++;
        }
        cr_assert_eq(sb_process(pub), 0);
        sb_msg m;
        int r = sb_next_msg(sub, &m, 0);
        if (r == -ETIMEDOUT) {
            cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
            r = sb_next_msg(sub, &m, WAIT_MS);
        }
        cr_assert_eq(r, 0, "message %llu of %d did not arrive: %s", (unsigned long long)got,
                     STREAM_N, sb_strerror(r));
        cr_assert_str_eq(m.subject, subject);
        cr_assert_eq(m.payload_len, sizeof(payload));
        uint64_t seq;
        memcpy(&seq, m.payload, sizeof(seq));
        cr_assert_eq(seq, got, "message %llu came as number %llu", (unsigned long long)seq,
                     (unsigned long long)got);
        got++;
    }
    cr_assert_eq(sb_publish(pub, subject, NULL, "end", 3), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    sb_msg m;
    cr_assert_eq(sb_next_msg(sub, &m, WAIT_MS), 0);
    cr_assert_eq(m.payload_len, 3, "a copy arrived after the last message");
    /* A loop would have sent the stream round again by the time a request
     * has crossed both ways: wait for one, then there must be nothing. */
    sb_client *probe = harness_client(from, "probe", true);
    json_object *o = bridge_stats(probe, from == &bus_a ? "A" : "B");
    json_object_put(o);
    sb_close(probe);
    wait_path(from, to, "ready.more");
    wait_path(to, from, "ready.back");
    harness_expect_none(sub);
    sb_close(pub);
    sb_close(sub);
}

/* Is bridge's subscription to `pattern` on `bus` lossless, as $SYS.CLIENTS
 * says? */
static bool export_is_lossless(const struct harness_broker *bus, const char *pattern)
{
    sb_client *c = harness_client(bus, "clients", true);
    sb_msg reply;
    cr_assert_eq(sb_request(c, "$SYS.CLIENTS", NULL, 0, &reply, HARNESS_IO_MS), 0);
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, reply.payload, (int)reply.payload_len);
    json_tokener_free(tok);
    cr_assert_not_null(o);
    json_object *clients;
    cr_assert(json_object_object_get_ex(o, "clients", &clients));
    bool found = false, lossless = false;
    for (size_t i = 0; i < json_object_array_length(clients); i++) {
        json_object *cl = json_object_array_get_idx(clients, i), *name, *subs;
        if (!json_object_object_get_ex(cl, "name", &name) ||
            strcmp(json_object_get_string(name), "sockbus-nats") != 0 ||
            !json_object_object_get_ex(cl, "subs", &subs)) {
            continue;
        }
        for (size_t k = 0; k < json_object_array_length(subs); k++) {
            json_object *sub = json_object_array_get_idx(subs, k), *pat, *ll;
            if (json_object_object_get_ex(sub, "pattern", &pat) &&
                strcmp(json_object_get_string(pat), pattern) == 0 &&
                json_object_object_get_ex(sub, "lossless", &ll)) {
                found = true;
                lossless = json_object_get_boolean(ll);
            }
        }
    }
    json_object_put(o);
    sb_close(c);
    cr_assert(found, "no subscription of sockbus-nats to %s", pattern);
    return lossless;
}

Test(nats, stream_a_to_b_and_back_exact_in_order_no_loops)
{
    start_bridges(nats1.url, NULL);
    /* The exports are lossless: a slow NATS link holds local publishers
     * back instead of losing messages. */
    cr_assert(export_is_lossless(&bus_a, "t.>"));
    cr_assert(export_is_lossless(&bus_b, "h.>"));
    stream(&bus_a, &bus_b, "t.ab");
    stream(&bus_b, &bus_a, "t.ba");
    sb_client *ca = harness_client(&bus_a, "stats", true);
    sb_client *cb = harness_client(&bus_b, "stats", true);
    /* Exact counts: the stream, its end marker, and the probes. */
    cr_assert_geq(stat(ca, "A", "exported"), STREAM_N + 1);
    cr_assert_geq(stat(cb, "B", "imported"), STREAM_N + 1);
    cr_assert_eq(stat(ca, "A", "dropped"), 0);
    cr_assert_eq(stat(cb, "B", "dropped"), 0);
    /* NATS never handed a bridge its own messages (its echo is off). */
    cr_assert_eq(stat(ca, "A", "loops"), 0);
    cr_assert_eq(stat(cb, "B", "loops"), 0);
    /* Everything one bridge sent, the other received, and no more (the
     * probes' extra copies may still be on their way: bounded wait). */
    int64_t deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        int64_t sent = stat(ca, "A", "exported") + stat(cb, "B", "exported");
        int64_t received = stat(ca, "A", "imported") + stat(cb, "B", "imported");
        if (sent == received) {
            break;
        }
        cr_assert_lt(harness_now_ms(), deadline, "the bridges sent %lld and received %lld",
                     (long long)sent, (long long)received);
        poll(NULL, 0, 20);
    }
    sb_close(ca);
    sb_close(cb);
    stop_bridges_checked();
    harness_stop(&bus_a);
    harness_stop(&bus_b);
}

/* ---- requests ------------------------------------------------------------ */

/* sb_request(), retried while the far side is not there yet (NO_RESPONDERS
 * at once), bounded. */
static int request_retry(sb_client *c, const char *subject, const char *payload, sb_msg *reply)
{
    int64_t deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        int r = sb_request(c, subject, payload, strlen(payload), reply, WAIT_MS);
        if (r != SB_E_NO_RESPONDERS || harness_now_ms() > deadline) {
            return r;
        }
        poll(NULL, 0, 20);
    }
}

static bool payload_is(const void *p, size_t len, const char *text)
{
    return len == strlen(text) && memcmp(p, text, len) == 0;
}

Test(nats, request_across_answered_by_sockbus_reply_and_back)
{
    start_bridges(nats1.url, NULL);
    /* A request on A answered by `sockbus reply` on B. */
    const char *argv[] = {"sockbus",    "reply",        "-s", bus_b.socket,
                          "svc.b.echo", "hello from B", NULL};
    int out_fd;
    pid_t reply = harness_cli_spawn(argv, &out_fd);
    sb_client *ca = harness_client(&bus_a, "requester", true);
    sb_msg m;
    int r = request_retry(ca, "svc.b.echo", "hi", &m);
    cr_assert_eq(r, 0, "request across: %s", sb_strerror(r));
    cr_assert(payload_is(m.payload, m.payload_len, "hello from B"), "reply '%.*s'",
              (int)m.payload_len, (const char *)m.payload);
    kill(reply, SIGTERM);
    harness_wait_pid(reply, WAIT_MS);
    close(out_fd);

    /* A request on B answered by a library responder on A, several in
     * flight, each reply back to its own request. */
    sb_client *svc = harness_client(&bus_a, "svc", true);
    cr_assert_eq(sb_subscribe(svc, "svc.a.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
    sb_client *cb = harness_client(&bus_b, "requester", true);
    /* The first one waits for interest to cross the route. */
    int64_t deadline = harness_now_ms() + WAIT_MS;
    uint32_t tokens[3];
    for (;;) {
        sb_pub req = {.subject = "svc.a.first", .payload = "0", .payload_len = 1};
        cr_assert_eq(sb_request_send(cb, &req, &tokens[0]), 0);
        cr_assert_eq(sb_flush(cb, HARNESS_IO_MS), 0);
        sb_msg in;
        if (sb_next_msg(svc, &in, 200) == 0) {
            char to[SB_SUBJECT_MAX + 1];
            memcpy(to, in.reply, in.reply_len + 1);
            cr_assert_eq(sb_publish(svc, to, NULL, "r0", 2), 0);
            cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
            break;
        }
        cr_assert_lt(harness_now_ms(), deadline, "requests from B never reached A");
    }
    int r0 = sb_request_wait(cb, tokens[0], &m, WAIT_MS);
    cr_assert_eq(r0, 0, "%s", sb_strerror(r0));
    cr_assert(payload_is(m.payload, m.payload_len, "r0"));
    for (int i = 1; i < 3; i++) {
        char p[2] = {(char)('0' + i), 0};
        sb_pub req = {.subject = "svc.a.more", .payload = p, .payload_len = 1};
        cr_assert_eq(sb_request_send(cb, &req, &tokens[i]), 0);
    }
    cr_assert_eq(sb_flush(cb, HARNESS_IO_MS), 0);
    /* Answer in reverse order. */
    char replies[2][SB_SUBJECT_MAX + 1];
    char payloads[2];
    for (int i = 0; i < 2; i++) {
        sb_msg in = harness_expect_msg(svc);
        memcpy(replies[i], in.reply, in.reply_len + 1);
        payloads[i] = ((const char *)in.payload)[0];
    }
    for (int i = 1; i >= 0; i--) {
        char out[3] = {'r', payloads[i], 0};
        cr_assert_eq(sb_publish(svc, replies[i], NULL, out, 2), 0);
    }
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
    for (int i = 1; i < 3; i++) {
        cr_assert_eq(sb_request_wait(cb, tokens[i], &m, WAIT_MS), 0);
        char want[3] = {'r', (char)('0' + i), 0};
        cr_assert(payload_is(m.payload, m.payload_len, want));
    }
    cr_assert_geq(stat(ca, "A", "requests"), 3);
    cr_assert_geq(stat(cb, "B", "replies"), 3);
    sb_close(ca);
    sb_close(cb);
    sb_close(svc);
    stop_bridges_checked();
    harness_stop(&bus_a);
    harness_stop(&bus_b);
}

static void nats_echo(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
    char out[256];
    int n = snprintf(out, sizeof(out), "nats:%.*s", natsMsg_GetDataLength(m), natsMsg_GetData(m));
    natsConnection_Publish(nc, natsMsg_GetReply(m), out, n);
    natsMsg_Destroy(m);
}

Test(nats, requests_to_and_from_plain_nats_clients)
{
    start_bridges(nats1.url, NULL);
    /* A request on A answered by a plain NATS responder on the other
     * server. */
    natsConnection *nc = nats_client(&nats2);
    natsSubscription *sub;
    cr_assert_eq(natsConnection_Subscribe(&sub, nc, "nsvc.echo", nats_echo, NULL), NATS_OK);
    cr_assert_eq(natsConnection_Flush(nc), NATS_OK);
    sb_client *ca = harness_client(&bus_a, "requester", true);
    sb_msg m;
    int r = request_retry(ca, "nsvc.echo", "hi", &m);
    cr_assert_eq(r, 0, "%s", sb_strerror(r));
    cr_assert(payload_is(m.payload, m.payload_len, "nats:hi"), "reply '%.*s'", (int)m.payload_len,
              (const char *)m.payload);

    /* A plain NATS request answered by `sockbus reply` on A. */
    const char *argv[] = {"sockbus", "reply", "-s", bus_a.socket, "svc.a.echo", "from A", NULL};
    int out_fd;
    pid_t reply = harness_cli_spawn(argv, &out_fd);
    int64_t deadline = harness_now_ms() + WAIT_MS;
    natsMsg *rep = NULL;
    natsStatus st;
    while ((st = natsConnection_RequestString(&rep, nc, "svc.a.echo", "hi", WAIT_MS)) ==
               NATS_NO_RESPONDERS &&
           harness_now_ms() < deadline) {
        poll(NULL, 0, 20);
    }
    cr_assert_eq(st, NATS_OK, "NATS request: %s", natsStatus_GetText(st));
    cr_assert(payload_is(natsMsg_GetData(rep), (size_t)natsMsg_GetDataLength(rep), "from A"));
    natsMsg_Destroy(rep);
    kill(reply, SIGTERM);
    harness_wait_pid(reply, WAIT_MS);
    close(out_fd);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    sb_close(ca);
    stop_bridges_checked();
    harness_stop(&bus_a);
    harness_stop(&bus_b);
}

/*
 * Guesses at other reply subjects of a bridge, from one seen (`reply`,
 * whose last token is the bridge's): the next in sequence (the successor
 * of a counter, whether the token is a decimal number or starts with 16
 * hex digits of one), and the seen one with a bit of its last digit
 * flipped. Returns how many were written to out[].
 */
static size_t reply_guesses(const char *reply, char out[3][SB_SUBJECT_MAX + 1])
{
    const char *dot = strrchr(reply, '.');
    cr_assert_not_null(dot);
    int plen = (int)(dot + 1 - reply);
    const char *tok = dot + 1;
    size_t tlen = strlen(tok);
    size_t n = 0;
    if (tlen > 0 && tlen < 20 && strspn(tok, "0123456789") == tlen) {
        snprintf(out[n++], SB_SUBJECT_MAX + 1, "%.*s%llu", plen, reply,
                 strtoull(tok, NULL, 10) + 1);
    }
    if (tlen == 32 && strspn(tok, "0123456789abcdef") == tlen) {
        char num[17];
        memcpy(num, tok, 16);
        num[16] = '\0';
        snprintf(out[n++], SB_SUBJECT_MAX + 1, "%.*s%016llx%s", plen, reply,
                 strtoull(num, NULL, 16) + 1, tok + 16);
    }
    snprintf(out[n], SB_SUBJECT_MAX + 1, "%s", reply);
    char *last = &out[n][strlen(out[n]) - 1];
    int v = *last <= '9' ? *last - '0' : *last - 'a' + 10;
    v ^= 1;
    *last = (char)(v < 10 ? '0' + v : 'a' + v - 10);
    n++;
    return n;
}

static natsMsg *nats_next_skipping(natsSubscription *sub, const char *skip)
{
    for (;;) {
        natsMsg *m = NULL;
        natsStatus st = natsSubscription_NextMsg(&m, sub, WAIT_MS);
        cr_assert_eq(st, NATS_OK, "%s", natsStatus_GetText(st));
        if (strcmp(natsMsg_GetSubject(m), skip) != 0) {
            return m;
        }
        natsMsg_Destroy(m);
    }
}

/*
 * Someone on the far side who sees one request's reply subject cannot
 * answer another request in flight by guessing its token: a reply to a
 * token the bridge did not give out is dropped and counted
 * (dropped_replies), both ways. With sequential tokens, the guess "the
 * next one" would answer the second request.
 */
Test(nats, reply_to_a_guessed_token_is_dropped_and_counted)
{
    start_bridges(nats1.url, NULL);
    char guesses[3][SB_SUBJECT_MAX + 1];

    /* Requests from bus A to a plain NATS responder, which sees the first
     * and guesses at the second. */
    natsConnection *nc = nats_client(&nats2);
    natsSubscription *sub;
    cr_assert_eq(natsConnection_SubscribeSync(&sub, nc, "nsvc.>"), NATS_OK);
    cr_assert_eq(natsConnection_Flush(nc), NATS_OK);
    sb_client *ca = harness_client(&bus_a, "requester", true);
    int64_t deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        cr_assert_eq(sb_publish(ca, "nsvc.ping", NULL, "x", 1), 0);
        cr_assert_eq(sb_flush(ca, HARNESS_IO_MS), 0);
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, sub, 100) == NATS_OK) {
            natsMsg_Destroy(m);
            break;
        }
        cr_assert_lt(harness_now_ms(), deadline, "nsvc.ping never reached NATS");
    }
    uint32_t tokens[2];
    for (int i = 0; i < 2; i++) {
        sb_pub req = {.subject = "nsvc.guess", .payload = i == 0 ? "1" : "2", .payload_len = 1};
        cr_assert_eq(sb_request_send(ca, &req, &tokens[i]), 0);
    }
    cr_assert_eq(sb_flush(ca, HARNESS_IO_MS), 0);
    char seen[2][SB_SUBJECT_MAX + 1];
    for (int i = 0; i < 2; i++) {
        natsMsg *m = nats_next_skipping(sub, "nsvc.ping");
        int which = natsMsg_GetData(m)[0] - '1';
        cr_assert(which == 0 || which == 1);
        snprintf(seen[which], sizeof(seen[which]), "%s", natsMsg_GetReply(m));
        natsMsg_Destroy(m);
    }
    size_t n = reply_guesses(seen[0], guesses);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(natsConnection_PublishString(nc, guesses[i], "forged"), NATS_OK);
    }
    /* The real answers, after the forged ones on the same connection: a
     * forged one let through would arrive first. */
    cr_assert_eq(natsConnection_PublishString(nc, seen[0], "real1"), NATS_OK);
    cr_assert_eq(natsConnection_PublishString(nc, seen[1], "real2"), NATS_OK);
    cr_assert_eq(natsConnection_Flush(nc), NATS_OK);
    for (int i = 0; i < 2; i++) {
        sb_msg m;
        int r = sb_request_wait(ca, tokens[i], &m, WAIT_MS);
        cr_assert_eq(r, 0, "request %d: %s", i + 1, sb_strerror(r));
        const char *want = i == 0 ? "real1" : "real2";
        cr_assert(payload_is(m.payload, m.payload_len, want), "request %d got '%.*s', not '%s'",
                  i + 1, (int)m.payload_len, (const char *)m.payload, want);
    }
    size_t dropped = n;
    cr_assert_eq(stat(ca, "A", "dropped_replies"), (int64_t)dropped);
    natsSubscription_Destroy(sub);

    /* Requests from NATS to a responder on bus A, where another client
     * sees the first and guesses at the second. */
    sb_client *svc = harness_client(&bus_a, "svc", true);
    cr_assert_eq(sb_subscribe(svc, "svc.a.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
    deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        cr_assert_eq(natsConnection_PublishString(nc, "svc.a.ping", "x"), NATS_OK);
        cr_assert_eq(natsConnection_Flush(nc), NATS_OK);
        sb_msg m;
        if (sb_next_msg(svc, &m, 100) == 0) {
            break;
        }
        cr_assert_lt(harness_now_ms(), deadline, "svc.a.ping never reached bus A");
    }
    natsSubscription *inbox;
    cr_assert_eq(natsConnection_SubscribeSync(&inbox, nc, "guess.inbox.*"), NATS_OK);
    cr_assert_eq(natsConnection_PublishRequestString(nc, "svc.a.guess", "guess.inbox.1", "1"),
                 NATS_OK);
    cr_assert_eq(natsConnection_PublishRequestString(nc, "svc.a.guess", "guess.inbox.2", "2"),
                 NATS_OK);
    cr_assert_eq(natsConnection_Flush(nc), NATS_OK);
    for (int got = 0; got < 2;) {
        sb_msg m = harness_expect_msg(svc);
        if (m.reply_len == 0) {
            continue; /* a late ping */
        }
        int which = ((const char *)m.payload)[0] - '1';
        cr_assert(which == 0 || which == 1);
        memcpy(seen[which], m.reply, m.reply_len + 1);
        got++;
    }
    n = reply_guesses(seen[0], guesses);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(sb_publish(svc, guesses[i], NULL, "forged", 6), 0);
    }
    cr_assert_eq(sb_publish(svc, seen[0], NULL, "real1", 5), 0);
    cr_assert_eq(sb_publish(svc, seen[1], NULL, "real2", 5), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
    for (int i = 0; i < 2; i++) {
        natsMsg *m = NULL;
        natsStatus st = natsSubscription_NextMsg(&m, inbox, WAIT_MS);
        cr_assert_eq(st, NATS_OK, "reply %d: %s", i + 1, natsStatus_GetText(st));
        char want[20];
        snprintf(want, sizeof(want), "guess.inbox.%d", i + 1);
        cr_assert_str_eq(natsMsg_GetSubject(m), want);
        cr_assert(payload_is(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m),
                             i == 0 ? "real1" : "real2"),
                  "reply %d was '%.*s'", i + 1, natsMsg_GetDataLength(m), natsMsg_GetData(m));
        natsMsg_Destroy(m);
    }
    /* The forged replies went ahead of the real ones: all counted. */
    dropped += n;
    cr_assert_eq(stat(ca, "A", "dropped_replies"), (int64_t)dropped);
    natsSubscription_Destroy(inbox);
    natsConnection_Destroy(nc);
    sb_close(svc);
    sb_close(ca);
    stop_bridges_checked();
    harness_stop(&bus_a);
    harness_stop(&bus_b);
}

Test(nats, no_responders_is_fast_both_ways)
{
    start_bridges(nats1.url, NULL);
    sb_client *ca = harness_client(&bus_a, "requester", true);
    sb_msg m;
    /* Nobody on B's bus: B's broker says so, B's bridge answers NATS with
     * status 503, A's bridge makes it NO_RESPONDERS. */
    int64_t start = harness_now_ms();
    int r = sb_request(ca, "svc.b.nobody", "x", 1, &m, 20000);
    cr_assert_eq(r, SB_E_NO_RESPONDERS, "got %s", sb_strerror(r));
    cr_assert_lt(harness_now_ms() - start, 5000, "no responders took %lld ms against 20 s",
                 (long long)(harness_now_ms() - start));
    /* Nobody on NATS at all: the server's own 503. */
    start = harness_now_ms();
    r = sb_request(ca, "nsvc.nobody", "x", 1, &m, 20000);
    cr_assert_eq(r, SB_E_NO_RESPONDERS, "got %s", sb_strerror(r));
    cr_assert_lt(harness_now_ms() - start, 5000);
    /* A plain NATS requester, nobody on A's bus. */
    natsConnection *nc = nats_client(&nats2);
    natsMsg *rep = NULL;
    start = harness_now_ms();
    natsStatus st = natsConnection_RequestString(&rep, nc, "svc.a.nobody", "x", 20000);
    cr_assert_eq(st, NATS_NO_RESPONDERS, "NATS request: %s", natsStatus_GetText(st));
    cr_assert_lt(harness_now_ms() - start, 5000);
    natsConnection_Destroy(nc);
    cr_assert_geq(stat(ca, "A", "no_responders"), 2);
    sb_close(ca);
    stop_bridges_checked();
    harness_stop(&bus_a);
    harness_stop(&bus_b);
}

static void nats_echo_slowly(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
    /* An answer that takes a while, as real ones do. */
    struct timespec ts = {.tv_nsec = 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    natsConnection_PublishString(nc, natsMsg_GetReply(m), "slow but there");
    natsMsg_Destroy(m);
}

/*
 * A request that a NATS responder answers and a bridge also receives,
 * with nobody on its bus: the bridge holds its "no responders" back
 * (--no-responders-delay), so the real answer comes first.
 */
Test(nats, no_responders_from_a_bridge_does_not_beat_a_real_answer)
{
    start_bridges_holding_no_responders("2000");
    natsConnection *svc = nats_client(&nats2);
    natsSubscription *sub;
    cr_assert_eq(natsConnection_Subscribe(&sub, svc, "svc.a.shared", nats_echo_slowly, NULL),
                 NATS_OK);
    cr_assert_eq(natsConnection_Flush(svc), NATS_OK);
    natsConnection *nc = nats_client(&nats2);
    for (int i = 0; i < 3; i++) {
        natsMsg *rep = NULL;
        natsStatus st = natsConnection_RequestString(&rep, nc, "svc.a.shared", "x", WAIT_MS);
        cr_assert_eq(st, NATS_OK, "request %d: %s", i, natsStatus_GetText(st));
        cr_assert(
            payload_is(natsMsg_GetData(rep), (size_t)natsMsg_GetDataLength(rep), "slow but there"));
        natsMsg_Destroy(rep);
    }
    /* Alone, the bridge still says "no responders", after the delay. */
    natsMsg *rep = NULL;
    int64_t start = harness_now_ms();
    natsStatus st = natsConnection_RequestString(&rep, nc, "svc.a.alone", "x", 20000);
    cr_assert_eq(st, NATS_NO_RESPONDERS, "%s", natsStatus_GetText(st));
    cr_assert_geq(harness_now_ms() - start, 2000, "the bridge did not hold it back");
    cr_assert_lt(harness_now_ms() - start, 10000);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(svc);
    natsConnection_Destroy(nc);
    stop_bridges_checked();
    harness_stop(&bus_a);
    harness_stop(&bus_b);
}

/*
 * A bridge that stops while it holds a "no responders" back sends it on
 * its way out: the NATS requester learns at once that nobody will answer,
 * instead of waiting out the delay and its own timeout.
 */
Test(nats, a_held_no_responders_goes_out_when_the_bridge_stops)
{
    start_bridges_holding_no_responders("60000");
    natsConnection *nc = nats_client(&nats2);
    natsSubscription *inbox;
    cr_assert_eq(natsConnection_SubscribeSync(&inbox, nc, "held.inbox"), NATS_OK);
    cr_assert_eq(natsConnection_PublishRequestString(nc, "svc.a.alone", "held.inbox", "x"),
                 NATS_OK);
    cr_assert_eq(natsConnection_Flush(nc), NATS_OK);
    /* Bridge A carried the request to its bus; the broker's NO_RESPONDERS
     * reached the bridge before a later STATS request did. */
    wait_stat(&bus_a, "A", "requests", 1);
    sb_client *ca = harness_client(&bus_a, "stats", true);
    cr_assert_eq(stat(ca, "A", "no_responders"), 0, "held back, not sent");
    sb_close(ca);
    int64_t start = harness_now_ms();
    stop_bridge(&bridge_a);
    natsMsg *rep = NULL;
    /* libnats gives a status 503 message as NATS_NO_RESPONDERS. */
    natsStatus st = natsSubscription_NextMsg(&rep, inbox, 20000);
    cr_assert_eq(st, NATS_NO_RESPONDERS, "after the bridge stopped: %s", natsStatus_GetText(st));
    cr_assert_lt(harness_now_ms() - start, 20000);
    natsMsg_Destroy(rep);
    natsSubscription_Destroy(inbox);
    natsConnection_Destroy(nc);
    stop_bridge(&bridge_b);
    harness_stop(&bus_a);
    harness_stop(&bus_b);
}

/*
 * The held answers are a bounded FIFO (BRIDGE_NO_RESPONDERS_MAX in
 * tools/nats/bridge.h, 4,096): a request that finds it full gets its "no
 * responders" at once instead of waiting, and none is lost. Each request
 * has an inbox of its own, so that the test sees which ones went early;
 * the subscription is asynchronous because a synchronous one hands a "no
 * responders" over as a status, without the message and its subject.
 */
#define HELD_MAX  4096
#define HELD_OVER 3

struct held_answers {
    pthread_mutex_t mu;
    int count;   /* distinct inboxes answered "no responders" */
    int strange; /* anything else: a repeat, another answer, a bad inbox */
    bool seen[HELD_MAX + HELD_OVER];
};

static void held_answer(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
    (void)nc;
    (void)sub;
    struct held_answers *h = arg;
    const char *dot = strrchr(natsMsg_GetSubject(m), '.');
    int k = dot != NULL ? atoi(dot + 1) : -1;
    pthread_mutex_lock(&h->mu);
    if (natsMsg_IsNoResponders(m) && k >= 0 && k < HELD_MAX + HELD_OVER && !h->seen[k]) {
        h->seen[k] = true;
        h->count++;
    } else {
        h->strange++;
    }
    pthread_mutex_unlock(&h->mu);
    natsMsg_Destroy(m);
}

/* Wait, at most WAIT_MS, until `want` inboxes were answered. */
static int held_wait(struct held_answers *h, int want)
{
    int64_t until = harness_now_ms() + WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        int n = h->count;
        pthread_mutex_unlock(&h->mu);
        if (n >= want || harness_now_ms() > until) {
            return n;
        }
        poll(NULL, 0, 5);
    }
}

Test(nats, a_full_queue_of_held_no_responders_answers_the_next_at_once)
{
    start_bridges_holding_no_responders("60000");
    static struct held_answers h = {.mu = PTHREAD_MUTEX_INITIALIZER};
    natsConnection *nc = nats_client(&nats2);
    natsSubscription *inbox;
    cr_assert_eq(natsConnection_Subscribe(&inbox, nc, "held.inbox.>", held_answer, &h), NATS_OK);
    cr_assert_eq(natsSubscription_SetPendingLimits(inbox, -1, -1), NATS_OK);
    for (int i = 0; i < HELD_MAX + HELD_OVER; i++) {
        char reply[64];
        snprintf(reply, sizeof(reply), "held.inbox.%d", i);
        cr_assert_eq(natsConnection_PublishRequestString(nc, "svc.a.alone", reply, "x"), NATS_OK);
    }
    cr_assert_eq(natsConnection_Flush(nc), NATS_OK);
    wait_stat(&bus_a, "A", "requests", HELD_MAX + HELD_OVER);

    /* The last ones found the queue full: answered now, not in a minute;
     * the bridge's count says so once each has been sent. */
    wait_stat(&bus_a, "A", "no_responders", HELD_OVER);
    cr_assert_eq(held_wait(&h, HELD_OVER), HELD_OVER);
    for (int i = HELD_MAX; i < HELD_MAX + HELD_OVER; i++) {
        cr_assert(h.seen[i], "request %d found the queue full, and was not answered", i);
    }
    sb_client *ca = harness_client(&bus_a, "stats", true);
    cr_assert_eq(stat(ca, "A", "no_responders"), HELD_OVER, "only those, not the held ones");
    sb_close(ca);

    /* The held ones go out when the bridge stops, every one of them. */
    stop_bridge(&bridge_a);
    cr_assert_eq(held_wait(&h, HELD_MAX + HELD_OVER), HELD_MAX + HELD_OVER);
    cr_assert_eq(h.strange, 0);
    natsSubscription_Destroy(inbox);
    natsConnection_Destroy(nc);
    stop_bridge(&bridge_b);
    harness_stop(&bus_a);
    harness_stop(&bus_b);
}

/* ---- the config file ------------------------------------------------------ */

/* Write `json` to `path`. */
static void write_file(const char *path, const char *json)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(json, f);
    fclose(f);
}

/*
 * Bridge B from a config file alone: its bus, NATS, name, patterns (a
 * list and a single string) and a size with a unit. Messages cross both
 * ways through the patterns it names; a bad size stops it at once with
 * one line naming the key, the file and the units to use.
 */
Test(nats, a_config_file_holds_the_patterns_and_the_settings)
{
    bridge_a = bridge_start(&bus_a, "A", nats1.url, "svc.a.>", "svc.b.>", NULL, bridge_a_log);
    char path[200], json[1024];
    snprintf(path, sizeof(path), "%s/bridge.json", bus_b.dir);
    snprintf(json, sizeof(json),
             "{\"socket\": \"%s\", \"nats\": [\"%s\"], \"name\": \"B\", "
             "\"import\": [\"ready.>\", \"t.>\"], \"export\": \"h.>\", "
             "\"reconnect_buffer\": \"64k\", \"log\": \"verbose\"}",
             bus_b.socket, nats2.url);
    write_file(path, json);
    const char *argv[] = {getenv("SOCKBUS_NATS"), "--config", path, NULL};
    bridge_b = spawn(argv, bridge_b_log);
    bridge_wait_ready(&bus_b, "B");
    wait_path(&bus_a, &bus_b, "ready.config");
    wait_path(&bus_b, &bus_a, "h.config");
    stop_bridges_checked();

    snprintf(json, sizeof(json), "{\"nats\": \"%s\", \"reconnect_buffer\": \"64q\"}", nats2.url);
    write_file(path, json);
    char log[160];
    snprintf(log, sizeof(log), "%s/bad-config.log", bus_b.dir);
    pid_t bad = spawn(argv, log);
    int status = harness_wait_pid(bad, WAIT_MS);
    char text[2048];
    read_log(log, text, sizeof(text));
    cr_assert_eq(status, 2, "exit %d; log: %s", status, text);
    char *nl = strchr(text, '\n');
    cr_assert(nl != NULL && nl[1] == '\0', "expected exactly one line, got: %s", text);
    cr_assert(strstr(text, "reconnect_buffer") != NULL && strstr(text, path) != NULL &&
                  strstr(text, "k, m or g") != NULL,
              "%s", text);
    harness_stop(&bus_a);
    harness_stop(&bus_b);
}

/* ---- headers ------------------------------------------------------------- */

Test(nats, headers_round_trip_byte_exact)
{
    start_bridges(nats1.url, NULL);
    /* Every byte value, NUL, CR and LF among them, and a length that is
     * not a multiple of 3 (base64 padding). */
    uint8_t hdr[1000];
    for (size_t i = 0; i < sizeof(hdr); i++) {
        hdr[i] = (uint8_t)(i * 7 + 3);
    }
    sb_client *ca = harness_client(&bus_a, "a", true);
    sb_client *cb = harness_client(&bus_b, "b", true);
    cr_assert_eq(sb_subscribe(cb, "h.ab", NULL, NULL), 0);
    cr_assert_eq(sb_subscribe(ca, "h.ba", NULL, NULL), 0);
    cr_assert_eq(sb_flush(cb, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_flush(ca, HARNESS_IO_MS), 0);
    /* A plain NATS subscriber sees the mapping. */
    natsConnection *nc = nats_client(&nats2);
    natsSubscription *nsub;
    cr_assert_eq(natsConnection_SubscribeSync(&nsub, nc, "h.ab"), NATS_OK);
    cr_assert_eq(natsConnection_Flush(nc), NATS_OK);
    wait_path(&bus_a, &bus_b, "ready.h");

    size_t lens[] = {1, 2, 3, 4, 5, 1000};
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        sb_pub pub = {.subject = "h.ab",
                      .headers = hdr,
                      .headers_len = lens[k],
                      .payload = "body",
                      .payload_len = 4};
        cr_assert_eq(sb_publish_ex(ca, &pub), 0);
        cr_assert_eq(sb_flush(ca, HARNESS_IO_MS), 0);
        sb_msg m = harness_expect_msg(cb);
        cr_assert_eq(m.headers_len, lens[k]);
        cr_assert_eq(memcmp(m.headers, hdr, lens[k]), 0, "headers of %zu bytes changed", lens[k]);
        cr_assert(payload_is(m.payload, m.payload_len, "body"));
        natsMsg *nm = NULL;
        cr_assert_eq(natsSubscription_NextMsg(&nm, nsub, WAIT_MS), NATS_OK);
        const char *v = NULL;
        cr_assert_eq(natsMsgHeader_Get(nm, "Sockbus-Headers", &v), NATS_OK);
        cr_assert_eq(strlen(v), (lens[k] + 2) / 3 * 4, "base64 of %zu bytes", lens[k]);
        cr_assert_eq(natsMsgHeader_Get(nm, "Sockbus-Bridge", &v), NATS_OK);
        cr_assert_eq(strncmp(v, "A/", 2), 0, "Sockbus-Bridge: %s", v);
        natsMsg_Destroy(nm);
    }
    /* The other way, and without headers: none arrive. */
    sb_pub back = {.subject = "h.ba",
                   .headers = hdr + 1,
                   .headers_len = 500,
                   .payload = "x",
                   .payload_len = 1};
    cr_assert_eq(sb_publish_ex(cb, &back), 0);
    cr_assert_eq(sb_publish(cb, "h.ba", NULL, "plain", 5), 0);
    cr_assert_eq(sb_flush(cb, HARNESS_IO_MS), 0);
    sb_msg m = harness_expect_msg(ca);
    cr_assert_eq(m.headers_len, 500);
    cr_assert_eq(memcmp(m.headers, hdr + 1, 500), 0);
    m = harness_expect_msg(ca);
    cr_assert_eq(m.headers_len, 0);
    cr_assert(payload_is(m.payload, m.payload_len, "plain"));

    /* A reply's headers come back too. */
    sb_client *svc = harness_client(&bus_b, "svc", true);
    cr_assert_eq(sb_subscribe(svc, "svc.b.hdr", NULL, NULL), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
    uint32_t token;
    sb_pub req = {.subject = "svc.b.hdr",
                  .headers = hdr,
                  .headers_len = 77,
                  .payload = "q",
                  .payload_len = 1};
    int64_t deadline = harness_now_ms() + WAIT_MS;
    sb_msg in;
    for (;;) {
        cr_assert_eq(sb_request_send(ca, &req, &token), 0);
        cr_assert_eq(sb_flush(ca, HARNESS_IO_MS), 0);
        if (sb_next_msg(svc, &in, 200) == 0) {
            break;
        }
        cr_assert_lt(harness_now_ms(), deadline);
    }
    cr_assert_eq(in.headers_len, 77);
    cr_assert_eq(memcmp(in.headers, hdr, 77), 0);
    char to[SB_SUBJECT_MAX + 1];
    memcpy(to, in.reply, in.reply_len + 1);
    sb_pub rep = {
        .subject = to, .headers = hdr + 5, .headers_len = 65, .payload = "a", .payload_len = 1};
    cr_assert_eq(sb_publish_ex(svc, &rep), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_request_wait(ca, token, &m, WAIT_MS), 0);
    cr_assert_eq(m.headers_len, 65);
    cr_assert_eq(memcmp(m.headers, hdr + 5, 65), 0);

    /* A NATS client that sends one of A's messages back (a reflector, or
     * a second path) does not make it come back in: A knows its own id. */
    sb_client *probe = harness_client(&bus_a, "stats", true);
    int64_t loops = stat(probe, "A", "loops");
    cr_assert_eq(sb_publish(ca, "h.ab", NULL, "echo me", 7), 0);
    cr_assert_eq(sb_flush(ca, HARNESS_IO_MS), 0);
    natsMsg *own = NULL;
    cr_assert_eq(natsSubscription_NextMsg(&own, nsub, WAIT_MS), NATS_OK);
    harness_expect_msg(cb); /* B has it, once */
    const char *id = NULL;
    cr_assert_eq(natsMsgHeader_Get(own, "Sockbus-Bridge", &id), NATS_OK);
    natsMsg *reflected = NULL;
    cr_assert_eq(natsMsg_Create(&reflected, "h.ba", NULL, "echo me", 7), NATS_OK);
    cr_assert_eq(natsMsgHeader_Set(reflected, "Sockbus-Bridge", id), NATS_OK);
    cr_assert_eq(natsConnection_PublishMsg(nc, reflected), NATS_OK);
    cr_assert_eq(natsConnection_Flush(nc), NATS_OK);
    natsMsg_Destroy(reflected);
    natsMsg_Destroy(own);
    wait_stat(&bus_a, "A", "loops", loops + 1);
    harness_expect_none(ca);
    sb_close(probe);

    natsSubscription_Destroy(nsub);
    natsConnection_Destroy(nc);
    sb_close(svc);
    sb_close(ca);
    sb_close(cb);
    stop_bridges_checked();
    harness_stop(&bus_a);
    harness_stop(&bus_b);
}

/* ---- failures ------------------------------------------------------------ */

/* Wait (bounded) until bridge `name` on `bus` reports `key` >= `min`. */
static void wait_stat(const struct harness_broker *bus, const char *name, const char *key,
                      int64_t min)
{
    sb_client *c = harness_client(bus, "stats", true);
    int64_t deadline = harness_now_ms() + WAIT_MS;
    int64_t v;
    while ((v = stat(c, name, key)) < min) {
        cr_assert_lt(harness_now_ms(), deadline, "bridge %s: %s stayed %lld, below %lld", name, key,
                     (long long)v, (long long)min);
        poll(NULL, 0, 20);
    }
    sb_close(c);
}

static void wait_logged(const char *log, const char *needle)
{
    int64_t deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        char buf[65536] = "";
        FILE *f = fopen(log, "r");
        if (f != NULL) {
            buf[fread(buf, 1, sizeof(buf) - 1, f)] = '\0';
            fclose(f);
        }
        if (strstr(buf, needle) != NULL) {
            return;
        }
        cr_assert_lt(harness_now_ms(), deadline, "'%s' not in %s:\n%s", needle, log, buf);
        poll(NULL, 0, 10);
    }
}

#define OUTAGE_N 2000

/*
 * The nats-server of bridge A is killed, and restarted. Bridge A, given
 * both servers, reconnects (to the other one first); what was published
 * on A meanwhile is either delivered to B after it, in order and once, or
 * counted as dropped by bridge A: received + dropped is exactly what was
 * sent.
 */
Test(nats, nats_server_killed_and_restarted_nothing_silently_lost)
{
    char urls[160];
    snprintf(urls, sizeof(urls), "%s,%s", nats1.url, nats2.url);
    start_bridges(urls, NULL);
    sb_client *pub = harness_client(&bus_a, "pub", true);
    sb_client *sub = harness_client(&bus_b, "sub", true);
    cr_assert_eq(sb_subscribe(sub, "t.outage", NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    sb_client *sa = harness_client(&bus_a, "stats", true);
    int64_t dropped_before = stat(sa, "A", "dropped");

    nats_kill(&nats1);
    /* Bridge A has seen the connection go: from here on, what it sends is
     * buffered by libnats or refused (and counted), not written into a
     * dead socket. */
    wait_stat(&bus_a, "A", "nats_disconnects", 1);
    for (uint32_t i = 0; i < OUTAGE_N; i++) {
        cr_assert_eq(sb_publish(pub, "t.outage", NULL, &i, sizeof(i)), 0);
    }
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    nats_start(&nats1);
    wait_stat(&bus_a, "A", "nats_reconnects", 1);

    uint32_t got = 0, next = 0;
    int64_t deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        int64_t dropped = stat(sa, "A", "dropped") - dropped_before;
        if (got + dropped >= OUTAGE_N) {
            cr_assert_eq(got + dropped, OUTAGE_N, "%u received + %lld dropped", got,
                         (long long)dropped);
            break;
        }
        sb_msg m;
        if (sb_next_msg(sub, &m, 50) == 0) {
            uint32_t seq;
            memcpy(&seq, m.payload, sizeof(seq));
            cr_assert_geq(seq, next, "message %u came again or out of order", seq);
            next = seq + 1;
            got++;
        }
        cr_assert_lt(harness_now_ms(), deadline,
                     "%u received + %lld dropped of %d: messages silently gone", got,
                     (long long)dropped, OUTAGE_N);
    }
    cr_assert(stat(sa, "A", "nats_connected"));
    /* And the path works after it. */
    wait_path(&bus_a, &bus_b, "ready.after");
    wait_path(&bus_b, &bus_a, "ready.after");
    harness_expect_none(sub);
    sb_close(sa);
    sb_close(pub);
    sb_close(sub);
    stop_bridges_checked();
    harness_stop(&bus_a);
    harness_stop(&bus_b);
}

/*
 * NATS is away and libnats' buffer is small: what does not fit is counted
 * as dropped, message by message; after the restart the bridge is back.
 */
Test(nats, nats_away_with_a_full_buffer_counts_every_drop)
{
    start_bridges(nats1.url, "4k"); /* 4,096 bytes: a size may carry a unit */
    sb_client *pub = harness_client(&bus_a, "pub", true);
    sb_client *sa = harness_client(&bus_a, "stats", true);
    int64_t exported = stat(sa, "A", "exported");
    int64_t dropped = stat(sa, "A", "dropped_export");

    /* Both servers: a client learns of the cluster's other servers and
     * would go there. */
    nats_kill(&nats1);
    nats_kill(&nats2);
    wait_stat(&bus_a, "A", "nats_disconnects", 1);
    int64_t deadline = harness_now_ms() + WAIT_MS;
    while (stat(sa, "A", "nats_connected")) {
        cr_assert_lt(harness_now_ms(), deadline, "bridge A still says it is connected");
        poll(NULL, 0, 20);
    }
    char payload[128] = {0};
    for (int i = 0; i < OUTAGE_N; i++) {
        cr_assert_eq(sb_publish(pub, "t.lost", NULL, payload, sizeof(payload)), 0);
    }
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    /* The bridge has taken all of them: each is exported (into libnats'
     * buffer) or counted as dropped. */
    deadline = harness_now_ms() + WAIT_MS;
    int64_t e, d;
    for (;;) {
        e = stat(sa, "A", "exported") - exported;
        d = stat(sa, "A", "dropped_export") - dropped;
        if (e + d >= OUTAGE_N) {
            break;
        }
        cr_assert_lt(harness_now_ms(), deadline, "%lld exported + %lld dropped of %d", (long long)e,
                     (long long)d, OUTAGE_N);
        poll(NULL, 0, 20);
    }
    cr_assert_eq(e + d, OUTAGE_N);
    cr_assert_gt(d, 0, "a 4 KiB buffer took %d messages of 128 bytes", OUTAGE_N);
    cr_assert_lt(e, 4096 / 128 + 1, "more buffered than the buffer holds: %lld", (long long)e);
    cr_assert_eq(stat(sa, "A", "dropped"), stat(sa, "A", "dropped_export"));

    nats_start(&nats1);
    nats_start(&nats2);
    wait_stat(&bus_a, "A", "nats_reconnects", 1);
    nats_wait_route();
    wait_path(&bus_a, &bus_b, "ready.after");
    sb_close(sa);
    sb_close(pub);
    stop_bridges_checked();
    harness_stop(&bus_a);
    harness_stop(&bus_b);
}

/*
 * Broker B is restarted under its bridge: the bridge reconnects and
 * subscribes again (its exports, its STATS, its inbox), and what came
 * from NATS while the bus was away is counted as dropped.
 */
Test(nats, local_broker_restarted_bridge_reconnects_and_resubscribes)
{
    start_bridges(nats1.url, NULL);
    sb_client *sa = harness_client(&bus_a, "stats", true);
    sb_client *sb = harness_client(&bus_b, "stats", true);
    int64_t imported = stat(sb, "B", "imported");
    int64_t dropped = stat(sb, "B", "dropped_import");
    sb_close(sb);

    cr_assert_eq(harness_terminate(&bus_b, WAIT_MS), 0);
    wait_logged(bridge_b_log, "bus connection lost");
    sb_client *pub = harness_client(&bus_a, "pub", true);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(sb_publish(pub, "t.away", NULL, "x", 1), 0);
    }
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    /* Bridge B has had some of them while its bus was away. */
    wait_logged(bridge_b_log, "messages from NATS are dropped");
    cr_assert_eq(harness_restart(&bus_b, NULL), 0);
    bridge_wait_ready(&bus_b, "B");
    sb = harness_client(&bus_b, "stats", true);
    cr_assert_geq(stat(sb, "B", "bus_reconnects"), 1);
    /* Every message A exported until then reached bridge B: each was
     * published on the bus or counted as dropped while it was away. */
    int64_t deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        int64_t i = stat(sb, "B", "imported") - imported;
        int64_t d = stat(sb, "B", "dropped_import") - dropped;
        if (i + d >= 100) {
            cr_assert_gt(d, 0, "nothing was counted while the bus was away");
            break;
        }
        cr_assert_lt(harness_now_ms(), deadline, "%lld imported + %lld dropped of 100",
                     (long long)i, (long long)d);
        poll(NULL, 0, 20);
    }
    /* The exports are subscribed again: B to A works, and A to B. */
    wait_path(&bus_b, &bus_a, "ready.b-back");
    wait_path(&bus_a, &bus_b, "ready.a-to-b");
    /* And requests: B's inbox is subscribed again. */
    sb_client *svc = harness_client(&bus_a, "svc", true);
    cr_assert_eq(sb_subscribe(svc, "svc.a.x", NULL, NULL), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
    const char *argv[] = {"sockbus", "reply", "-s", bus_b.socket, "svc.b.echo", "again", NULL};
    int out_fd;
    pid_t reply = harness_cli_spawn(argv, &out_fd);
    sb_msg m;
    cr_assert_eq(request_retry(sa, "svc.b.echo", "hi", &m), 0);
    cr_assert(payload_is(m.payload, m.payload_len, "again"));
    kill(reply, SIGTERM);
    harness_wait_pid(reply, WAIT_MS);
    close(out_fd);
    sb_close(svc);
    sb_close(sa);
    sb_close(sb);
    sb_close(pub);
    stop_bridges_checked();
    harness_stop(&bus_a);
    harness_stop(&bus_b);
}
