/*
 * test_cli.c - the `sockbus` command (pub, sub, help, errors) against a real
 * broker on a private socket.
 *
 * A background `sockbus sub` is known to be subscribed only when something
 * it received shows up on its stdout: bg_sync() publishes numbered probes
 * ("<probe-N>") through a library client, each behind a flush barrier,
 * until the first one is printed, then waits for the last one published.
 * Every probe published after the subscription became active is printed,
 * and each was processed by the broker (flush) before anything the test
 * publishes next, so the test's messages come after all probe output.
 * bg_until_end() does the same at the end with an "<end>" marker, which
 * makes "exactly this output and nothing else" an exact check. There are
 * no sleeps: every wait is bounded and ends as soon as its output shows.
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
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static struct harness_broker broker;

/* A `sockbus` running in the background with stdout on a pipe. Slots are
 * static so that .fini can still find (and kill) them after a failed
 * assertion has left the test body. */
struct bg {
    bool in_use;
    pid_t pid;
    int fd;
    char *buf; /* everything read so far, NUL terminated */
    size_t len;
    size_t cap;
    size_t pos; /* what the test has consumed */
    bool eof;
};

#define BG_MAX 4
static struct bg bg_slots[BG_MAX];

/* A `sockbus pub` whose stdin the test writes (see spawn_fed()). */
static pid_t fed_pid = -1;

static void setup(void)
{
    int r = harness_start(&broker, true, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
}

static void teardown(void)
{
    for (int i = 0; i < BG_MAX; i++) {
        struct bg *b = &bg_slots[i];
        if (b->in_use && b->pid > 0) {
            kill(b->pid, SIGKILL);
            waitpid(b->pid, NULL, 0);
            b->pid = -1;
        }
    }
    if (fed_pid > 0) {
        kill(fed_pid, SIGKILL);
        waitpid(fed_pid, NULL, 0);
        fed_pid = -1;
    }
    if (broker.pid > 0) {
        kill(broker.pid, SIGCONT); /* pub_exit_status_waits_for_the_broker */
    }
    harness_cleanup(&broker);
}

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 60);

/* ---- running the command in the foreground ---- */

struct cli_result {
    int status;
    char *out;
    size_t out_len;
    char err[4096];
    int64_t elapsed_ms;
};

/* Results are declared with this as their cleanup, and run() frees the
 * output of an earlier run when a result is reused. */
static void cli_result_free(struct cli_result *r)
{
    free(r->out);
    r->out = NULL;
}

static void run(struct cli_result *r, const char *const *argv, const void *in, size_t in_len,
                int timeout_ms)
{
    cli_result_free(r);
    memset(r, 0, sizeof(*r));
    int64_t t0 = harness_now_ms();
    r->status =
        harness_cli(argv, in, in_len, &r->out, &r->out_len, r->err, sizeof(r->err), timeout_ms);
    r->elapsed_ms = harness_now_ms() - t0;
}

/* Exactly one non-empty line on stderr. */
static void assert_one_line(const struct cli_result *r, const char *what)
{
    size_t n = strlen(r->err);
    cr_assert(n > 1 && r->err[n - 1] == '\n' && memchr(r->err, '\n', n - 1) == NULL,
              "%s: expected exactly one line on stderr, got [%s]", what, r->err);
}

static void assert_err_has(const struct cli_result *r, const char *needle, const char *what)
{
    cr_assert(strstr(r->err, needle) != NULL, "%s: stderr does not mention '%s': [%s]", what,
              needle, r->err);
}

/* Exit 0, nothing on stderr. */
static void assert_ok(const struct cli_result *r, const char *what)
{
    cr_assert_eq(r->status, 0, "%s: exit %d, stderr [%s]", what, r->status, r->err);
    cr_assert_str_empty(r->err, "%s: unexpected stderr [%s]", what, r->err);
}

/* ---- library helpers ---- */

static sb_client *lib_sub(const char *pattern)
{
    sb_client *c = harness_client(&broker, "test-sub", true);
    cr_assert_eq(sb_subscribe(c, pattern, NULL, NULL), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    return c;
}

static void expect_payload(sb_client *c, const char *subject, const void *data, size_t len)
{
    sb_msg m = harness_expect_msg(c);
    cr_assert_str_eq(m.subject, subject);
    cr_assert_eq(m.payload_len, len, "payload of %zu bytes, expected %zu", m.payload_len, len);
    cr_assert(len == 0 || memcmp(m.payload, data, len) == 0, "payload differs from what was sent");
}

static void lib_pub(sb_client *c, const char *subject, const char *reply, const void *data,
                    size_t len)
{
    cr_assert_eq(sb_publish(c, subject, reply, data, len), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
}

/* ---- the background command ---- */

static struct bg *bg_start(const char *const *argv)
{
    struct bg *b = NULL;
    for (int i = 0; i < BG_MAX && b == NULL; i++) {
        if (!bg_slots[i].in_use) {
            b = &bg_slots[i];
        }
    }
    cr_assert_not_null(b, "too many background commands");
    memset(b, 0, sizeof(*b));
    b->in_use = true;
    b->cap = 4096;
    b->buf = malloc(b->cap + 1);
    b->buf[0] = '\0';
    b->pid = harness_cli_spawn(argv, &b->fd);
    cr_assert(b->pid > 0);
    return b;
}

/* Read what is there within timeout_ms; false on timeout or EOF. */
static bool bg_fill(struct bg *b, int timeout_ms)
{
    if (b->eof) {
        return false;
    }
    struct pollfd pfd = {.fd = b->fd, .events = POLLIN};
    int r = poll(&pfd, 1, timeout_ms < 0 ? 0 : timeout_ms);
    if (r <= 0) {
        return false;
    }
    if (b->cap - b->len < 4096) {
        b->cap *= 2;
        b->buf = realloc(b->buf, b->cap + 1);
    }
    ssize_t n = read(b->fd, b->buf + b->len, b->cap - b->len);
    if (n <= 0) {
        b->eof = true;
        return false;
    }
    b->len += (size_t)n;
    b->buf[b->len] = '\0';
    return true;
}

/* Offset of `needle` at or after `from`, waiting up to timeout_ms; -1 if
 * it did not show up (timeout or EOF). */
static long bg_wait_for(struct bg *b, size_t from, const char *needle, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    size_t nlen = strlen(needle);
    for (;;) {
        if (b->len >= from) {
            const char *p = memmem(b->buf + from, b->len - from, needle, nlen);
            if (p != NULL) {
                return (long)(p - b->buf);
            }
        }
        int left = (int)(deadline - harness_now_ms());
        if (left <= 0 || b->eof) {
            return -1;
        }
        bg_fill(b, left);
    }
}

static bool bg_read_to_eof(struct bg *b, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (!b->eof) {
        int left = (int)(deadline - harness_now_ms());
        if (left <= 0) {
            return false;
        }
        bg_fill(b, left);
    }
    return true;
}

/*
 * Make sure the background sub is subscribed (to the pattern `subject`
 * matches: give one that matches the LAST pattern, since sub subscribes in
 * order). Afterwards b->pos is just past the output of the last probe:
 * for line formats past its line, for --raw past its bytes.
 */
static void bg_sync(struct bg *b, sb_client *ctl, const char *subject, bool lines)
{
    int64_t deadline = harness_now_ms() + HARNESS_READY_MS;
    char marker[32];
    int k = 0;
    long first = -1;

    while (first < 0) {
        cr_assert(harness_now_ms() < deadline, "the background sockbus never printed a probe");
        snprintf(marker, sizeof(marker), "<probe-%d>", ++k);
        lib_pub(ctl, subject, NULL, marker, strlen(marker));
        first = bg_wait_for(b, b->pos, "<probe-", 20);
        cr_assert(!b->eof, "the background sockbus exited early; output [%s]", b->buf);
    }
    long at = bg_wait_for(b, b->pos, marker, HARNESS_IO_MS);
    cr_assert(at >= 0, "probe %s never arrived; output [%s]", marker, b->buf);
    size_t end = (size_t)at + strlen(marker);
    if (lines) {
        long nl = bg_wait_for(b, end, "\n", HARNESS_IO_MS);
        cr_assert(nl >= 0, "the probe's line never ended");
        end = (size_t)nl + 1;
    }
    b->pos = end;
}

/*
 * Publish "<end>" on `subject` and wait for it. Returns the output between
 * b->pos and the end marker's line (or, raw, the marker) in *out and *len, and
 * moves b->pos past it.
 */
static void bg_until_end(struct bg *b, sb_client *ctl, const char *subject, bool lines,
                         const char **out, size_t *len)
{
    lib_pub(ctl, subject, NULL, "<end>", 5);
    long at = bg_wait_for(b, b->pos, "<end>", HARNESS_IO_MS);
    cr_assert(at >= 0, "the end marker never arrived; output after sync [%s]", b->buf + b->pos);
    size_t stop = (size_t)at;
    if (lines) {
        while (stop > b->pos && b->buf[stop - 1] != '\n') {
            stop--;
        }
    }
    *out = b->buf + b->pos;
    *len = stop - b->pos;
    b->pos = (size_t)at + 5;
}

/* SIGTERM (unless it already ended), reap (SIGKILL after BG_TERM_MS),
 * release the slot; returns the exit status. Asserts nothing:
 * sub_sigterm_ends_idle_sub checks how it ends. */
#define BG_TERM_MS 2000
static int bg_stop(struct bg *b)
{
    int status = -1;
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        status = harness_wait_pid(b->pid, BG_TERM_MS);
        b->pid = -1;
    }
    close(b->fd);
    free(b->buf);
    memset(b, 0, sizeof(*b));
    return status;
}

static void assert_bytes(const char *got, size_t got_len, const char *want, size_t want_len,
                         const char *what)
{
    cr_assert(got_len == want_len && memcmp(got, want, want_len) == 0,
              "%s: got %zu bytes [%.*s], expected %zu bytes [%.*s]", what, got_len, (int)got_len,
              got, want_len, (int)want_len, want);
}

/* ---- a small JSON reader for sub --json ---- */

struct jfield {
    char key[32];
    char type; /* 's' string, 't'/'f' boolean, 'n' null, '#' number */
    char *str; /* decoded bytes of a string (malloc'd) */
    size_t len;
};

struct jobj {
    struct jfield f[16];
    int n;
};

static void j_ws(const char **p, const char *e)
{
    while (*p < e && (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')) {
        (*p)++;
    }
}

static bool j_hex4(const char **p, const char *e, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        if (*p >= e) {
            return false;
        }
        char c = *(*p)++;
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (unsigned)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v |= (unsigned)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v |= (unsigned)(c - 'A' + 10);
        } else {
            return false;
        }
    }
    *out = v;
    return true;
}

