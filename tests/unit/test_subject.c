/*
 * test_subject.c - unit tests of the subject and pattern rules
 * (libclient/wire/subject.c; docs/protocol.md, "Subjects and patterns").
 *
 * Two tables: what sb_subject_valid() and sb_pattern_valid() accept, and
 * what sb_pattern_match() matches, including the '$' rule. A brute-force
 * comparison against a small reference matcher written from the protocol's
 * rules backs the hand-written matching table up. Then the one tokenizer,
 * the `$` rule on its own, and subject_pattern_covers(): a table, and a
 * brute force that holds it to matching in both directions.
 *
 * Every string goes to the code under test as an exact-size heap copy with
 * no terminator, so a read past the given length shows under
 * -Db_sanitize=address: lengths are explicit in this API.
 */
#include <criterion/criterion.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockbus.h"
#include "subject.h"

/* An unterminated heap copy of s[0..len), placed so that s + len is the
 * end of the block. */
static char *exact_new(const char *s, size_t len)
{
    char *block = malloc(len + 1);
    cr_assert_not_null(block);
    block[0] = '#';
    if (len > 0) {
        memcpy(block + 1, s, len);
    }
    return block + 1;
}

static void exact_free(char *p)
{
    free(p - 1);
}

static bool subject_valid(const char *s, size_t len)
{
    char *copy = exact_new(s, len);
    bool r = sb_subject_valid(copy, len);
    exact_free(copy);
    return r;
}

static bool pattern_valid(const char *s, size_t len)
{
    char *copy = exact_new(s, len);
    bool r = sb_pattern_valid(copy, len);
    exact_free(copy);
    return r;
}

static bool match(const char *pattern, size_t pattern_len, const char *subject, size_t subject_len)
{
    char *p = exact_new(pattern, pattern_len);
    char *s = exact_new(subject, subject_len);
    bool r = sb_pattern_match(p, pattern_len, s, subject_len);
    exact_free(p);
    exact_free(s);
    return r;
}

/* A printable rendering of s[0..len) for failure messages. */
static const char *show(const char *s, size_t len)
{
    static char buf[4][128];
    static int which;
    char *out = buf[which++ % 4];
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < sizeof(buf[0]); i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '\\') {
            out[o++] = (char)c;
        } else {
            o += (size_t)snprintf(out + o, 5, "\\x%02X", c);
        }
    }
    if (len > 0 && o + 5 >= sizeof(buf[0])) {
        memcpy(out + o - 3, "...", 3);
    }
    out[o] = '\0';
    return out;
}

/* ------------------------------------------------------------------------ */
/* Validation                                                               */

struct valid_case {
    const char *s;
    size_t len;
    bool subject; /* sb_subject_valid() */
    bool pattern; /* sb_pattern_valid() */
};

/* sizeof, not strlen: some cases hold a NUL. */
#define V(lit, subj, pat)                                                                          \
    {                                                                                              \
        lit, sizeof(lit) - 1, subj, pat                                                            \
    }

