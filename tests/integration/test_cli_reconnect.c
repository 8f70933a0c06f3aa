/*
 * test_cli_reconnect.c - `sockbus sub`, `sockbus reply` and `sockbus pub`
 * reading lines survive a broker restart (docs/man/sockbus.1.scd,
 * RECONNECTING): killed by SIGKILL or SIGTERM, or gone for a while, the
 * broker is started again on the same socket and the commands serve again
 * (within the backoff's bound of 1 s of it being back, measured with a
 * generous margin), with exactly two lines on stderr, one naming the
 * endpoint when it went away and one when it was back; with --quiet, none;
 * with --no-reconnect they exit 1 as before.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct harness_broker broker;

/* Back within the backoff's bound (1 s) of the broker: the margin is for
 * a loaded machine. */
#define BACK_MS 2500

/* A `sockbus` command in the background: stdin and stdout are pipes,
 * stderr a file. */
struct bg {
    pid_t pid;
    int in;  /* its stdin, or -1 */
    int out; /* its stdout */
    char err_path[160];
};

static struct bg live[3];

static void setup(void)
{
    int r = harness_start(&broker, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
}

static void teardown(void)
{
    for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
        if (live[i].pid > 0) {
            kill(live[i].pid, SIGKILL);
            waitpid(live[i].pid, NULL, 0);
            live[i].pid = 0;
        }
    }
    harness_cleanup(&broker);
}

TestSuite(cli_reconnect, .init = setup, .fini = teardown, .timeout = 90);

static struct bg *bg_start(const char *const *argv)
{
    struct bg *b = NULL;
    for (size_t i = 0; i < sizeof(live) / sizeof(live[0]) && b == NULL; i++) {
        if (live[i].pid <= 0) {
            b = &live[i];
        }
    }
    cr_assert_not_null(b);
    snprintf(b->err_path, sizeof(b->err_path), "%s/bg-%d.err", broker.dir, (int)(b - live));
    const char *args[32];
    size_t n = 0;
    args[n++] = getenv("SOCKBUS");
    cr_assert(args[0] != NULL, "SOCKBUS is not set: run the tests with meson test");
    for (size_t i = 1; argv[i] != NULL && n < 31; i++) {
        args[n++] = argv[i];
    }
    args[n] = NULL;
    int in[2];
    int out[2];
    cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int err = open(b->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    b->pid = pid;
    b->in = in[1];
    b->out = out[0];
    return b;
}

/* A line to the command's stdin (a pipe; a line is far below PIPE_BUF). */
static void bg_write(const struct bg *b, const char *line)
{
    cr_assert_eq(write(b->in, line, strlen(line)), (ssize_t)strlen(line));
}

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

static int count_lines(const char *text)
{
    int n = 0;
    for (const char *p = text; *p != '\0'; p++) {
        n += *p == '\n';
    }
    return n;
}

/* Wait (bounded) until the command has written `lines` lines on stderr. */
static void wait_stderr_lines(const struct bg *b, int lines, char *buf, size_t len)
{
    int64_t deadline = harness_now_ms() + HARNESS_IO_MS;
    do {
        bg_stderr(b, buf, len);
        if (count_lines(buf) >= lines) {
            return;
        }
    } while (harness_now_ms() < deadline && poll(NULL, 0, 5) == 0);
    cr_assert_fail("expected %d lines on stderr, got [%s]", lines, buf);
}

/* Read one line of the command's stdout within timeout_ms; true if a
 * whole line came. */
static bool read_line(int fd, char *buf, size_t len, int timeout_ms)
{
    size_t n = 0;
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (n + 1 < len) {
        int left = (int)(deadline - harness_now_ms());
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0) {
            break;
        }
        if (read(fd, buf + n, 1) != 1) {
            break;
        }
        if (buf[n++] == '\n') {
            buf[n] = '\0';
            return true;
        }
    }
    buf[n] = '\0';
    return false;
}

/* Publish `payload` on `subject` until the subscriber prints it, within
 * `within_ms`; returns how long it took. Lines of earlier payloads (the
 * copies published while waiting for one) are skipped. */
static int64_t publish_until_printed(const struct bg *b, const char *subject, const char *payload,
                                     int within_ms)
{
    int64_t t0 = harness_now_ms();
    sb_client *p = harness_client(&broker, "pub", true);
    char line[256];
    char want[128];
    snprintf(want, sizeof(want), "%s\n", payload);
    for (;;) {
        cr_assert_eq(sb_publish(p, subject, NULL, payload, strlen(payload)), 0);
        cr_assert_eq(sb_flush(p, HARNESS_IO_MS), 0);
        bool seen = false;
        while (!seen && read_line(b->out, line, sizeof(line), 20)) {
            seen = strcmp(line, want) == 0;
        }
        if (seen) {
            break;
        }
        cr_assert_lt(harness_now_ms() - t0, within_ms, "nothing printed within %d ms", within_ms);
    }
    sb_close(p);
    return harness_now_ms() - t0;
}

