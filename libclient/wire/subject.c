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

#include <stdint.h>
#include <string.h>

/* What each byte is to the subject grammar. A table, because this runs on
 * every publish (client) and every new subject (broker). */
enum byte_class {
    BC_BAD = 0, /* outside 0x21..0x7E */
    BC_TOKEN,   /* a byte of a literal token */
    BC_DOT,
    BC_STAR,
    BC_GT,
};

static const uint8_t byte_class[256] = {
    ['!'] = BC_TOKEN, ['"'] = BC_TOKEN,  ['#'] = BC_TOKEN, ['$'] = BC_TOKEN, ['%'] = BC_TOKEN,
    ['&'] = BC_TOKEN, ['\''] = BC_TOKEN, ['('] = BC_TOKEN, [')'] = BC_TOKEN, ['*'] = BC_STAR,
    ['+'] = BC_TOKEN, [','] = BC_TOKEN,  ['-'] = BC_TOKEN, ['.'] = BC_DOT,   ['/'] = BC_TOKEN,
    ['0'] = BC_TOKEN, ['1'] = BC_TOKEN,  ['2'] = BC_TOKEN, ['3'] = BC_TOKEN, ['4'] = BC_TOKEN,
    ['5'] = BC_TOKEN, ['6'] = BC_TOKEN,  ['7'] = BC_TOKEN, ['8'] = BC_TOKEN, ['9'] = BC_TOKEN,
    [':'] = BC_TOKEN, [';'] = BC_TOKEN,  ['<'] = BC_TOKEN, ['='] = BC_TOKEN, ['>'] = BC_GT,
    ['?'] = BC_TOKEN, ['@'] = BC_TOKEN,  ['A'] = BC_TOKEN, ['B'] = BC_TOKEN, ['C'] = BC_TOKEN,
    ['D'] = BC_TOKEN, ['E'] = BC_TOKEN,  ['F'] = BC_TOKEN, ['G'] = BC_TOKEN, ['H'] = BC_TOKEN,
    ['I'] = BC_TOKEN, ['J'] = BC_TOKEN,  ['K'] = BC_TOKEN, ['L'] = BC_TOKEN, ['M'] = BC_TOKEN,
    ['N'] = BC_TOKEN, ['O'] = BC_TOKEN,  ['P'] = BC_TOKEN, ['Q'] = BC_TOKEN, ['R'] = BC_TOKEN,
    ['S'] = BC_TOKEN, ['T'] = BC_TOKEN,  ['U'] = BC_TOKEN, ['V'] = BC_TOKEN, ['W'] = BC_TOKEN,
    ['X'] = BC_TOKEN, ['Y'] = BC_TOKEN,  ['Z'] = BC_TOKEN, ['['] = BC_TOKEN, ['\\'] = BC_TOKEN,
    [']'] = BC_TOKEN, ['^'] = BC_TOKEN,  ['_'] = BC_TOKEN, ['`'] = BC_TOKEN, ['a'] = BC_TOKEN,
    ['b'] = BC_TOKEN, ['c'] = BC_TOKEN,  ['d'] = BC_TOKEN, ['e'] = BC_TOKEN, ['f'] = BC_TOKEN,
    ['g'] = BC_TOKEN, ['h'] = BC_TOKEN,  ['i'] = BC_TOKEN, ['j'] = BC_TOKEN, ['k'] = BC_TOKEN,
    ['l'] = BC_TOKEN, ['m'] = BC_TOKEN,  ['n'] = BC_TOKEN, ['o'] = BC_TOKEN, ['p'] = BC_TOKEN,
    ['q'] = BC_TOKEN, ['r'] = BC_TOKEN,  ['s'] = BC_TOKEN, ['t'] = BC_TOKEN, ['u'] = BC_TOKEN,
    ['v'] = BC_TOKEN, ['w'] = BC_TOKEN,  ['x'] = BC_TOKEN, ['y'] = BC_TOKEN, ['z'] = BC_TOKEN,
    ['{'] = BC_TOKEN, ['|'] = BC_TOKEN,  ['}'] = BC_TOKEN, ['~'] = BC_TOKEN,
};

/*
 * One pass over s[0..len). `run` counts the bytes of the current token and
 * `wild` remembers whether it is a lone '*' or '>' so far; a '>' token must
 * be the last one.
 */
static bool check(const char *s, size_t len, bool allow_wild)
{
    if (s == NULL || len == 0 || len > SB_SUBJECT_MAX) {
        return false;
    }
    size_t run = 0;
    uint8_t wild = 0; /* BC_STAR or BC_GT while the token is exactly that */
    for (size_t i = 0; i < len; i++) {
        uint8_t bc = byte_class[(unsigned char)s[i]];
        switch (bc) {
        case BC_TOKEN:
            if (wild != 0) {
                return false; /* "*x", ">x" */
            }
            run++;
            break;
        case BC_DOT:
            if (run == 0 && wild == 0) {
                return false; /* empty token */
            }
            if (wild == BC_GT) {
                return false; /* '>' only as the last token */
            }
            run = 0;
            wild = 0;
            break;
        case BC_STAR:
        case BC_GT:
            if (!allow_wild || run != 0 || wild != 0) {
                return false; /* "a*", "**", or a wildcard in a subject */
            }
            wild = bc;
            break;
        default:
            return false;
        }
    }
    return run > 0 || wild != 0; /* no trailing dot */
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