static const struct valid_case valid_cases[] = {
    V("", false, false),
    /* One byte. */
    V("a", true, true),
    V("Z", true, true),
    V("0", true, true),
    V("!", true, true), /* 0x21, lowest token byte */
    V("~", true, true), /* 0x7E, highest token byte */
    V("$", true, true),
    V("_", true, true),
    V(".", false, false),
    V(" ", false, false),
    /* Ordinary subjects. */
    V("a.b", true, true),
    V("foo.bar.baz", true, true),
    V("orders.eu-west.42", true, true),
    V("$SYS.STATS", true, true),
    V("$SYS.EVENT.CONNECT", true, true),
    V("_INBOX.1.x", true, true),
    V("a$b.c#d.e%f", true, true),
    V("!\"#$%&'()+,-/:;<=?@[\\]^_`{|}~", true, true),
    /* Empty tokens. */
    V(".a", false, false),
    V("a.", false, false),
    V("a..b", false, false),
    V("..", false, false),
    V("a.b.", false, false),
    V(".a.b", false, false),
    /* Bytes outside 0x21..0x7E. */
    V("a b", false, false),
    V(" a", false, false),
    V("a ", false, false),
    V("a.\x20.b", false, false),
    V("a\tb", false, false),
    V("\t", false, false),
    V("a\nb", false, false),
    V("a\rb", false, false),
    V("a\x1F", false, false),
    V("a\x7F", false, false),
    V("\x7F", false, false),
    V("\x80", false, false),
    V("a.\x80", false, false),
    V("caf\xC3\xA9", false, false),
    V("\xFF", false, false),
    V("a\xFE.b", false, false),
    V("a\0b", false, false),
    V("\0", false, false),
    /* Wildcards as whole tokens: patterns only. */
    V("*", false, true),
    V(">", false, true),
    V("a.*", false, true),
    V("*.a", false, true),
    V("a.>", false, true),
    V("*.*", false, true),
    V("*.>", false, true),
    V("a.*.c", false, true),
    V("a.*.c.>", false, true),
    V("$SYS.>", false, true),
    V("$SYS.*", false, true),
    V("_INBOX.>", false, true),
    /* Wildcards inside tokens: never. */
    V("a*", false, false),
    V("*x", false, false),
    V("a*b", false, false),
    V("a>", false, false),
    V(">x", false, false),
    V("a>b", false, false),
    V("**", false, false),
    V(">>", false, false),
    V("*>", false, false),
    V(">*", false, false),
    V("a.b*", false, false),
    V("a.*b.c", false, false),
    V("a.b>", false, false),
    /* '>' not last. */
    V("a.>.b", false, false),
    V(">.a", false, false),
    V(">.>", false, false),
    V(">.*", false, false),
    V("a.>.>", false, false),
    /* Wildcards next to empty tokens. */
    V("*.", false, false),
    V(".*", false, false),
    V(">.", false, false),
    V(".>", false, false),
    V("a..*", false, false),
    V("a.*.", false, false),
    V("a.>.", false, false),
};

Test(subject, validation_table)
{
    for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
        const struct valid_case *c = &valid_cases[i];
        cr_expect_eq(subject_valid(c->s, c->len), c->subject, "sb_subject_valid(\"%s\") != %s",
                     show(c->s, c->len), c->subject ? "true" : "false");
        cr_expect_eq(pattern_valid(c->s, c->len), c->pattern, "sb_pattern_valid(\"%s\") != %s",
                     show(c->s, c->len), c->pattern ? "true" : "false");
    }
}

/* Subjects are patterns without wildcards: every valid subject is a valid
 * pattern, and adding a wildcard token makes it an invalid subject. */
Test(subject, subjects_never_accept_wildcards)
{
    static const char *const wild[] = {"*", ">", "a.*", "a.>", "*.a", "*.*", "a.*.c.>", "$SYS.>"};
    for (size_t i = 0; i < sizeof(wild) / sizeof(wild[0]); i++) {
        cr_expect_not(subject_valid(wild[i], strlen(wild[i])), "subject \"%s\"", wild[i]);
        cr_expect(pattern_valid(wild[i], strlen(wild[i])), "pattern \"%s\"", wild[i]);
    }
    for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
        const struct valid_case *c = &valid_cases[i];
        if (c->subject) {
            cr_expect(pattern_valid(c->s, c->len), "\"%s\"", show(c->s, c->len));
        }
    }
    /* Every position of a 5-token subject turned into a '*' token. */
    char buf[] = "aa.bb.cc.dd.ee";
    for (size_t t = 0; t < 5; t++) {
        char s[32];
        size_t n = 0;
        for (size_t k = 0; k < 5; k++) {
            if (k > 0) {
                s[n++] = '.';
            }
            if (k == t) {
                s[n++] = '*';
            } else {
                s[n++] = buf[3 * k];
                s[n++] = buf[3 * k + 1];
            }
        }
        cr_expect_not(subject_valid(s, n), "\"%s\"", show(s, n));
        cr_expect(pattern_valid(s, n), "\"%s\"", show(s, n));
    }
}

