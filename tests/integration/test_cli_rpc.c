/*
 * test_cli_rpc.c - `sockbus req`, `sockbus reply` and `sockbus stat`
 * against a real broker on a private socket.
 *
 * A background `sockbus reply` is known to serve its subject once a
 * request stops coming back with NO_RESPONDERS: the broker answers that at
 * once while nobody is subscribed, and routes the request to the service
 * as soon as its subscription is in. wait_responder() loops on that, with
 * a bounded deadline; the request that gets through is a real request, so
 * tests with -n count it. Two members of a queue group are both known to
 * be subscribed when $SYS.CLIENTS says so. There are no sleeps standing in
 * for readiness.
 *
 * Background processes run with stderr to a file in the broker's
 * directory, so tests can check what they logged; each test stops its own
 * before harness_stop(), and .fini kills what an early failure left.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct harness_broker broker;

/* A `sockbus` command running in the background. */
struct bg {
    pid_t pid;
    char err_path[160]; /* its stderr */
};

#define BG_MAX 4
static struct bg bg_live[BG_MAX];

/* How long a background command may take to subscribe: generous, since
 * the sanitizers slow start-up down. */
#define READY_MS (2 * HARNESS_READY_MS)

static void setup(void)
{
    int r = harness_start(&broker, true, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
}

static void teardown(void)
{
    for (int i = 0; i < BG_MAX; i++) {
        if (bg_live[i].pid > 0) {
            kill(bg_live[i].pid, SIGKILL);
            waitpid(bg_live[i].pid, NULL, 0);
        }
        bg_live[i].pid = 0;
    }
    harness_cleanup(&broker);
}

TestSuite(cli_rpc, .init = setup, .fini = teardown, .timeout = 90);

/* ---- the command in the foreground ---- */

struct cli_result {
    int status;
    char *out;
    size_t out_len;
    char err[4096];
    int64_t elapsed_ms;
};

static void run(struct cli_result *r, const char *const *argv, const void *in, size_t in_len)
{
    memset(r, 0, sizeof(*r));
    int64_t t0 = harness_now_ms();
    r->status = harness_cli(argv, in, in_len, &r->out, &r->out_len, r->err, sizeof(r->err),
                            3 * HARNESS_IO_MS);
    r->elapsed_ms = harness_now_ms() - t0;
}

static void assert_one_line(const char *err, const char *what)
{
    size_t n = strlen(err);
    cr_assert(n > 1 && err[n - 1] == '\n' && memchr(err, '\n', n - 1) == NULL,
              "%s: expected exactly one line on stderr, got [%s]", what, err);
}

static void assert_has(const char *text, const char *needle, const char *what)
{
    cr_assert(strstr(text, needle) != NULL, "%s: '%s' not found in [%s]", what, needle, text);
}

static void assert_out(const struct cli_result *r, const char *want, const char *what)
{
    size_t len = strlen(want);
    cr_assert_eq(r->status, 0, "%s: exit %d, stderr [%s]", what, r->status, r->err);
    cr_assert_str_empty(r->err, "%s: unexpected stderr [%s]", what, r->err);
    cr_assert(r->out_len == len && memcmp(r->out, want, len) == 0,
              "%s: printed %zu bytes [%.*s], expected [%s]", what, r->out_len, (int)r->out_len,
              r->out, want);
}

/* ---- the command in the background ---- */

static struct bg *bg_start(const char *const *argv)
{
    struct bg *b = NULL;
    for (int slot = 0; slot < BG_MAX && b == NULL; slot++) {
        if (bg_live[slot].pid <= 0) {
            b = &bg_live[slot];
        }
    }
    cr_assert_not_null(b, "too many background commands");
    snprintf(b->err_path, sizeof(b->err_path), "%s/bg-%d.err", broker.dir, (int)(b - bg_live));

    const char *args[32];
    size_t n = 0;
    const char *exe = getenv("SOCKBUS");
    cr_assert(exe != NULL && *exe != '\0', "SOCKBUS is not set: run the tests with meson test");
    args[n++] = exe;
    for (size_t i = 1; argv[i] != NULL && n < 31; i++) {
        args[n++] = argv[i];
    }
    args[n] = NULL;

    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        int err = open(b->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    b->pid = pid;
    return b;
}

/* What the background command wrote on stderr so far. */
static void bg_stderr(const struct bg *b, char *buf, size_t len)
{
    buf[0] = '\0';
    int fd = open(b->err_path, O_RDONLY);
    if (fd < 0) {
        return;
    }
    ssize_t n = read(fd, buf, len - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
}

/* Wait for it to exit on its own; returns the exit status. */
static int bg_wait(struct bg *b)
{
    int status = harness_wait_pid(b->pid, HARNESS_IO_MS);
    b->pid = 0;
    return status;
}

/* SIGTERM and reap: a service runs until told to stop. */
static void bg_stop(struct bg *b)
{
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        harness_wait_pid(b->pid, HARNESS_IO_MS);
        b->pid = 0;
    }
}

/*
 * Send `data` as a request on `subject` until it stops coming back with
 * NO_RESPONDERS (the service has subscribed), within READY_MS; asserts that
 * it was then answered, and returns the reply (valid until the next call
 * on `c`).
 */
static sb_msg wait_responder(sb_client *c, const char *subject, const char *data)
{
    int64_t deadline = harness_now_ms() + READY_MS;
    sb_msg reply;
    int r;

    for (;;) {
        r = sb_request(c, subject, data, strlen(data), &reply, HARNESS_IO_MS);
        if (r != SB_E_NO_RESPONDERS) {
            break;
        }
        cr_assert(harness_now_ms() < deadline, "nothing served '%s' within %d ms", subject,
                  READY_MS);
        poll(NULL, 0, 2); /* polling a condition, bounded above */
    }
    cr_assert_eq(r, 0, "request on '%s': %s", subject, sb_strerror(r));
    return reply;
}

static void assert_reply(const sb_msg *m, const void *want, size_t len, const char *what)
{
    cr_assert(m->payload_len == len && (len == 0 || memcmp(m->payload, want, len) == 0),
              "%s: reply of %zu bytes [%.*s], expected %zu bytes [%.*s]", what, m->payload_len,
              (int)(m->payload_len < 200 ? m->payload_len : 200), (const char *)m->payload, len,
              (int)(len < 200 ? len : 200), (const char *)want);
}

static void request_expect(sb_client *c, const char *subject, const void *data, size_t len,
                           const void *want, size_t want_len, const char *what)
{
    sb_msg m;
    int r = sb_request(c, subject, data, len, &m, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "%s: %s", what, sb_strerror(r));
    assert_reply(&m, want, want_len, what);
}

/* ---- $SYS through the library ---- */

static json_object *parse_json(const void *data, size_t len, const char *what)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, data, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t used = (size_t)json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    cr_assert(o != NULL && e == json_tokener_success, "%s: not JSON: [%.*s]", what, (int)len,
              (const char *)data);
    /* One document: nothing but white space after it. */
    for (size_t i = used; i < len; i++) {
        cr_assert(strchr(" \n", ((const char *)data)[i]) != NULL, "%s: more than one JSON document",
                  what);
    }
    return o;
}

/* How many clients named `name` have `subs` subscriptions. */
static int clients_named(sb_client *c, const char *name, int64_t subs)
{
    sb_msg m;
    int r = sb_request(c, "$SYS.CLIENTS", NULL, 0, &m, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "$SYS.CLIENTS: %s", sb_strerror(r));
    json_object *page = parse_json(m.payload, m.payload_len, "$SYS.CLIENTS");
    json_object *a = NULL;
    cr_assert(json_object_object_get_ex(page, "clients", &a), "no clients in the answer");
    int count = 0;
    for (size_t i = 0; i < json_object_array_length(a); i++) {
        json_object *o = json_object_array_get_idx(a, i);
        json_object *n = NULL;
        json_object *s = NULL;
        if (json_object_object_get_ex(o, "name", &n) && n != NULL &&
            strcmp(json_object_get_string(n), name) == 0 &&
            json_object_object_get_ex(o, "subscriptions", &s) && json_object_get_int64(s) == subs) {
            count++;
        }
    }
    json_object_put(page);
    return count;
}

/* ---- reply -- COMMAND ---- */

Test(cli_rpc, command_service_answers_each_request_with_its_output)
{
    const char *const reply_argv[] = {"sockbus", "reply", "-s",  broker.socket, "svc.upper",
                                      "--",      "tr",    "a-z", "A-Z",         NULL};
    struct bg *svc = bg_start(reply_argv);
    sb_client *c = harness_client(&broker, "rpc-requester", true);

    sb_msg m = wait_responder(c, "svc.upper", "probe");
    assert_reply(&m, "PROBE", 5, "probe");
    for (int i = 0; i < 100; i++) {
        char in[64];
        char want[64];
        int n = snprintf(in, sizeof(in), "hello %d, request number %d", i, i);
        snprintf(want, sizeof(want), "HELLO %d, REQUEST NUMBER %d", i, i);
        request_expect(c, "svc.upper", in, (size_t)n, want, (size_t)n, "request");
    }

    struct cli_result r;
    const char *const req_msg[] = {"sockbus",   "req",        "-s", broker.socket,
                                   "svc.upper", "mixed Case", NULL};
    run(&r, req_msg, NULL, 0);
    assert_out(&r, "MIXED CASE\n", "req with MESSAGE");
    free(r.out);

    const char *const req_stdin[] = {"sockbus", "req", "-s", broker.socket, "svc.upper", NULL};
    run(&r, req_stdin, "from stdin\nline two\n", 20);
    assert_out(&r, "FROM STDIN\nLINE TWO\n", "req with stdin");
    free(r.out);

    const char *const req_raw[] = {"sockbus", "req",       "-s",  broker.socket,
                                   "--raw",   "svc.upper", "abc", NULL};
    run(&r, req_raw, NULL, 0);
    assert_out(&r, "ABC", "req --raw");
    free(r.out);

    sb_close(c);
    bg_stop(svc);
    char err[4096];
    bg_stderr(svc, err, sizeof(err));
    cr_assert_str_empty(err, "the service logged [%s]", err);
    harness_stop(&broker);
}

Test(cli_rpc, command_output_is_byte_exact_and_large_payloads_do_not_deadlock)
{
    const char *const reply_argv[] = {"sockbus", "reply", "-s", broker.socket,   "svc.cat",
                                      "--",      "sh",    "-c", "cat; printf !", NULL};
    struct bg *svc = bg_start(reply_argv);
    sb_client *c = harness_client(&broker, "rpc-requester", true);

    sb_msg m = wait_responder(c, "svc.cat", "");
    assert_reply(&m, "!", 1, "empty request");

    /* Every byte value, in payloads of many sizes. */
    static uint8_t in[900 * 1024];
    static uint8_t want[sizeof(in) + 1];
    for (size_t i = 0; i < sizeof(in); i++) {
        in[i] = (uint8_t)(i * 131 + i / 256);
    }
    static const size_t sizes[] = {1, 2, 255, 256, 4095, 4096, 65535, 65536, 65537, 200000};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        memcpy(want, in, sizes[k]);
        want[sizes[k]] = '!';
        request_expect(c, "svc.cat", in, sizes[k], want, sizes[k] + 1, "binary request");
    }
    /* Far more than a pipe holds, both ways at once: a responder that wrote
     * all of the request before reading would deadlock against cat. */
    memcpy(want, in, sizeof(in));
    want[sizeof(in)] = '!';
    request_expect(c, "svc.cat", in, sizeof(in), want, sizeof(in) + 1, "900 KiB request");

    /* And through `sockbus req` with the request on stdin. */
    struct cli_result r;
    const char *const req_argv[] = {"sockbus", "req",     "-s", broker.socket,
                                    "--raw",   "svc.cat", NULL};
    run(&r, req_argv, in, 300000);
    cr_assert_eq(r.status, 0, "req: exit %d, stderr [%s]", r.status, r.err);
    cr_assert(r.out_len == 300001 && memcmp(r.out, in, 300000) == 0 && r.out[300000] == '!',
              "req printed %zu bytes, not the 300000 sent and '!'", r.out_len);
    free(r.out);

    sb_close(c);
    bg_stop(svc);
    char err[4096];
    bg_stderr(svc, err, sizeof(err));
    cr_assert_str_empty(err, "the service logged [%s]", err);
    harness_stop(&broker);
}

