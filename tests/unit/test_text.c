/*
 * test_text.c - unit tests of libclient/wire/text.c: the UTF-8 decoder and the
 * escaping of text from a peer before it is printed.
 *
 * The decoder is held to the Unicode standard's table of well-formed
 * sequences and its "maximal subpart" rule; the escaper to its promise that
 * the output is valid UTF-8 without a control byte, that it names every
 * byte it replaced, and that it never cuts a character or an escape.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "text.h"

static int next(const char *s, size_t len, uint32_t *cp)
{
    return text_utf8_next(s, len, cp);
}

static void expect_char(const char *s, size_t len, int n, uint32_t want)
{
    uint32_t cp = 0xDEADBEEF;
    int r = next(s, len, &cp);
    cr_assert_eq(r, n, "length of a well-formed sequence: %d, want %d", r, n);
    cr_assert_eq(cp, want, "code point U+%04X, want U+%04X", cp, want);
}

static void expect_bad(const char *s, size_t len, int subpart)
{
    uint32_t cp = 0xDEADBEEF;
    int r = next(s, len, &cp);
    cr_assert_eq(r, -subpart, "ill-formed: %d, want %d", r, -subpart);
    cr_assert_eq(cp, 0xDEADBEEF, "*cp written for an ill-formed sequence");
}

Test(text, well_formed_sequences)
{
    expect_char("A", 1, 1, 'A');
    expect_char("\0", 1, 1, 0);
    expect_char("\x7F", 1, 1, 0x7F);
    expect_char("\xC2\x80", 2, 2, 0x80);
    expect_char("\xC2\x9B", 2, 2, 0x9B); /* C1 CSI: well formed, a control */
    expect_char("\xDF\xBF", 2, 2, 0x7FF);
    expect_char("\xE0\xA0\x80", 3, 3, 0x800);
    expect_char("\xED\x9F\xBF", 3, 3, 0xD7FF);
    expect_char("\xEE\x80\x80", 3, 3, 0xE000);
    expect_char("\xEF\xBF\xBD", 3, 3, 0xFFFD);
    expect_char("\xF0\x90\x80\x80", 4, 4, 0x10000);
    expect_char("\xF4\x8F\xBF\xBF", 4, 4, 0x10FFFF);
    /* Only the first character is decoded. */
    expect_char("\xC3\xA9z", 3, 2, 0xE9);
}

Test(text, ill_formed_sequences_and_their_maximal_subparts)
{
    expect_bad("\x80", 1, 1);             /* a lone continuation byte */
    expect_bad("\xBF\x80", 2, 1);         /* each continuation on its own */
    expect_bad("\xC0\xAF", 2, 1);         /* overlong '/' */
    expect_bad("\xC1\xBF", 2, 1);         /* overlong */
    expect_bad("\xE0\x80\xAF", 3, 1);     /* overlong: E0 needs A0..BF */
    expect_bad("\xED\xA0\x80", 3, 1);     /* surrogate U+D800 */
    expect_bad("\xF0\x8F\xBF\xBF", 4, 1); /* overlong: F0 needs 90..BF */
    expect_bad("\xF4\x90\x80\x80", 4, 1); /* above U+10FFFF */
    expect_bad("\xF5\x80\x80\x80", 4, 1);
    expect_bad("\xFF", 1, 1);
    expect_bad("\xFE", 1, 1);
    /* A valid start cut short is one subpart, however long the start. */
    expect_bad("\xC3", 1, 1);
    expect_bad("\xC3z", 2, 1);
    expect_bad("\xE2\x82", 2, 2);
    expect_bad("\xE2\x82z", 3, 2);
    expect_bad("\xF0\x9F\x98", 3, 3);
    expect_bad("\xF0\x9F\x98z", 4, 3);
    /* The length given is respected: a sequence is not read past it. */
    expect_bad("\xE2\x82\xAC", 2, 2);
    expect_bad("\xE2\x82\xAC", 1, 1);
}

Test(text, controls)
{
    for (uint32_t cp = 0; cp < 0x20; cp++) {
        cr_assert(text_is_control(cp), "U+%04X", cp);
    }
    cr_assert(text_is_control(0x7F));
    for (uint32_t cp = 0x80; cp <= 0x9F; cp++) {
        cr_assert(text_is_control(cp), "U+%04X", cp);
    }
    cr_assert_not(text_is_control(' '));
    cr_assert_not(text_is_control('~'));
    cr_assert_not(text_is_control(0xA0));
    cr_assert_not(text_is_control(0xFFFD));
}

