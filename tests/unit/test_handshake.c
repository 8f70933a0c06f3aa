/*
 * test_handshake.c - unit tests of the HELLO and WELCOME payloads
 * (libclient/wire/handshake.c): both encoders, both parsers, and every
 * error of the parsers.
 *
 * The broker maps the HELLO parser's results to ERR codes (-EPROTO and
 * -EINVAL to ERR 1, -EPROTONOSUPPORT to ERR 10); test_protocol.c checks
 * that mapping over the wire, these tests pin the parsers themselves: what
 * is accepted, in which order the checks run, how names and texts are
 * bounded, and that a parser reads exactly the bytes it is given (each
 * input sits at the very end of a heap block of its exact size, so an ASan
 * build catches any over-read). The encoders are pinned to the bytes the
 * protocol's examples show, and each round trip gives back what went in.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handshake.h"

/* A heap copy of exactly `len` bytes, for over-read detection. */
static uint8_t *exact_new(const void *bytes, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    cr_assert_not_null(p);
    if (len > 0) {
        memcpy(p, bytes, len);
    }
    return p;
}

static int parse_len(const void *json, size_t len, struct handshake_hello *out)
{
    uint8_t *p = exact_new(json, len);
    int r = handshake_hello_parse(p, len, out);
    free(p);
    return r;
}

static int parse(const char *json, struct handshake_hello *out)
{
    return parse_len(json, strlen(json), out);
}

/* A failure returns `want` and leaves *out as it was. */
static void expect_fail(const char *json, int want)
{
    struct handshake_hello h;
    struct handshake_hello before;
    memset(&h, 0xA5, sizeof(h));
    memcpy(&before, &h, sizeof(h));
    int r = parse(json, &h);
    cr_assert_eq(r, want, "handshake_hello_parse(%s) = %d (%s), expected %d (%s)", json, r,
                 strerror(-r), want, strerror(-want));
    cr_assert(memcmp(&h, &before, sizeof(h)) == 0,
              "handshake_hello_parse(%s) wrote *out on failure", json);
}

static struct handshake_hello expect_ok(const char *json)
{
    struct handshake_hello h;
    int r = parse(json, &h);
    cr_assert_eq(r, 0, "handshake_hello_parse(%s) = %d (%s)", json, r, strerror(-r));
    cr_assert_eq(h.protocol, 1);
    return h;
}

Test(hello, minimal)
{
    struct handshake_hello h = expect_ok("{\"protocol\":1}");
    cr_assert(h.echo, "echo defaults to true");
    cr_assert_not(h.has_name);
    cr_assert_str_eq(h.name, "");
}

Test(hello, every_option)
{
    struct handshake_hello h = expect_ok("{\"protocol\":1,\"name\":\"svc-a\",\"echo\":false}");
    cr_assert_not(h.echo);
    cr_assert(h.has_name);
    cr_assert_str_eq(h.name, "svc-a");

    h = expect_ok("{\"echo\":true,\"name\":\"\",\"protocol\":1}");
    cr_assert(h.echo);
    cr_assert(h.has_name, "an empty name is still a name");
    cr_assert_str_eq(h.name, "");
}

Test(hello, whitespace_and_unknown_keys)
{
    struct handshake_hello h =
        expect_ok(" \n{ \"protocol\" : 1 , \"future\" : {\"x\":[1,2,null]} }");
    cr_assert(h.echo);
    expect_ok("{\"protocol\":1,\"name\":\"x\",\"extra\":\"ignored\"}");
}

Test(hello, invalid_json)
{
    expect_fail("", -EPROTO);
    expect_fail("{", -EPROTO);
    expect_fail("{\"protocol\":1", -EPROTO);
    expect_fail("protocol=1", -EPROTO);
    expect_fail("{\"protocol\":1}garbage", -EPROTO);
    expect_fail("{\"protocol\":1}{\"protocol\":1}", -EPROTO);
}

Test(hello, not_an_object)
{
    expect_fail("[1]", -EPROTO);
    expect_fail("[{\"protocol\":1}]", -EPROTO);
    expect_fail("1", -EPROTO);
    expect_fail("\"protocol\"", -EPROTO);
    expect_fail("null", -EPROTO);
    expect_fail("true", -EPROTO);
}