static size_t j_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A JSON string (strict: raw control characters are an error). */
static bool j_string(const char **pp, const char *e, char **out, size_t *out_len)
{
    const char *p = *pp;
    if (p >= e || *p != '"') {
        return false;
    }
    p++;
    char *o = malloc((size_t)(e - p) + 1);
    size_t n = 0;
    while (p < e && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20) {
            goto bad;
        }
        if (c != '\\') {
            o[n++] = (char)c;
            p++;
            continue;
        }
        p++;
        if (p >= e) {
            goto bad;
        }
        switch (*p++) {
        case '"':
            o[n++] = '"';
            break;
        case '\\':
            o[n++] = '\\';
            break;
        case '/':
            o[n++] = '/';
            break;
        case 'b':
            o[n++] = '\b';
            break;
        case 'f':
            o[n++] = '\f';
            break;
        case 'n':
            o[n++] = '\n';
            break;
        case 'r':
            o[n++] = '\r';
            break;
        case 't':
            o[n++] = '\t';
            break;
        case 'u': {
            unsigned cp;
            if (!j_hex4(&p, e, &cp)) {
                goto bad;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (e - p < 6 || p[0] != '\\' || p[1] != 'u') {
                    goto bad;
                }
                p += 2;
                if (!j_hex4(&p, e, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    goto bad;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                goto bad;
            }
            n += j_utf8(o + n, cp);
            break;
        }
        default:
            goto bad;
        }
    }
    if (p >= e) {
        goto bad;
    }
    *pp = p + 1;
    *out = o;
    *out_len = n;
    return true;
bad:
    free(o);
    return false;
}

/* Parse one line holding exactly one JSON object with scalar values. */
static bool j_object(const char *s, size_t len, struct jobj *obj)
{
    const char *p = s;
    const char *e = s + len;
    memset(obj, 0, sizeof(*obj));
    j_ws(&p, e);
    if (p >= e || *p++ != '{') {
        return false;
    }
    j_ws(&p, e);
    if (p < e && *p == '}') {
        p++;
    } else {
        for (;;) {
            if (obj->n == 16) {
                return false;
            }
            struct jfield *f = &obj->f[obj->n];
            char *key;
            size_t key_len;
            j_ws(&p, e);
            if (!j_string(&p, e, &key, &key_len)) {
                return false;
            }
            bool ok = key_len < sizeof(f->key) && memchr(key, '\0', key_len) == NULL;
            if (ok) {
                memcpy(f->key, key, key_len);
            }
            free(key);
            if (!ok) {
                return false;
            }
            for (int i = 0; i < obj->n; i++) {
                if (strcmp(obj->f[i].key, f->key) == 0) {
                    return false; /* duplicate key */
                }
            }
            j_ws(&p, e);
            if (p >= e || *p++ != ':') {
                return false;
            }
            j_ws(&p, e);
            if (p < e && *p == '"') {
                if (!j_string(&p, e, &f->str, &f->len)) {
                    return false;
                }
                f->type = 's';
            } else if (e - p >= 4 && memcmp(p, "true", 4) == 0) {
                f->type = 't';
                p += 4;
            } else if (e - p >= 5 && memcmp(p, "false", 5) == 0) {
                f->type = 'f';
                p += 5;
            } else if (e - p >= 4 && memcmp(p, "null", 4) == 0) {
                f->type = 'n';
                p += 4;
            } else if (p < e && strchr("-0123456789", *p) != NULL) {
                f->type = '#';
                while (p < e && strchr("-+.eE0123456789", *p) != NULL) {
                    p++;
                }
            } else {
                return false;
            }
            obj->n++;
            j_ws(&p, e);
            if (p < e && *p == ',') {
                p++;
                continue;
            }
            if (p < e && *p == '}') {
                p++;
                break;
            }
            return false;
        }
    }
    j_ws(&p, e);
    return p == e;
}

static const struct jfield *j_get(const struct jobj *obj, const char *key)
{
    for (int i = 0; i < obj->n; i++) {
        if (strcmp(obj->f[i].key, key) == 0) {
            return &obj->f[i];
        }
    }
    return NULL;
}

static void j_free(struct jobj *obj)
{
    for (int i = 0; i < obj->n; i++) {
        free(obj->f[i].str);
    }
}

/* Strict base64 (RFC 4648, padded). Returns the decoded length, or -1. */
static long b64_decode(const char *s, size_t len, unsigned char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (len % 4 != 0) {
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        unsigned v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = s[i + k];
            unsigned d = 0;
            if (c == '=') {
                /* only at the very end, at most two */
                if (i + 4 != len || k < 2) {
                    return -1;
                }
                pad++;
            } else {
                const char *q = c != '\0' ? strchr(alphabet, c) : NULL;
                if (q == NULL || pad > 0) {
                    return -1;
                }
                d = (unsigned)(q - alphabet);
            }
            v = (v << 6) | d;
        }
        out[n++] = (unsigned char)(v >> 16);
        if (pad < 2) {
            out[n++] = (unsigned char)(v >> 8);
        }
        if (pad < 1) {
            out[n++] = (unsigned char)v;
        }
    }
    return (long)n;
}

