/*
 * text.c - UTF-8 decoding and escaping of text from a peer (see text.h).
 *
 * The decoder follows the table of well-formed byte sequences in the
 * Unicode standard (section 3.9, table 3-7): the second byte's range
 * depends on the lead byte, which is what rules out overlong forms,
 * surrogates and code points above U+10FFFF without decoding first. An
 * ill-formed sequence is reported with the length of its maximal subpart,
 * so that a caller that substitutes U+FFFD does it the way the standard
 * recommends, once per broken sequence rather than once per byte.
 *
 * None of this is on a message path: it runs on names at HELLO, on ERR
 * texts and log lines, and in the command's human output.
 */
#include "text.h"

#include <string.h>

int text_utf8_next(const void *s, size_t len, uint32_t *cp)
{
    const unsigned char *p = s;
    unsigned char c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        v = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        v = c & 0x0Fu;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* E0 80..9F would be overlong */
        hi = c == 0xED ? 0x9F : 0xBF; /* ED A0..BF would be a surrogate */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        v = c & 0x07u;
        lo = c == 0xF0 ? 0x90 : 0x80; /* F0 80..8F would be overlong */
        hi = c == 0xF4 ? 0x8F : 0xBF; /* F4 90.. would pass U+10FFFF */
    } else {
        return -1; /* a continuation byte, C0/C1 (overlong), F5..FF */
    }
    for (size_t i = 1; i < n; i++) {
        if (i >= len || p[i] < lo || p[i] > hi) {
            return -(int)i; /* the bytes before p[i] were a valid start */
        }
        v = (v << 6) | (p[i] & 0x3Fu);
        lo = 0x80;
        hi = 0xBF;
    }
    *cp = v;
    return (int)n;
}

bool text_is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

size_t text_escape(char *out, size_t out_len, const void *in, size_t in_len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = in;
    size_t o = 0;
    size_t i = 0;

    while (i < in_len) {
        uint32_t cp = 0;
        int n = text_utf8_next(s + i, in_len - i, &cp);
        bool escape = n < 0 || text_is_control(cp) || cp == '\\';
        size_t take = (size_t)(n < 0 ? -n : n);
        size_t need = escape ? 4 * take : take;
        if (out_len - o <= need) {
            break; /* it and its NUL would not fit: end before it */
        }
        for (size_t k = 0; k < take; k++) {
            unsigned char b = s[i + k];
            if (escape) {
                out[o++] = '\\';
                out[o++] = 'x';
                out[o++] = hex[b >> 4];
                out[o++] = hex[b & 0x0F];
            } else {
                out[o++] = (char)b;
            }
        }
        i += take;
    }
    out[o] = '\0';
    return o;
}
