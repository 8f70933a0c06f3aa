/*
 * test_escape.c - bytes a client chooses (its HELLO name, the subjects it
 * sends) never reach JSON, the log or an ERR payload raw.
 *
 * Hostile names carry what does harm downstream: invalid UTF-8 (breaks
 * every JSON reader of $SYS), a newline followed by a fake log line, ESC [
 * and the one-byte C1 CSI (0xC2 0x9B, a terminal escape), 0xFF. They are
 * sent through raw sockets, byte for byte, both raw in the JSON string and
 * as JSON escapes. What comes back is judged with json-c in strict mode
 * with UTF-8 validation and by a byte scan for control characters.
 */
#include "harness.h"

#include "frame.h"
#include "text.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static struct harness_broker broker;

static void setup(void)
{
    static const char *const args[] = {"-v", NULL};
    int r = harness_start(&broker, false, args);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
}

static void teardown(void)
{
    harness_cleanup(&broker);
}

TestSuite(escape, .init = setup, .fini = teardown, .timeout = 60);

/* Names as they appear inside the JSON string of a HELLO: raw bytes and
 * JSON escapes that decode to the same harm. */
static const char *const hostile_names[] = {
    "bad\xFF\xFEutf8\xC3",
    "x\nsockbusd: client 999999 connected: unix pid 1 uid 0 gid 0 name 'root'",
    "x\\nsockbusd: client 999998 connected: unix pid 1 uid 0 gid 0 name 'root'",
    "\x1B[31mred\x1B[0m",
    "\\u001b[2J\\u001b]0;title\\u0007",
    "c1 \xC2\x9B"
    "2J csi",
    "c1 \\u009b2J escaped",
    "del\x7F and \xED\xA0\x80 surrogate",
};
#define HOSTILE_COUNT (sizeof(hostile_names) / sizeof(hostile_names[0]))

/* No control byte (C0 but for `allowed`, DEL, C1) and nothing but valid
 * UTF-8 in data[0..len). */
static void assert_printable(const void *data, size_t len, const char *allowed, const char *what)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        int n = text_utf8_next(p + i, len - i, &cp);
        cr_assert_gt(n, 0, "%s: invalid UTF-8 at byte %zu: %02x", what, i, p[i]);
        bool ok = !text_is_control(cp) || (cp < 0x80 && strchr(allowed, (int)cp) != NULL);
        cr_assert(ok, "%s: control character U+%04X at byte %zu", what, cp, i);
        i += (size_t)n;
    }
}

/* Parse as JSON the way a strict consumer does: one document, UTF-8
 * validated. */
static json_object *parse_strict(const void *data, size_t len, const char *what)
{
    json_tokener *tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, data, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    json_tokener_free(tok);
    cr_assert(o != NULL && e == json_tokener_success, "%s: not strict JSON of UTF-8 (%s)", what,
              json_tokener_error_desc(e));
    /* A JSON escape can still decode to a control character. */
    assert_printable(data, len, "", what);
    return o;
}

/* Every string value in `o`, checked for control characters once decoded. */
static void assert_strings_printable(json_object *o, const char *what)
{
    if (json_object_is_type(o, json_type_string)) {
        assert_printable(json_object_get_string(o), (size_t)json_object_get_string_len(o), "",
                         what);
    } else if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(o); i++) {
            assert_strings_printable(json_object_array_get_idx(o, i), what);
        }
    } else if (json_object_is_type(o, json_type_object)) {
        json_object_object_foreach(o, key, val)
        {
            assert_printable(key, strlen(key), "", what);
            if (val != NULL) {
                assert_strings_printable(val, what);
            }
        }
    }
}

/* Count the client objects (in any array or object of the answer) whose
 * name contains U+FFFD. */
static size_t names_replaced(json_object *o)
{
    size_t n = 0;
    if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(o); i++) {
            n += names_replaced(json_object_array_get_idx(o, i));
        }
    } else if (json_object_is_type(o, json_type_object)) {
        json_object_object_foreach(o, key, val)
        {
            if (strcmp(key, "name") == 0 && json_object_is_type(val, json_type_string)) {
                n += strstr(json_object_get_string(val), "\xEF\xBF\xBD") != NULL;
            } else if (val != NULL) {
                n += names_replaced(val);
            }
        }
    }
    return n;
}