/* Split the JSON output into lines and parse each; returns the count. */
static int json_lines(const char *out, size_t len, struct jobj *objs, int max)
{
    int n = 0;
    const char *p = out;
    const char *e = out + len;
    while (p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        cr_assert(nl != NULL, "JSON output does not end with a newline: [%.*s]", (int)(e - p), p);
        cr_assert(n < max, "more JSON lines than messages: [%.*s]", (int)len, out);
        for (const char *q = p; q < nl; q++) {
            cr_assert((unsigned char)*q >= 0x20, "raw control byte 0x%02x in a JSON line",
                      (unsigned char)*q);
        }
        cr_assert(j_object(p, (size_t)(nl - p), &objs[n]), "not one JSON object: [%.*s]",
                  (int)(nl - p), p);
        n++;
        p = nl + 1;
    }
    return n;
}

static void assert_json_text(const struct jobj *o, const char *subject, const void *payload,
                             size_t len, const char *reply)
{
    const struct jfield *s = j_get(o, "subject");
    cr_assert(s != NULL && s->type == 's', "no \"subject\" string");
    assert_bytes(s->str, s->len, subject, strlen(subject), "subject");
    const struct jfield *p = j_get(o, "payload");
    cr_assert(p != NULL && p->type == 's', "no \"payload\" string for %s", subject);
    assert_bytes(p->str, p->len, payload, len, "payload");
    cr_assert_null(j_get(o, "payload_base64"), "payload_base64 beside payload for %s", subject);
    const struct jfield *r = j_get(o, "reply");
    if (reply == NULL) {
        cr_assert_null(r, "\"reply\" present for %s, which has none", subject);
    } else {
        cr_assert(r != NULL && r->type == 's', "no \"reply\" for %s", subject);
        assert_bytes(r->str, r->len, reply, strlen(reply), "reply");
    }
}

/* ---- pub | sub, default and -v output ---- */

static void pipe_pub_to_sub(bool verbose, const char *want)
{
    sb_client *ctl = harness_client(&broker, "ctl", true);
    const char *sub_argv[] = {"sockbus", "sub", "-s", broker.socket, verbose ? "-v" : "--",
                              "demo.>",  NULL};
    struct bg *b = bg_start(sub_argv);
    bg_sync(b, ctl, "demo.probe", true);

    const char *pub_argv[] = {"sockbus", "pub", "-s", broker.socket, "demo.x", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, pub_argv, "hi\n", 3, HARNESS_IO_MS);
    assert_ok(&r, "echo hi | sockbus pub demo.x");
    cr_assert_eq(r.out_len, 0, "pub wrote to stdout");

    const char *out;
    size_t len;
    bg_until_end(b, ctl, "demo.end", true, &out, &len);
    assert_bytes(out, len, want, strlen(want), "sub output");
    bg_stop(b);
    cli_result_free(&r);
    sb_close(ctl);
}

Test(cli, pipe_pub_reaches_sub)
{
    pipe_pub_to_sub(false, "hi\n");
    harness_stop(&broker);
}

Test(cli, sub_verbose_prints_subject_and_payload)
{
    pipe_pub_to_sub(true, "demo.x hi\n");
    harness_stop(&broker);
}

/* ---- pub ---- */

Test(cli, pub_message_argument)
{
    sb_client *sub = lib_sub("arg.>");
    const char *argv[] = {"sockbus", "pub", "-s", broker.socket, "arg.x", "hello world", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    /* With MESSAGE, stdin is not read. */
    run(&r, argv, "ignored\n", 8, HARNESS_IO_MS);
    assert_ok(&r, "pub arg.x 'hello world'");
    expect_payload(sub, "arg.x", "hello world", 11);
    harness_expect_none(sub);

    /* A MESSAGE that starts with '-' is a message after "--" (GNU order:
     * without it, options may follow the operands). */
    const char *dash[] = {"sockbus", "pub", "-s", broker.socket, "arg.y", "--", "-5", NULL};
    run(&r, dash, NULL, 0, HARNESS_IO_MS);
    assert_ok(&r, "pub arg.y -- -5");
    expect_payload(sub, "arg.y", "-5", 2);
    harness_expect_none(sub);
    sb_close(sub);
    harness_stop(&broker);
}

Test(cli, pub_stdin_lines)
{
    sb_client *sub = lib_sub("lines.x");
    const char *argv[] = {"sockbus", "pub", "-s", broker.socket, "lines.x", NULL};
    static const char in[] = "a\nb\r\n\nlast";
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, in, sizeof(in) - 1, HARNESS_IO_MS);
    assert_ok(&r, "pub lines.x < 'a\\nb\\r\\n\\nlast'");
    expect_payload(sub, "lines.x", "a", 1);
    expect_payload(sub, "lines.x", "b", 1);
    expect_payload(sub, "lines.x", "", 0);
    expect_payload(sub, "lines.x", "last", 4);
    harness_expect_none(sub);
    sb_close(sub);
    harness_stop(&broker);
}

Test(cli, pub_stdin_empty_publishes_nothing)
{
    sb_client *sub = lib_sub("empty.x");
    const char *argv[] = {"sockbus", "pub", "-s", broker.socket, "empty.x", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, NULL, 0, HARNESS_IO_MS);
    assert_ok(&r, "pub empty.x < /dev/null");
    harness_expect_none(sub);
    sb_close(sub);
    harness_stop(&broker);
}

Test(cli, pub_raw_sends_stdin_byte_exact)
{
    sb_client *sub = lib_sub("raw.x");
    const char *argv[] = {"sockbus", "pub", "-s", broker.socket, "--raw", "raw.x", NULL};
    unsigned char in[64 + 256];
    static const char head[] = "line1\nline2\r\n\n\0mid\0\r\n";
    size_t n = sizeof(head) - 1;
    memcpy(in, head, n);
    for (int i = 0; i < 256; i++) {
        in[n++] = (unsigned char)i;
    }
    in[n++] = '\n';
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, in, n, HARNESS_IO_MS);
    assert_ok(&r, "pub --raw");
    expect_payload(sub, "raw.x", in, n);
    harness_expect_none(sub);
    sb_close(sub);
    harness_stop(&broker);
}

Test(cli, pub_raw_large_binary)
{
    /* Beyond the command's first 64 KiB read buffer, below max_frame. */
    enum { SIZE = 700 * 1000 };
    sb_client *sub = lib_sub("raw.big");
    const char *argv[] = {"sockbus", "pub", "-s", broker.socket, "--raw", "raw.big", NULL};
    unsigned char *in = malloc(SIZE);
    uint32_t x = 12345;
    for (size_t i = 0; i < SIZE; i++) {
        x = x * 1103515245u + 12345u;
        in[i] = (unsigned char)(x >> 16);
    }
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, in, SIZE, 3 * HARNESS_IO_MS);
    assert_ok(&r, "pub --raw (700 kB)");
    expect_payload(sub, "raw.big", in, SIZE);
    harness_expect_none(sub);
    free(in);
    sb_close(sub);
    harness_stop(&broker);
}