/* The header of an error reply (docs/protocol.md, Request/reply). */
#define ERROR_HEADER "Sockbus-Error: "

/* `m` is an error reply whose header holds `what` and whose payload holds
 * `detail`. */
static void assert_error_reply(const sb_msg *m, const char *what, const char *detail,
                               const char *ctx)
{
    size_t hl = strlen(ERROR_HEADER);
    cr_assert(m->headers_len > hl && memcmp(m->headers, ERROR_HEADER, hl) == 0,
              "%s: no %s header: [%.*s]", ctx, ERROR_HEADER, (int)m->headers_len,
              (const char *)m->headers);
    cr_assert(memmem(m->headers, m->headers_len, what, strlen(what)) != NULL,
              "%s: header [%.*s] lacks [%s]", ctx, (int)m->headers_len, (const char *)m->headers,
              what);
    cr_assert(memmem(m->payload, m->payload_len, detail, strlen(detail)) != NULL,
              "%s: payload [%.*s] lacks [%s]", ctx, (int)m->payload_len, (const char *)m->payload,
              detail);
}

/* A command that exits non-zero: the requester gets an error reply (the
 * header, and the end of the command's stderr), not its partial stdout as
 * if it were an answer; the service says so in one line and goes on. */
Test(cli_rpc, failing_command_sends_an_error_reply_with_its_stderr)
{
    const char *const reply_argv[] = {"sockbus",
                                      "reply",
                                      "-s",
                                      broker.socket,
                                      "-n",
                                      "2",
                                      "svc.fail",
                                      "--",
                                      "sh",
                                      "-c",
                                      "cat; echo 'something broke' >&2; exit 3",
                                      NULL};
    struct bg *svc = bg_start(reply_argv);
    sb_client *c = harness_client(&broker, "rpc-requester", true);

    int64_t t0 = harness_now_ms();
    sb_msg m = wait_responder(c, "svc.fail", "partial answer");
    assert_error_reply(&m, "'sh' exited with status 3", "something broke", "failing command");
    cr_assert(memmem(m.payload, m.payload_len, "partial answer", 14) == NULL,
              "the partial stdout was sent as if it were the answer");
    cr_assert_lt(harness_now_ms() - t0, HARNESS_IO_MS, "the requester waited for its timeout");

    /* sockbus req shows it and exits 1. */
    struct cli_result r;
    const char *const req[] = {"sockbus", "req", "-s", broker.socket, "svc.fail", "x", NULL};
    run(&r, req, NULL, 0);
    cr_assert_eq(r.status, 1, "req on a failing command: exit %d, stderr [%s]", r.status, r.err);
    cr_assert_eq(r.out_len, 0, "req printed [%.*s]", (int)r.out_len, r.out);
    assert_one_line(r.err, "req on a failing command");
    assert_has(r.err, "exited with status 3", "req on a failing command");
    assert_has(r.err, "something broke", "req on a failing command");
    free(r.out);
    cr_assert_eq(bg_wait(svc), 0, "reply -n 2 did not exit 0 after its requests");

    char err[4096];
    bg_stderr(svc, err, sizeof(err));
    assert_has(err, "status 3", "failing command");
    assert_has(err, "sent an error reply", "failing command");
    sb_close(c);
    harness_stop(&broker);
}

