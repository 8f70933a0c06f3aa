/*
 * textcmd.h - the commands of text mode, read from one line
 * (docs/protocol.md, Text mode).
 *
 *     PUB <subject> [<text>]     REQ <subject> [<text>]
 *     SUB <pattern> [<queue>]    UNSUB <sid>
 *     PING  STATS  HELP  QUIT
 *
 * The verb is case-insensitive; words are separated by spaces or tabs. The
 * text of PUB and REQ is the rest of the line after the one space (or tab)
 * that follows the subject, byte for byte: it may hold spaces, tabs, NULs
 * and any other byte but "\n" (the end of the line; a "\r" before it is
 * not part of the line). Subjects and patterns are taken as they are
 * written and judged by the router, like those of frames.
 *
 * Parsing is a pure function of the bytes: the text session (textmode.c) and
 * the fuzz target share it.
 */
#ifndef SOCKBUS_TEXTCMD_H
#define SOCKBUS_TEXTCMD_H

#include <stddef.h>
#include <stdint.h>

enum textcmd_verb {
    TEXTCMD_PUB,
    TEXTCMD_REQ,
    TEXTCMD_SUB,
    TEXTCMD_UNSUB,
    TEXTCMD_PING,
    TEXTCMD_STATS,
    TEXTCMD_HELP,
    TEXTCMD_QUIT,
};

/* A command; its pointers point into the line. */
struct textcmd {
    enum textcmd_verb verb;
    const uint8_t *arg; /* subject (PUB, REQ), pattern (SUB); else NULL */
    size_t arg_len;
    const uint8_t *extra; /* text (PUB, REQ), queue group (SUB); else NULL */
    size_t extra_len;
    uint32_t sid; /* UNSUB */
};

/* textcmd_parse() beside 0: a line with nothing but blanks, which is not
 * answered. */
#define TEXTCMD_EMPTY 1

/*
 * Read the command in line[0..len) (no "\n"). Returns 0 and fills *out,
 * TEXTCMD_EMPTY, or -EINVAL with *why set to a short reason (a static
 * string that names the command's form; for an unknown verb "unknown
 * verb"). *out is written only on success.
 */
int textcmd_parse(const uint8_t *line, size_t len, struct textcmd *out, const char **why);

/* The first word of line[0..len) (the verb as written), its length in
 * *word_len: for quoting an unknown verb. */
const uint8_t *textcmd_first_word(const uint8_t *line, size_t len, size_t *word_len);

#endif /* SOCKBUS_TEXTCMD_H */