Test(cli, pub_ten_thousand_lines_in_order)
{
    enum { LINES = 10000 };
    sb_client *sub = lib_sub("bulk.lines");
    const char *argv[] = {"sockbus", "pub", "-s", broker.socket, "bulk.lines", NULL};
    char *in = malloc(LINES * 32);
    size_t n = 0;
    for (int i = 0; i < LINES; i++) {
        n += (size_t)sprintf(in + n, "line %05d of the bulk\n", i);
    }
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, in, n, 6 * HARNESS_IO_MS);
    /* Exit 0 means the broker processed all of them (pub's flush). */
    assert_ok(&r, "pub of 10000 lines");
    for (int i = 0; i < LINES; i++) {
        char want[32];
        int wl = sprintf(want, "line %05d of the bulk", i);
        sb_msg m;
        int rc = sb_next_msg(sub, &m, HARNESS_IO_MS);
        cr_assert_eq(rc, 0, "message %d of %d missing: %s", i, LINES, sb_strerror(rc));
        cr_assert(m.payload_len == (size_t)wl && memcmp(m.payload, want, (size_t)wl) == 0,
                  "message %d is [%.*s], expected [%s]", i, (int)m.payload_len,
                  (const char *)m.payload, want);
    }
    harness_expect_none(sub);
    free(in);
    sb_close(sub);
    harness_stop(&broker);
}

Test(cli, pub_over_tcp)
{
    sb_client *sub = lib_sub("tcp.x");
    const char *argv[] = {"sockbus", "pub", "-s", broker.tcp, "tcp.x", "over tcp", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, NULL, 0, HARNESS_IO_MS);
    assert_ok(&r, "pub -s tcp://...");
    expect_payload(sub, "tcp.x", "over tcp", 8);
    harness_expect_none(sub);
    sb_close(sub);
    harness_stop(&broker);
}

/* Start `sockbus` with stdin on a pipe (returned) and stderr into *err_fd,
 * a temporary file; its pid goes to fed_pid. */