/* A command that cannot be started: an error reply that says why. */
Test(cli_rpc, command_that_cannot_run_gets_an_error_reply)
{
    const char *const reply_argv[] = {
        "sockbus",     "reply", "-s",
        broker.socket, "-n",    "1",
        "svc.nocmd",   "--",    "/nonexistent/sockbus-no-such-command",
        NULL};
    struct bg *svc = bg_start(reply_argv);
    sb_client *c = harness_client(&broker, "rpc-requester", true);
    sb_msg m = wait_responder(c, "svc.nocmd", "anything");
    assert_error_reply(&m, "cannot run", "No such file or directory", "missing command");
    cr_assert_eq(bg_wait(svc), 0);
    char err[4096];
    bg_stderr(svc, err, sizeof(err));
    assert_one_line(err, "missing command");
    assert_has(err, "cannot run", "missing command");
    sb_close(c);
    harness_stop(&broker);
}

/*
 * A `reply -n 1` service that must answer its one request with an empty
 * reply and say why in exactly one line on stderr holding both needles.
 */
static void expect_empty_reply(const char *const *argv, const char *subject, const char *request,
                               const char *what, const char *needle1, const char *needle2)
{
    struct bg *svc = bg_start(argv);
    sb_client *c = harness_client(&broker, "rpc-requester", true);

    sb_msg m = wait_responder(c, subject, request);
    assert_reply(&m, "", 0, what);
    cr_assert_eq(bg_wait(svc), 0);

    char err[4096];
    bg_stderr(svc, err, sizeof(err));
    assert_one_line(err, what);
    assert_has(err, needle1, what);
    assert_has(err, needle2, what);
    sb_close(c);
}

