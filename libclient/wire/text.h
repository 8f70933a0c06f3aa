/*
 * text.h - text that came from a peer, made safe to store and to print.
 *
 * Client names, subjects quoted in ERR texts and log lines, and whatever a
 * broker says that a person reads: any of it may hold bytes that are not
 * UTF-8, or control characters that forge a log line (a newline) or take
 * over a terminal (ESC, or the C1 CSI U+009B). The broker and the sockbus
 * command share these helpers, so there is one rule for what is printable.
 */
#ifndef SOCKBUS_TEXT_H
#define SOCKBUS_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room text_escape() needs for `len` bytes of input, NUL included: each
 * byte becomes at most a four-byte "\xNN". */
#define TEXT_ESCAPE_MAX(len) (4u * (len) + 1u)

/* U+FFFD REPLACEMENT CHARACTER, in UTF-8. */
#define TEXT_REPLACEMENT     "\xEF\xBF\xBD"
#define TEXT_REPLACEMENT_LEN 3u

/*
 * Decode the UTF-8 sequence at s[0..len), len > 0. Returns its length n
 * (1 to 4) and writes its code point to *cp when it is well formed (no
 * overlong form, surrogate, or code point above U+10FFFF). Otherwise
 * returns -n, n >= 1 being the length of the maximal ill-formed subpart
 * (Unicode 15, section 3.9: the bytes that a U+FFFD stands for), and leaves
 * *cp alone.
 */
int text_utf8_next(const void *s, size_t len, uint32_t *cp);

/* Is `cp` a control character: C0 (U+0000..U+001F), DEL or C1
 * (U+0080..U+009F)? */
bool text_is_control(uint32_t cp);

/*
 * Write in[0..in_len) to out[0..out_len) (out_len > 0) as printable UTF-8,
 * NUL terminated. Every byte of a control character, of an ill-formed
 * sequence, and every backslash becomes "\xNN" (two lowercase hex digits),
 * so the result holds no control byte, is valid UTF-8, and still says
 * which bytes were sent. Nothing is cut inside a character or an escape:
 * when the next one does not fit, the output ends before it. Returns the
 * bytes written, NUL not counted; TEXT_ESCAPE_MAX(in_len) bytes of out
 * always hold all of it.
 */
size_t text_escape(char *out, size_t out_len, const void *in, size_t in_len);

#endif /* SOCKBUS_TEXT_H */