static int spawn_fed(const char *const *argv, int *err_fd)
{
    const char *sockbus = getenv("SOCKBUS");
    cr_assert(sockbus != NULL && *sockbus != '\0', "SOCKBUS is not set");
    char errpath[] = "/tmp/sbtest-clierr-XXXXXX";
    *err_fd = mkstemp(errpath);
    cr_assert(*err_fd >= 0);
    unlink(errpath);
    int in[2];
    cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
    const char *args[16];
    size_t n = 0;
    args[n++] = sockbus;
    for (size_t i = 1; argv[i] != NULL && n < 15; i++) {
        args[n++] = argv[i];
    }
    args[n] = NULL;
    fed_pid = fork();
    cr_assert(fed_pid >= 0);
    if (fed_pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(in[0], STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        dup2(*err_fd, STDERR_FILENO);
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    close(in[0]);
    return in[1];
}

/*
 * Lines reach subscribers while stdin stays open (tail -F | sockbus pub),
 * and exit 0 is a promise that the broker processed everything: with the
 * broker stopped, pub must wait for it (up to -t) and then fail, not exit
 * 0 with the last line still unconfirmed.
 */
Test(cli, pub_exit_status_waits_for_the_broker)
{
    sb_client *sub = lib_sub("live.x");
    const char *argv[] = {"sockbus", "pub", "-s", broker.socket, "-t", "1", "live.x", NULL};
    int err_fd;
    int in = spawn_fed(argv, &err_fd);
    cr_assert_eq(write(in, "first\n", 6), 6);
    expect_payload(sub, "live.x", "first", 5);

    cr_assert_eq(kill(broker.pid, SIGSTOP), 0);
    cr_assert_eq(write(in, "second\n", 7), 7);
    close(in);
    int64_t t0 = harness_now_ms();
    int status = harness_wait_pid(fed_pid, 5000);
    int64_t elapsed = harness_now_ms() - t0;
    fed_pid = -1;
    kill(broker.pid, SIGCONT);

    char err[1024];
    ssize_t n = pread(err_fd, err, sizeof(err) - 1, 0);
    err[n > 0 ? n : 0] = '\0';
    close(err_fd);
    cr_assert_eq(status, 1,
                 "pub exited %d (after %lld ms) while the broker was stopped; stderr [%s]", status,
                 (long long)elapsed, err);
    cr_assert(elapsed >= 800, "pub gave up after %lld ms, before its -t 1", (long long)elapsed);
    size_t el = strlen(err);
    cr_assert(el > 1 && err[el - 1] == '\n' && memchr(err, '\n', el - 1) == NULL,
              "expected one line on stderr, got [%s]", err);
    sb_close(sub);
    harness_stop(&broker);
}

/* ---- sub output formats ---- */

Test(cli, sub_raw_prints_payload_bytes_only)
{
    sb_client *ctl = harness_client(&broker, "ctl", true);
    const char *argv[] = {"sockbus", "sub", "-s", broker.socket, "--raw", "r.>", NULL};
    struct bg *b = bg_start(argv);
    bg_sync(b, ctl, "r.probe", false);

    unsigned char all[256];
    for (int i = 0; i < 256; i++) {
        all[i] = (unsigned char)i;
    }
    static const char p1[] = "\0\x01\n\xff\xfe";
    static const char p3[] = "abc\r\n";
    lib_pub(ctl, "r.a", NULL, p1, sizeof(p1) - 1);
    lib_pub(ctl, "r.b", NULL, "", 0);
    lib_pub(ctl, "r.c", "r.reply", p3, sizeof(p3) - 1);
    lib_pub(ctl, "r.d", NULL, all, sizeof(all));

    char want[512];
    size_t wl = 0;
    memcpy(want + wl, p1, sizeof(p1) - 1);
    wl += sizeof(p1) - 1;
    memcpy(want + wl, p3, sizeof(p3) - 1);
    wl += sizeof(p3) - 1;
    memcpy(want + wl, all, sizeof(all));
    wl += sizeof(all);

    const char *out;
    size_t len;
    bg_until_end(b, ctl, "r.end", false, &out, &len);
    cr_assert(len == wl && memcmp(out, want, wl) == 0,
              "sub --raw wrote %zu bytes, expected exactly the %zu payload bytes", len, wl);
    bg_stop(b);
    sb_close(ctl);
    harness_stop(&broker);
}

Test(cli, sub_json_text_payloads_and_escaping)
{
    sb_client *ctl = harness_client(&broker, "ctl", true);
    const char *argv[] = {"sockbus", "sub", "-s", broker.socket, "--json", "j.>", NULL};
    struct bg *b = bg_start(argv);
    bg_sync(b, ctl, "j.probe", true);

    static const char tricky[] = "say \"hi\" \\ back\\slash\n\t\r\b\f\x01\x1f\x7f "
                                 "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 end";
    static const char nul[] = "a\0b";
    /* Quotes and backslashes are printable, so valid in a subject. */
    static const char odd_subject[] = "j.q\"uo\\te";
    lib_pub(ctl, "j.text", NULL, "hello", 5);
    lib_pub(ctl, odd_subject, NULL, tricky, sizeof(tricky) - 1);
    lib_pub(ctl, "j.nul", NULL, nul, sizeof(nul) - 1);
    lib_pub(ctl, "j.empty", NULL, "", 0);

    const char *out;
    size_t len;
    bg_until_end(b, ctl, "j.end", true, &out, &len);
    struct jobj objs[8];
    int n = json_lines(out, len, objs, 8);
    cr_assert_eq(n, 4, "expected 4 JSON lines, got %d: [%.*s]", n, (int)len, out);
    assert_json_text(&objs[0], "j.text", "hello", 5, NULL);
    assert_json_text(&objs[1], odd_subject, tricky, sizeof(tricky) - 1, NULL);
    assert_json_text(&objs[2], "j.nul", nul, sizeof(nul) - 1, NULL);
    assert_json_text(&objs[3], "j.empty", "", 0, NULL);
    for (int i = 0; i < n; i++) {
        cr_assert_null(j_get(&objs[i], "retained"), "\"retained\" on a live message");
        j_free(&objs[i]);
    }
    bg_stop(b);
    sb_close(ctl);
    harness_stop(&broker);
}

Test(cli, sub_json_invalid_utf8_as_base64)
{
    sb_client *ctl = harness_client(&broker, "ctl", true);
    const char *argv[] = {"sockbus", "sub", "-s", broker.socket, "--json", "b.>", NULL};
    struct bg *b = bg_start(argv);
    bg_sync(b, ctl, "b.probe", true);

    unsigned char all[256];
    for (int i = 0; i < 256; i++) {
        all[i] = (unsigned char)i;
    }
    struct {
        const char *data;
        size_t len;
    } cases[] = {
        {"\xff", 1},                /* never valid; 1 byte: "==" padding */
        {"\xc0\x80", 2},            /* overlong NUL; "=" padding */
        {"\xed\xa0\x80", 3},        /* a surrogate; no padding */
        {"\xe0\x80\xaf", 3},        /* overlong '/' in three bytes */
        {"\xf0\x82\x82\xac", 4},    /* overlong U+20AC in four bytes */
        {"ok\xe2\x82", 4},          /* truncated sequence at the end */
        {"\xf5\x80\x80\x80z", 5},   /* above U+10FFFF */
        {"text\x80more\"\\\n", 13}, /* stray continuation byte */
        {(const char *)all, sizeof(all)},
    };
    enum { NCASES = sizeof(cases) / sizeof(cases[0]) };
    for (int i = 0; i < NCASES; i++) {
        char subject[16];
        snprintf(subject, sizeof(subject), "b.%d", i);
        lib_pub(ctl, subject, NULL, cases[i].data, cases[i].len);
    }

    const char *out;
    size_t len;
    bg_until_end(b, ctl, "b.end", true, &out, &len);
    struct jobj objs[NCASES + 1];
    int n = json_lines(out, len, objs, NCASES + 1);
    cr_assert_eq(n, NCASES, "expected %d JSON lines, got %d", NCASES, n);
    for (int i = 0; i < NCASES; i++) {
        char subject[16];
        snprintf(subject, sizeof(subject), "b.%d", i);
        const struct jfield *s = j_get(&objs[i], "subject");
        cr_assert(s != NULL && s->type == 's');
        assert_bytes(s->str, s->len, subject, strlen(subject), "subject");
        cr_assert_null(j_get(&objs[i], "payload"), "case %d: invalid UTF-8 sent as \"payload\"", i);
        cr_assert_null(j_get(&objs[i], "reply"), "case %d: \"reply\" without one", i);
        const struct jfield *p = j_get(&objs[i], "payload_base64");
        cr_assert(p != NULL && p->type == 's', "case %d: no \"payload_base64\"", i);
        unsigned char decoded[512];
        cr_assert(p->len <= 4 * ((sizeof(decoded) + 2) / 3));
        long dl = b64_decode(p->str, p->len, decoded);
        cr_assert(dl >= 0, "case %d: not valid base64: [%.*s]", i, (int)p->len, p->str);
        cr_assert(dl == (long)cases[i].len && memcmp(decoded, cases[i].data, cases[i].len) == 0,
                  "case %d: base64 [%.*s] does not decode to the payload", i, (int)p->len, p->str);
        j_free(&objs[i]);
    }
    bg_stop(b);
    sb_close(ctl);
    harness_stop(&broker);
}

Test(cli, sub_json_reply_only_when_present)
{
    sb_client *ctl = harness_client(&broker, "ctl", true);
    const char *argv[] = {"sockbus", "sub", "-s", broker.socket, "--json", "rq.>", NULL};
    struct bg *b = bg_start(argv);
    bg_sync(b, ctl, "rq.probe", true);

    lib_pub(ctl, "rq.lib", "inbox.lib.1", "x", 1);
    const char *pub_argv[] = {"sockbus",   "pub",    "-s", broker.socket, "--reply",
                              "rq.answer", "rq.cli", "hi", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, pub_argv, NULL, 0, HARNESS_IO_MS);
    assert_ok(&r, "pub --reply rq.answer rq.cli hi");
    lib_pub(ctl, "rq.none", NULL, "y", 1);

    const char *out;
    size_t len;
    bg_until_end(b, ctl, "rq.end", true, &out, &len);
    struct jobj objs[4];
    int n = json_lines(out, len, objs, 4);
    cr_assert_eq(n, 3, "expected 3 JSON lines, got %d: [%.*s]", n, (int)len, out);
    assert_json_text(&objs[0], "rq.lib", "x", 1, "inbox.lib.1");
    assert_json_text(&objs[1], "rq.cli", "hi", 2, "rq.answer");
    assert_json_text(&objs[2], "rq.none", "y", 1, NULL);
    for (int i = 0; i < n; i++) {
        j_free(&objs[i]);
    }
    bg_stop(b);
    cli_result_free(&r);
    sb_close(ctl);
    harness_stop(&broker);
}

/* pub --retain stores a value; a later sub --json gets it first, flagged
 * "retained": true, and -n 1 ends it. */
Test(cli, sub_json_marks_retained)
{
    const char *pub_argv[] = {"sockbus",  "pub",     "-s",        broker.socket,
                              "--retain", "cfg.app", "{\"v\":1}", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, pub_argv, NULL, 0, HARNESS_IO_MS);
    assert_ok(&r, "pub --retain");
    cli_result_free(&r);

    const char *sub_argv[] = {"sockbus", "sub", "-s",     broker.socket, "-n", "1",
                              "-t",      "5",   "--json", "cfg.>",       NULL};
    run(&r, sub_argv, NULL, 0, 10000);
    assert_ok(&r, "sub --json -n 1 after pub --retain");
    struct jobj obj[2];
    int n = json_lines(r.out, r.out_len, obj, 2);
    cr_assert_eq(n, 1, "expected one JSON line: [%s]", r.out);
    assert_json_text(&obj[0], "cfg.app", "{\"v\":1}", 7, NULL);
    const struct jfield *ret = j_get(&obj[0], "retained");
    cr_assert(ret != NULL && ret->type == 't', "no \"retained\": true in [%s]", r.out);
    j_free(&obj[0]);
    cli_result_free(&r);
    harness_stop(&broker);
}

/* ---- sub: patterns, -n, -t ---- */

Test(cli, sub_several_patterns)
{
    sb_client *ctl = harness_client(&broker, "ctl", true);
    const char *argv[] = {"sockbus", "sub",   "-s",    broker.socket, "-v",
                          "m.a",     "m.b.*", "m.c.>", NULL};
    struct bg *b = bg_start(argv);
    /* The last pattern: sub subscribes in order, so all are active. */
    bg_sync(b, ctl, "m.c.probe", true);

    lib_pub(ctl, "m.a", NULL, "1", 1);
    lib_pub(ctl, "m.b.x", NULL, "2", 1);
    lib_pub(ctl, "m.c.x.y", NULL, "3", 1);
    lib_pub(ctl, "m.x", NULL, "no", 2);
    lib_pub(ctl, "m.b", NULL, "no", 2);
    lib_pub(ctl, "m.b.x.y", NULL, "no", 2);
    lib_pub(ctl, "m.a.b", NULL, "no", 2);

    const char *out;
    size_t len;
    bg_until_end(b, ctl, "m.c.end", true, &out, &len);
    static const char want[] = "m.a 1\nm.b.x 2\nm.c.x.y 3\n";
    assert_bytes(out, len, want, sizeof(want) - 1, "sub with three patterns");
    bg_stop(b);
    sb_close(ctl);
    harness_stop(&broker);
}

Test(cli, sub_count_exits_after_exactly_n)
{
    sb_client *ctl = harness_client(&broker, "ctl", true);
    const char *argv[] = {"sockbus", "sub", "-s", broker.socket, "-n", "3", "n.>", NULL};
    struct bg *b = bg_start(argv);

    /* Probe until the first probe is printed: probes FIRST..K all reach
     * the sub (each was behind a flush barrier) and count. */
    int64_t deadline = harness_now_ms() + HARNESS_READY_MS;
    int k = 0;
    long first = -1;
    while (first < 0) {
        cr_assert(harness_now_ms() < deadline, "sockbus sub -n 3 never printed a probe");
        char marker[32];
        snprintf(marker, sizeof(marker), "<probe-%d>", ++k);
        lib_pub(ctl, "n.probe", NULL, marker, strlen(marker));
        first = bg_wait_for(b, 0, "<probe-", 20);
        if (first < 0) {
            cr_assert(!b->eof, "sockbus sub -n 3 exited early: [%s]", b->buf);
        }
    }
    int j = atoi(b->buf + first + strlen("<probe-"));
    cr_assert(j >= 1 && j <= k);
    /* More than enough to go past 3. */
    for (int i = 1; i <= 5; i++) {
        char m[8];
        snprintf(m, sizeof(m), "m%d", i);
        lib_pub(ctl, "n.x", NULL, m, strlen(m));
    }

    char want[256];
    size_t wl = 0;
    int lines = 0;
    for (int i = j; i <= k && lines < 3; i++, lines++) {
        wl += (size_t)snprintf(want + wl, sizeof(want) - wl, "<probe-%d>\n", i);
    }
    for (int i = 1; lines < 3; i++, lines++) {
        wl += (size_t)snprintf(want + wl, sizeof(want) - wl, "m%d\n", i);
    }

    cr_assert(bg_read_to_eof(b, HARNESS_IO_MS), "sub -n 3 did not exit after 3 messages");
    int status = harness_wait_pid(b->pid, HARNESS_IO_MS);
    b->pid = -1;
    cr_assert_eq(status, 0, "sub -n 3 exited %d", status);
    assert_bytes(b->buf, b->len, want, wl, "sub -n 3 output");
    bg_stop(b);
    sb_close(ctl);
    harness_stop(&broker);
}

/*
 * SIGTERM right after sub printed something: it is idle (stdout flushed,
 * waiting for the next message) and must die of the signal at once. The
 * signal lands at a random point of the step from "flushed" to "waiting",
 * so this repeats; a signal that sub only notes in a flag while busy and
 * then never looks at again leaves it blocked for good in the wait.
 */
Test(cli, sub_sigterm_ends_idle_sub)
{
    sb_client *ctl = harness_client(&broker, "ctl", true);
    const char *argv[] = {"sockbus", "sub", "-s", broker.socket, "t.>", NULL};
    for (int i = 0; i < 100; i++) {
        struct bg *b = bg_start(argv);
        bg_sync(b, ctl, "t.probe", true);
        int status = bg_stop(b);
        cr_assert_eq(status, 128 + SIGTERM,
                     "round %d: sockbus sub did not die of SIGTERM within %d ms (status %d)", i,
                     BG_TERM_MS, status);
    }
    sb_close(ctl);
    harness_stop(&broker);
}

Test(cli, sub_timeout_without_traffic_exits_124)
{
    const char *argv[] = {"sockbus", "sub", "-s", broker.socket, "-t", "0.5", "quiet.>", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, NULL, 0, 10000);
    cr_assert_eq(r.status, 124, "sub -t 0.5 exited %d, stderr [%s]", r.status, r.err);
    cr_assert(r.elapsed_ms >= 400, "sub -t 0.5 gave up after %lld ms", (long long)r.elapsed_ms);
    cr_assert(r.elapsed_ms < 3000, "sub -t 0.5 took %lld ms", (long long)r.elapsed_ms);
    cr_assert_eq(r.out_len, 0, "sub printed [%s] without traffic", r.out);
    cli_result_free(&r);
    harness_stop(&broker);
}

/* ---- cannot connect ---- */

static void assert_cannot_connect(const char *cmd, const char *endpoint)
{
    const char *pub_argv[] = {"sockbus", "pub", "-s", endpoint, "x.y", "hi", NULL};
    const char *sub_argv[] = {"sockbus", "sub", "-s", endpoint, "x.>", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, strcmp(cmd, "pub") == 0 ? pub_argv : sub_argv, NULL, 0, 10000);
    cr_assert_eq(r.status, 1, "%s -s %s exited %d, stderr [%s]", cmd, endpoint, r.status, r.err);
    assert_one_line(&r, cmd);
    assert_err_has(&r, endpoint, cmd);
    assert_err_has(&r, "sockbusd", cmd);
    cr_assert_eq(r.out_len, 0, "%s printed [%s] on stdout", cmd, r.out);
    cr_assert(r.elapsed_ms < 3000, "%s took %lld ms to fail", cmd, (long long)r.elapsed_ms);
    cli_result_free(&r);
}

Test(cli, pub_cannot_connect_to_missing_socket)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/none.sock", broker.dir);
    assert_cannot_connect("pub", path);
    harness_stop(&broker);
}

Test(cli, sub_cannot_connect_to_missing_socket)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/none.sock", broker.dir);
    assert_cannot_connect("sub", path);
    harness_stop(&broker);
}