Test(subject, length_limits)
{
    char buf[SB_SUBJECT_MAX + 2];
    cr_assert_eq(SB_SUBJECT_MAX, 1024);

    /* One long token. */
    memset(buf, 'a', sizeof(buf));
    cr_expect(subject_valid(buf, 1024));
    cr_expect(pattern_valid(buf, 1024));
    cr_expect_not(subject_valid(buf, 1025));
    cr_expect_not(pattern_valid(buf, 1025));
    cr_expect_not(subject_valid(buf, 1026));

    /* Many tokens: "a.a.a...a" of 1023 bytes, then 1025 ("a.a...a.aa"
     * would be 1025 too, so extend the last token). */
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (i % 2) ? '.' : 'a';
    }
    cr_expect(subject_valid(buf, 1023));
    buf[1023] = 'b'; /* "a.a...a" + "b": 1024 bytes, last token "ab" */
    cr_expect(subject_valid(buf, 1024));
    buf[1024] = 'c';
    cr_expect_not(subject_valid(buf, 1025));
    cr_expect_not(pattern_valid(buf, 1025));

    /* A 1024-byte pattern ending in '>' is fine; 1025 is not. */
    memset(buf, 'x', sizeof(buf));
    buf[1022] = '.';
    buf[1023] = '>';
    cr_expect(pattern_valid(buf, 1024));
    cr_expect_not(subject_valid(buf, 1024));
    memset(buf, 'x', sizeof(buf));
    buf[1023] = '.';
    buf[1024] = '>';
    cr_expect(pattern_valid(buf + 1, 1024));
    cr_expect_not(pattern_valid(buf, 1025));

    /* The whole length is checked: a bad last byte of 1024. */
    memset(buf, 'a', sizeof(buf));
    buf[1023] = ' ';
    cr_expect_not(subject_valid(buf, 1024));
    cr_expect_not(pattern_valid(buf, 1024));
    buf[1023] = '.';
    cr_expect_not(subject_valid(buf, 1024));
}

Test(subject, explicit_lengths)
{
    /* Only len bytes count: what follows is not looked at. */
    cr_expect(subject_valid("a.b.c", 3));
    cr_expect(subject_valid("a.", 1));
    cr_expect(subject_valid("ab*", 2));
    cr_expect(subject_valid("ab c", 2));
    cr_expect_not(subject_valid("a.b", 2)); /* "a." */
    cr_expect(pattern_valid("a.>.b", 3));
    cr_expect_not(pattern_valid("a.>.b", 4));
    cr_expect_not(subject_valid("a", 0));
    cr_expect_not(pattern_valid("*", 0));
}

Test(subject, null_and_empty)
{
    cr_expect_not(sb_subject_valid(NULL, 0));
    cr_expect_not(sb_subject_valid(NULL, 5));
    cr_expect_not(sb_pattern_valid(NULL, 0));
    cr_expect_not(sb_pattern_valid(NULL, 5));
    cr_expect_not(sb_subject_valid("", 0));
    cr_expect_not(sb_pattern_valid("", 0));

    cr_expect_not(sb_pattern_match(NULL, 0, "a", 1));
    cr_expect_not(sb_pattern_match("a", 1, NULL, 0));
    cr_expect_not(sb_pattern_match(NULL, 0, NULL, 0));
    cr_expect_not(sb_pattern_match("", 0, "", 0));
    cr_expect_not(match("a", 0, "a", 1));
    cr_expect_not(match("a", 1, "a", 0));
    cr_expect_not(match(">", 1, "a", 0));
    cr_expect_not(match("*", 1, "a", 0));
    cr_expect_not(match(">", 0, "a", 1));
}

/* ------------------------------------------------------------------------ */
/* Matching                                                                 */