Test(hello, protocol_missing_or_not_an_integer)
{
    expect_fail("{}", -EPROTO);
    expect_fail("{\"name\":\"x\",\"echo\":true}", -EPROTO);
    expect_fail("{\"protocol\":\"1\"}", -EPROTO);
    expect_fail("{\"protocol\":null}", -EPROTO);
    expect_fail("{\"protocol\":1.0}", -EPROTO);
    expect_fail("{\"protocol\":true}", -EPROTO);
    expect_fail("{\"protocol\":[1]}", -EPROTO);
    expect_fail("{\"Protocol\":1}", -EPROTO);
}

Test(hello, unsupported_version)
{
    expect_fail("{\"protocol\":2}", -EPROTONOSUPPORT);
    expect_fail("{\"protocol\":0}", -EPROTONOSUPPORT);
    expect_fail("{\"protocol\":-1}", -EPROTONOSUPPORT);
    /* 2^32 + 1: an int cast would see 1. */
    expect_fail("{\"protocol\":4294967297}", -EPROTONOSUPPORT);
    expect_fail("{\"protocol\":99999999999999999999999}", -EPROTONOSUPPORT);
}

Test(hello, option_types)
{
    expect_fail("{\"protocol\":1,\"name\":5}", -EINVAL);
    expect_fail("{\"protocol\":1,\"name\":null}", -EINVAL);
    expect_fail("{\"protocol\":1,\"name\":[\"x\"]}", -EINVAL);
    expect_fail("{\"protocol\":1,\"echo\":\"true\"}", -EINVAL);
    expect_fail("{\"protocol\":1,\"echo\":1}", -EINVAL);
    expect_fail("{\"protocol\":1,\"echo\":null}", -EINVAL);
    expect_fail("{\"protocol\":1,\"name\":\"ok\",\"echo\":0}", -EINVAL);
}

Test(hello, version_is_judged_before_the_options)
{
    /* The broker says ERR 10, which tells the client what to fix first. */
    expect_fail("{\"protocol\":2,\"name\":5,\"echo\":\"x\"}", -EPROTONOSUPPORT);
}

Test(hello, long_name_is_cut)
{
    char json[512];
    char name[300];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    snprintf(json, sizeof(json), "{\"protocol\":1,\"name\":\"%s\"}", name);
    struct handshake_hello h = expect_ok(json);
    cr_assert_eq(strlen(h.name), HELLO_NAME_MAX);
    cr_assert(memcmp(h.name, name, HELLO_NAME_MAX) == 0);

    /* Exactly HELLO_NAME_MAX bytes are kept whole. */
    name[HELLO_NAME_MAX] = '\0';
    snprintf(json, sizeof(json), "{\"protocol\":1,\"name\":\"%s\"}", name);
    h = expect_ok(json);
    cr_assert_str_eq(h.name, name);
}

Test(hello, name_stops_at_nul)
{
    struct handshake_hello h = expect_ok("{\"protocol\":1,\"name\":\"ab\\u0000cd\"}");
    cr_assert(h.has_name);
    cr_assert_str_eq(h.name, "ab");
}

Test(hello, reads_exactly_len_bytes)
{
    /* What follows the given bytes must not matter either way. */
    static const char valid_then_junk[] = "{\"protocol\":1}junk";
    struct handshake_hello h;
    cr_assert_eq(handshake_hello_parse((const uint8_t *)valid_then_junk, 14, &h), 0);
    static const char cut[] = "{\"protocol\":1}";
    cr_assert_eq(handshake_hello_parse((const uint8_t *)cut, sizeof(cut) - 2, &h), -EPROTO);
    /* A NUL inside the payload is a trailing byte, not an end. */
    cr_assert_eq(parse_len("{\"protocol\":1}\0", 15, &h), -EPROTO);
    cr_assert_eq(parse_len("{\"protocol\":1}", 0, &h), -EPROTO);
}

Test(hello, length_beyond_int_is_refused_unread)
{
    /* json-c takes an int length: a larger one is refused before any byte
     * is read (the buffer here is far shorter than the length claims). */
    static const uint8_t tiny[1] = {'{'};
    struct handshake_hello h;
    cr_assert_eq(handshake_hello_parse(tiny, (size_t)INT_MAX + 1, &h), -EPROTO);
    cr_assert_eq(handshake_hello_parse(tiny, SIZE_MAX, &h), -EPROTO);
}

