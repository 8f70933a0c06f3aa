/*
 * subject.c - subject and pattern rules.
 *
 * A subject is 1..SB_SUBJECT_MAX bytes of tokens separated by '.'; a token
 * is one or more bytes in 0x21..0x7E other than '.', '*' and '>'. A pattern
 * may also use '*' as a whole token (one token) and '>' as the last token
 * (one or more tokens). A pattern whose first token is a wildcard does not
 * match a subject whose first token starts with '$': broker subjects are
 * only seen when asked for by name.
 *
 * The broker's trie applies the same rules token by token; these functions
 * are the reference the tests hold it to.
 */
#include "sockbus.h"

#include <string.h>

static bool token_byte(unsigned char c)
{
    return c >= 0x21 && c <= 0x7E && c != '.' && c != '*' && c != '>';
}

/* Walk the tokens of s[0..len). For each token, `wild` tells whether it is
 * a lone '*' or '>'. Returns false at the first rule broken. */
static bool check(const char *s, size_t len, bool allow_wild)
{
    if (s == NULL || len == 0 || len > SB_SUBJECT_MAX) {
        return false;
    }
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.') {
            continue;
        }
        size_t tlen = i - start;
        const char *t = s + start;
        if (tlen == 0) {
            return false; /* empty token: "a..b", ".a", "a." */
        }
        if (tlen == 1 && (t[0] == '*' || t[0] == '>')) {
            if (!allow_wild) {
                return false;
            }
            if (t[0] == '>' && i != len) {
                return false; /* '>' only as the last token */
            }
        } else {
            for (size_t k = 0; k < tlen; k++) {
                if (!token_byte((unsigned char)t[k])) {
                    return false;
                }
            }
        }
        start = i + 1;
    }
    return true;
}

SB_EXPORT bool sb_subject_valid(const char *subject, size_t len)
{
    return check(subject, len, false);
}

SB_EXPORT bool sb_pattern_valid(const char *pattern, size_t len)
{
    return check(pattern, len, true);
}

/* Length of the token starting at s[0..len). */
static size_t token_len(const char *s, size_t len)
{
    const char *dot = memchr(s, '.', len);
    return dot ? (size_t)(dot - s) : len;
}

SB_EXPORT bool sb_pattern_match(const char *pattern, size_t pattern_len, const char *subject,
                                size_t subject_len)
{
    if (pattern_len == 0 || subject_len == 0) {
        return false;
    }
    bool first = true;
    size_t p = 0;
    size_t s = 0;
    for (;;) {
        size_t pl = token_len(pattern + p, pattern_len - p);
        size_t sl = token_len(subject + s, subject_len - s);
        bool wild = pl == 1 && (pattern[p] == '*' || pattern[p] == '>');
        if (wild && first && subject[s] == '$') {
            return false;
        }
        if (pl == 1 && pattern[p] == '>') {
            return true; /* one or more tokens remain in the subject */
        }
        if (!wild && (pl != sl || memcmp(pattern + p, subject + s, pl) != 0)) {
            return false;
        }
        first = false;
        p += pl;
        s += sl;
        bool pend = p == pattern_len;
        bool send = s == subject_len;
        if (pend || send) {
            return pend && send;
        }
        p++; /* skip the dots */
        s++;
    }
}
