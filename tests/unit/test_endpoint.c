/*
 * test_endpoint.c - unit tests of endpoint resolution and parsing
 * (libclient/wire/endpoint.c; docs/security.md, "The socket directory")
 * and of sb_strerror() (error.c).
 *
 * sb_endpoint_resolve() reads the environment. Criterion runs each test in
 * its own process, so a test sets exactly the variables it needs
 * (env_set()) without leaking into the next one.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "endpoint.h"
#include "sockbus.h"

#define SENTINEL 'Z'

/* Set (value != NULL) or unset both variables the rule reads. */
static void env_set(const char *sockbus_socket, const char *xdg_runtime_dir)
{
    if (sockbus_socket != NULL) {
        cr_assert_eq(setenv("SOCKBUS_SOCKET", sockbus_socket, 1), 0);
    } else {
        cr_assert_eq(unsetenv("SOCKBUS_SOCKET"), 0);
    }
    if (xdg_runtime_dir != NULL) {
        cr_assert_eq(setenv("XDG_RUNTIME_DIR", xdg_runtime_dir, 1), 0);
    } else {
        cr_assert_eq(unsetenv("XDG_RUNTIME_DIR"), 0);
    }
}

static void default_path(char *out, size_t len)
{
    int n = snprintf(out, len, "/tmp/sockbus-%lu.sock", (unsigned long)getuid());
    cr_assert(n > 0 && (size_t)n < len);
}

/* Resolve into a sentinel-filled buffer; expect success and `want`. */
static void expect_resolve(const char *explicit_endpoint, const char *want)
{
    char out[SB_ENDPOINT_MAX];
    memset(out, SENTINEL, sizeof(out));
    int r = sb_endpoint_resolve(explicit_endpoint, out, sizeof(out));
    cr_assert_eq(r, 0, "resolve(%s) = %d", explicit_endpoint ? explicit_endpoint : "NULL", r);
    cr_assert_str_eq(out, want);
}

/* Resolve into `len` bytes; expect -ENAMETOOLONG and `out` untouched. */
static void expect_too_long(const char *explicit_endpoint, size_t len)
{
    char out[SB_ENDPOINT_MAX * 2];
    cr_assert_leq(len, sizeof(out));
    memset(out, SENTINEL, sizeof(out));
    int r = sb_endpoint_resolve(explicit_endpoint, out, len);
    cr_expect_eq(r, -ENAMETOOLONG, "resolve(len %zu) = %d, want -ENAMETOOLONG", len, r);
    for (size_t i = 0; i < sizeof(out); i++) {
        if (out[i] != SENTINEL) {
            cr_expect_fail("resolve(len %zu) failed but wrote out[%zu] = %#x", len, i,
                           (unsigned char)out[i]);
            break;
        }
    }
}

/* "/" followed by 'p' up to `len` bytes. */
static char *long_path(size_t len)
{
    char *s = malloc(len + 1);
    cr_assert_not_null(s);
    memset(s, 'p', len);
    s[0] = '/';
    s[len] = '\0';
    return s;
}

/* ------------------------------------------------------------------------ */
/* Precedence                                                               */

Test(endpoint, explicit_wins_over_everything)
{
    env_set("/env/sock", "/xdg");
    expect_resolve("/explicit/sock", "/explicit/sock");
}

Test(endpoint, explicit_wins_without_environment)
{
    env_set(NULL, NULL);
    expect_resolve("/explicit/sock", "/explicit/sock");
    expect_resolve("relative.sock", "relative.sock");
}

Test(endpoint, sockbus_socket_wins_over_xdg)
{
    env_set("/env/sock", "/xdg");
    expect_resolve(NULL, "/env/sock");
}

Test(endpoint, empty_explicit_is_absent)
{
    env_set("/env/sock", "/xdg");
    expect_resolve("", "/env/sock");
    env_set(NULL, "/xdg");
    expect_resolve("", "/xdg/sockbus.sock");
    env_set(NULL, NULL);
    char want[64];
    default_path(want, sizeof(want));
    expect_resolve("", want);
}