Test(cli, pub_cannot_connect_to_closed_tcp_port)
{
    assert_cannot_connect("pub", "tcp://127.0.0.1:1");
    harness_stop(&broker);
}

Test(cli, sub_cannot_connect_to_closed_tcp_port)
{
    assert_cannot_connect("sub", "tcp://127.0.0.1:1");
    harness_stop(&broker);
}

/* ---- bad subjects and patterns ---- */

static void assert_usage_error(const char *const *argv, const char *needle, const char *what)
{
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, NULL, 0, HARNESS_IO_MS);
    cr_assert_eq(r.status, 2, "%s: exit %d, stderr [%s]", what, r.status, r.err);
    assert_one_line(&r, what);
    assert_err_has(&r, needle, what);
    cr_assert_eq(r.out_len, 0, "%s: printed [%s] on stdout", what, r.out);
    cli_result_free(&r);
}

Test(cli, pub_invalid_subject_is_usage_error)
{
    /* A reachable broker, so only the subject check can stop these. */
    const char *a[] = {"sockbus", "pub", "-s", broker.socket, "a..b", "hi", NULL};
    assert_usage_error(a, "'a..b'", "pub a..b");
    const char *b[] = {"sockbus", "pub", "-s", broker.socket, "a.*", "hi", NULL};
    assert_usage_error(b, "'a.*'", "pub a.*");
    const char *c[] = {"sockbus", "pub", "-s", broker.socket, "a.>", NULL};
    assert_usage_error(c, "'a.>'", "pub a.>");
    const char *d[] = {"sockbus", "pub", "-s", broker.socket, "--reply", "r..x", "a.b", "hi", NULL};
    assert_usage_error(d, "'r..x'", "pub --reply r..x");
    harness_stop(&broker);
}