/* Request on `subject` until it is answered (not NO_RESPONDERS), within
 * `within_ms`; returns how long it took. */
static int64_t request_until_answered(const char *subject, int within_ms)
{
    int64_t t0 = harness_now_ms();
    sb_client *c = harness_client(&broker, "asker", true);
    for (;;) {
        sb_msg reply;
        int r = sb_request(c, subject, "x", 1, &reply, HARNESS_IO_MS);
        if (r == 0) {
            cr_assert_gt(reply.payload_len, 0, "an empty reply");
            break;
        }
        cr_assert_eq(r, SB_E_NO_RESPONDERS, "request: %s", sb_strerror(r));
        cr_assert_lt(harness_now_ms() - t0, within_ms, "no answer within %d ms", within_ms);
        poll(NULL, 0, 5); /* polling a condition, bounded above */
    }
    sb_close(c);
    return harness_now_ms() - t0;
}

static void restart(void)
{
    int r = harness_restart(&broker, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start again: %s", strerror(-r));
}

/* The two lines: the first names the endpoint and says it reconnects, the
 * second that it is back. */
static void assert_two_lines(const char *err, const char *cmd)
{
    cr_assert_eq(count_lines(err), 2, "sockbus %s: expected two lines on stderr, got [%s]", cmd,
                 err);
    char want[256];
    snprintf(want, sizeof(want), "sockbus %s: lost the connection to %s (", cmd, broker.socket);
    cr_assert_eq(strncmp(err, want, strlen(want)), 0, "first line [%s]", err);
    const char *second = strchr(err, '\n') + 1;
    snprintf(want, sizeof(want), "sockbus %s: reconnected to %s after ", cmd, broker.socket);
    cr_assert_eq(strncmp(second, want, strlen(want)), 0, "second line [%s]", second);
}

Test(cli_reconnect, sub_and_reply_serve_again_after_sigkill)
{
    const char *sub_argv[] = {"sockbus", "sub", "-s", broker.socket, "a.>", NULL};
    const char *reply_argv[] = {"sockbus", "reply", "-s", broker.socket, "svc", "--", "date", NULL};
    struct bg *sub = bg_start(sub_argv);
    struct bg *rep = bg_start(reply_argv);
    publish_until_printed(sub, "a.x", "before", 2 * harness_ready_ms());
    request_until_answered("svc", 2 * harness_ready_ms());

    cr_assert_eq(harness_kill(&broker, SIGKILL), 128 + SIGKILL);
    char err[4096];
    wait_stderr_lines(sub, 1, err, sizeof(err));
    wait_stderr_lines(rep, 1, err, sizeof(err));
    restart();
    int64_t sub_back = publish_until_printed(sub, "a.y", "after", BACK_MS);
    int64_t rep_back = request_until_answered("svc", BACK_MS);
    cr_log_info("back after the restart: sub in %lld ms, reply in %lld ms", (long long)sub_back,
                (long long)rep_back);

    bg_stderr(sub, err, sizeof(err));
    assert_two_lines(err, "sub");
    bg_stderr(rep, err, sizeof(err));
    assert_two_lines(err, "reply");
    cr_assert_eq(waitpid(sub->pid, NULL, WNOHANG), 0, "sub exited");
    cr_assert_eq(waitpid(rep->pid, NULL, WNOHANG), 0, "reply exited");
    harness_stop(&broker);
}

/* SIGTERM (the broker says ERR 9) and a socket that refuses for a while
 * (the broker killed, its socket file left, a new one started later). */
Test(cli_reconnect, sub_survives_a_stop_and_a_refusing_socket)
{
    const char *sub_argv[] = {"sockbus", "sub", "-s", broker.socket, "-n", "100", "a.>", NULL};
    struct bg *sub = bg_start(sub_argv);
    publish_until_printed(sub, "a.x", "one", 2 * harness_ready_ms());

    cr_assert_eq(harness_kill(&broker, SIGTERM), 0);
    char err[4096];
    wait_stderr_lines(sub, 1, err, sizeof(err));
    cr_assert(strstr(err, "shutting down") != NULL, "[%s]", err);
    restart();
    publish_until_printed(sub, "a.x", "two", BACK_MS);

    cr_assert_eq(harness_kill(&broker, SIGKILL), 128 + SIGKILL);
    wait_stderr_lines(sub, 3, err, sizeof(err));
    /* Refused for a while: several attempts, still one line. */
    int64_t t0 = harness_now_ms();
    while (harness_now_ms() - t0 < 500) {
        poll(NULL, 0, 50); /* the length of the outage is the point */
    }
    bg_stderr(sub, err, sizeof(err));
    cr_assert_eq(count_lines(err), 3, "[%s]", err);
    restart();
    publish_until_printed(sub, "a.x", "three", BACK_MS);
    bg_stderr(sub, err, sizeof(err));
    cr_assert_eq(count_lines(err), 4, "[%s]", err);
    harness_stop(&broker);
}

Test(cli_reconnect, quiet_says_nothing)
{
    const char *sub_argv[] = {"sockbus", "sub", "--quiet", "-s", broker.socket, "a.>", NULL};
    struct bg *sub = bg_start(sub_argv);
    publish_until_printed(sub, "a.x", "one", 2 * harness_ready_ms());
    cr_assert_eq(harness_kill(&broker, SIGKILL), 128 + SIGKILL);
    restart();
    publish_until_printed(sub, "a.x", "two", BACK_MS + HARNESS_IO_MS);
    char err[4096];
    bg_stderr(sub, err, sizeof(err));
    cr_assert_str_empty(err);
    harness_stop(&broker);
}

Test(cli_reconnect, no_reconnect_exits_1)
{
    const char *sub_argv[] = {"sockbus", "sub", "--no-reconnect", "-s", broker.socket, "a.>", NULL};
    const char *reply_argv[] = {"sockbus", "reply", "--no-reconnect", "-s", broker.socket, "svc",
                                "ok",      NULL};
    struct bg *sub = bg_start(sub_argv);
    struct bg *rep = bg_start(reply_argv);
    publish_until_printed(sub, "a.x", "one", 2 * harness_ready_ms());
    request_until_answered("svc", 2 * harness_ready_ms());
    cr_assert_eq(harness_kill(&broker, SIGKILL), 128 + SIGKILL);
    int status = harness_wait_pid(sub->pid, HARNESS_IO_MS);
    sub->pid = 0;
    cr_assert_eq(status, 1, "sub exited %d", status);
    status = harness_wait_pid(rep->pid, HARNESS_IO_MS);
    rep->pid = 0;
    cr_assert_eq(status, 1, "reply exited %d", status);
    char err[4096];
    bg_stderr(sub, err, sizeof(err));
    cr_assert_eq(count_lines(err), 1, "[%s]", err);
    cr_assert(strstr(err, "lost connection") != NULL, "[%s]", err);
}

/* pub reading lines keeps what it reads while the broker is away and
 * sends it, in order, once it is back; then exits 0. */
Test(cli_reconnect, pub_lines_are_held_and_sent_in_order)
{
    sb_client *s = harness_client(&broker, "s", true);
    uint32_t sid;
    cr_assert_eq(sb_subscribe(s, "p.x", NULL, &sid), 0);
    cr_assert_eq(sb_flush(s, HARNESS_IO_MS), 0);
    const char *pub_argv[] = {"sockbus", "pub", "-s", broker.socket, "p.x", NULL};
    struct bg *pub = bg_start(pub_argv);
    bg_write(pub, "line1\n");
    sb_msg m = harness_expect_msg(s);
    cr_assert_eq(m.payload_len, 5);
    sb_close(s);

    cr_assert_eq(harness_kill(&broker, SIGKILL), 128 + SIGKILL);
    bg_write(pub, "line2\n");
    char err[4096];
    wait_stderr_lines(pub, 1, err, sizeof(err));
    bg_write(pub, "line3\n");
    /* Held still while the broker starts and a subscriber comes. */
    kill(pub->pid, SIGSTOP);
    restart();
    s = harness_client(&broker, "s", true);
    cr_assert_eq(sb_subscribe(s, "p.x", NULL, &sid), 0);
    cr_assert_eq(sb_flush(s, HARNESS_IO_MS), 0);
    kill(pub->pid, SIGCONT);
    bg_write(pub, "line4\n");
    close(pub->in);
    int status = harness_wait_pid(pub->pid, HARNESS_IO_MS + BACK_MS);
    pub->pid = 0;
    bg_stderr(pub, err, sizeof(err));
    cr_assert_eq(status, 0, "pub exited %d [%s]", status, err);
    assert_two_lines(err, "pub");
    const char *want[] = {"line2", "line3", "line4"};
    for (int i = 0; i < 3; i++) {
        m = harness_expect_msg(s);
        cr_assert(m.payload_len == 5 && memcmp(m.payload, want[i], 5) == 0, "got %.*s, not %s",
                  (int)m.payload_len, (const char *)m.payload, want[i]);
    }
    harness_expect_none(s);
    sb_close(s);
    harness_stop(&broker);
}