struct match_case {
    const char *pattern;
    const char *subject;
    bool want;
};

static const struct match_case match_cases[] = {
    /* Literal. */
    {"a", "a", true},
    {"a", "b", false},
    {"a", "ab", false},
    {"ab", "a", false},
    {"a.b", "a.b", true},
    {"a.b", "a.c", false},
    {"a.b", "a.bc", false},
    {"a.bc", "a.b", false},
    {"a.b", "a", false},
    {"a", "a.b", false},
    {"a.b", "a.b.c", false},
    {"a.b.c", "a.b", false},
    {"foo.bar", "foo.baz", false},
    {"A", "a", false},
    /* '*': exactly one token. */
    {"*", "a", true},
    {"*", "abc", true},
    {"*", "a.b", false},
    {"a.*", "a.b", true},
    {"a.*", "a.bcd", true},
    {"a.*", "a", false},
    {"a.*", "a.b.c", false},
    {"a.*", "b.c", false},
    {"*.b", "a.b", true},
    {"*.b", "a.c", false},
    {"*.b", "b", false},
    {"a.*.c", "a.b.c", true},
    {"a.*.c", "a.c", false},
    {"a.*.c", "a.b.b.c", false},
    {"*.*", "a.b", true},
    {"*.*", "a", false},
    {"*.*", "a.b.c", false},
    /* '>': one or more tokens. */
    {">", "a", true},
    {">", "a.b.c", true},
    {"a.>", "a.b", true},
    {"a.>", "a.b.c.d", true},
    {"a.>", "a", false},
    {"a.>", "b.c", false},
    {"a.>", "ab.c", false},
    {"a.b.>", "a.b.c", true},
    {"a.b.>", "a.b", false},
    {"a.b.>", "a.c.d", false},
    {"*.>", "a.b", true},
    {"*.>", "a", false},
    /* Mixed. */
    {"a.*.c.>", "a.b.c.d", true},
    {"a.*.c.>", "a.x.c.d.e.f", true},
    {"a.*.c.>", "a.b.c", false},
    {"a.*.c.>", "a.b.x.d", false},
    {"a.*.c.>", "a.c.d", false},
    {"a.*.c.>", "b.b.c.d", false},
    {"a.*.c.>", "a.b.b.c.d", false},
    /* The '$' rule: a leading wildcard never matches a '$' first token. */
    {"*", "$SYS", false},
    {">", "$SYS.STATS", false},
    {">", "$", false},
    {"*", "$x", false},
    {"*.STATS", "$SYS.STATS", false},
    {"*.>", "$SYS.STATS", false},
    {"*.*", "$SYS.STATS", false},
    {"$SYS.>", "$SYS.STATS", true},
    {"$SYS.>", "$SYS.EVENT.CONNECT", true},
    {"$SYS.*", "$SYS.STATS", true},
    {"$SYS.*", "$SYS.EVENT.CONNECT", false},
    {"$SYS.STATS", "$SYS.STATS", true},
    {"$SYS.*.CONNECT", "$SYS.EVENT.CONNECT", true},
    {"$SYS", "$SYS", true},
    /* Only the first token, and only a leading '$'. */
    {"a.>", "a.$x", true},
    {"a.*", "a.$x", true},
    {"*.$x", "a.$x", true},
    {"*", "x$", true},
    {">", "x$.y", true},
    {">", "_INBOX.1.x", true},
    {"_INBOX.>", "_INBOX.1.x", true},
    {"_INBOX.*", "_INBOX.1.x", false},
    {"_INBOX.*.x", "_INBOX.1.x", true},
};

Test(subject, matching_table)
{
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        const struct match_case *c = &match_cases[i];
        size_t pl = strlen(c->pattern);
        size_t sl = strlen(c->subject);
        /* The table must hold only valid inputs, as the API requires. */
        cr_assert(sb_pattern_valid(c->pattern, pl), "table: bad pattern \"%s\"", c->pattern);
        cr_assert(sb_subject_valid(c->subject, sl), "table: bad subject \"%s\"", c->subject);
        cr_expect_eq(match(c->pattern, pl, c->subject, sl), c->want,
                     "sb_pattern_match(\"%s\", \"%s\") != %s", c->pattern, c->subject,
                     c->want ? "true" : "false");
    }
}