Test(escape, hostile_names_leave_sys_answers_and_events_valid_json)
{
    sb_client *watch = harness_client(&broker, "watch", true);
    /* Not "$SYS.EVENT.>": subscriptions are announced too. */
    cr_assert_eq(sb_subscribe(watch, "$SYS.EVENT.CONNECT", NULL, NULL), 0);
    cr_assert_eq(sb_subscribe(watch, "$SYS.EVENT.DISCONNECT", NULL, NULL), 0);
    cr_assert_eq(sb_flush(watch, HARNESS_IO_MS), 0);

    int fds[HOSTILE_COUNT];
    for (size_t i = 0; i < HOSTILE_COUNT; i++) {
        fds[i] = harness_raw_named(&broker, hostile_names[i]);
        sb_msg m = harness_expect_msg(watch);
        cr_assert_str_eq(m.subject, "$SYS.EVENT.CONNECT");
        json_object *ev = parse_strict(m.payload, m.payload_len, hostile_names[i]);
        assert_strings_printable(ev, hostile_names[i]);
        cr_assert_eq(names_replaced(ev), 1, "the name of [%s] was not cleaned: %s",
                     hostile_names[i], json_object_to_json_string(ev));
        json_object_put(ev);
    }

    sb_msg reply;
    int r = sb_request(watch, "$SYS.CLIENTS", NULL, 0, &reply, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "$SYS.CLIENTS: %s", sb_strerror(r));
    json_object *list = parse_strict(reply.payload, reply.payload_len, "$SYS.CLIENTS");
    assert_strings_printable(list, "$SYS.CLIENTS");
    cr_assert_eq(names_replaced(list), HOSTILE_COUNT, "%s", json_object_to_json_string(list));
    json_object_put(list);

    for (size_t i = 0; i < HOSTILE_COUNT; i++) {
        close(fds[i]);
        sb_msg m = harness_expect_msg(watch);
        cr_assert_str_eq(m.subject, "$SYS.EVENT.DISCONNECT");
        json_object *ev = parse_strict(m.payload, m.payload_len, "DISCONNECT");
        assert_strings_printable(ev, "DISCONNECT");
        json_object_put(ev);
    }
    sb_close(watch);
    harness_stop(&broker);
}

/* A PUB or SUB of raw bytes on a raw connection; returns the ERR's code
 * and copies its subject and text (NUL terminated). */
static uint32_t raw_err(int fd, uint8_t op, const void *subject, size_t len, uint8_t *err_subject,
                        size_t *err_subject_len, char *text, size_t text_cap)
{
    static uint8_t frame[2048];
    size_t n = frame_encode(frame, op, 0, 1, subject, len, NULL, 0, NULL, 0, "p", 1);
    harness_write(fd, frame, n);
    uint8_t hdr[16];
    static uint8_t body[4096];
    long size = harness_read_frame(fd, hdr, body, sizeof(body), HARNESS_IO_MS);
    cr_assert(size > 0 && hdr[4] == FRAME_OP_ERR, "no ERR");
    uint16_t sl = frame_get_u16(hdr + 6);
    memcpy(err_subject, body, sl);
    *err_subject_len = sl;
    size_t tl = (size_t)size - 16 - sl;
    cr_assert_lt(tl, text_cap);
    memcpy(text, body + sl, tl);
    text[tl] = '\0';
    return frame_get_u32(hdr + 12);
}

Test(escape, err_payload_is_utf8_and_names_the_raw_subject)
{
    int fd = harness_raw(&broker, true);
    /* Every byte from 0x80 to 0xFF, then terminal escapes and a newline. */
    uint8_t subject[160];
    size_t len = 0;
    for (unsigned b = 0x80; b <= 0xFF; b++) {
        subject[len++] = (uint8_t)b;
    }
    memcpy(subject + len, "\x1B[2J\xC2\x9B\nx\\", 9);
    len += 9;

    static const uint8_t ops[] = {FRAME_OP_PUB, FRAME_OP_SUB};
    for (size_t k = 0; k < 2; k++) {
        uint8_t got[2048];
        size_t got_len;
        char text[1024];
        uint32_t code = raw_err(fd, ops[k], subject, len, got, &got_len, text, sizeof(text));
        cr_assert_eq(code, FRAME_ERR_SUBJECT);
        /* The subject field stays the offending bytes, as sent. */
        cr_assert(got_len == len && memcmp(got, subject, len) == 0,
                  "the ERR's subject field is not the raw subject");
        /* The text is UTF-8 with no control character, and says which
         * bytes it quotes. */
        assert_printable(text, strlen(text), "", "ERR text");
        cr_assert(strstr(text, "\\x80\\x81") != NULL, "text: %s", text);
    }
    close(fd);
    harness_stop(&broker);
}

