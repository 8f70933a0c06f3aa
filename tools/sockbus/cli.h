/*
 * cli.h - what the `sockbus` subcommands share: the command table entry,
 * exit codes, connecting and the one-line errors, option and operand
 * parsing (counts, durations, -t, -q, SUBJECT [MESSAGE]), the -t deadline
 * of sub and reply with subscribing and confirming under it, reading stdin,
 * and the output encoders (JSON strings, base64, UTF-8 validation).
 */
#ifndef SOCKBUS_CLI_H
#define SOCKBUS_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "sockbus.h"
#include "text.h"

/* Exit codes, the same for every subcommand. 124 is what timeout(1) uses
 * when time runs out, so scripts can treat both alike. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILURE = 1,
    CLI_EXIT_USAGE = 2,
    CLI_EXIT_TIMEOUT = 124,
};

/* How long connecting and confirming (sb_flush) may take unless the user
 * says otherwise with -t. */
#define CLI_TIMEOUT_DEFAULT_MS 5000

/* One row of the command table in main.c. `run` gets argv with argv[0] the
 * subcommand's name and returns the process exit code (CLI_EXIT_*). */
typedef int (*cli_command_fn)(int argc, char **argv);

typedef struct cli_command {
    const char *name;
    cli_command_fn run;
    const char *summary; /* one line for `sockbus --help` */
} cli_command;