static void expect_escape(const void *in, size_t len, const char *want)
{
    char out[256];
    memset(out, 'Z', sizeof(out));
    size_t n = text_escape(out, sizeof(out), in, len);
    cr_assert_str_eq(out, want);
    cr_assert_eq(n, strlen(want));
}

Test(text, escape_leaves_printable_utf8_alone)
{
    expect_escape("", 0, "");
    expect_escape("sensors.temp", 12, "sensors.temp");
    expect_escape("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 14,
                  "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
    expect_escape("it's \"quoted\"", 13, "it's \"quoted\"");
}

Test(text, escape_controls_invalid_bytes_and_backslash)
{
    expect_escape("a\nb", 3, "a\\x0ab");
    expect_escape("\r\t\0", 3, "\\x0d\\x09\\x00");
    expect_escape("\x1B[31mred", 8, "\\x1b[31mred");
    expect_escape("\x7F", 1, "\\x7f");
    expect_escape("\xC2\x9B"
                  "2J",
                  4, "\\xc2\\x9b2J"); /* C1 CSI, byte by byte */
    expect_escape("\xFF\xFE", 2, "\\xff\\xfe");
    expect_escape("\xE2\x82z", 3, "\\xe2\\x82z");
    expect_escape("back\\slash", 10, "back\\x5cslash");
    /* A forged log line stays on the line it came in. */
    expect_escape("x\nsockbusd: client 9 connected", 30, "x\\x0asockbusd: client 9 connected");
}

/* Every output is valid UTF-8 without a control byte, whatever the input,
 * and the escapes say exactly which bytes came in. */
Test(text, escape_of_every_byte_pair_is_printable_and_reversible)
{
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            unsigned char in[3] = {(unsigned char)a, (unsigned char)b, 'z'};
            char out[TEXT_ESCAPE_MAX(sizeof(in))];
            size_t n = text_escape(out, sizeof(out), in, sizeof(in));
            cr_assert_eq(strlen(out), n);
            /* Printable and valid. */
            for (size_t i = 0; i < n;) {
                uint32_t cp;
                int k = text_utf8_next(out + i, n - i, &cp);
                cr_assert_gt(k, 0, "%02x %02x: output not UTF-8 at %zu", a, b, i);
                cr_assert_not(text_is_control(cp), "%02x %02x: a control in the output", a, b);
                i += (size_t)k;
            }
            /* Reversible: undo the escapes and get the input back. */
            unsigned char back[sizeof(in)];
            size_t m = 0;
            for (size_t i = 0; i < n && m < sizeof(back);) {
                unsigned v;
                if (out[i] == '\\') {
                    cr_assert_eq(sscanf(out + i, "\\x%2x", &v), 1);
                    back[m++] = (unsigned char)v;
                    i += 4;
                } else {
                    back[m++] = (unsigned char)out[i++];
                }
            }
            cr_assert(m == sizeof(in) && memcmp(back, in, sizeof(in)) == 0,
                      "%02x %02x: escaped as [%s], which does not give the input back", a, b, out);
        }
    }
}

Test(text, escape_never_cuts_a_character_or_an_escape)
{
    char out[8];
    /* "ab" and the NUL fit, the escape of '\n' (4 bytes) does not. */
    cr_assert_eq(text_escape(out, 6, "ab\ncd", 5), 2);
    cr_assert_str_eq(out, "ab");
    cr_assert_eq(text_escape(out, 7, "ab\ncd", 5), 6);
    cr_assert_str_eq(out, "ab\\x0a");
    /* A three-byte character needs room for all of it. */
    cr_assert_eq(text_escape(out, 4, "a\xE2\x82\xAC", 4), 1);
    cr_assert_str_eq(out, "a");
    cr_assert_eq(text_escape(out, 5, "a\xE2\x82\xAC", 4), 4);
    /* A buffer of one byte holds the NUL only. */
    cr_assert_eq(text_escape(out, 1, "abc", 3), 0);
    cr_assert_str_eq(out, "");
}

Test(text, escape_max_holds_the_worst_case)
{
    unsigned char in[64];
    memset(in, 0xFF, sizeof(in));
    char out[TEXT_ESCAPE_MAX(sizeof(in))];
    cr_assert_eq(text_escape(out, sizeof(out), in, sizeof(in)), 4 * sizeof(in));
}