Test(escape, log_lines_cannot_be_forged)
{
    int fds[HOSTILE_COUNT];
    for (size_t i = 0; i < HOSTILE_COUNT; i++) {
        fds[i] = harness_raw_named(&broker, hostile_names[i]);
    }
    /* An invalid subject with a fake line in it: logged with its ERR. */
    static const char forged[] =
        "a\nsockbusd: client 999997 connected: unix pid 1 uid 0 gid 0 name '\x1B[1mroot'";
    int fd = harness_raw(&broker, true);
    uint8_t got[2048];
    size_t got_len;
    char text[1024];
    raw_err(fd, FRAME_OP_PUB, forged, sizeof(forged) - 1, got, &got_len, text, sizeof(text));
    close(fd);
    for (size_t i = 0; i < HOSTILE_COUNT; i++) {
        close(fds[i]);
    }
    /* Stop first: the log is complete once the broker has exited. */
    cr_assert_eq(harness_terminate(&broker, HARNESS_IO_MS), 0);

    static char log[64 * 1024];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert(strstr(log, "connected") != NULL, "no -v log:\n%s", log);
    assert_printable(log, strlen(log), "\n", "the -v log");
    for (const char *line = log; *line != '\0';) {
        cr_assert(strncmp(line, "sockbusd: client 99999", 22) != 0, "a forged log line:\n%s", log);
        const char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : line + strlen(line);
    }
    harness_stop(&broker);
}

/* ---- what the sockbus command prints ---- */

/*
 * A fake broker, for what a real one never sends: an impostor's answers
 * full of terminal escapes, to check that the command escapes whatever it
 * prints of them. It speaks just enough of the protocol for `sockbus stat`
 * and `sockbus pub`: WELCOME, the answers to $SYS.STATS and $SYS.CLIENTS on
 * the inbox subscription, an ERR for a PUB on "evil.err", PONG.
 */
static struct harness_broker fake;
static pid_t fake_pid = -1;

#define FAKE_VERSION "0.1.0\\u001b[2J\\u009b"
#define FAKE_STATS                                                                                 \
    "{\"uptime_s\":5,\"connections\":2,\"\\u001b[2Jkey\":1,\"dropped\":\"\\u001b[5m\\u009b\"}"
#define FAKE_CLIENTS                                                                               \
    "{\"offset\":0,\"total\":2,\"more\":false,\"clients\":[{\"id\":1,\"name\":\"\\u001b["          \
    "31mred\\u001b[0m \\u009b2J \\u0007\",\"transport\":"                                          \
    "\"unix\",\"pid\":1,\"uid\":0},{\"id\":2,\"name\":\"raw \xC2\x9B \xFF \\\\ end\","             \
    "\"transport\":\"\\u001b]0;title\\u0007\",\"pid\":2,\"uid\":0}]}"
#define FAKE_ERR_TEXT "\x1B[31mdenied\xC2\x9B\xFF\n"

static void fake_send(int fd, uint8_t op, uint32_t sid, const void *subject, size_t subject_len,
                      const void *payload, size_t payload_len)
{
    static uint8_t frame[8192];
    size_t n = frame_encode(frame, op, 0, sid, subject, subject_len, NULL, 0, NULL, 0, payload,
                            payload_len);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, frame + off, n - off);
        if (w <= 0) {
            return;
        }
        off += (size_t)w;
    }
}

static bool body_is(const uint8_t *p, size_t len, const char *s)
{
    return len == strlen(s) && memcmp(p, s, len) == 0;
}

