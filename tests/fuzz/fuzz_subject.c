/*
 * fuzz_subject.c - the subject and pattern rules (libclient/wire/subject.c).
 *
 * The input is split at its first '\n' into a pattern and a subject (with
 * no '\n', the whole input is both). sb_subject_valid() and
 * sb_pattern_valid() run on both halves, sb_pattern_match() on the pair
 * when the pattern is a valid pattern and the subject a valid subject (its
 * contract). Each answer is held to a second, deliberately naive
 * implementation of the protocol's rules (split into tokens first, judge
 * them after), and to invariants that follow from the rules:
 *   - a valid subject is a valid pattern, contains no '*' or '>' byte at
 *     all, and matches itself as a pattern;
 *   - a valid pattern that is not a valid subject has a wildcard token;
 *   - a pattern without wildcards matches exactly the subject it spells;
 *   - subject_pattern_covers(), on two valid patterns: a pattern covers
 *     itself, and one that covers a subject (a pattern without wildcards)
 *     matches it.
 */
#include "fuzz.h"

#include "sockbus.h"
#include "subject.h"

#include <stdbool.h>
#include <string.h>

/* A subject of SB_SUBJECT_MAX bytes has at most this many tokens. */
#define MAX_TOKENS (SB_SUBJECT_MAX / 2 + 1)

struct token {
    const char *p;
    size_t len;
};

/* Split s[0..len) at every '.'; empty tokens are kept. Returns the count,
 * or 0 if there are too many to be valid. */
static size_t split(const char *s, size_t len, struct token *t)
{
    size_t n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (n == MAX_TOKENS) {
                return 0;
            }
            t[n].p = s + start;
            t[n].len = i - start;
            n++;
            start = i + 1;
        }
    }
    return n;
}

static bool is_tok(const struct token *t, char c)
{
    return t->len == 1 && t->p[0] == c;
}

static bool ref_valid(const char *s, size_t len, bool allow_wild)
{
    static struct token t[MAX_TOKENS];
    if (len == 0 || len > SB_SUBJECT_MAX) {
        return false;
    }
    size_t n = split(s, len, t);
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (t[i].len == 0) {
            return false;
        }
        if (is_tok(&t[i], '*') || is_tok(&t[i], '>')) {
            if (!allow_wild || (is_tok(&t[i], '>') && i != n - 1)) {
                return false;
            }
            continue;
        }
        for (size_t k = 0; k < t[i].len; k++) {
            unsigned char c = (unsigned char)t[i].p[k];
            if (c < 0x21 || c > 0x7E || c == '*' || c == '>') {
                return false;
            }
        }
    }
    return true;
}

static bool ref_match(const char *p, size_t plen, const char *s, size_t slen)
{
    static struct token pt[MAX_TOKENS];
    static struct token st[MAX_TOKENS];
    size_t np = split(p, plen, pt);
    size_t ns = split(s, slen, st);
    bool first_wild = is_tok(&pt[0], '*') || is_tok(&pt[0], '>');
    if (first_wild && st[0].p[0] == '$') {
        return false; /* broker subjects are matched only by name */
    }
    for (size_t i = 0; i < np; i++) {
        if (is_tok(&pt[i], '>')) {
            return ns > i; /* one or more tokens left */
        }
        if (i >= ns) {
            return false;
        }
        if (is_tok(&pt[i], '*')) {
            continue;
        }
        if (pt[i].len != st[i].len || memcmp(pt[i].p, st[i].p, pt[i].len) != 0) {
            return false;
        }
    }
    return np == ns;
}

static void check_one(const char *s, size_t len, bool *subject, bool *pattern)
{
    bool sv = sb_subject_valid(s, len);
    bool pv = sb_pattern_valid(s, len);
    FUZZ_CHECK(sv == ref_valid(s, len, false));
    FUZZ_CHECK(pv == ref_valid(s, len, true));
    if (sv) {
        FUZZ_CHECK(pv);
        FUZZ_CHECK(memchr(s, '*', len) == NULL && memchr(s, '>', len) == NULL);
        FUZZ_CHECK(sb_pattern_match(s, len, s, len));
    }
    if (pv && !sv) {
        FUZZ_CHECK(memchr(s, '*', len) != NULL || memchr(s, '>', len) != NULL);
    }
    if (pv) {
        FUZZ_CHECK(subject_pattern_covers(s, len, s, len));
    }
    *subject = sv;
    *pattern = pv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    const char *pat = in;
    size_t plen = nl ? (size_t)(nl - in) : size;
    const char *sub = nl ? nl + 1 : in;
    size_t slen = nl ? size - plen - 1 : size;

    bool p_subject;
    bool p_pattern;
    bool s_subject;
    bool s_pattern;
    check_one(pat, plen, &p_subject, &p_pattern);
    check_one(sub, slen, &s_subject, &s_pattern);
    if (p_pattern && s_subject) {
        bool m = sb_pattern_match(pat, plen, sub, slen);
        FUZZ_CHECK(m == ref_match(pat, plen, sub, slen));
        if (p_subject) {
            /* No wildcards: it matches exactly itself. */
            FUZZ_CHECK(m == (plen == slen && memcmp(pat, sub, plen) == 0));
        }
        /* A subject is the pattern of itself alone. */
        FUZZ_CHECK(subject_pattern_covers(pat, plen, sub, slen) == m);
    }
    return 0;
}