Test(cli_rpc, output_larger_than_a_frame_gets_an_empty_reply)
{
    const char *const reply_argv[] = {"sockbus", "reply",     "-s", broker.socket, "-n",
                                      "1",       "svc.big",   "--", "head",        "-c",
                                      "2000000", "/dev/zero", NULL};
    expect_empty_reply(reply_argv, "svc.big", "", "oversized output", "larger than", "empty reply");
    harness_stop(&broker);
}

/* ---- reply MESSAGE, -n, -q, -v ---- */

Test(cli_rpc, fixed_message_answers_every_request)
{
    const char *const fixed_argv[] = {"sockbus",   "reply",      "-s", broker.socket,
                                      "svc.fixed", "the answer", NULL};
    const char *const empty_argv[] = {"sockbus", "reply", "-s", broker.socket, "svc.empty", NULL};
    struct bg *fixed = bg_start(fixed_argv);
    struct bg *empty = bg_start(empty_argv);
    sb_client *c = harness_client(&broker, "rpc-requester", true);

    sb_msg m = wait_responder(c, "svc.fixed", "first");
    assert_reply(&m, "the answer", 10, "fixed");
    for (int i = 0; i < 10; i++) {
        char in[32];
        int n = snprintf(in, sizeof(in), "question %d", i);
        request_expect(c, "svc.fixed", in, (size_t)n, "the answer", 10, "fixed");
    }
    m = wait_responder(c, "svc.empty", "ping");
    assert_reply(&m, "", 0, "no MESSAGE: an empty reply");

    struct cli_result r;
    const char *const req_argv[] = {"sockbus", "req", "-s", broker.socket, "svc.fixed", "x", NULL};
    run(&r, req_argv, NULL, 0);
    assert_out(&r, "the answer\n", "req of a fixed reply");
    free(r.out);

    sb_close(c);
    bg_stop(fixed);
    bg_stop(empty);
    harness_stop(&broker);
}