static void fake_serve(int fd)
{
    uint32_t inbox_sid = 0;
    static uint8_t body[65536];
    for (;;) {
        uint8_t hdr[16];
        long size = harness_read_frame(fd, hdr, body, sizeof(body), 10000);
        if (size <= 0) {
            return;
        }
        uint8_t op = hdr[4];
        uint16_t sl = frame_get_u16(hdr + 6);
        uint16_t rl = frame_get_u16(hdr + 8);
        uint32_t sid = frame_get_u32(hdr + 12);
        const uint8_t *reply = body + sl;
        if (op == FRAME_OP_HELLO) {
            static const char welcome[] =
                "{\"protocol\":1,\"server\":\"sockbusd\",\"version\":\"" FAKE_VERSION
                "\",\"client_id\":1,\"max_frame\":1114112,\"inbox_prefix\":\"_INBOX.1.\"}";
            fake_send(fd, FRAME_OP_WELCOME, 0, NULL, 0, welcome, sizeof(welcome) - 1);
        } else if (op == FRAME_OP_SUB && sl > 7 && memcmp(body, "_INBOX.", 7) == 0) {
            inbox_sid = sid;
        } else if (op == FRAME_OP_PUB && rl > 0 && body_is(body, sl, "$SYS.STATS")) {
            fake_send(fd, FRAME_OP_MSG, inbox_sid, reply, rl, FAKE_STATS, strlen(FAKE_STATS));
        } else if (op == FRAME_OP_PUB && rl > 0 && body_is(body, sl, "$SYS.CLIENTS")) {
            fake_send(fd, FRAME_OP_MSG, inbox_sid, reply, rl, FAKE_CLIENTS, strlen(FAKE_CLIENTS));
        } else if (op == FRAME_OP_PUB && body_is(body, sl, "evil.err")) {
            fake_send(fd, FRAME_OP_ERR, FRAME_ERR_PERMISSION, body, sl, FAKE_ERR_TEXT,
                      strlen(FAKE_ERR_TEXT));
        } else if (op == FRAME_OP_PING) {
            fake_send(fd, FRAME_OP_PONG, sid, NULL, 0, NULL, 0);
        }
    }
}

static void fake_setup(void)
{
    cr_assert_eq(harness_mkdir(&fake), 0);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", fake.socket);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    cr_assert_eq(listen(lfd, 8), 0);
    fake_pid = fork();
    cr_assert_geq(fake_pid, 0);
    if (fake_pid == 0) {
        for (;;) {
            int fd = accept(lfd, NULL, NULL);
            if (fd >= 0) {
                fake_serve(fd);
                close(fd);
            }
        }
    }
    close(lfd);
}

static void fake_teardown(void)
{
    if (fake_pid > 0) {
        kill(fake_pid, SIGKILL);
        waitpid(fake_pid, NULL, 0);
        fake_pid = -1;
    }
    harness_cleanup(&fake);
}

TestSuite(escape_cli, .init = fake_setup, .fini = fake_teardown, .timeout = 60);

Test(escape_cli, stat_escapes_what_the_broker_says)
{
    char *out = NULL;
    size_t out_len = 0;
    char err[4096];
    const char *const argv[] = {"sockbus", "stat", "-s", fake.socket, NULL};
    int status = harness_cli(argv, NULL, 0, &out, &out_len, err, sizeof(err), HARNESS_IO_MS);
    cr_assert_eq(status, 0, "exit %d, stderr [%s]", status, err);
    assert_printable(out, out_len, "\n", "sockbus stat");
    /* What was escaped is still there to read. */
    cr_assert(strstr(out, "\\x1b[31mred") != NULL, "stat printed:\n%s", out);
    cr_assert(strstr(out, "raw \\xc2\\x9b \\xff \\x5c end") != NULL, "stat printed:\n%s", out);
    cr_assert(strstr(out, "\\x1b[2Jkey") != NULL, "stat printed:\n%s", out);
    cr_assert(strstr(out, "0.1.0\\x1b[2J\\xc2\\x9b") != NULL, "stat printed:\n%s", out);
    free(out);
}

Test(escape_cli, refusal_text_from_the_broker_is_escaped)
{
    char *out = NULL;
    size_t out_len = 0;
    char err[4096];
    const char *const argv[] = {"sockbus", "pub", "-s", fake.socket, "evil.err", "hi", NULL};
    int status = harness_cli(argv, NULL, 0, &out, &out_len, err, sizeof(err), HARNESS_IO_MS);
    cr_assert_eq(status, 1, "exit %d, stderr [%s]", status, err);
    size_t n = strlen(err);
    cr_assert(n > 0 && err[n - 1] == '\n' && memchr(err, '\n', n - 1) == NULL,
              "one line expected: [%s]", err);
    assert_printable(err, n, "\n", "sockbus pub's error");
    cr_assert(strstr(err, "\\x1b[31mdenied\\xc2\\x9b\\xff\\x0a") != NULL, "stderr: %s", err);
    free(out);
}