Test(cli, sub_invalid_pattern_is_usage_error)
{
    const char *a[] = {"sockbus", "sub", "-s", broker.socket, "a.>.b", NULL};
    assert_usage_error(a, "'a.>.b'", "sub a.>.b");
    /* Also when it is not the first pattern. */
    const char *b[] = {"sockbus", "sub", "-s", broker.socket, "ok.>", "a.>.b", NULL};
    assert_usage_error(b, "'a.>.b'", "sub ok.> a.>.b");
    const char *c[] = {"sockbus", "sub", "-s", broker.socket, "a.b*", NULL};
    assert_usage_error(c, "'a.b*'", "sub a.b*");
    harness_stop(&broker);
}

/* ---- help and bad command lines ---- */

static void assert_help(const char *const *argv, const char *usage, const char *what)
{
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, NULL, 0, HARNESS_IO_MS);
    assert_ok(&r, what);
    cr_assert(r.out_len > 0 && strstr(r.out, usage) != NULL, "%s: no '%s' on stdout: [%s]", what,
              usage, r.out);
    cli_result_free(&r);
}

Test(cli, help_exits_zero_with_usage_on_stdout)
{
    const char *top[] = {"sockbus", "--help", NULL};
    assert_help(top, "usage: sockbus", "sockbus --help");
    const char *pub[] = {"sockbus", "pub", "--help", NULL};
    assert_help(pub, "usage: sockbus pub", "sockbus pub --help");
    const char *sub[] = {"sockbus", "sub", "--help", NULL};
    assert_help(sub, "usage: sockbus sub", "sockbus sub --help");
    /* --help wins even with a broken endpoint or other arguments. */
    const char *sub2[] = {"sockbus", "sub", "-s", "/nonexistent/x.sock", "--help", NULL};
    assert_help(sub2, "usage: sockbus sub", "sockbus sub -s ... --help");
    const char *h[] = {"sockbus", "help", "pub", NULL};
    assert_help(h, "usage: sockbus pub", "sockbus help pub");
    harness_stop(&broker);
}

Test(cli, top_help_lists_pub_and_sub)
{
    const char *top[] = {"sockbus", "--help", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, top, NULL, 0, HARNESS_IO_MS);
    assert_ok(&r, "sockbus --help");
    cr_assert(strstr(r.out, "pub") != NULL && strstr(r.out, "sub") != NULL,
              "sockbus --help does not list pub and sub: [%s]", r.out);
    cli_result_free(&r);
    harness_stop(&broker);
}

Test(cli, unknown_command_is_usage_error)
{
    const char *a[] = {"sockbus", "frobnicate", NULL};
    assert_usage_error(a, "frobnicate", "sockbus frobnicate");
    const char *b[] = {"sockbus", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, b, NULL, 0, HARNESS_IO_MS);
    cr_assert_eq(r.status, 2, "sockbus without a command exited %d", r.status);
    assert_one_line(&r, "sockbus");
    cli_result_free(&r);
    harness_stop(&broker);
}

Test(cli, unknown_option_is_usage_error)
{
    const char *a[] = {"sockbus", "pub", "-s", broker.socket, "--bogus", "x.y", "hi", NULL};
    assert_usage_error(a, "--bogus", "pub --bogus");
    const char *b[] = {"sockbus", "sub", "-s", broker.socket, "-Z", "x.>", NULL};
    assert_usage_error(b, "-Z", "sub -Z");
    const char *c[] = {"sockbus", "--bogus", NULL};
    assert_usage_error(c, "--bogus", "sockbus --bogus");
    const char *d[] = {"sockbus", "sub", "-s", broker.socket, "-n", NULL};
    assert_usage_error(d, "-n", "sub -n (no value)");
    harness_stop(&broker);
}

/* ---- SOCKBUS_SOCKET ---- */

Test(cli, socket_env_is_used_by_pub)
{
    cr_assert_eq(setenv("SOCKBUS_SOCKET", broker.socket, 1), 0);
    sb_client *sub = lib_sub("env.x");
    const char *argv[] = {"sockbus", "pub", "env.x", "from env", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, NULL, 0, HARNESS_IO_MS);
    assert_ok(&r, "SOCKBUS_SOCKET=... sockbus pub env.x");
    expect_payload(sub, "env.x", "from env", 8);
    harness_expect_none(sub);
    sb_close(sub);
    harness_stop(&broker);
}

Test(cli, socket_env_is_used_by_sub)
{
    cr_assert_eq(setenv("SOCKBUS_SOCKET", broker.socket, 1), 0);
    sb_client *ctl = harness_client(&broker, "ctl", true);
    const char *argv[] = {"sockbus", "sub", "env.>", NULL};
    struct bg *b = bg_start(argv);
    bg_sync(b, ctl, "env.probe", true);
    lib_pub(ctl, "env.y", NULL, "via env", 7);
    const char *out;
    size_t len;
    bg_until_end(b, ctl, "env.end", true, &out, &len);
    assert_bytes(out, len, "via env\n", 8, "sub via SOCKBUS_SOCKET");
    bg_stop(b);
    sb_close(ctl);
    harness_stop(&broker);
}

Test(cli, socket_env_missing_path_is_named)
{
    /* Proves the variable is read: the error names its path. */
    char path[160];
    snprintf(path, sizeof(path), "%s/none.sock", broker.dir);
    cr_assert_eq(setenv("SOCKBUS_SOCKET", path, 1), 0);
    const char *argv[] = {"sockbus", "pub", "env.x", "hi", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, NULL, 0, 10000);
    cr_assert_eq(r.status, 1, "exit %d, stderr [%s]", r.status, r.err);
    assert_one_line(&r, "pub with SOCKBUS_SOCKET=none.sock");
    assert_err_has(&r, path, "pub with SOCKBUS_SOCKET=none.sock");
    assert_err_has(&r, "sockbusd", "pub with SOCKBUS_SOCKET=none.sock");
    cli_result_free(&r);
    harness_stop(&broker);
}

Test(cli, socket_option_overrides_env)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/none.sock", broker.dir);
    cr_assert_eq(setenv("SOCKBUS_SOCKET", path, 1), 0);
    sb_client *sub = lib_sub("env.z");
    const char *argv[] = {"sockbus", "pub", "-s", broker.socket, "env.z", "explicit", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, NULL, 0, HARNESS_IO_MS);
    assert_ok(&r, "pub -s with a bad SOCKBUS_SOCKET");
    expect_payload(sub, "env.z", "explicit", 8);
    harness_expect_none(sub);
    sb_close(sub);
    harness_stop(&broker);
}

/* ---- GNU option order ---- */

/* Options may follow the operands, as in every GNU tool: "sub PATTERN -t
 * 1" reads -t as the timeout, not as a pattern. */