Test(cli_rpc, count_exits_zero_after_that_many_requests)
{
    const char *const reply_argv[] = {"sockbus", "reply",     "-s", broker.socket, "-n",
                                      "3",       "svc.count", "ok", NULL};
    struct bg *svc = bg_start(reply_argv);
    sb_client *c = harness_client(&broker, "rpc-requester", true);

    sb_msg m = wait_responder(c, "svc.count", "1"); /* request 1 of 3 */
    assert_reply(&m, "ok", 2, "request 1");
    request_expect(c, "svc.count", "2", 1, "ok", 2, "request 2");
    request_expect(c, "svc.count", "3", 1, "ok", 2, "request 3");
    cr_assert_eq(bg_wait(svc), 0, "reply -n 3 did not exit 0 after 3 requests");

    char err[4096];
    bg_stderr(svc, err, sizeof(err));
    cr_assert_str_empty(err, "reply -n 3 logged [%s]", err);
    sb_close(c);
    harness_stop(&broker);
}

Test(cli_rpc, messages_without_reply_subject_are_not_requests)
{
    const char *const reply_argv[] = {"sockbus", "reply", "-s",        broker.socket, "-v",
                                      "-n",      "2",     "svc.mixed", "ok",          NULL};
    struct bg *svc = bg_start(reply_argv);
    sb_client *c = harness_client(&broker, "rpc-requester", true);

    sb_msg m = wait_responder(c, "svc.mixed", "1"); /* request 1 of 2 */
    assert_reply(&m, "ok", 2, "request 1");
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(sb_publish(c, "svc.mixed", NULL, "plain", 5), 0);
    }
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    request_expect(c, "svc.mixed", "2", 1, "ok", 2, "request 2");
    cr_assert_eq(bg_wait(svc), 0, "plain messages must not count as requests");

    char err[4096];
    bg_stderr(svc, err, sizeof(err));
    const char *first = strstr(err, "without a reply subject");
    cr_assert_not_null(first, "-v did not say that plain messages are ignored: [%s]", err);
    cr_assert_null(strstr(first + 1, "without a reply subject"), "said it more than once: [%s]",
                   err);
    sb_close(c);
    harness_stop(&broker);
}

Test(cli_rpc, queue_group_members_share_requests)
{
    const char *const a_argv[] = {"sockbus", "reply", "-s", broker.socket, "-q",
                                  "workers", "svc.q", "A",  NULL};
    const char *const b_argv[] = {"sockbus", "reply", "-s", broker.socket, "-q",
                                  "workers", "svc.q", "B",  NULL};
    struct bg *a = bg_start(a_argv);
    struct bg *b = bg_start(b_argv);
    sb_client *c = harness_client(&broker, "rpc-requester", true);

    int64_t deadline = harness_now_ms() + READY_MS;
    while (clients_named(c, "sockbus reply", 1) < 2) {
        cr_assert(harness_now_ms() < deadline, "the two services never subscribed");
        poll(NULL, 0, 2); /* polling a condition, bounded above */
    }

    enum { SENT = 20 };
    int got_a = 0;
    int got_b = 0;
    for (int i = 0; i < SENT; i++) {
        sb_msg m;
        int r = sb_request(c, "svc.q", "job", 3, &m, HARNESS_IO_MS);
        cr_assert_eq(r, 0, "request %d: %s", i, sb_strerror(r));
        cr_assert_eq(m.payload_len, 1);
        got_a += ((const char *)m.payload)[0] == 'A';
        got_b += ((const char *)m.payload)[0] == 'B';
    }
    cr_assert_eq(got_a + got_b, SENT, "replies: %d from A, %d from B", got_a, got_b);
    cr_assert(got_a > 0 && got_b > 0, "one member got everything: A %d, B %d", got_a, got_b);

    sb_close(c);
    bg_stop(a);
    bg_stop(b);
    harness_stop(&broker);
}

/* ---- req failures ---- */

Test(cli_rpc, req_without_responders_fails_at_once)
{
    struct cli_result r;
    const char *const argv[] = {"sockbus", "req",         "-s", broker.socket, "-t",
                                "5",       "nobody.home", "hi", NULL};
    run(&r, argv, NULL, 0);
    cr_assert_eq(r.status, 1, "exit %d, stderr [%s]", r.status, r.err);
    assert_one_line(r.err, "no responders");
    assert_has(r.err, "no responders for nobody.home", "no responders");
    cr_assert_eq(r.out_len, 0);
    cr_assert_lt(r.elapsed_ms, 2500, "took %lld ms: it must not wait for -t 5",
                 (long long)r.elapsed_ms);
    free(r.out);
    harness_stop(&broker);
}