Test(hello, deep_nesting_is_refused)
{
    enum { DEPTH = 100000 };
    char *json = malloc(2 * DEPTH + 32);
    cr_assert_not_null(json);
    size_t n = (size_t)sprintf(json, "{\"protocol\":1,\"x\":");
    memset(json + n, '[', DEPTH);
    memset(json + n + DEPTH, ']', DEPTH);
    json[n + 2 * DEPTH] = '}';
    json[n + 2 * DEPTH + 1] = '\0';
    struct handshake_hello h;
    cr_assert_eq(parse(json, &h), -EPROTO);
    free(json);
}

/* ---- names are printable UTF-8 ---- */

/* Parse {"protocol":1,"name":"<raw>"} with `raw` spliced in byte for byte
 * (JSON escapes and raw bytes alike), and return the name kept. */
static struct handshake_hello expect_name(const void *raw, size_t raw_len)
{
    static const char head[] = "{\"protocol\":1,\"name\":\"";
    static const char tail[] = "\"}";
    uint8_t json[1024];
    cr_assert_lt(sizeof(head) + raw_len + sizeof(tail), sizeof(json));
    size_t n = 0;
    memcpy(json + n, head, sizeof(head) - 1);
    n += sizeof(head) - 1;
    memcpy(json + n, raw, raw_len);
    n += raw_len;
    memcpy(json + n, tail, sizeof(tail) - 1);
    n += sizeof(tail) - 1;
    struct handshake_hello h;
    int r = parse_len(json, n, &h);
    cr_assert_eq(r, 0, "handshake_hello_parse(name [%.*s]) = %d", (int)raw_len, (const char *)raw,
                 r);
    cr_assert(h.has_name);
    return h;
}

#define FFFD "\xEF\xBF\xBD"

static void expect_clean_name(const char *raw, const char *want)
{
    struct handshake_hello h = expect_name(raw, strlen(raw));
    cr_assert_str_eq(h.name, want, "name from [%s]", raw);
}