Test(cli, options_after_the_operands)
{
    sb_client *sub = lib_sub("gnu.x");
    const char *pub[] = {"sockbus", "pub", "gnu.x", "after", "-s", broker.socket, NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, pub, NULL, 0, HARNESS_IO_MS);
    assert_ok(&r, "pub SUBJECT MESSAGE -s PATH");
    expect_payload(sub, "gnu.x", "after", 5);

    const char *timed[] = {"sockbus", "sub", "gnu.none.>", "-s", broker.socket, "-t", "0.2", NULL};
    run(&r, timed, NULL, 0, HARNESS_IO_MS);
    cr_assert_eq(r.status, 124, "sub PATTERN -s PATH -t 0.2: exit %d, stderr [%s]", r.status,
                 r.err);
    sb_close(sub);
    harness_stop(&broker);
}

/* "--" ends the options: what follows is an operand even if it starts
 * with '-'. */
Test(cli, double_dash_ends_the_options)
{
    sb_client *sub = lib_sub("gnu.neg");
    const char *pub[] = {"sockbus", "pub", "-s", broker.socket, "--", "gnu.neg", "-5", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, pub, NULL, 0, HARNESS_IO_MS);
    assert_ok(&r, "pub -- SUBJECT -5");
    expect_payload(sub, "gnu.neg", "-5", 2);
    /* Without "--", -5 is an option, and not one pub knows. */
    const char *bad[] = {"sockbus", "pub", "-s", broker.socket, "gnu.neg", "-5", NULL};
    assert_usage_error(bad, "-5", "pub SUBJECT -5");
    sb_close(sub);
    harness_stop(&broker);
}

Test(cli, version_short_and_long)
{
    const char *forms[][3] = {{"sockbus", "-V", NULL}, {"sockbus", "--version", NULL}};
    for (size_t i = 0; i < 2; i++) {
        struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
        run(&r, forms[i], NULL, 0, HARNESS_IO_MS);
        assert_ok(&r, forms[i][1]);
        cr_assert(r.out_len > 8 && strncmp(r.out, "sockbus ", 8) == 0, "%s printed [%s]",
                  forms[i][1], r.out);
    }
    harness_stop(&broker);
}

/* ---- endpoints and the hints when none answers ---- */

/* Run `sockbus pub ... x.y hi` with `argv`'s endpoint options; expect exit
 * 1, one line, and each needle in it. */
static void expect_connect_error(const char *const *argv, const char *n1, const char *n2,
                                 const char *what)
{
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, NULL, 0, 10000);
    cr_assert_eq(r.status, 1, "%s: exit %d, stderr [%s]", what, r.status, r.err);
    assert_one_line(&r, what);
    assert_err_has(&r, n1, what);
    if (n2 != NULL) {
        assert_err_has(&r, n2, what);
    }
    cr_assert_eq(r.out_len, 0);
    cli_result_free(&r);
}

Test(cli, a_path_that_is_not_a_socket_says_so)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/plain", broker.dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fclose(f);
    const char *argv[] = {"sockbus", "pub", "-s", path, "x.y", "hi", NULL};
    expect_connect_error(argv, "not a socket (a regular file)", path, "-s FILE");
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, NULL, 0, 10000);
    cr_assert(strstr(r.err, "sockbusd --socket") == NULL,
              "advises starting a broker on a file: [%s]", r.err);
    harness_stop(&broker);
}

Test(cli, tcp_endpoint_without_port_is_refused_before_connecting)
{
    const char *argv[] = {"sockbus", "sub", "-s", "tcp://localhost", "x.>", NULL};
    expect_connect_error(argv, "invalid endpoint 'tcp://localhost'", "tcp://HOST:PORT",
                         "tcp://localhost");
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, NULL, 0, 10000);
    cr_assert(strstr(r.err, "cannot connect") == NULL && strstr(r.err, "--tcp localhost'") == NULL,
              "[%s]", r.err);
    harness_stop(&broker);
}

Test(cli, empty_socket_option_is_an_error)
{
    /* Even with a broker at the default endpoint: '' is not "the default". */
    cr_assert_eq(setenv("SOCKBUS_SOCKET", broker.socket, 1), 0);
    const char *argv[] = {"sockbus", "pub", "-s", "", "x.y", "hi", NULL};
    expect_connect_error(argv, "-s '' names no endpoint", NULL, "-s ''");
    harness_stop(&broker);
}

Test(cli, unix_scheme_is_a_path)
{
    sb_client *sub = lib_sub("uds.x");
    char endpoint[200];
    snprintf(endpoint, sizeof(endpoint), "unix://%s", broker.socket);
    const char *argv[] = {"sockbus", "pub", "-s", endpoint, "uds.x", "one", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    run(&r, argv, NULL, 0, HARNESS_IO_MS);
    assert_ok(&r, "pub -s unix://PATH");
    expect_payload(sub, "uds.x", "one", 3);
    cr_assert_eq(setenv("SOCKBUS_SOCKET", endpoint, 1), 0);
    const char *env[] = {"sockbus", "pub", "uds.x", "two", NULL};
    run(&r, env, NULL, 0, HARNESS_IO_MS);
    assert_ok(&r, "SOCKBUS_SOCKET=unix://PATH pub");
    expect_payload(sub, "uds.x", "two", 3);
    sb_close(sub);
    harness_stop(&broker);
}

/* --system names the system broker's socket, before the command or among
 * its options; -s still wins. */
Test(cli, system_option_names_the_system_socket)
{
    const char *before[] = {"sockbus", "--system", "pub", "x.y", "hi", NULL};
    const char *after[] = {"sockbus", "pub", "x.y", "hi", "--system", NULL};
    struct cli_result r __attribute__((cleanup(cli_result_free))) = {0};
    for (int i = 0; i < 2; i++) {
        run(&r, i == 0 ? before : after, NULL, 0, 10000);
        /* No system broker runs here (or one does: either way it was the
         * system socket that was tried). */
        cr_assert(r.status == 0 || strstr(r.err, SB_ENDPOINT_SYSTEM) != NULL,
                  "--system did not try %s: exit %d [%s]", SB_ENDPOINT_SYSTEM, r.status, r.err);
    }
    sb_client *sub = lib_sub("sys.x");
    const char *both[] = {"sockbus", "--system", "pub", "-s", broker.socket, "sys.x", "s", NULL};
    run(&r, both, NULL, 0, HARNESS_IO_MS);
    assert_ok(&r, "--system with -s");
    expect_payload(sub, "sys.x", "s", 1);
    sb_close(sub);
    harness_stop(&broker);
}

/* Nothing at the default path: the hint says where the rule looked and
 * why, and names a broker's socket where the other branch of the rule
 * (XDG_RUNTIME_DIR unset) would have looked. */
Test(cli, default_path_hint_names_the_rule)
{
    unsetenv("SOCKBUS_SOCKET");
    cr_assert_eq(setenv("XDG_RUNTIME_DIR", broker.dir, 1), 0);
    const char *argv[] = {"sockbus", "pub", "x.y", "hi", NULL};
    expect_connect_error(argv, "XDG_RUNTIME_DIR is set", broker.dir, "default path with XDG");

    /* A socket at /tmp/sockbus-UID.sock, the path without XDG_RUNTIME_DIR,
     * if nothing is there already (it is shared ground: leave it alone
     * otherwise). */
    char other[64];
    snprintf(other, sizeof(other), "/tmp/sockbus-%lu.sock", (unsigned long)getuid());
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", other);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
        expect_connect_error(argv, other, "without XDG_RUNTIME_DIR", "a socket at the other path");
        unlink(other);
    }
    close(fd);
    harness_stop(&broker);
}
