/*
 * fuzz_textmode.c - text mode's command parser (broker/bus/textcmd.c).
 *
 * The input is what a text-mode client sends: it is cut into lines at each
 * '\n' (a '\r' before it dropped), as the broker's connection does, and
 * each line goes through textcmd_parse(). Beyond memory safety it checks
 * what the session relies on:
 *   - the answer is a command, TEXTCMD_EMPTY or -EINVAL with a reason,
 *     nothing else, and *out is left alone unless it is a command;
 *   - an empty answer means the line holds only blanks;
 *   - every pointer of a command points into the line, within it;
 *   - PUB and REQ have a subject of at least one byte and no blank, and
 *     their text is the rest of the line after one blank;
 *   - SUB has a pattern, and a queue group only after it, neither with a
 *     blank; UNSUB has a sid from 1 up;
 *   - the verb is one of the eight, in any case, as the line's first word;
 *   - textcmd_first_word() points into the line.
 */
#include "fuzz.h"

#include "textcmd.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

static bool inside(const uint8_t *line, size_t len, const uint8_t *p, size_t n)
{
    return p >= line && p <= line + len && n <= (size_t)(line + len - p);
}

static bool has_blank(const uint8_t *p, size_t n)
{
    return memchr(p, ' ', n) != NULL || memchr(p, '\t', n) != NULL;
}

static bool only_blanks(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != ' ' && p[i] != '\t') {
            return false;
        }
    }
    return true;
}

static void one_line(const uint8_t *line, size_t len)
{
    struct textcmd cmd;
    memset(&cmd, 0xA5, sizeof(cmd));
    struct textcmd untouched = cmd;
    const char *why = NULL;
    int r = textcmd_parse(line, len, &cmd, &why);
    FUZZ_CHECK(r == 0 || r == TEXTCMD_EMPTY || r == -EINVAL);
    size_t wlen = 0;
    const uint8_t *w = textcmd_first_word(line, len, &wlen);
    FUZZ_CHECK(inside(line, len, w, wlen));
    if (r != 0) {
        FUZZ_CHECK(memcmp(&cmd, &untouched, sizeof(cmd)) == 0);
        FUZZ_CHECK(r == TEXTCMD_EMPTY ? only_blanks(line, len) : why != NULL && why[0] != '\0');
        return;
    }
    static const char *const names[] = {"PUB", "REQ", "SUB", "UNSUB", "PING", "STATS", "HELP",
                                        "QUIT"};
    FUZZ_CHECK((unsigned)cmd.verb < sizeof(names) / sizeof(names[0]));
    FUZZ_CHECK(wlen == strlen(names[cmd.verb]) &&
               strncasecmp((const char *)w, names[cmd.verb], wlen) == 0);
    switch (cmd.verb) {
    case TEXTCMD_PUB:
    case TEXTCMD_REQ:
        FUZZ_CHECK(cmd.arg != NULL && cmd.arg_len > 0 && inside(line, len, cmd.arg, cmd.arg_len));
        FUZZ_CHECK(!has_blank(cmd.arg, cmd.arg_len));
        if (cmd.extra != NULL) {
            FUZZ_CHECK(cmd.extra == cmd.arg + cmd.arg_len + 1);
            FUZZ_CHECK(cmd.extra + cmd.extra_len == line + len);
        } else {
            FUZZ_CHECK(cmd.arg + cmd.arg_len == line + len);
        }
        break;
    case TEXTCMD_SUB:
        FUZZ_CHECK(cmd.arg != NULL && cmd.arg_len > 0 && inside(line, len, cmd.arg, cmd.arg_len));
        FUZZ_CHECK(!has_blank(cmd.arg, cmd.arg_len));
        if (cmd.extra != NULL) {
            FUZZ_CHECK(cmd.extra_len > 0 && inside(line, len, cmd.extra, cmd.extra_len));
            FUZZ_CHECK(cmd.extra > cmd.arg + cmd.arg_len && !has_blank(cmd.extra, cmd.extra_len));
        }
        break;
    case TEXTCMD_UNSUB:
        FUZZ_CHECK(cmd.sid > 0);
        break;
    default:
        FUZZ_CHECK(cmd.arg == NULL && cmd.extra == NULL);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t start = 0;
    while (start <= size) {
        const uint8_t *nl = memchr(data + start, '\n', size - start);
        size_t end = nl != NULL ? (size_t)(nl - data) : size;
        size_t len = end - start;
        if (len > 0 && data[start + len - 1] == '\r') {
            len--;
        }
        one_line(data + start, len);
        if (nl == NULL) {
            break;
        }
        start = end + 1;
    }
    return 0;
}
