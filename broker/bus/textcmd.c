/*
 * textcmd.c - reading a text-mode command (see textcmd.h).
 *
 * One pass over the line, word by word, with no allocation and no copy:
 * the command points into the line, which the connection keeps until the
 * command is handled. Whatever the bytes, the parser answers a command, an
 * empty line or a reason: it never reads past `len` (the fuzz target,
 * fuzz_textcmd, holds it to that).
 */
#include "textcmd.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

static bool is_blank(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* Past the blanks at line[*pos..len). */
static void skip_blanks(const uint8_t *line, size_t len, size_t *pos)
{
    while (*pos < len && is_blank(line[*pos])) {
        (*pos)++;
    }
}

/* The word at line[*pos..len) (after blanks), its length in *wlen, and
 * *pos past it; NULL when only blanks are left. */
static const uint8_t *next_word(const uint8_t *line, size_t len, size_t *pos, size_t *wlen)
{
    skip_blanks(line, len, pos);
    if (*pos == len) {
        return NULL;
    }
    size_t start = *pos;
    while (*pos < len && !is_blank(line[*pos])) {
        (*pos)++;
    }
    *wlen = *pos - start;
    return line + start;
}

static bool only_blanks_left(const uint8_t *line, size_t len, size_t pos)
{
    skip_blanks(line, len, &pos);
    return pos == len;
}

static const struct {
    const char *name;
    enum textcmd_verb verb;
} verbs[] = {
    {"PUB", TEXTCMD_PUB},     {"REQ", TEXTCMD_REQ},   {"SUB", TEXTCMD_SUB},
    {"UNSUB", TEXTCMD_UNSUB}, {"PING", TEXTCMD_PING}, {"STATS", TEXTCMD_STATS},
    {"HELP", TEXTCMD_HELP},   {"QUIT", TEXTCMD_QUIT},
};

/* A decimal sid: 1 to UINT32_MAX, digits only. */
static bool parse_sid(const uint8_t *w, size_t len, uint32_t *sid)
{
    if (len == 0 || len > 10) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (w[i] < '0' || w[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(w[i] - '0');
    }
    if (v == 0 || v > UINT32_MAX) {
        return false;
    }
    *sid = (uint32_t)v;
    return true;
}

const uint8_t *textcmd_first_word(const uint8_t *line, size_t len, size_t *word_len)
{
    size_t pos = 0;
    const uint8_t *w = next_word(line, len, &pos, word_len);
    if (w == NULL) {
        *word_len = 0;
        return line;
    }
    return w;
}

int textcmd_parse(const uint8_t *line, size_t len, struct textcmd *out, const char **why)
{
    size_t pos = 0;
    size_t vlen;
    const uint8_t *v = next_word(line, len, &pos, &vlen);
    if (v == NULL) {
        return TEXTCMD_EMPTY;
    }
    struct textcmd cmd = {0};
    bool found = false;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (strlen(verbs[i].name) == vlen &&
            strncasecmp(verbs[i].name, (const char *)v, vlen) == 0) {
            cmd.verb = verbs[i].verb;
            found = true;
            break;
        }
    }
    if (!found) {
        *why = "unknown verb";
        return -EINVAL;
    }
    switch (cmd.verb) {
    case TEXTCMD_PUB:
    case TEXTCMD_REQ:
        cmd.arg = next_word(line, len, &pos, &cmd.arg_len);
        if (cmd.arg == NULL) {
            *why = cmd.verb == TEXTCMD_PUB ? "PUB needs a subject: PUB <subject> [<text>]"
                                           : "REQ needs a subject: REQ <subject> [<text>]";
            return -EINVAL;
        }
        if (pos < len) {
            /* One blank ends the subject; everything after it is text. */
            cmd.extra = line + pos + 1;
            cmd.extra_len = len - pos - 1;
        }
        break;
    case TEXTCMD_SUB:
        cmd.arg = next_word(line, len, &pos, &cmd.arg_len);
        cmd.extra = cmd.arg != NULL ? next_word(line, len, &pos, &cmd.extra_len) : NULL;
        if (cmd.arg == NULL || !only_blanks_left(line, len, pos)) {
            *why = "usage: SUB <pattern> [<queue>]";
            return -EINVAL;
        }
        break;
    case TEXTCMD_UNSUB: {
        size_t wlen = 0;
        const uint8_t *w = next_word(line, len, &pos, &wlen);
        if (w == NULL || !parse_sid(w, wlen, &cmd.sid) || !only_blanks_left(line, len, pos)) {
            *why = "usage: UNSUB <sid>, the number SUB answered";
            return -EINVAL;
        }
        break;
    }
    default:
        if (!only_blanks_left(line, len, pos)) {
            *why = "PING, STATS, HELP and QUIT take no arguments";
            return -EINVAL;
        }
        break;
    }
    *out = cmd;
    return 0;
}