Test(endpoint, xdg_runtime_dir_when_no_sockbus_socket)
{
    env_set(NULL, "/run/user/1000");
    expect_resolve(NULL, "/run/user/1000/sockbus.sock");
}

Test(endpoint, empty_sockbus_socket_is_absent)
{
    env_set("", "/run/user/1000");
    expect_resolve(NULL, "/run/user/1000/sockbus.sock");
}

Test(endpoint, default_tmp_path)
{
    char want[64];
    default_path(want, sizeof(want));
    env_set(NULL, NULL);
    expect_resolve(NULL, want);
    /* An empty XDG_RUNTIME_DIR is unset, as the XDG spec says. */
    env_set(NULL, "");
    expect_resolve(NULL, want);
    env_set("", "");
    expect_resolve(NULL, want);
}

Test(endpoint, tcp_endpoints_pass_through)
{
    env_set(NULL, "/xdg");
    expect_resolve("tcp://127.0.0.1:7447", "tcp://127.0.0.1:7447");
    env_set("tcp://[::1]:7447", "/xdg");
    expect_resolve(NULL, "tcp://[::1]:7447");
    expect_resolve("tcp://localhost:1", "tcp://localhost:1");
}

/* ------------------------------------------------------------------------ */
/* Lengths                                                                  */

Test(endpoint, unix_path_length_is_bounded_by_sun_path)
{
    struct sockaddr_un sun;
    size_t max = sizeof(sun.sun_path) - 1; /* room for the NUL */
    env_set(NULL, NULL);

    char *ok = long_path(max);
    expect_resolve(ok, ok);
    env_set(ok, NULL);
    expect_resolve(NULL, ok);
    env_set(NULL, NULL);
    free(ok);

    char *over = long_path(max + 1);
    expect_too_long(over, SB_ENDPOINT_MAX);
    env_set(over, "/xdg");
    expect_too_long(NULL, SB_ENDPOINT_MAX);
    free(over);
}

Test(endpoint, xdg_path_too_long)
{
    struct sockaddr_un sun;
    size_t max = sizeof(sun.sun_path) - 1;
    size_t suffix = strlen("/sockbus.sock");

    char *dir = long_path(max - suffix);
    env_set(NULL, dir);
    char want[SB_ENDPOINT_MAX];
    snprintf(want, sizeof(want), "%s/sockbus.sock", dir);
    cr_assert_eq(strlen(want), max);
    expect_resolve(NULL, want);
    free(dir);

    dir = long_path(max - suffix + 1);
    env_set(NULL, dir);
    expect_too_long(NULL, SB_ENDPOINT_MAX);
    free(dir);

    dir = long_path(4000);
    env_set(NULL, dir);
    expect_too_long(NULL, SB_ENDPOINT_MAX);
    free(dir);
}

Test(endpoint, very_long_explicit_path)
{
    char *huge = long_path(10000);
    env_set(NULL, NULL);
    expect_too_long(huge, SB_ENDPOINT_MAX);
    expect_too_long(huge, SB_ENDPOINT_MAX * 2);
    free(huge);
}

Test(endpoint, tcp_length_is_bounded_by_endpoint_max)
{
    /* No sun_path limit for TCP, only SB_ENDPOINT_MAX (NUL included). */
    char ep[SB_ENDPOINT_MAX + 8];
    env_set(NULL, NULL);
    for (size_t len = 120; len <= SB_ENDPOINT_MAX + 1; len++) {
        strcpy(ep, "tcp://");
        size_t host = len - strlen("tcp://") - strlen(":7447");
        memset(ep + 6, 'h', host);
        strcpy(ep + 6 + host, ":7447");
        cr_assert_eq(strlen(ep), len);
        if (len < SB_ENDPOINT_MAX) {
            expect_resolve(ep, ep);
        } else {
            expect_too_long(ep, SB_ENDPOINT_MAX * 2);
        }
    }
}

