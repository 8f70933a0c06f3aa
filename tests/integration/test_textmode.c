/*
 * test_textmode.c - text mode: a person with nc -U, or a script in a pipe
 * (docs/protocol.md, Text mode).
 *
 * The text client here is a real `socat` or `nc -U` (netcat-openbsd) in a
 * pipe, as a person would use them: this test writes to its stdin and
 * reads its stdout. Binary clients (the library) share the broker with it:
 * a binary publisher reaches a text subscriber and back. The ACL, the
 * limits and the HELLO deadline apply as the protocol says; an error keeps
 * the session, except a line over max_frame and shutdown.
 */
#include "frame.h"
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static struct harness_broker broker;

static void teardown(void)
{
    harness_cleanup(&broker);
}

TestSuite(textmode, .fini = teardown, .timeout = 120);

static void start(const char *const *extra)
{
    int r = harness_start(&broker, false, extra);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
}

/* ---- a program in a pipe ------------------------------------------------- */

/* A running socat or nc: we write its stdin and read its stdout. */
struct tool {
    pid_t pid;
    int in;  /* its stdin; -1 once closed */
    int out; /* its stdout */
    char buf[256 * 1024];
    size_t len; /* bytes read so far */
    size_t pos; /* bytes consumed by expect_*() */
    bool eof;
};