Test(cli_rpc, req_with_a_silent_responder_times_out)
{
    sb_client *silent = harness_client(&broker, "rpc-silent", true);
    cr_assert_eq(sb_subscribe(silent, "svc.silent", NULL, NULL), 0);
    cr_assert_eq(sb_flush(silent, HARNESS_IO_MS), 0);

    struct cli_result r;
    const char *const argv[] = {"sockbus", "req",        "-s",     broker.socket, "-t",
                                "0.5",     "svc.silent", "hello?", NULL};
    run(&r, argv, NULL, 0);
    cr_assert_eq(r.status, 1, "exit %d, stderr [%s]", r.status, r.err);
    assert_one_line(r.err, "silent responder");
    assert_has(r.err, "no reply within", "silent responder");
    cr_assert_eq(r.out_len, 0);
    cr_assert_geq(r.elapsed_ms, 500, "gave up after %lld ms", (long long)r.elapsed_ms);
    cr_assert_lt(r.elapsed_ms, 4000, "took %lld ms for -t 0.5", (long long)r.elapsed_ms);
    free(r.out);

    /* The request did reach the responder. */
    sb_msg m;
    cr_assert_eq(sb_next_msg(silent, &m, HARNESS_IO_MS), 0);
    cr_assert_str_eq(m.subject, "svc.silent");
    cr_assert_gt(m.reply_len, 0);
    sb_close(silent);
    harness_stop(&broker);
}

Test(cli_rpc, req_refused_by_the_broker_fails_at_once)
{
    struct cli_result r;
    const char *const argv[] = {"sockbus", "req", "-s",        broker.socket,
                                "-t",      "5",   "$SYS.NOPE", NULL};
    run(&r, argv, NULL, 0);
    cr_assert_eq(r.status, 1, "exit %d, stderr [%s]", r.status, r.err);
    assert_one_line(r.err, "refused request");
    assert_has(r.err, "refused", "refused request");
    cr_assert_lt(r.elapsed_ms, 2500, "took %lld ms: a refusal must not wait for -t",
                 (long long)r.elapsed_ms);
    free(r.out);
    harness_stop(&broker);
}

/* ---- stat ---- */

/* The table row whose NAME is `name`, split at blanks into `cols`. */
static int table_row(const char *out, const char *name, char cols[][64], int max)
{
    char pattern[80];
    snprintf(pattern, sizeof(pattern), "  %s  ", name);
    const char *at = strstr(out, pattern);
    cr_assert_not_null(at, "no row for client '%s' in:\n%s", name, out);
    const char *start = at;
    while (start > out && start[-1] != '\n') {
        start--;
    }
    const char *end = strchr(at, '\n');
    cr_assert_not_null(end);
    int n = 0;
    for (const char *p = start; p < end && n < max;) {
        while (p < end && *p == ' ') {
            p++;
        }
        size_t len = strcspn(p, " \n");
        if (len == 0) {
            break;
        }
        snprintf(cols[n++], 64, "%.*s", (int)len, p);
        p += len;
    }
    return n;
}