/* The subcommands, one per cmd_<name>.c, listed in main.c's table. */
int cmd_pub(int argc, char **argv);
int cmd_sub(int argc, char **argv);
int cmd_req(int argc, char **argv);
int cmd_reply(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_wait(int argc, char **argv);

/*
 * Resolve the endpoint (`endpoint` from -s, or NULL for the default rule:
 * $SOCKBUS_SOCKET, $XDG_RUNTIME_DIR/sockbus.sock, /tmp/sockbus-UID.sock),
 * connect within `timeout_ms` (> 0) and do the handshake. On a default
 * path the library refuses a broker run by another user (SB_E_UNTRUSTED);
 * -s and $SOCKBUS_SOCKET name a socket explicitly, and are trusted. `cmd`
 * names the subcommand ("pub"); the client calls itself "sockbus CMD" to
 * the broker. On failure prints exactly one line on stderr naming the
 * endpoint and what to try. Returns 0 with *out owning the client, or a
 * negative code (*out untouched).
 */
int cli_connect(const char *cmd, const char *endpoint, int timeout_ms, sb_client **out);

/*
 * cli_connect(), for the commands that survive a broker restart (sub,
 * reply, pub reading lines): with `reconnect`, the client reconnects and
 * replays its subscriptions (docs/protocol.md, "Reconnecting"), and says
 * so on stderr, one line when the broker goes away (naming the endpoint)
 * and one when it is back, unless `quiet`. `cmd` must outlive the client.
 */
int cli_connect_reconnecting(const char *cmd, const char *endpoint, int timeout_ms, bool reconnect,
                             bool quiet, sb_client **out);
/* --system was given (before or after the command: main.c takes it out of
 * the arguments): without -s, commands connect to SB_ENDPOINT_SYSTEM. */
extern bool cli_system;

/* Room for cli_broker_detail(): the library keeps at most 255 bytes of the
 * broker's text, and each may take four once escaped (cli_escape()). */
#define CLI_BROKER_DETAIL_MAX (sizeof(" (broker: )") + TEXT_ESCAPE_MAX(255))

/* Room for cli_escape() of a text of `len` bytes, NUL included. */
#define CLI_ESCAPE_MAX(len) TEXT_ESCAPE_MAX(len)

/*
 * Text that the broker or another client chose (an ERR text, a client
 * name, the broker's version) made safe for a terminal: escaped into
 * buf[len] with text_escape(), so control characters, ill-formed UTF-8 and
 * backslashes show as \xNN, and NUL terminated. Returns buf.
 */
const char *cli_escape(const char *text, char *buf, size_t len);

/* " (broker: TEXT)" with the text of the broker's last ERR, escaped
 * (cli_escape()), or "" when there is none or it says no more than
 * sb_strerror(err). Formats into buf[len] and returns buf, or returns "". */
const char *cli_broker_detail(sb_client *client, int err, char *buf, size_t len);

/* One line on stderr for an error on an established connection (`what`
 * says what we were doing: "publishing"), with the broker's own text when
 * it sent one. Returns CLI_EXIT_FAILURE. */
int cli_connection_error(const char *cmd, sb_client *client, const char *what, int err);

/* Is `err` a broker refusal that leaves the connection open (invalid
 * subject, permission, limit, sid, invalid request)? Anything else negative from the
 * library means the connection is unusable. */
bool cli_is_broker_refusal(int err);

/* One line on stderr for a broker refusal (cli_is_broker_refusal(err)):
 * "sockbus CMD: the broker at ENDPOINT refused WHAT: REASON (broker: TEXT)"
 * followed by `hint` ("" or "; what to try"). WHAT is formatted from `fmt`.
 * Returns CLI_EXIT_FAILURE. */
int cli_refusal_error(const char *cmd, sb_client *client, int err, const char *hint,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Report a bad command line: "sockbus CMD: MESSAGE; try 'sockbus CMD
 * --help'". Returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Report what getopt_long() returned as '?' (unknown option, or a value
 * given to a long option that takes none) or ':' (missing argument); the
 * option string must start with ":" and `opts` is the long option table
 * that was passed. Returns CLI_EXIT_USAGE. */
int cli_option_error(const char *cmd, char **argv, int ch, const struct option *opts);

/*
 * Options and operands come in any order (GNU getopt_long(), which moves
 * the operands behind the options), and "--" ends the options. For a
 * command that runs another command after "--" (reply -- COMMAND), the
 * index of that "--" in argv as getopt_long() would read it (an option's
 * argument "--" is not it), or argc when there is none: parse only the
 * arguments before it, and leave the rest to the command.
 */
int cli_options_end(int argc, char **argv, const struct option *opts, const char *optstring);

/*
 * Parse a duration: a non-negative decimal number of seconds, fractional
 * allowed ("0.5"), optionally with a unit ("250ms", "2s", "1m"). Writes
 * milliseconds, rounded up so a tiny positive duration is not 0, to *ms.
 * Returns 0 or -EINVAL.
 */
int cli_parse_duration_ms(const char *text, int64_t *ms);

/* Parse a positive decimal count. Returns 0 or -EINVAL. */
int cli_parse_count(const char *text, uint64_t *count);

/* The argument of -t/--timeout when it bounds each wait for the library
 * (pub, req, stat): a duration (cli_parse_duration_ms()) above 0 that fits
 * in an int of milliseconds. Returns 0 with *timeout_ms set, or
 * CLI_EXIT_USAGE after one line on stderr (*timeout_ms untouched). */
int cli_parse_timeout(const char *cmd, const char *arg, int *timeout_ms);

/* The argument of -t/--timeout when it is a deadline for the whole command
 * (sub, reply: see cli_deadline): as cli_parse_timeout(), with the same
 * wording, but without the int bound. */
int cli_parse_deadline(const char *cmd, const char *arg, int64_t *timeout_ms);

/* The argument of -n/--count: cli_parse_count(), and one line on stderr when
 * it is not a count. Returns 0 with *count set, or CLI_EXIT_USAGE. */
int cli_parse_count_option(const char *cmd, const char *arg, uint64_t *count);

/* The argument of -q/--queue: a queue group, named by the subject rule.
 * Returns 0 with *queue = arg (still owned by argv), or CLI_EXIT_USAGE after
 * one line on stderr. */
int cli_parse_queue(const char *cmd, const char *arg, const char **queue);

/* A subject (or, with `pattern`, a subscription pattern) from the command
 * line, checked before connecting: a typo should not depend on a broker.
 * `what` names it ("subject", "reply subject", "pattern"); `note` ends the
 * rule of a subject ("" or " in a request subject"). Returns 0, or
 * CLI_EXIT_USAGE after one line on stderr. */
int cli_check_subject(const char *cmd, const char *what, const char *text, bool pattern,
                      const char *note);

/* The operands SUBJECT [MESSAGE] in argv[optind..argc), after getopt. Sets *subject, and *message
 * to the MESSAGE or NULL when there is none (both point into argv). Returns 0, or CLI_EXIT_USAGE
 * after one line on stderr (nothing set). */
int cli_parse_subject_message(const char *cmd, int argc, char **argv, const char **subject,
                              const char **message);

/* CLOCK_MONOTONIC in milliseconds: deadlines for -t. */
int64_t cli_now_ms(void);

/* Milliseconds left until `deadline_ms`, as a timeout for the library:
 * at least 0, at most INT_MAX. */
int cli_remaining_ms(int64_t deadline_ms);

/* The -t of `sub` and `reply`: a time limit counted from the command's
 * start, after which it exits CLI_EXIT_TIMEOUT. Embedded in the command's
 * state; `set` false means no limit. */
typedef struct cli_deadline {
    bool set;
    int64_t at_ms; /* on the cli_now_ms() clock */
} cli_deadline;

/* Has the deadline passed? Never when none is set. */
bool cli_deadline_passed(const cli_deadline *deadline);

/* How long a wait may take: what is left until the deadline, or `fallback`
 * (-1: no limit) when none is set. */
int cli_deadline_wait_ms(const cli_deadline *deadline, int fallback);

/* How long a wait for the broker may take: CLI_TIMEOUT_DEFAULT_MS, or less
 * when the deadline comes sooner (0 once it has passed). */
int cli_deadline_bounded_ms(const cli_deadline *deadline);

/*
 * Wait up to `wait_ms` for the broker to process everything sent so far
 * (sb_flush()), for a command whose -t is `deadline`. Returns 0 when it
 * has; CLI_EXIT_TIMEOUT when the wait ran out because the deadline passed;
 * CLI_EXIT_FAILURE after "did not confirm WHAT within N s" on stderr (WHAT
 * formatted from `fmt`) when the broker was too slow; or sb_flush()'s
 * negative code (a refusal, a lost connection) for the caller to report.
 */
int cli_confirm(const char *cmd, sb_client *client, int wait_ms, const cli_deadline *deadline,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * Subscribe to `pattern`, in queue group `queue` (NULL: none), and wait up
 * to `wait_ms` for the broker to confirm it (cli_confirm()), so that a
 * refusal is one line naming the pattern before the command claims to
 * listen. The strings are only read. Returns 0, CLI_EXIT_TIMEOUT when the
 * deadline passed first, or CLI_EXIT_FAILURE after one line on stderr.
 */
int cli_subscribe(const char *cmd, sb_client *client, const char *pattern, const char *queue,
                  int wait_ms, const cli_deadline *deadline);

/* cli_subscribe() with SUB flags (SB_SUB_SENDER, SB_SUB_LOSSLESS). */
int cli_subscribe_ex(const char *cmd, sb_client *client, const char *pattern, const char *queue,
                     uint32_t flags, int wait_ms, const cli_deadline *deadline);

/*
 * Read all of stdin, reading at most one byte more than `limit` so that
 * input that can never fit is refused without holding all of it. Returns
 * 0 with *out a malloc'd buffer the caller frees and *out_len its length;
 * -EMSGSIZE when stdin holds more than `limit` bytes (nothing printed: the
 * caller says what the limit is); or CLI_EXIT_FAILURE after one line on
 * stderr. *out and *out_len are written only on success.
 */
int cli_read_stdin(const char *cmd, size_t limit, char **out, size_t *out_len);

/* Write out stdout. Returns 0, or CLI_EXIT_FAILURE: quietly when the
 * reader went away (EPIPE, SIGPIPE being ignored), else after one line on
 * stderr saying why. */
int cli_flush_stdout(const char *cmd);

/* Is data[0..len) well-formed UTF-8 (no overlongs, surrogates or code
 * points above U+10FFFF)? */
bool cli_utf8_valid(const void *data, size_t len);

/*
 * Write data[0..len) to `f` as a JSON string, quotes included. The bytes
 * must be valid UTF-8; '"', '\\' and control characters are escaped.
 * Returns 0, or -EIO when `f` is in error (the caller's fflush() says why).
 */
int cli_json_write_string(FILE *f, const void *data, size_t len);

/* Bytes of base64 (with padding, no terminator) for `len` input bytes. */
#define CLI_BASE64_LEN(len) ((((len) + 2) / 3) * 4)

/* Encode data[0..len) as base64 (RFC 4648, padded) into `out`, which holds
 * CLI_BASE64_LEN(len) bytes. Returns the number of bytes written. */
size_t cli_base64_encode(char *out, const void *data, size_t len);

/* Write data[0..len) to `f` as base64, without quotes. Returns 0 or -EIO
 * like cli_json_write_string(). */
int cli_base64_write(FILE *f, const void *data, size_t len);

/* For locals that own a client or a heap buffer: released on scope exit,
 * so every early return of a subcommand cleans up. */
static inline void cli_client_closep(sb_client **client)
{
    sb_close(*client);
}

static inline void cli_freep(void *p)
{
    free(*(void **)p);
}

#define CLI_CLEANUP_CLIENT __attribute__((cleanup(cli_client_closep)))
#define CLI_CLEANUP_FREE   __attribute__((cleanup(cli_freep)))

#endif /* SOCKBUS_CLI_H */