Test(subject, matching_explicit_lengths)
{
    cr_expect(match("a.b.c", 3, "a.b", 3));
    cr_expect(match("a.bXYZ", 3, "a.b.c", 3));
    cr_expect_not(match("a.b", 3, "a.b.c", 5));
    cr_expect(match("a.>", 3, "a.b.c", 3));
    cr_expect_not(match("a.>", 3, "a.b.c", 1));
    cr_expect(match("*.c", 1, "abc.d", 3));
}

/* Every valid subject matches itself; '>' matches it unless it starts
 * with '$'. */
Test(subject, literal_and_full_wildcard_properties)
{
    for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
        const struct valid_case *c = &valid_cases[i];
        if (!c->subject) {
            continue;
        }
        cr_expect(match(c->s, c->len, c->s, c->len), "\"%s\" vs itself", show(c->s, c->len));
        bool dollar = c->s[0] == '$';
        cr_expect_eq(match(">", 1, c->s, c->len), !dollar, "\">\" vs \"%s\"", show(c->s, c->len));
        cr_expect_eq(match("*", 1, c->s, c->len), !dollar && memchr(c->s, '.', c->len) == NULL,
                     "\"*\" vs \"%s\"", show(c->s, c->len));
    }
}

/*
 * sb_pattern_match() requires valid inputs, but a broker fed garbage must
 * still not read out of bounds: arbitrary short strings over the bytes that
 * matter, each in an exact-size buffer (an over-read shows under ASan).
 * Where both happen to be valid, a literal pattern matches only itself.
 */
Test(subject, matching_memory_safe_on_any_input)
{
    static const char alphabet[] = {'a', 'b', '.', '*', '>', '$'};
    uint32_t seed = 12345;
    size_t both_valid = 0;
    for (int i = 0; i < 100000; i++) {
        char p[8];
        char s[8];
        seed = seed * 1103515245u + 12345u;
        size_t pl = 1 + (seed >> 16) % 7;
        seed = seed * 1103515245u + 12345u;
        size_t sl = 1 + (seed >> 16) % 7;
        for (size_t k = 0; k < pl; k++) {
            seed = seed * 1103515245u + 12345u;
            p[k] = alphabet[(seed >> 16) % sizeof(alphabet)];
        }
        for (size_t k = 0; k < sl; k++) {
            seed = seed * 1103515245u + 12345u;
            s[k] = alphabet[(seed >> 16) % sizeof(alphabet)];
        }
        bool m = match(p, pl, s, sl);
        if (sb_subject_valid(p, pl) && sb_subject_valid(s, sl)) {
            both_valid++;
            bool same = pl == sl && memcmp(p, s, pl) == 0;
            if (m != same) {
                cr_assert_fail("literal \"%s\" vs \"%s\": %d", show(p, pl), show(s, sl), m);
            }
        }
    }
    cr_assert_gt(both_valid, 100);
}

/* ------------------------------------------------------------------------ */
/* Brute force against a reference matcher written from the protocol.       */

#define MAX_TOKENS 4

static const char *const subject_tokens[] = {"a", "b", "$a", "ab"};
#define N_SUBJECT_TOKENS 4
static const char *const pattern_tokens[] = {"a", "b", "$a", "ab", "*", ">"};
#define N_PATTERN_TOKENS 6