Test(endpoint, output_buffer_too_small)
{
    env_set(NULL, NULL);
    const char *ep = "/tmp/x.sock"; /* 11 bytes + NUL */
    char out[16];
    memset(out, SENTINEL, sizeof(out));
    cr_assert_eq(sb_endpoint_resolve(ep, out, 12), 0);
    cr_assert_str_eq(out, ep);
    cr_assert_eq(out[12], SENTINEL, "wrote past len");

    /* One byte short, much too short, zero: refused, out untouched. */
    expect_too_long(ep, 11);
    expect_too_long(ep, 4);
    expect_too_long(ep, 1);
    expect_too_long(ep, 0);
    expect_too_long("tcp://127.0.0.1:7447", 20);
    env_set(NULL, "/xdg");
    expect_too_long(NULL, strlen("/xdg/sockbus.sock"));

    char def[64];
    default_path(def, sizeof(def));
    env_set(NULL, NULL);
    expect_too_long(NULL, strlen(def));
    memset(out, SENTINEL, sizeof(out));
    char big[64];
    cr_assert_eq(sb_endpoint_resolve(NULL, big, strlen(def) + 1), 0);
    cr_assert_str_eq(big, def);
}

/* ------------------------------------------------------------------------ */
/* TCP endpoints                                                            */

Test(endpoint, is_tcp)
{
    cr_expect(sb_endpoint_is_tcp("tcp://127.0.0.1:7447"));
    cr_expect(sb_endpoint_is_tcp("tcp://[::1]:80"));
    cr_expect(sb_endpoint_is_tcp("tcp://"));
    cr_expect_not(sb_endpoint_is_tcp(NULL));
    cr_expect_not(sb_endpoint_is_tcp(""));
    cr_expect_not(sb_endpoint_is_tcp("tcp"));
    cr_expect_not(sb_endpoint_is_tcp("tcp:/"));
    cr_expect_not(sb_endpoint_is_tcp("tcp:/x:1"));
    cr_expect_not(sb_endpoint_is_tcp("127.0.0.1:7447"));
    cr_expect_not(sb_endpoint_is_tcp("/tmp/sockbus.sock"));
    cr_expect_not(sb_endpoint_is_tcp("/tmp/tcp://x"));
    cr_expect_not(sb_endpoint_is_tcp(" tcp://x:1"));
    cr_expect_not(sb_endpoint_is_tcp("unix:///tmp/x"));
}

static void expect_tcp(const char *endpoint, const char *host, const char *port)
{
    char h[64];
    char p[16];
    memset(h, SENTINEL, sizeof(h));
    memset(p, SENTINEL, sizeof(p));
    int r = endpoint_parse_tcp(endpoint, h, sizeof(h), p, sizeof(p));
    cr_assert_eq(r, 0, "endpoint_parse_tcp(\"%s\") = %d", endpoint, r);
    cr_expect_str_eq(h, host, "host of \"%s\"", endpoint);
    cr_expect_str_eq(p, port, "port of \"%s\"", endpoint);
}

static void expect_tcp_invalid_sized(const char *endpoint, size_t host_len, size_t port_len)
{
    char h[64];
    char p[16];
    cr_assert_leq(host_len, sizeof(h));
    cr_assert_leq(port_len, sizeof(p));
    memset(h, SENTINEL, sizeof(h));
    memset(p, SENTINEL, sizeof(p));
    int r = endpoint_parse_tcp(endpoint, h, host_len, p, port_len);
    cr_expect_eq(r, -EINVAL, "endpoint_parse_tcp(\"%s\", %zu, %zu) = %d, want -EINVAL", endpoint,
                 host_len, port_len, r);
    for (size_t i = 0; i < sizeof(h); i++) {
        if (h[i] != SENTINEL) {
            cr_expect_fail("\"%s\": host written on failure", endpoint);
            break;
        }
    }
    for (size_t i = 0; i < sizeof(p); i++) {
        if (p[i] != SENTINEL) {
            cr_expect_fail("\"%s\": port written on failure", endpoint);
            break;
        }
    }
}

