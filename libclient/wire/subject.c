/*
 * subject.c - the subject grammar (docs/protocol.md, "Subjects and
 * patterns"; see subject.h).
 *
 * A subject is 1..SB_SUBJECT_MAX bytes of tokens separated by '.'; a token
 * is one or more bytes in 0x21..0x7E other than '.', '*' and '>'. A pattern
 * may also use '*' as a whole token (one token) and '>' as the last token
 * (one or more tokens). A pattern whose first token is a wildcard does not
 * match a subject whose first token starts with '$' (the `$` rule): broker
 * subjects are only seen when asked for by name.
 *
 * Validation is one pass over the bytes with a table (it runs on every
 * publish); matching and covering walk both strings token by token with
 * subject_next_token() and apply the `$` rule with
 * subject_wildcard_may_take(), as the broker's trie does. These functions
 * are the reference the tests hold the trie to.
 */
#include "subject.h"

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

SB_EXPORT bool sb_pattern_match(const char *pattern, size_t pattern_len, const char *subject,
                                size_t subject_len)
{
    if (pattern_len == 0 || subject_len == 0) {
        return false;
    }
    size_t pp = 0;
    size_t sp = 0;
    for (bool first = true;; first = false) {
        const char *p;
        const char *s;
        size_t pl;
        size_t sl;
        bool have_p = subject_next_token(pattern, pattern_len, &pp, &p, &pl);
        bool have_s = subject_next_token(subject, subject_len, &sp, &s, &sl);
        if (!have_p || !have_s) {
            return have_p == have_s; /* both ended together */
        }
        bool gt = subject_token_is(p, pl, '>');
        if (gt || subject_token_is(p, pl, '*')) {
            if (!subject_wildcard_may_take(first, s)) {
                return false;
            }
            if (gt) {
                return true; /* one or more tokens remain in the subject */
            }
        } else if (pl != sl || memcmp(p, s, pl) != 0) {
            return false;
        }
    }
}

bool subject_pattern_covers(const char *allowed, size_t allowed_len, const char *requested,
                            size_t requested_len)
{
    if (allowed_len == 0 || requested_len == 0) {
        return false;
    }
    size_t ap = 0;
    size_t rp = 0;
    for (bool first = true;; first = false) {
        const char *a;
        const char *r;
        size_t al;
        size_t rl;
        bool have_a = subject_next_token(allowed, allowed_len, &ap, &a, &al);
        bool have_r = subject_next_token(requested, requested_len, &rp, &r, &rl);
        if (!have_a) {
            return !have_r; /* equal length: covered; `requested` longer: not */
        }
        bool gt = subject_token_is(a, al, '>');
        bool wild = gt || subject_token_is(a, al, '*');
        if (wild && have_r && !subject_wildcard_may_take(first, r)) {
            return false; /* `requested` names subjects `allowed` never sees */
        }
        if (gt) {
            return have_r; /* one or more tokens of any kind */
        }
        if (!have_r || subject_token_is(r, rl, '>')) {
            return false; /* shorter, or open-ended where `allowed` is not */
        }
        if (!wild && (al != rl || memcmp(a, r, al) != 0)) {
            return false; /* a literal covers only itself; '*' any one token */
        }
    }
}