/* Reference: token lists. */
static bool ref_match(const char *const *p, size_t pn, const char *const *s, size_t sn)
{
    if (pn == 0 || sn == 0) {
        return false;
    }
    bool leading_wild = strcmp(p[0], "*") == 0 || strcmp(p[0], ">") == 0;
    if (leading_wild && s[0][0] == '$') {
        return false;
    }
    size_t i = 0;
    for (; i < pn; i++) {
        if (strcmp(p[i], ">") == 0) {
            return i < sn; /* one or more tokens left */
        }
        if (i >= sn) {
            return false;
        }
        if (strcmp(p[i], "*") != 0 && strcmp(p[i], s[i]) != 0) {
            return false;
        }
    }
    return i == sn;
}

static size_t join(char *out, const char *const *tokens, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            out[len++] = '.';
        }
        size_t tl = strlen(tokens[i]);
        memcpy(out + len, tokens[i], tl);
        len += tl;
    }
    return len;
}

/* Enumerate every token list of length 1..MAX_TOKENS over an alphabet by
 * counting in base `base`; `index` selects one. */
static size_t nth_list(size_t index, size_t base, const char *const *alphabet, const char **out)
{
    size_t n = 1;
    size_t count = base;
    while (index >= count) {
        index -= count;
        n++;
        count *= base;
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = alphabet[index % base];
        index /= base;
    }
    return n;
}

static size_t list_count(size_t base)
{
    size_t total = 0;
    size_t count = 1;
    for (size_t n = 1; n <= MAX_TOKENS; n++) {
        count *= base;
        total += count;
    }
    return total;
}

Test(subject, matching_agrees_with_reference)
{
    size_t n_subjects = list_count(N_SUBJECT_TOKENS);
    size_t n_patterns = list_count(N_PATTERN_TOKENS);
    size_t checked = 0;
    size_t matched = 0;
    size_t failures = 0;

    for (size_t pi = 0; pi < n_patterns; pi++) {
        const char *pt[MAX_TOKENS];
        size_t pn = nth_list(pi, N_PATTERN_TOKENS, pattern_tokens, pt);
        char pbuf[64];
        size_t pl = join(pbuf, pt, pn);
        bool gt_not_last = false;
        for (size_t k = 0; k + 1 < pn; k++) {
            gt_not_last |= strcmp(pt[k], ">") == 0;
        }
        if (pattern_valid(pbuf, pl) != !gt_not_last) {
            cr_expect_fail("pattern_valid(\"%s\") != %d", show(pbuf, pl), !gt_not_last);
            failures++;
        }
        if (gt_not_last) {
            continue; /* sb_pattern_match() requires a valid pattern */
        }
        for (size_t si = 0; si < n_subjects; si++) {
            const char *st[MAX_TOKENS];
            size_t sn = nth_list(si, N_SUBJECT_TOKENS, subject_tokens, st);
            char sbuf[64];
            size_t sl = join(sbuf, st, sn);
            bool want = ref_match(pt, pn, st, sn);
            bool got = match(pbuf, pl, sbuf, sl);
            /* Report mismatches only: half a million passing assertions
             * would swamp the runner. */
            if (got != want) {
                cr_expect_fail("sb_pattern_match(\"%s\", \"%s\") = %d, reference %d",
                               show(pbuf, pl), show(sbuf, sl), got, want);
                failures++;
            }
            if (failures > 20) {
                cr_assert_fail("too many mismatches");
            }
            checked++;
            matched += want;
        }
    }
    /* The enumeration really covered both outcomes. */
    cr_assert_gt(checked, 100000);
    cr_assert_gt(matched, 1000);
    cr_assert_lt(matched, checked);
    cr_assert_eq(failures, 0);
}

/* ------------------------------------------------------------------------ */
/* The tokenizer and the `$` rule.                                          */