Test(cli_rpc, stat_prints_counts_and_a_row_per_client)
{
    sb_client *local = harness_client(&broker, "rpc-stat-probe", true);
    cr_assert_eq(sb_subscribe(local, "probe.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(local, HARNESS_IO_MS), 0);
    sb_client *remote;
    sb_options o = {.endpoint = broker.tcp, .name = "rpc-tcp-probe"};
    cr_assert_eq(sb_connect(&remote, &o), 0);

    struct cli_result r;
    const char *const argv[] = {"sockbus", "stat", "-s", broker.socket, NULL};
    run(&r, argv, NULL, 0);
    cr_assert_eq(r.status, 0, "exit %d, stderr [%s]", r.status, r.err);
    cr_assert_str_empty(r.err);

    /* Us two and stat itself. */
    const char *line = strstr(r.out, "\nconnections ");
    cr_assert_not_null(line, "no connections line in:\n%s", r.out);
    cr_assert_eq(strtol(line + strlen("\nconnections "), NULL, 10), 3,
                 "wrong connection count in:\n%s", r.out);
    assert_has(r.out, "ID  NAME", "table header");
    assert_has(r.out, "TRANSPORT", "table header");
    assert_has(r.out, "PENDING", "table header");
    assert_has(r.out, "DROPPED", "table header");

    char cols[12][64];
    char pid[32];
    char uid[32];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    snprintf(uid, sizeof(uid), "%u", (unsigned)getuid());
    cr_assert_eq(table_row(r.out, "rpc-stat-probe", cols, 12), 10, "row:\n%s", r.out);
    cr_assert_str_eq(cols[1], "rpc-stat-probe");
    cr_assert_str_eq(cols[2], "unix");
    cr_assert_str_eq(cols[3], pid);
    cr_assert_str_eq(cols[4], uid);
    cr_assert_str_eq(cols[5], "1", "subscriptions:\n%s", r.out);
    cr_assert_eq(table_row(r.out, "rpc-tcp-probe", cols, 12), 10, "row:\n%s", r.out);
    cr_assert_str_eq(cols[2], "tcp");
    cr_assert_str_eq(cols[3], "-", "a TCP client has no pid:\n%s", r.out);
    cr_assert_str_eq(cols[4], "-", "a TCP client has no uid:\n%s", r.out);
    free(r.out);

    sb_close(remote);
    sb_close(local);
    harness_stop(&broker);
}

static json_object *get_key(json_object *o, const char *key)
{
    json_object *v = NULL;
    cr_assert(json_object_object_get_ex(o, key, &v), "missing key '%s' in %s", key,
              json_object_to_json_string(o));
    return v;
}

Test(cli_rpc, stat_json_is_one_document_with_stats_and_clients)
{
    sb_client *local = harness_client(&broker, "rpc-stat-probe", true);
    sb_client *remote;
    sb_options o = {.endpoint = broker.tcp, .name = "rpc-tcp-probe"};
    cr_assert_eq(sb_connect(&remote, &o), 0);

    struct cli_result r;
    const char *const argv[] = {"sockbus", "stat", "-s", broker.socket, "--json", NULL};
    run(&r, argv, NULL, 0);
    cr_assert_eq(r.status, 0, "exit %d, stderr [%s]", r.status, r.err);
    cr_assert_str_empty(r.err);

    json_object *doc = parse_json(r.out, r.out_len, "stat --json");
    json_object *stats = get_key(doc, "stats");
    cr_assert(json_object_is_type(stats, json_type_object));
    cr_assert_geq(json_object_get_int64(get_key(stats, "connections")), 1);
    cr_assert_eq(json_object_get_int64(get_key(stats, "connections")), 3);
    get_key(stats, "msgs_in");
    get_key(stats, "uptime_s");

    json_object *clients = get_key(doc, "clients");
    cr_assert(json_object_is_type(clients, json_type_array));
    cr_assert_eq(json_object_array_length(clients), 3);
    bool saw_local = false;
    bool saw_remote = false;
    for (size_t i = 0; i < json_object_array_length(clients); i++) {
        json_object *c = json_object_array_get_idx(clients, i);
        get_key(c, "id");
        json_object *name = get_key(c, "name");
        const char *transport = json_object_get_string(get_key(c, "transport"));
        json_object *pid = get_key(c, "pid");
        json_object *uid = get_key(c, "uid");
        if (name != NULL && strcmp(json_object_get_string(name), "rpc-stat-probe") == 0) {
            saw_local = true;
            cr_assert_str_eq(transport, "unix");
            cr_assert_eq(json_object_get_int64(pid), getpid());
            cr_assert_eq(json_object_get_int64(uid), getuid());
        }
        if (name != NULL && strcmp(json_object_get_string(name), "rpc-tcp-probe") == 0) {
            saw_remote = true;
            cr_assert_str_eq(transport, "tcp");
            cr_assert_null(pid);
            cr_assert_null(uid);
        }
    }
    cr_assert(saw_local && saw_remote, "clients: %s", json_object_to_json_string(clients));
    json_object_put(doc);
    free(r.out);

    sb_close(remote);
    sb_close(local);
    harness_stop(&broker);
}

/*
 * More clients, with longer names, than one frame could list at once:
 * stat pages through $SYS.CLIENTS and shows every one of them. The names
 * are 128 characters, 10 that tell them apart and then control characters
 * (as JSON escapes), which a broker that kept them would list as six bytes
 * each: 1300 of them made one answer larger than max_frame.
 */
Test(cli_rpc, stat_lists_every_client_of_many)
{
    enum { N = 1300, NAME_LEN = 128, PREFIX_LEN = 10 };
    static int fds[N];
    static char names[N][PREFIX_LEN + 6 * (NAME_LEN - PREFIX_LEN) + 1];
    for (int i = 0; i < N; i++) {
        int n = snprintf(names[i], sizeof(names[i]), "many-%04d-", i);
        for (int k = PREFIX_LEN; k < NAME_LEN; k++) {
            n += snprintf(names[i] + n, sizeof(names[i]) - (size_t)n, "\\u0001");
        }
        fds[i] = harness_raw_named(&broker, names[i]);
    }

    struct cli_result r;
    const char *const table[] = {"sockbus", "stat", "-s", broker.socket, NULL};
    run(&r, table, NULL, 0);
    cr_assert_eq(r.status, 0, "exit %d, stderr [%s]", r.status, r.err);
    cr_assert_str_empty(r.err);
    for (int i = 0; i < N; i++) {
        char cell[32];
        snprintf(cell, sizeof(cell), "  many-%04d-\xEF\xBF\xBD", i);
        cr_assert(strstr(r.out, cell) != NULL, "client %d missing from the table", i);
    }
    free(r.out);

    const char *const json[] = {"sockbus", "stat", "-s", broker.socket, "--json", NULL};
    run(&r, json, NULL, 0);
    cr_assert_eq(r.status, 0, "exit %d, stderr [%s]", r.status, r.err);
    json_object *doc = parse_json(r.out, r.out_len, "stat --json");
    json_object *clients = NULL;
    cr_assert(json_object_object_get_ex(doc, "clients", &clients));
    cr_assert_eq(json_object_array_length(clients), N + 1, "us and stat itself");
    static bool seen[N];
    memset(seen, 0, sizeof(seen));
    for (size_t i = 0; i < json_object_array_length(clients); i++) {
        json_object *name = NULL;
        json_object_object_get_ex(json_object_array_get_idx(clients, i), "name", &name);
        const char *s = name ? json_object_get_string(name) : "";
        int k;
        if (sscanf(s, "many-%04d-", &k) == 1 && k >= 0 && k < N) {
            /* Each control character is shown as U+FFFD, up to 128 bytes. */
            cr_assert(strlen(s) > PREFIX_LEN && strlen(s) <= NAME_LEN, "name [%s]", s);
            cr_assert_not(seen[k], "client %d listed twice", k);
            seen[k] = true;
        }
    }
    for (int i = 0; i < N; i++) {
        cr_assert(seen[i], "client %d missing from --json", i);
    }
    json_object_put(doc);
    free(r.out);
    for (int i = 0; i < N; i++) {
        close(fds[i]);
    }
    harness_stop(&broker);
}

/* ---- help, usage, connecting ---- */

Test(cli_rpc, help_usage_errors_and_cannot_connect)
{
    static const char *const cmds[] = {"req", "reply", "stat"};
    struct cli_result r;

    for (size_t i = 0; i < 3; i++) {
        const char *const help[] = {"sockbus", cmds[i], "--help", NULL};
        run(&r, help, NULL, 0);
        cr_assert_eq(r.status, 0, "%s --help: exit %d", cmds[i], r.status);
        char usage[64];
        snprintf(usage, sizeof(usage), "usage: sockbus %s ", cmds[i]);
        cr_assert(r.out_len > strlen(usage) && memcmp(r.out, usage, strlen(usage)) == 0,
                  "%s --help printed [%s]", cmds[i], r.out);
        cr_assert_str_empty(r.err);
        free(r.out);
    }

    static const char *const bad[][8] = {
        {"sockbus", "req", NULL},
        {"sockbus", "req", "-t", "0", "x", NULL},
        {"sockbus", "req", "a.*", "x", NULL},
        {"sockbus", "req", "x", "a", "b", NULL},
        {"sockbus", "reply", NULL},
        {"sockbus", "reply", "x", "--", NULL},
        {"sockbus", "reply", "x", "a", "b", NULL},
        {"sockbus", "reply", "-n", "0", "x", NULL},
        {"sockbus", "stat", "extra", NULL},
        {"sockbus", "stat", "--bogus", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        run(&r, bad[i], NULL, 0);
        cr_assert_eq(r.status, 2, "%s %s: exit %d, stderr [%s]", bad[i][1],
                     bad[i][2] ? bad[i][2] : "", r.status, r.err);
        assert_one_line(r.err, "usage error");
        free(r.out);
    }

    char nowhere[160];
    snprintf(nowhere, sizeof(nowhere), "%s/nobody.sock", broker.dir);
    static const char *const forms[][4] = {
        {"req", "x", "hi", NULL},
        {"reply", "x", "hi", NULL},
        {"stat", NULL, NULL, NULL},
    };
    for (size_t i = 0; i < 3; i++) {
        const char *argv[8] = {"sockbus", forms[i][0], "-s", nowhere};
        for (int k = 1; k < 4 && forms[i][k] != NULL; k++) {
            argv[3 + k] = forms[i][k];
        }
        run(&r, argv, NULL, 0);
        cr_assert_eq(r.status, 1, "%s: exit %d, stderr [%s]", forms[i][0], r.status, r.err);
        assert_one_line(r.err, "cannot connect");
        assert_has(r.err, "cannot connect to", "cannot connect");
        assert_has(r.err, nowhere, "cannot connect");
        free(r.out);
    }
    harness_stop(&broker);
}

/* GNU order: options after SUBJECT are the service's; after "--" the
 * arguments are the command's, options included. */
Test(cli_rpc, reply_options_after_subject_and_command_options_after_dashes)
{
    const char *const reply_argv[] = {"sockbus",     "reply", "gnu.svc", "-n", "1",  "-s",
                                      broker.socket, "--",    "printf",  "%s", "-n", NULL};
    struct bg *svc = bg_start(reply_argv);
    sb_client *c = harness_client(&broker, "rpc-requester", true);
    sb_msg m = wait_responder(c, "gnu.svc", "x");
    assert_reply(&m, "-n", 2, "printf %s -n");
    cr_assert_eq(bg_wait(svc), 0, "reply SUBJECT -n 1 did not exit after one request");
    sb_close(c);
    harness_stop(&broker);
}