static void expect_tcp_invalid(const char *endpoint)
{
    expect_tcp_invalid_sized(endpoint, 64, 16);
}

Test(endpoint, parse_tcp_valid)
{
    expect_tcp("tcp://127.0.0.1:7447", "127.0.0.1", "7447");
    expect_tcp("127.0.0.1:7447", "127.0.0.1", "7447");
    expect_tcp("[::1]:80", "::1", "80");
    expect_tcp("tcp://[::1]:80", "::1", "80");
    expect_tcp("tcp://[fe80::1%lo]:7447", "fe80::1%lo", "7447");
    expect_tcp("localhost:1", "localhost", "1");
    expect_tcp("tcp://localhost:65535", "localhost", "65535");
    expect_tcp("h:9", "h", "9");
}

Test(endpoint, parse_tcp_invalid)
{
    /* Missing port. */
    expect_tcp_invalid("localhost");
    expect_tcp_invalid("localhost:");
    expect_tcp_invalid("tcp://localhost");
    expect_tcp_invalid("tcp://localhost:");
    expect_tcp_invalid("[::1]");
    expect_tcp_invalid("[::1]:");
    expect_tcp_invalid("tcp://");
    expect_tcp_invalid("");
    /* Port out of range. */
    expect_tcp_invalid("localhost:0");
    expect_tcp_invalid("localhost:00");
    expect_tcp_invalid("localhost:65536");
    expect_tcp_invalid("localhost:99999");
    expect_tcp_invalid("localhost:4294967297");
    expect_tcp_invalid("localhost:99999999999999999999999");
    /* Non-digits. */
    expect_tcp_invalid("localhost:http");
    expect_tcp_invalid("localhost:80a");
    expect_tcp_invalid("localhost:a80");
    expect_tcp_invalid("localhost:-1");
    expect_tcp_invalid("localhost:+80");
    expect_tcp_invalid("localhost: 80");
    expect_tcp_invalid("localhost:80 ");
    expect_tcp_invalid("localhost:0x50");
    expect_tcp_invalid("localhost:8.0");
    /* Empty host. */
    expect_tcp_invalid(":80");
    expect_tcp_invalid("tcp://:80");
    expect_tcp_invalid("[]:80");
    expect_tcp_invalid("tcp://[]:80");
}

/*
 * Brackets belong around the whole host or nowhere (as in Go's
 * net.SplitHostPort): a stray '[' or ']' is a malformed endpoint, which
 * endpoint.h promises to refuse with -EINVAL, not a host name to hand on.
 */
Test(endpoint, parse_tcp_rejects_stray_brackets)
{
    expect_tcp_invalid("[::1:80");
    expect_tcp_invalid("tcp://[::1:7447");
    expect_tcp_invalid("::1]:80");
    expect_tcp_invalid("[::1]x:80");
    expect_tcp_invalid("x[::1]:80");
    expect_tcp_invalid("[[::1]]:80");
}

Test(endpoint, parse_tcp_output_sizes)
{
    /* "localhost" needs 10 bytes, "7447" needs 5: exact fits work. */
    char h[10];
    char p[5];
    cr_assert_eq(endpoint_parse_tcp("tcp://localhost:7447", h, sizeof(h), p, sizeof(p)), 0);
    cr_assert_str_eq(h, "localhost");
    cr_assert_str_eq(p, "7447");
    char h6[4];
    cr_assert_eq(endpoint_parse_tcp("[::1]:7447", h6, sizeof(h6), p, sizeof(p)), 0);
    cr_assert_str_eq(h6, "::1");

    /* One byte short, or none at all: refused, nothing written. */
    expect_tcp_invalid_sized("tcp://localhost:7447", 9, 16);
    expect_tcp_invalid_sized("tcp://localhost:7447", 1, 16);
    expect_tcp_invalid_sized("tcp://localhost:7447", 0, 16);
    expect_tcp_invalid_sized("tcp://localhost:7447", 64, 4);
    expect_tcp_invalid_sized("tcp://localhost:7447", 64, 1);
    expect_tcp_invalid_sized("tcp://localhost:7447", 64, 0);
    expect_tcp_invalid_sized("[::1]:7447", 3, 16);
}