/* Split s with subject_next_token() into "tok|tok|..." in out. */
static void tokens_of(const char *s, char *out, size_t out_len)
{
    size_t len = strlen(s);
    char *copy = exact_new(s, len);
    size_t pos = 0;
    size_t o = 0;
    size_t n = 0;
    const char *tok;
    size_t tl;
    out[0] = '\0';
    while (subject_next_token(copy, len, &pos, &tok, &tl)) {
        cr_assert(tok >= copy && tok + tl <= copy + len, "token outside \"%s\"", s);
        cr_assert(tok < copy + len, "a token of \"%s\" points past it", s);
        o += (size_t)snprintf(out + o, out_len - o, "%s%.*s", n++ > 0 ? "|" : "", (int)tl, tok);
        cr_assert_lt(o, out_len);
    }
    /* Done means done: *pos past the end, nothing written. */
    tok = NULL;
    cr_assert_not(subject_next_token(copy, len, &pos, &tok, &tl));
    cr_assert_null(tok);
    exact_free(copy);
}

Test(subject, tokenizer_splits_at_dots)
{
    static const struct {
        const char *in;
        const char *tokens;
    } cases[] = {
        {"a", "a"},
        {"a.b.c", "a|b|c"},
        {"$SYS.STATS", "$SYS|STATS"},
        {"*.>", "*|>"},
        {"abc.de", "abc|de"},
        /* Not valid, but split without reading past the end. */
        {"", ""},
        {"a..b", "a||b"},
        {".a", "|a"},
        {"a.", "a"},
        {".", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[64];
        tokens_of(cases[i].in, out, sizeof(out));
        cr_expect_str_eq(out, cases[i].tokens, "tokens of \"%s\"", cases[i].in);
    }
    /* As many tokens as a subject can have: 512 of one byte. */
    char big[SB_SUBJECT_MAX];
    size_t big_len = SB_SUBJECT_MAX - 1;
    for (size_t i = 0; i < big_len; i++) {
        big[i] = i % 2 ? '.' : 'x';
    }
    cr_assert(sb_subject_valid(big, big_len));
    size_t pos = 0;
    size_t n = 0;
    const char *tok;
    size_t tl;
    while (subject_next_token(big, big_len, &pos, &tok, &tl)) {
        cr_assert_eq(tl, 1);
        cr_assert_eq(tok, big + 2 * n);
        n++;
    }
    cr_assert_eq(n, SB_SUBJECT_MAX / 2);
}

Test(subject, dollar_rule_is_about_the_first_token_only)
{
    cr_assert_not(subject_wildcard_may_take(true, "$SYS"));
    cr_assert_not(subject_wildcard_may_take(true, "$"));
    cr_assert(subject_wildcard_may_take(true, "SYS"));
    cr_assert(subject_wildcard_may_take(true, "a$"));
    cr_assert(subject_wildcard_may_take(false, "$b"));
    cr_assert(subject_token_is(">", 1, '>'));
    cr_assert_not(subject_token_is(">>", 2, '>'));
    cr_assert_not(subject_token_is("*", 1, '>'));
}

/* ------------------------------------------------------------------------ */
/* subject_pattern_covers().                                                */

static bool covers(const char *allowed, const char *requested)
{
    size_t al = strlen(allowed);
    size_t rl = strlen(requested);
    char *a = exact_new(allowed, al);
    char *r = exact_new(requested, rl);
    bool c = subject_pattern_covers(a, al, r, rl);
    exact_free(a);
    exact_free(r);
    return c;
}

Test(subject, covers_token_by_token)
{
    static const struct {
        const char *allowed;
        const char *requested;
        bool covered;
    } cases[] = {
        /* a literal covers only itself */
        {"a.b", "a.b", true},
        {"a.b", "a.c", false},
        {"a.b", "a", false},
        {"a", "a.b", false},
        {"a.b", "a.*", false},
        {"a.b", "a.>", false},
        {"ab", "a", false},
        {"a", "ab", false},
        /* '*' covers one literal or '*' */
        {"a.*", "a.b", true},
        {"a.*", "a.*", true},
        {"a.*", "a.>", false},
        {"a.*", "a.b.c", false},
        {"a.*", "a", false},
        {"*", "x", true},
        {"*.*", "a.*", true},
        {"*.b", "a.c", false},
        {"a.*.c", "a.b.c", true},
        {"a.*.c", "a.b.d", false},
        /* '>' covers one or more remaining tokens of any kind */
        {">", "a", true},
        {">", "a.b.c", true},
        {">", "*", true},
        {">", ">", true},
        {">", "*.>", true},
        {"a.>", "a.*", true},
        {"a.>", "a.b.>", true},
        {"a.>", "a", false},
        {"a.>", ">", false},
        {"a.>", "*.b", false},
        {"a.b.>", "a.>", false},
        {"a.*.>", "a.b.c", true},
        {"a.*.>", "a.b", false},
        {"*.>", "a", false},
        /* the `$` rule: a leading wildcard covers no "$..." pattern */
        {">", "$SYS.STATS", false},
        {">", "$SYS.>", false},
        {"*.STATS", "$SYS.STATS", false},
        {"*", "$x", false},
        {"$SYS.>", "$SYS.STATS", true},
        {"$SYS.EVENT.*", "$SYS.EVENT.CONNECT", true},
        {"$SYS.EVENT.*", "$SYS.>", false},
        {"a.>", "a.$b", true}, /* only the first token */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_expect_eq(covers(cases[i].allowed, cases[i].requested), cases[i].covered,
                     "covers(\"%s\", \"%s\") should be %s", cases[i].allowed, cases[i].requested,
                     cases[i].covered ? "true" : "false");
    }
}

/*
 * Covering is containment of what the patterns match: `allowed` covers
 * `requested` exactly when every subject `requested` matches is matched by
 * `allowed`. Every pair of patterns of up to 3 tokens over {a, $a, *, >}
 * is held to that, over every subject of up to 4 tokens over {a, $a, z}
 * (a witness that `allowed` misses, when there is one, needs no more).
 */
Test(subject, covers_is_containment_of_matches)
{
    static const char *const ptokens[] = {"a", "$a", "*", ">"};
    static const char *const stokens[] = {"a", "$a", "z"};
    enum { PMAX = 3, SMAX = 4 };
    size_t npat = 0;
    size_t nsub = 0;
    for (size_t n = 1, c = 1; n <= PMAX; n++) {
        c *= 4;
        npat += c;
    }
    for (size_t n = 1, c = 1; n <= SMAX; n++) {
        c *= 3;
        nsub += c;
    }
    static char subs[400][32];
    static size_t sublen[400];
    cr_assert_leq(nsub, 400);
    for (size_t si = 0; si < nsub; si++) {
        const char *st[SMAX];
        size_t sn = nth_list(si, 3, stokens, st);
        sublen[si] = join(subs[si], st, sn);
    }
    size_t pairs = 0;
    size_t covered = 0;
    for (size_t ai = 0; ai < npat; ai++) {
        const char *at[PMAX];
        char abuf[32];
        size_t al = join(abuf, at, nth_list(ai, 4, ptokens, at));
        if (!sb_pattern_valid(abuf, al)) {
            continue;
        }
        for (size_t ri = 0; ri < npat; ri++) {
            const char *rt[PMAX];
            char rbuf[32];
            size_t rl = join(rbuf, rt, nth_list(ri, 4, ptokens, rt));
            if (!sb_pattern_valid(rbuf, rl)) {
                continue;
            }
            bool contained = true;
            for (size_t si = 0; si < nsub && contained; si++) {
                contained = !sb_pattern_match(rbuf, rl, subs[si], sublen[si]) ||
                            sb_pattern_match(abuf, al, subs[si], sublen[si]);
            }
            bool c = subject_pattern_covers(abuf, al, rbuf, rl);
            if (c != contained) {
                cr_assert_fail("covers(\"%s\", \"%s\") = %d, containment %d", show(abuf, al),
                               show(rbuf, rl), c, contained);
            }
            pairs++;
            covered += c;
        }
    }
    cr_assert_gt(pairs, 1000);
    cr_assert_gt(covered, 100);
    cr_assert_lt(covered, pairs);
}