Test(hello, name_keeps_printable_utf8)
{
    expect_clean_name("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80",
                      "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
    expect_clean_name("caf\\u00e9 \\\"q\\\" a\\\\b", "caf\xC3\xA9 \"q\" a\\b");
    expect_clean_name("sockbus sub", "sockbus sub");
}

Test(hello, name_control_characters_become_replacement_characters)
{
    /* A newline that would forge a log line, escaped or raw. */
    expect_clean_name("x\\nsockbusd: client 9 connected", "x" FFFD "sockbusd: client 9 connected");
    expect_clean_name("x\nsockbusd: client 9 connected", "x" FFFD "sockbusd: client 9 connected");
    /* ESC [ (a terminal escape), as a JSON escape and raw. */
    expect_clean_name("\\u001b[31mred", FFFD "[31mred");
    expect_clean_name("\x1b[31mred", FFFD "[31mred");
    /* C1 CSI U+009B, escaped and as its two raw UTF-8 bytes; and DEL. */
    expect_clean_name("\\u009b2J", FFFD "2J");
    expect_clean_name("\xC2\x9B"
                      "2J",
                      FFFD "2J");
    expect_clean_name("a\x7F"
                      "b\\t",
                      "a" FFFD "b" FFFD);
}

Test(hello, name_invalid_utf8_becomes_replacement_characters)
{
    expect_clean_name("\xFF", FFFD);
    expect_clean_name("a\xFF\xFE"
                      "b",
                      "a" FFFD FFFD "b");
    expect_clean_name("\xC0\xAF", FFFD FFFD);          /* overlong: two subparts */
    expect_clean_name("\xE2\x82z", FFFD "z");          /* cut short: one subpart */
    expect_clean_name("\xED\xA0\x80", FFFD FFFD FFFD); /* a surrogate */
    /* A lone surrogate written as a JSON escape ends up printable too,
     * whatever json-c makes of it. */
    struct handshake_hello h = expect_name("\\ud800x", 7);
    cr_assert(strstr(h.name, "x") != NULL);
    for (const unsigned char *p = (const unsigned char *)h.name; *p != '\0';) {
        cr_assert(*p >= 0x20 && *p != 0x7F, "control byte %02x in the name", *p);
        p++;
    }
}

Test(hello, name_cut_never_splits_a_character)
{
    /* 43 three-byte characters are 129 bytes: the last does not fit. */
    char raw[256] = "";
    for (int i = 0; i < 43; i++) {
        strcat(raw, "\xE2\x82\xAC");
    }
    struct handshake_hello h = expect_name(raw, strlen(raw));
    cr_assert_eq(strlen(h.name), 126);
    cr_assert(memcmp(h.name, raw, 126) == 0);
    /* Replacements count what they take in the name, not what they stand
     * for: 128 invalid bytes keep 42 U+FFFD (126 bytes). */
    memset(raw, 0xFF, 128);
    h = expect_name(raw, 128);
    cr_assert_eq(strlen(h.name), 126);
    for (size_t i = 0; i < 126; i += 3) {
        cr_assert(memcmp(h.name + i, FFFD, 3) == 0);
    }
}

/* ---- the HELLO encoder ---- */

/* Encode, check the text is NUL terminated at *len, parse it back. */
static struct handshake_hello hello_round_trip(const char *name, bool echo)
{
    char *json = NULL;
    size_t len = 0;
    cr_assert_eq(handshake_hello_encode(name, echo, &json, &len), 0);
    cr_assert_not_null(json);
    cr_assert_eq(strlen(json), len);
    struct handshake_hello h;
    int r = parse_len(json, len, &h);
    cr_assert_eq(r, 0, "parsing the encoded HELLO %s = %d", json, r);
    free(json);
    cr_assert_eq(h.protocol, 1);
    cr_assert_eq(h.echo, echo);
    cr_assert_eq(h.has_name, name != NULL);
    return h;
}

Test(hello, encoder_writes_what_the_protocol_shows)
{
    char *json = NULL;
    size_t len = 0;
    cr_assert_eq(handshake_hello_encode("sockbus sub", true, &json, &len), 0);
    cr_assert_str_eq(json, "{\"protocol\":1,\"name\":\"sockbus sub\",\"echo\":true}");
    free(json);
    cr_assert_eq(handshake_hello_encode(NULL, false, &json, &len), 0);
    cr_assert_str_eq(json, "{\"protocol\":1,\"echo\":false}");
    cr_assert_eq(len, strlen(json));
    free(json);
}

Test(hello, encode_then_parse_gives_back_what_went_in)
{
    struct handshake_hello h = hello_round_trip(NULL, true);
    cr_assert_str_eq(h.name, "");
    hello_round_trip(NULL, false);
    h = hello_round_trip("", true);
    cr_assert_str_eq(h.name, "");
    /* What JSON must escape, and UTF-8, come back byte for byte. */
    static const char *names[] = {
        "svc-a",
        "a \"quoted\" name",
        "back\\slash and /slash",
        "caf\xC3\xA9 \xE2\x82\xAC",
        "\xF0\x9F\x98\x80",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        h = hello_round_trip(names[i], i % 2 == 0);
        cr_assert_str_eq(h.name, names[i]);
    }
}

Test(hello, encoder_sends_a_long_name_whole_and_the_parser_cuts_it)
{
    char name[300];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    char *json = NULL;
    size_t len = 0;
    cr_assert_eq(handshake_hello_encode(name, true, &json, &len), 0);
    cr_assert(strstr(json, name) != NULL, "the client sends its whole name");
    free(json);
    struct handshake_hello h = hello_round_trip(name, true);
    cr_assert_eq(strlen(h.name), HELLO_NAME_MAX);
    /* A name with a control character is sent as given (escaped by JSON)
     * and cleaned by the parser. */
    h = hello_round_trip("a\nb", true);
    cr_assert_str_eq(h.name, "a" FFFD "b");
}

/* ---- WELCOME ---- */

static int welcome_parse_len(const void *json, size_t len, struct handshake_welcome *out)
{
    uint8_t *p = exact_new(json, len);
    int r = handshake_welcome_parse(p, len, out);
    free(p);
    return r;
}

static struct handshake_welcome welcome_ok(const char *json)
{
    struct handshake_welcome w;
    int r = welcome_parse_len(json, strlen(json), &w);
    cr_assert_eq(r, 0, "handshake_welcome_parse(%s) = %d (%s)", json, r, strerror(-r));
    return w;
}

static void welcome_fail(const void *json, size_t len, int want)
{
    struct handshake_welcome w;
    struct handshake_welcome before;
    memset(&w, 0xA5, sizeof(w));
    memcpy(&before, &w, sizeof(w));
    int r = welcome_parse_len(json, len, &w);
    cr_assert_eq(r, want, "handshake_welcome_parse(%.*s) = %d (%s), expected %d", (int)len,
                 (const char *)json, r, strerror(-r), want);
    cr_assert(memcmp(&w, &before, sizeof(w)) == 0, "wrote *out on failure");
}

static void welcome_fail_str(const char *json)
{
    welcome_fail(json, strlen(json), -EPROTO);
}

/* What a broker with default limits says to its first client. */
static struct handshake_welcome first_welcome(void)
{
    struct handshake_welcome w = {
        .protocol = 1,
        .client_id = 1,
        .max_frame = 1114112,
        .max_pending = 8388608,
    };
    strcpy(w.server, "sockbusd");
    strcpy(w.version, "0.1.0");
    strcpy(w.inbox_prefix, "_INBOX.1.");
    return w;
}

Test(welcome, encoder_writes_what_the_protocol_shows)
{
    struct handshake_welcome w = first_welcome();
    char *json = NULL;
    size_t len = 0;
    cr_assert_eq(handshake_welcome_encode(&w, &json, &len), 0);
    cr_assert_str_eq(json, "{\"protocol\":1,\"server\":\"sockbusd\",\"version\":\"0.1.0\","
                           "\"client_id\":1,\"max_frame\":1114112,\"max_pending\":8388608,"
                           "\"inbox_prefix\":\"_INBOX.1.\"}");
    cr_assert_eq(len, strlen(json));
    free(json);
}

static void welcome_round_trip(const struct handshake_welcome *w)
{
    char *json = NULL;
    size_t len = 0;
    cr_assert_eq(handshake_welcome_encode(w, &json, &len), 0);
    struct handshake_welcome back;
    memset(&back, 0xA5, sizeof(back));
    int r = welcome_parse_len(json, len, &back);
    cr_assert_eq(r, 0, "parsing the encoded WELCOME %s = %d", json, r);
    free(json);
    cr_assert_eq(back.protocol, w->protocol);
    cr_assert_eq(back.client_id, w->client_id);
    cr_assert_eq(back.max_frame, w->max_frame);
    cr_assert_eq(back.max_pending, w->max_pending);
    cr_assert_str_eq(back.server, w->server);
    cr_assert_str_eq(back.version, w->version);
    cr_assert_str_eq(back.inbox_prefix, w->inbox_prefix);
}

Test(welcome, encode_then_parse_gives_back_what_went_in)
{
    struct handshake_welcome w = first_welcome();
    welcome_round_trip(&w);
    /* The extremes of each number. */
    w.client_id = UINT64_MAX >> 1;
    w.max_frame = UINT32_MAX;
    w.max_pending = (uint64_t)INT64_MAX;
    welcome_round_trip(&w);
    w.max_frame = 16;
    w.max_pending = 0;
    snprintf(w.inbox_prefix, sizeof(w.inbox_prefix), "_INBOX.%llu.",
             (unsigned long long)w.client_id);
    /* Text that JSON escapes, and the longest text that fits. */
    strcpy(w.version, "0.1.0 \"dev\" /\\");
    memset(w.server, 's', sizeof(w.server) - 1);
    w.server[sizeof(w.server) - 1] = '\0';
    welcome_round_trip(&w);
}

Test(welcome, missing_keys_read_as_zero_and_unknown_keys_are_ignored)
{
    struct handshake_welcome w = welcome_ok("{}");
    cr_assert_eq(w.protocol, 0);
    cr_assert_eq(w.client_id, 0);
    cr_assert_eq(w.max_frame, 0);
    cr_assert_eq(w.max_pending, 0);
    cr_assert_str_eq(w.server, "");
    cr_assert_str_eq(w.version, "");
    cr_assert_str_eq(w.inbox_prefix, "");

    w = welcome_ok(" {\"client_id\":7,\"future\":{\"x\":[1,null]},\"max_frame\":4096} \n");
    cr_assert_eq(w.client_id, 7);
    cr_assert_eq(w.max_frame, 4096);
}

Test(welcome, values_of_the_wrong_type_or_range_are_ignored)
{
    struct handshake_welcome w =
        welcome_ok("{\"protocol\":\"1\",\"client_id\":1.5,\"max_frame\":\"4096\","
                   "\"max_pending\":true,\"server\":1,\"version\":null,\"inbox_prefix\":[]}");
    cr_assert_eq(w.protocol, 0);
    cr_assert_eq(w.client_id, 0);
    cr_assert_eq(w.max_frame, 0);
    cr_assert_eq(w.max_pending, 0);
    cr_assert_str_eq(w.server, "");
    cr_assert_str_eq(w.version, "");
    cr_assert_str_eq(w.inbox_prefix, "");

    /* max_frame must be a frame size: 16..UINT32_MAX. */
    cr_assert_eq(welcome_ok("{\"max_frame\":15}").max_frame, 0);
    cr_assert_eq(welcome_ok("{\"max_frame\":0}").max_frame, 0);
    cr_assert_eq(welcome_ok("{\"max_frame\":-4096}").max_frame, 0);
    cr_assert_eq(welcome_ok("{\"max_frame\":4294967296}").max_frame, 0);
    cr_assert_eq(welcome_ok("{\"max_frame\":16}").max_frame, 16);
    cr_assert_eq(welcome_ok("{\"max_frame\":4294967295}").max_frame, UINT32_MAX);
    cr_assert_eq(welcome_ok("{\"max_pending\":-1}").max_pending, 0);
}

Test(welcome, long_text_is_cut_on_a_character_boundary)
{
    /* 21 three-byte characters are 63 bytes and fit beside the NUL; a
     * 22nd does not, nor does a two-byte one after 62 bytes. */
    char json[512] = "{\"version\":\"";
    for (int i = 0; i < 22; i++) {
        strcat(json, "\xE2\x82\xAC");
    }
    strcat(json, "\"}");
    struct handshake_welcome w = welcome_ok(json);
    cr_assert_eq(strlen(w.version), 63);
    snprintf(json, sizeof(json), "{\"inbox_prefix\":\"%062d\xC3\xA9\"}", 0);
    w = welcome_ok(json);
    cr_assert_eq(strlen(w.inbox_prefix), 62);
    /* Text stops at a NUL. */
    w = welcome_ok("{\"server\":\"sock\\u0000busd\"}");
    cr_assert_str_eq(w.server, "sock");
}

Test(welcome, every_error_of_the_parser)
{
    /* Not JSON, not one whole object, not an object. */
    welcome_fail_str("");
    welcome_fail_str("{");
    welcome_fail_str("{\"client_id\":1");
    welcome_fail_str("client_id=1");
    welcome_fail_str("{}garbage");
    welcome_fail_str("{}{}");
    welcome_fail_str("[{}]");
    welcome_fail_str("1");
    welcome_fail_str("\"welcome\"");
    welcome_fail_str("null");
    welcome_fail("{}\0", 3, -EPROTO);
    /* Exactly len bytes are read. */
    struct handshake_welcome w;
    static const char cut[] = "{\"client_id\":12}";
    cr_assert_eq(handshake_welcome_parse((const uint8_t *)cut, sizeof(cut) - 2, &w), -EPROTO);
    cr_assert_eq(handshake_welcome_parse((const uint8_t *)"{}junk", 2, &w), 0);
    /* A length json-c cannot take is refused before any byte is read. */
    static const uint8_t tiny[1] = {'{'};
    cr_assert_eq(handshake_welcome_parse(tiny, (size_t)INT_MAX + 1, &w), -EPROTO);
    cr_assert_eq(handshake_welcome_parse(tiny, SIZE_MAX, &w), -EPROTO);
    /* Nesting deeper than json-c's limit. */
    enum { DEPTH = 100000 };
    char *deep = malloc(2 * DEPTH + 32);
    cr_assert_not_null(deep);
    size_t n = (size_t)sprintf(deep, "{\"x\":");
    memset(deep + n, '[', DEPTH);
    memset(deep + n + DEPTH, ']', DEPTH);
    deep[n + 2 * DEPTH] = '}';
    welcome_fail(deep, n + 2 * DEPTH + 1, -EPROTO);
    free(deep);
}