/* ------------------------------------------------------------------------ */
/* sb_strerror()                                                            */

Test(endpoint, strerror_sb_codes)
{
    static const int codes[] = {
        SB_E_PROTOCOL,      SB_E_TOO_LARGE,     SB_E_SUBJECT,        SB_E_PERMISSION, SB_E_LIMIT,
        SB_E_SLOW_CONSUMER, SB_E_SID,           SB_E_HELLO_REQUIRED, SB_E_SHUTDOWN,   SB_E_VERSION,
        SB_E_REQUEST,       SB_E_NO_RESPONDERS, SB_E_CLOSED,         SB_E_UNTRUSTED,
    };
    const size_t n = sizeof(codes) / sizeof(codes[0]);

    /* The broker's ERR codes 1..11 map to SB_E_BROKER_BASE - code. */
    for (int code = 1; code <= 11; code++) {
        cr_expect_eq(codes[code - 1], SB_E_BROKER_BASE - code);
    }
    for (size_t i = 0; i < n; i++) {
        const char *text = sb_strerror(codes[i]);
        cr_assert_not_null(text, "code %d", codes[i]);
        cr_expect_gt(strlen(text), 0, "code %d: empty text", codes[i]);
        cr_expect_null(strcasestr(text, "unknown error"), "code %d: \"%s\"", codes[i], text);
        for (size_t j = 0; j < i; j++) {
            cr_expect_str_neq(text, sb_strerror(codes[j]), "codes %d and %d share \"%s\"", codes[i],
                              codes[j], text);
        }
        /* And none reads like a -errno text. */
        for (int e = 1; e < 134; e++) {
            cr_expect_str_neq(text, strerror(e), "code %d reads like errno %d", codes[i], e);
        }
    }
}

Test(endpoint, strerror_errno_and_success)
{
    cr_expect_str_eq(sb_strerror(-ENOENT), strerror(ENOENT));
    cr_expect_str_eq(sb_strerror(-ECONNREFUSED), strerror(ECONNREFUSED));
    cr_expect_str_eq(sb_strerror(-ETIMEDOUT), strerror(ETIMEDOUT));
    cr_expect_str_eq(sb_strerror(-EINVAL), strerror(EINVAL));
    cr_expect_str_eq(sb_strerror(-EMSGSIZE), strerror(EMSGSIZE));
    cr_expect_str_eq(sb_strerror(-ENAMETOOLONG), strerror(ENAMETOOLONG));
    cr_expect_str_eq(sb_strerror(0), "success");
    /* Positive values and codes far out of range are not errors we know. */
    cr_expect_str_eq(sb_strerror(1), "unknown error");
    cr_expect_str_eq(sb_strerror(12345), "unknown error");
    cr_expect_str_eq(sb_strerror(-100000), "unknown error");
    cr_expect_str_eq(sb_strerror(INT32_MIN), "unknown error");
}

/* ------------------------------------------------------------------------ */
/* unix://PATH                                                              */

Test(endpoint, unix_prefix_is_a_spelling_of_a_path)
{
    env_set(NULL, "/xdg");
    expect_resolve("unix:///run/x.sock", "/run/x.sock");
    expect_resolve("unix://rel.sock", "rel.sock");
    env_set("unix:///env/sock", "/xdg");
    expect_resolve(NULL, "/env/sock");
    char out[SB_ENDPOINT_MAX];
    memset(out, SENTINEL, sizeof(out));
    cr_assert_eq(sb_endpoint_resolve("unix://", out, sizeof(out)), -EINVAL);
    cr_assert_eq(out[0], SENTINEL, "written on failure");
    cr_assert(!sb_endpoint_is_tcp("unix:///run/x.sock"));
}