static struct tool *tool_start(const char *const *argv)
{
    struct tool *t = calloc(1, sizeof(*t));
    cr_assert_not_null(t);
    int in[2];
    int out[2];
    cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    t->pid = fork();
    cr_assert(t->pid >= 0);
    if (t->pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    t->in = in[1];
    t->out = out[0];
    signal(SIGPIPE, SIG_IGN);
    return t;
}

/* socat, the first choice of the docs. */
static struct tool *socat(void)
{
    char addr[160];
    snprintf(addr, sizeof(addr), "UNIX-CONNECT:%s", broker.socket);
    const char *const argv[] = {"socat", "-", addr, NULL};
    return tool_start(argv);
}

/* nc -U (netcat-openbsd). */
static struct tool *netcat(void)
{
    const char *const argv[] = {"nc", "-U", broker.socket, NULL};
    return tool_start(argv);
}

static void tool_send(struct tool *t, const char *s)
{
    for (size_t len = strlen(s), off = 0; off < len;) {
        ssize_t n = write(t->in, s + off, len - off);
        cr_assert_gt(n, 0, "write to the tool: %s", strerror(errno));
        off += (size_t)n;
    }
}

/* Read what is there within timeout_ms; false on EOF. */
static bool tool_read(struct tool *t, int timeout_ms)
{
    struct pollfd p = {.fd = t->out, .events = POLLIN};
    if (t->eof || poll(&p, 1, timeout_ms) <= 0) {
        return !t->eof;
    }
    cr_assert_lt(t->len, sizeof(t->buf) - 1, "the tool wrote more than the test expected");
    ssize_t n = read(t->out, t->buf + t->len, sizeof(t->buf) - 1 - t->len);
    if (n <= 0) {
        t->eof = true;
        return false;
    }
    t->len += (size_t)n;
    t->buf[t->len] = '\0';
    return true;
}

/* The next bytes are exactly `want` (within HARNESS_IO_MS). */
static void expect_bytes(struct tool *t, const void *want, size_t n)
{
    int64_t until = harness_now_ms() + HARNESS_IO_MS;
    while (t->len - t->pos < n && !t->eof && harness_now_ms() < until) {
        tool_read(t, 50);
    }
    cr_assert_geq(t->len - t->pos, n, "expected [%.*s], got [%.*s]%s", (int)n, (const char *)want,
                  (int)(t->len - t->pos), t->buf + t->pos, t->eof ? " and EOF" : "");
    cr_assert(memcmp(t->buf + t->pos, want, n) == 0, "expected [%.*s], got [%.*s]", (int)n,
              (const char *)want, (int)n, t->buf + t->pos);
    t->pos += n;
}

static void expect(struct tool *t, const char *want)
{
    expect_bytes(t, want, strlen(want));
}

/* The next line (without "\r\n"), which must start with `prefix`; returns
 * it in a static buffer. */
static const char *expect_line(struct tool *t, const char *prefix)
{
    static char line[4096];
    int64_t until = harness_now_ms() + HARNESS_IO_MS;
    char *end;
    while ((end = memmem(t->buf + t->pos, t->len - t->pos, "\r\n", 2)) == NULL && !t->eof &&
           harness_now_ms() < until) {
        tool_read(t, 50);
    }
    cr_assert_not_null(end, "expected a line starting [%s], got [%.*s]", prefix,
                       (int)(t->len - t->pos), t->buf + t->pos);
    size_t n = (size_t)(end - (t->buf + t->pos));
    cr_assert_lt(n, sizeof(line));
    memcpy(line, t->buf + t->pos, n);
    line[n] = '\0';
    t->pos += n + 2;
    cr_assert(strncmp(line, prefix, strlen(prefix)) == 0, "expected a line starting [%s], got [%s]",
              prefix, line);
    return line;
}

/* The broker closed the connection: the tool ends by itself, with nothing
 * more written. */
static void expect_closed(struct tool *t)
{
    int64_t until = harness_now_ms() + HARNESS_IO_MS;
    while (!t->eof && harness_now_ms() < until) {
        tool_read(t, 50);
    }
    cr_assert(t->eof, "the connection stayed open");
    cr_assert_eq(t->len, t->pos, "more after the end: [%s]", t->buf + t->pos);
}

/* Close its stdin and reap it (killed if it lingers). */
static void tool_end(struct tool *t)
{
    if (t->in >= 0) {
        close(t->in);
    }
    if (harness_wait_pid(t->pid, 2000) < 0) {
        kill(t->pid, SIGKILL);
        waitpid(t->pid, NULL, 0);
    }
    close(t->out);
    free(t);
}

/* Feed `script` at once, close stdin, and return everything the tool
 * printed until the broker closed the connection (the script ends with
 * QUIT). The caller frees it. */
static char *transcript(struct tool *t, const char *script)
{
    tool_send(t, script);
    int64_t until = harness_now_ms() + HARNESS_IO_MS;
    while (!t->eof && harness_now_ms() < until) {
        tool_read(t, 50);
    }
    cr_assert(t->eof, "the broker did not close after QUIT; got [%s]", t->buf);
    char *s = strdup(t->buf);
    tool_end(t);
    return s;
}

/* ---- the commands --------------------------------------------------------- */

static const char basics_script[] = "SUB demo.>\n"
                                    "PUB demo.x hello world\n"
                                    "ping\n"
                                    "Unsub 1\n"
                                    "PUB demo.x nobody hears this\n"
                                    "QUIT\n";

static const char basics_output[] = "+OK 1\r\n"
                                    "+OK\r\n"
                                    "MSG demo.x 1 11\r\nhello world\r\n"
                                    "PONG\r\n"
                                    "+OK\r\n"
                                    "+OK\r\n"
                                    "+OK\r\n";

Test(textmode, socat_sub_pub_ping_unsub_quit)
{
    start(NULL);
    char *out = transcript(socat(), basics_script);
    cr_assert_str_eq(out, basics_output);
    free(out);
    harness_stop(&broker);
}

Test(textmode, netcat_sub_pub_ping_unsub_quit)
{
    start(NULL);
    char *out = transcript(netcat(), basics_script);
    cr_assert_str_eq(out, basics_output);
    free(out);
    harness_stop(&broker);
}

Test(textmode, help_stats_and_blank_lines)
{
    start(NULL);
    struct tool *t = socat();
    tool_send(t, "help\n\n   \r\n");
    for (int i = 0; i < 10; i++) {
        expect_line(t, "# ");
    }
    expect(t, "+OK\r\n");
    tool_send(t, "STATS\r\n");
    const char *line = expect_line(t, "+OK {");
    cr_assert(strstr(line, "\"connections\":1") != NULL, "%s", line);
    cr_assert(strstr(line, "\"subscriptions\":0") != NULL, "%s", line);
    tool_send(t, "QUIT\n");
    expect(t, "+OK\r\n");
    expect_closed(t);
    tool_end(t);
    harness_stop(&broker);
}

/* Mistakes get -ERR and the session goes on: the PING after them is
 * answered. */
Test(textmode, errors_keep_the_session)
{
    start(NULL);
    struct tool *t = netcat();
    tool_send(t, "FOO bar\n");
    expect(t, "-ERR 1 unknown verb 'FOO'; type HELP for the commands\r\n");
    tool_send(t, "PUB\n");
    expect_line(t, "-ERR 1 PUB needs a subject");
    tool_send(t, "SUB a..b\n");
    expect(t, "-ERR 3 cannot subscribe to 'a..b': invalid pattern or queue group\r\n");
    tool_send(t, "SUB a b c\n");
    expect_line(t, "-ERR 1 usage: SUB <pattern> [<queue>]");
    tool_send(t, "UNSUB 77\n");
    expect(t, "-ERR 7 cannot unsubscribe: unknown sid 77\r\n");
    tool_send(t, "UNSUB x\n");
    expect_line(t, "-ERR 1 usage: UNSUB <sid>");
    tool_send(t, "PUB a.* x\n");
    expect(t, "-ERR 3 cannot publish on 'a.*': invalid subject or reply subject\r\n");
    tool_send(t, "PUB $SYS.STATS x\n");
    expect(t, "-ERR 4 permission denied: cannot publish on '$SYS.STATS'\r\n");
    tool_send(t, "PING extra\n");
    expect_line(t, "-ERR 1 PING, STATS, HELP and QUIT take no arguments");
    /* Text typed at a frame-speaking broker by mistake, and a control
     * byte: quoted escaped. */
    tool_send(t, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n\x01\x02zz\n");
    expect(t, "-ERR 1 unknown verb 'GET'; type HELP for the commands\r\n");
    expect(t, "-ERR 1 unknown verb 'Host:'; type HELP for the commands\r\n");
    expect(t, "-ERR 1 unknown verb '\\x01\\x02zz'; type HELP for the commands\r\n");
    tool_send(t, "PING\n");
    expect(t, "PONG\r\n");
    tool_end(t);
    harness_stop(&broker);
}

/* ---- interop with binary clients ------------------------------------------ */

Test(textmode, binary_and_text_clients_reach_each_other)
{
    start(NULL);
    sb_client *bin = harness_client(&broker, "bin", true);
    cr_assert_eq(sb_subscribe(bin, "to.bin", NULL, NULL), 0);
    cr_assert_eq(sb_flush(bin, HARNESS_IO_MS), 0);
    struct tool *t = socat();
    tool_send(t, "SUB to.text\nSUB to.text  workers\n");
    expect(t, "+OK 1\r\n+OK 2\r\n");

    /* Binary to text: any bytes, "\r\n" and NUL included, counted. */
    static const char payload[] = "line one\r\nline two\0end";
    cr_assert_eq(sb_publish(bin, "to.text", "re.ply", payload, sizeof(payload) - 1), 0);
    cr_assert_eq(sb_flush(bin, HARNESS_IO_MS), 0);
    for (int i = 0; i < 2; i++) {
        const char *line = expect_line(t, "MSG to.text ");
        char head[64];
        snprintf(head, sizeof(head), "MSG to.text %d re.ply %zu", i + 1, sizeof(payload) - 1);
        cr_assert_str_eq(line, head);
        expect_bytes(t, payload, sizeof(payload) - 1);
        expect(t, "\r\n");
    }

    /* Text to binary: the rest of the line after one space, byte for
     * byte, tabs and spaces included; the "\r" before "\n" is not part of
     * it. */
    tool_send(t, "pub to.bin  two  spaces\tand a tab \r\n");
    expect(t, "+OK\r\n");
    sb_msg m = harness_expect_msg(bin);
    cr_assert_str_eq(m.subject, "to.bin");
    cr_assert_eq(m.payload_len, strlen(" two  spaces\tand a tab "));
    cr_assert(memcmp(m.payload, " two  spaces\tand a tab ", m.payload_len) == 0);
    tool_send(t, "PUB to.bin\n");
    expect(t, "+OK\r\n");
    m = harness_expect_msg(bin);
    cr_assert_eq(m.payload_len, 0);

    /* A text client is listed as "text", with echo on. */
    sb_msg reply;
    cr_assert_eq(sb_request(bin, "$SYS.CLIENTS", NULL, 0, &reply, HARNESS_IO_MS), 0);
    cr_assert(memmem(reply.payload, reply.payload_len, "\"name\":\"text\"", 13) != NULL, "%.*s",
              (int)reply.payload_len, (const char *)reply.payload);
    tool_end(t);
    sb_close(bin);
    harness_stop(&broker);
}

static void on_request(sb_client *c, const char *answer)
{
    sb_msg m = harness_expect_msg(c);
    cr_assert_gt(m.reply_len, 0);
    cr_assert_eq(sb_publish(c, m.reply, NULL, answer, strlen(answer)), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
}

Test(textmode, req_gets_its_reply_or_no_responders)
{
    start(NULL);
    sb_client *svc = harness_client(&broker, "svc", true);
    cr_assert_eq(sb_subscribe(svc, "svc.time", NULL, NULL), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
    struct tool *t = netcat();
    tool_send(t, "REQ svc.time what time is it\n");
    expect(t, "+OK\r\n");
    on_request(svc, "noon");
    const char *line = expect_line(t, "MSG _INBOX.");
    cr_assert(strstr(line, ".1 1 4") != NULL, "the reply on the inbox, token 1, sid 1: %s", line);
    expect(t, "noon\r\n");

    tool_send(t, "REQ nobody.home\n");
    expect(t, "+OK\r\n-ERR 0 no responders for nobody.home\r\n");
    /* The broker's own requests, and the inbox kept across requests. */
    tool_send(t, "REQ $SYS.INTEREST svc.time\n");
    expect(t, "+OK\r\n");
    expect_line(t, "MSG _INBOX.");
    expect(t, "{\"subject\":\"svc.time\",\"subscriptions\":1}\r\n");
    /* The inbox is a subscription like the others: ended, it is made
     * again at the next REQ. */
    tool_send(t, "UNSUB 1\nREQ svc.time again\n");
    expect(t, "+OK\r\n+OK\r\n");
    on_request(svc, "later");
    line = expect_line(t, "MSG _INBOX.");
    cr_assert(strstr(line, " 2 5") != NULL, "a new inbox subscription, sid 2: %s", line);
    expect(t, "later\r\n");
    /* "No responders" relayed from elsewhere (a bridge answers with a PUB
     * flagged NO_RESPONDERS) is told as the broker's own would be. */
    tool_send(t, "REQ svc.time relayed\n");
    expect(t, "+OK\r\n");
    sb_msg m = harness_expect_msg(svc);
    sb_pub relay = {.subject = m.reply, .flags = SB_PUB_NO_RESPONDERS};
    cr_assert_eq(sb_publish_ex(svc, &relay), 0);
    cr_assert_eq(sb_flush(svc, HARNESS_IO_MS), 0);
    expect(t, "-ERR 0 no responders\r\n");
    tool_end(t);
    sb_close(svc);
    harness_stop(&broker);
}

/* ---- rules and limits -------------------------------------------------------- */

static const char *write_config(const char *json)
{
    static char path[160];
    snprintf(path, sizeof(path), "%s/text.json", broker.dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(json, f);
    fclose(f);
    return path;
}

Test(textmode, the_acl_applies)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    char json[512];
    snprintf(json, sizeof(json),
             "{\"acl\": [{\"uid\": %u, \"publish\": [\"open.>\"], \"subscribe\": [\"open.>\"]}]}",
             (unsigned)getuid());
    const char *const args[] = {"--config", write_config(json), NULL};
    start(args);
    struct tool *t = socat();
    tool_send(t, "SUB open.>\nSUB secret.>\nPUB secret.x no\nPUB open.x yes\nSTATS\n");
    expect(t, "+OK 1\r\n");
    expect(t, "-ERR 4 permission denied: cannot subscribe to 'secret.>'\r\n");
    expect(t, "-ERR 4 permission denied: cannot publish on 'secret.x'\r\n");
    expect(t, "+OK\r\nMSG open.x 1 3\r\nyes\r\n");
    expect(t, "-ERR 4 permission denied: cannot publish on '$SYS.STATS'\r\n");
    tool_send(t, "PING\n");
    expect(t, "PONG\r\n");
    tool_end(t);
    harness_stop(&broker);
}

Test(textmode, limits_apply)
{
    const char *const args[] = {"--max-subscriptions", "2", "--max-frame", "4096", NULL};
    start(args);
    struct tool *t = socat();
    tool_send(t, "SUB a\nSUB b\nSUB c\n");
    expect(t, "+OK 1\r\n+OK 2\r\n");
    expect(t, "-ERR 5 cannot subscribe to 'c': max_subscriptions (2) reached\r\n");
    /* A line of exactly max_frame bytes, "\n" included, is taken, but its
     * PUB as a frame would be 10 bytes over max_frame, which bounds what
     * the broker sends too: refused, and the session goes on. */
    char line[4097];
    memcpy(line, "PUB a ", 6);
    memset(line + 6, 'x', 4095 - 6);
    line[4095] = '\n';
    line[4096] = '\0';
    tool_send(t, line);
    expect(t, "-ERR 5 cannot publish on 'a': as a frame the message takes 4106 bytes, over "
              "max_frame (4096); send less\r\n");
    /* Ten bytes less is a frame of max_frame exactly: delivered. */
    memcpy(line + 4085, "\n", 2);
    tool_send(t, line);
    expect(t, "+OK\r\n");
    expect_line(t, "MSG a 1 4079");
    char body[4080];
    memset(body, 'x', 4079);
    memcpy(body + 4079, "\r", 1);
    expect_bytes(t, body, 4080);
    expect(t, "\n");
    /* max_frame bytes without a "\n" end the connection: the line, "\n"
     * included, would be longer. Nothing more is sent, so that the tool is
     * not writing into a socket the broker has closed (it could then end
     * before it passes the ERR on). */
    memset(line + 6, 'x', 4096 - 6);
    line[4096] = '\0';
    tool_send(t, line);
    expect(t, "-ERR 2 line of more than max_frame (4096) bytes\r\n");
    expect_closed(t);
    tool_end(t);
    harness_stop(&broker);
}

Test(textmode, max_connections_counts_text_clients)
{
    const char *const args[] = {"--max-connections", "1", NULL};
    start(args);
    sb_client *bin = harness_client(&broker, "bin", true);
    struct tool *t = netcat();
    tool_send(t, "PING\n");
    expect(t, "-ERR 5 max_connections (1) reached; try again later\r\n");
    expect_closed(t);
    tool_end(t);
    sb_close(bin);
    harness_stop(&broker);
}

/* The HELLO deadline ends a connection that has said nothing; text makes
 * it a client at once, which a person may leave silent for longer. */
Test(textmode, no_hello_deadline_once_text)
{
    const char *const args[] = {"--hello-timeout-ms", "200", NULL};
    start(args);
    struct tool *t = socat();
    tool_send(t, "PING\n");
    expect(t, "PONG\r\n");
    /* Silent for three deadlines: still there. */
    cr_assert(!tool_read(t, 600) || t->len == t->pos, "unexpected output: %s", t->buf + t->pos);
    tool_send(t, "PING\n");
    expect(t, "PONG\r\n");
    tool_end(t);

    /* A connection that sends nothing is still ended by it (binary ERR 8). */
    int fd = harness_raw(&broker, false);
    uint8_t hdr[FRAME_HEADER_SIZE];
    uint8_t body[256];
    cr_assert_gt(harness_read_frame(fd, hdr, body, sizeof(body), HARNESS_IO_MS), 0);
    cr_assert_eq(hdr[4], FRAME_OP_ERR);
    cr_assert_eq(frame_get_u32(hdr + 12), FRAME_ERR_HELLO_REQUIRED);
    close(fd);
    harness_stop(&broker);
}

Test(textmode, shutdown_says_so_in_text)
{
    start(NULL);
    struct tool *t = socat();
    tool_send(t, "SUB x\n");
    expect(t, "+OK 1\r\n");
    cr_assert_eq(harness_terminate(&broker, HARNESS_IO_MS), 0);
    expect(t, "-ERR 9 broker shutting down\r\n");
    expect_closed(t);
    tool_end(t);
    harness_cleanup(&broker);
}

/* A text subscriber that does not read loses messages like any other, and
 * is told how many. */
Test(textmode, a_slow_text_subscriber_is_told_what_it_lost)
{
    const char *const args[] = {"--max-pending", "65536", "--max-frame", "16384", NULL};
    start(args);
    /* A raw socket, to stop reading: what the broker sends is text all
     * the same. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", broker.socket);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    harness_write(fd, "SUB flood\n", 10);
    char ok[8];
    cr_assert_eq(harness_read(fd, ok, 7, HARNESS_IO_MS), 0);
    cr_assert(memcmp(ok, "+OK 1\r\n", 7) == 0);
    sb_client *pub = harness_client(&broker, "pub", true);
    static char payload[8000];
    memset(payload, 'p', sizeof(payload));
    for (int i = 0; i < 200; i++) {
        cr_assert_eq(sb_publish(pub, "flood", NULL, payload, sizeof(payload)), 0);
    }
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    /* Now read it all: MSGs, then a DROPPED line with the rest. */
    uint64_t got = 0;
    uint64_t dropped = 0;
    static char buf[1 << 20];
    size_t len = 0;
    harness_write(fd, "PING\n", 5);
    for (int64_t until = harness_now_ms() + HARNESS_IO_MS;
         harness_now_ms() < until && memmem(buf, len, "PONG\r\n", 6) == NULL;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) > 0) {
            ssize_t n = read(fd, buf + len, sizeof(buf) - len);
            cr_assert_gt(n, 0);
            len += (size_t)n;
        }
    }
    for (size_t pos = 0; pos < len;) {
        char *end = memmem(buf + pos, len - pos, "\r\n", 2);
        cr_assert_not_null(end);
        size_t n = (size_t)(end - (buf + pos));
        if (strncmp(buf + pos, "MSG flood 1 8000", n) == 0) {
            got++;
            pos += n + 2 + 8000 + 2;
        } else {
            unsigned long long d;
            if (sscanf(buf + pos, "DROPPED %llu", &d) == 1) {
                dropped += d;
            } else {
                cr_assert(strncmp(buf + pos, "PONG", 4) == 0, "unexpected: %.*s", (int)n,
                          buf + pos);
            }
            pos += n + 2;
        }
    }
    cr_assert_gt(dropped, 0, "nothing was dropped: the test did not fill the queue");
    cr_assert_eq(got + dropped, 200, "received %llu + dropped %llu", (unsigned long long)got,
                 (unsigned long long)dropped);
    close(fd);
    sb_close(pub);
    harness_stop(&broker);
}

/* The answer goes in front of what its command queued, also when that is
 * a large body shared by two subscriptions (net/connbuf.h). */
Test(textmode, the_answer_comes_before_a_shared_echo)
{
    start(NULL);
    struct tool *t = socat();
    static char line[6000];
    memcpy(line, "PUB big ", 8);
    memset(line + 8, 'z', 5000);
    memcpy(line + 5008, "\n", 2);
    tool_send(t, "SUB big\nSUB big\n");
    tool_send(t, line);
    expect(t, "+OK 1\r\n+OK 2\r\n+OK\r\n");
    for (int sid = 1; sid <= 2; sid++) {
        char head[32];
        snprintf(head, sizeof(head), "MSG big %d 5000", sid);
        cr_assert_str_eq(expect_line(t, "MSG big "), head);
        expect_bytes(t, line + 8, 5000);
        expect(t, "\r\n");
    }
    tool_end(t);
    harness_stop(&broker);
}
