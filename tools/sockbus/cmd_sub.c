/*
 * cmd_sub.c - `sockbus sub`: subscribe to patterns and print what arrives.
 *
 * Each subscription is confirmed with an sb_flush() barrier before any
 * output, so a refused pattern is one clear error instead of silence. Then
 * the loop takes messages without waiting for as long as the library has
 * them, printing into a large stdio buffer; only when nothing is waiting
 * does it flush stdout and block. That keeps `sockbus sub --raw > /dev/null`
 * at millions of messages per second, while a person at a terminal still
 * sees each message as soon as the stream pauses.
 *
 * Losses are never silent: DROPPED notices from the broker are summed and
 * reported on stderr (when idle, at most once a second while busy, and at
 * exit). SIGINT and SIGTERM write out what is buffered before dying of the
 * signal, so `sockbus sub x > file` followed by Ctrl-C keeps every message
 * it received.
 */
#include "cli.h"
#include "cli_fds.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

#define CMD "sub"

/* The stdout buffer: big enough that a busy stream costs one write(2)
 * per megabyte instead of one per message. */
#define SUB_STDOUT_BUFFER (1u << 20)

/* While busy, report drops at most this often. */
#define SUB_DROPPED_REPORT_MS 1000

enum {
    OPT_JSON = 256,
    OPT_RAW,
    OPT_NO_RECONNECT,
    OPT_QUIET,
    OPT_LOSSLESS,
    OPT_SENDER,
};

/* GNU order: options may follow the operands, "--" ends them;
 * ":": report a missing argument as ':' rather than '?'. */
#define SUB_OPTSTRING ":s:n:t:q:vh"

static const struct option sub_options[] = {
    {"socket", required_argument, NULL, 's'},
    {"count", required_argument, NULL, 'n'},
    {"timeout", required_argument, NULL, 't'},
    {"queue", required_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"json", no_argument, NULL, OPT_JSON},
    {"raw", no_argument, NULL, OPT_RAW},
    {"no-reconnect", no_argument, NULL, OPT_NO_RECONNECT},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"lossless", no_argument, NULL, OPT_LOSSLESS}, /* SB_SUB_LOSSLESS */
    {"sender", no_argument, NULL, OPT_SENDER},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef enum sub_format {
    SUB_FORMAT_LINES,   /* payload "\n" */
    SUB_FORMAT_VERBOSE, /* subject " " payload "\n" */
    SUB_FORMAT_JSON,    /* one object per line */
    SUB_FORMAT_RAW,     /* payload bytes only */
} sub_format;

typedef struct sub_args {
    const char *endpoint; /* -s, or NULL for the default rule */
    uint64_t count;       /* 0: no limit */
    int64_t timeout_ms;   /* 0: no limit */
    const char *queue;    /* NULL: no queue group */
    uint32_t flags;       /* SB_SUB_LOSSLESS with --lossless */
    sub_format format;
    bool sender;       /* --sender: who sent each message */
    bool no_reconnect; /* --no-reconnect: a lost broker ends the command */
    bool quiet;        /* --quiet: no lines about reconnecting */
    char **patterns;
    int pattern_count;
} sub_args;

typedef struct sub_state {
    sb_client *client;
    cli_deadline deadline;       /* -t */
    uint64_t dropped;            /* reported by the broker, not yet by us */
    int64_t dropped_reported_ms; /* when we last printed a drop line */
} sub_state;

/* The buffer behind stdout; static because stdio uses it until exit. */
static char sub_stdout_buffer[SUB_STDOUT_BUFFER];

/* Signal handling: see sub_on_signal(). */
static volatile sig_atomic_t sub_idle;
static volatile sig_atomic_t sub_stop_signal;

static void sub_usage(FILE *out)
{
    fprintf(out, "usage: sockbus sub [OPTIONS] PATTERN...\n"
                 "\n"
                 "Print the messages published on subjects that match any PATTERN. A pattern\n"
                 "is a subject whose tokens may be '*' (exactly one token) or, as the last\n"
                 "token, '>' (one or more): 'sensors.*.temp', 'logs.>'. Retained messages\n"
                 "that match come first.\n"
                 "\n"
                 "Options (before or after the PATTERNs; '--' ends them):\n"
                 "  -s, --socket ENDPOINT  broker socket path or tcp://HOST:PORT (default:\n"
                 "                         $SOCKBUS_SOCKET, $XDG_RUNTIME_DIR/sockbus.sock,\n"
                 "                         /tmp/sockbus-UID.sock)\n"
                 "  -n, --count COUNT      exit 0 after COUNT messages (a message that matches\n"
                 "                         two PATTERNs arrives, and counts, twice)\n"
                 "  -t, --timeout SECONDS  exit 124 if SECONDS pass, counted from the start,\n"
                 "                         before COUNT messages; also bounds connecting\n"
                 "                         (fractional, or with a unit: 0.5, 250ms, 1m)\n"
                 "  -q, --queue GROUP      subscribe in queue group GROUP: each message goes\n"
                 "                         to one member of the group\n"
                 "  -v, --verbose          print \"SUBJECT PAYLOAD\" for each message\n"
                 "      --json             one JSON object per line: \"subject\", \"reply\" (when\n"
                 "                         present), \"payload\" (UTF-8 text) or\n"
                 "                         \"payload_base64\", \"retained\": true (when flagged)\n"
                 "      --raw              payload bytes only, nothing added\n"
                 "      --no-reconnect     exit 1 when the broker goes away, instead of\n"
                 "                         reconnecting and subscribing again\n"
                 "      --quiet            no line on stderr when the broker goes away and\n"
                 "                         when it is back\n"
                 "      --lossless         the broker never drops a message for this\n"
                 "                         subscriber: a publisher waits while its queue is\n"
                 "                         full (read steadily: one that stalls too long is\n"
                 "                         disconnected, 'slow consumer')\n"
                 "      --sender           learn who sent each message, as the kernel says:\n"
                 "                         with -v \"SUBJECT (pid P uid U gid G) PAYLOAD\",\n"
                 "                         with --json a \"sender\" object\n"
                 "  -h, --help             show this help and exit\n"
                 "\n"
                 "With -v and --json, file descriptors that came with a message are shown\n"
                 "too: their type and what they refer to (/proc/self/fd/N).\n"
                 "\n"
                 "Without an option, each payload is printed on its own line. Output is\n"
                 "buffered and written whenever no message is waiting. Messages the broker\n"
                 "dropped because this subscriber was too slow are counted on stderr.\n"
                 "When the broker goes away, sub says so on stderr, reconnects as soon as\n"
                 "it is back, subscribes again and goes on (what was published meanwhile\n"
                 "is missed).\n"
                 "\n"
                 "Exit status: 0 after COUNT messages, 1 on failure (refused subscription,\n"
                 "lost connection with --no-reconnect), 2 on a bad command line, 124 when\n"
                 "SECONDS pass first.\n"
                 "\n"
                 "Examples:\n"
                 "  sockbus sub 'sensors.>'\n"
                 "  sockbus sub -n 1 -t 5 --json config.app\n");
}

/* The output options exclude each other; say which two collided. */
static int sub_set_format(sub_args *args, sub_format format, const char **format_opt,
                          const char *opt)
{
    if (*format_opt != NULL && args->format != format) {
        return cli_usage_error(CMD, "'%s' and '%s' are different output formats, pick one",
                               *format_opt, opt);
    }
    args->format = format;
    *format_opt = opt;
    return 0;
}

static int sub_parse(int argc, char **argv, sub_args *args)
{
    const char *format_opt = NULL;
    int ch;
    int r = 0;

    while ((ch = getopt_long(argc, argv, SUB_OPTSTRING, sub_options, NULL)) != -1) {
        switch (ch) {
        case 's':
            args->endpoint = optarg;
            break;
        case 'n':
            r = cli_parse_count_option(CMD, optarg, &args->count);
            break;
        case 't':
            r = cli_parse_deadline(CMD, optarg, &args->timeout_ms);
            break;
        case 'q':
            r = cli_parse_queue(CMD, optarg, &args->queue);
            break;
        case 'v':
            r = sub_set_format(args, SUB_FORMAT_VERBOSE, &format_opt, "-v");
            break;
        case OPT_JSON:
            r = sub_set_format(args, SUB_FORMAT_JSON, &format_opt, "--json");
            break;
        case OPT_RAW:
            r = sub_set_format(args, SUB_FORMAT_RAW, &format_opt, "--raw");
            break;
        case OPT_NO_RECONNECT:
            args->no_reconnect = true;
            break;
        case OPT_QUIET:
            args->quiet = true;
            break;
        case OPT_LOSSLESS:
            args->flags |= SB_SUB_LOSSLESS;
            break;
        case OPT_SENDER:
            args->sender = true;
            break;
        case 'h':
            sub_usage(stdout);
            return -1;
        default:
            return cli_option_error(CMD, argv, ch, sub_options);
        }
        if (r != 0) {
            return r;
        }
    }

    if (optind >= argc) {
        return cli_usage_error(CMD, "missing PATTERN");
    }
    args->patterns = argv + optind;
    args->pattern_count = argc - optind;

    for (int i = 0; i < args->pattern_count; i++) {
        r = cli_check_subject(CMD, "pattern", args->patterns[i], true, "");
        if (r != 0) {
            return r;
        }
    }
    return 0;
}

/* Subscribe to each pattern and wait for the broker to take it, one at a
 * time, so that a refusal names the pattern it is about. The wait is what
 * is left of -t, else CLI_TIMEOUT_DEFAULT_MS. */
static int sub_subscribe(sub_state *st, const sub_args *args)
{
    for (int i = 0; i < args->pattern_count; i++) {
        int r = cli_subscribe_ex(CMD, st->client, args->patterns[i], args->queue,
                                 args->flags | (args->sender ? SB_SUB_SENDER : 0),
                                 cli_deadline_wait_ms(&st->deadline, CLI_TIMEOUT_DEFAULT_MS),
                                 &st->deadline);
        if (r != 0) {
            return r;
        }
    }
    return 0;
}

static void sub_print(const sub_args *args, const sb_client *c, const sb_msg *m)
{
    FILE *out = stdout;

    switch (args->format) {
    case SUB_FORMAT_LINES:
        fwrite_unlocked(m->payload, 1, m->payload_len, out);
        putc_unlocked('\n', out);
        break;
    case SUB_FORMAT_VERBOSE:
        fwrite_unlocked(m->subject, 1, m->subject_len, out);
        if (m->flags & SB_MSG_META) {
            cli_print_meta_text(out, c, m, args->sender);
        }
        putc_unlocked(' ', out);
        fwrite_unlocked(m->payload, 1, m->payload_len, out);
        putc_unlocked('\n', out);
        break;
    case SUB_FORMAT_JSON:
        fputs_unlocked("{\"subject\":", out);
        cli_json_write_string(out, m->subject, m->subject_len);
        if (m->reply_len > 0) {
            fputs_unlocked(",\"reply\":", out);
            cli_json_write_string(out, m->reply, m->reply_len);
        }
        if (cli_utf8_valid(m->payload, m->payload_len)) {
            fputs_unlocked(",\"payload\":", out);
            cli_json_write_string(out, m->payload, m->payload_len);
        } else {
            fputs_unlocked(",\"payload_base64\":\"", out);
            cli_base64_write(out, m->payload, m->payload_len);
            putc_unlocked('"', out);
        }
        if (m->flags & SB_MSG_RETAINED) {
            fputs_unlocked(",\"retained\":true", out);
        }
        if (m->flags & SB_MSG_META) {
            cli_print_meta_json(out, c, m, args->sender);
        }
        fputs_unlocked("}\n", out);
        break;
    case SUB_FORMAT_RAW:
        fwrite_unlocked(m->payload, 1, m->payload_len, out);
        break;
    }
}

static void sub_report_dropped(sub_state *st)
{
    if (st->dropped == 0) {
        return;
    }
    fprintf(stderr, "sockbus sub: broker dropped %llu message%s (this subscriber was too slow)\n",
            (unsigned long long)st->dropped, st->dropped == 1 ? "" : "s");
    st->dropped = 0;
    st->dropped_reported_ms = cli_now_ms();
}

/*
 * Take the broker's drop notices and report them, at most once every
 * SUB_DROPPED_REPORT_MS: a subscriber that cannot keep up gets notices in
 * every pause of the stream, and one line per pause would flood stderr.
 * Returns how long until a held-back count may be reported (so an idle
 * wait can end then), or -1 when nothing is held back.
 */
static int sub_check_dropped(sub_state *st)
{
    st->dropped += sb_take_dropped(st->client);
    if (st->dropped == 0) {
        return -1;
    }
    int64_t since = cli_now_ms() - st->dropped_reported_ms;
    if (since >= SUB_DROPPED_REPORT_MS) {
        sub_report_dropped(st);
        return -1;
    }
    return (int)(SUB_DROPPED_REPORT_MS - since);
}

/* Leave with `code` once everything received has been written out. */
static int sub_finish(sub_state *st, int code)
{
    st->dropped += sb_take_dropped(st->client);
    sub_report_dropped(st);
    int r = cli_flush_stdout(CMD);
    return r != 0 ? r : code;
}

/*
 * SIGINT/SIGTERM. While the loop blocks for input, stdout has just been
 * flushed: die of the signal at once, as if there were no handler, so the
 * shell sees how we ended. While busy, set a flag; the loop flushes and
 * then dies of the signal the same way.
 */
static void sub_on_signal(int sig)
{
    if (sub_idle) {
        signal(sig, SIG_DFL);
        raise(sig); /* blocked in the handler, delivered on return */
        return;
    }
    sub_stop_signal = sig;
}

static void sub_catch_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = sub_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int sub_die_of_signal(sub_state *st)
{
    int sig = sub_stop_signal;
    int r = sub_finish(st, CLI_EXIT_FAILURE);

    signal(sig, SIG_DFL);
    raise(sig);
    return r; /* only if the signal did not end us */
}

static int sub_loop(sub_state *st, const sub_args *args)
{
    uint64_t received = 0;
    sb_msg m;

    sub_catch_signals();
    for (;;) {
        if (sub_stop_signal != 0) {
            return sub_die_of_signal(st);
        }

        int r = sb_next_msg(st->client, &m, 0);
        if (r == -ETIMEDOUT) {
            /* Nothing waiting: the moment to let output and news out. */
            int report_in = sub_check_dropped(st);
            r = cli_flush_stdout(CMD);
            if (r != 0) {
                return r;
            }
            if (cli_deadline_passed(&st->deadline)) {
                return sub_finish(st, CLI_EXIT_TIMEOUT);
            }
            int wait = cli_deadline_wait_ms(&st->deadline, -1);
            if (report_in >= 0 && (wait < 0 || report_in < wait)) {
                wait = report_in; /* wake up to report a held-back count */
            }
            sub_idle = 1;
            /* A signal that came while busy (since the check at the top)
             * only set the flag, and the wait below does not return for
             * signals: look again now that the handler acts by itself. */
            if (sub_stop_signal != 0) {
                sub_idle = 0;
                continue;
            }
            r = sb_next_msg(st->client, &m, wait);
            sub_idle = 0;
            if (r == -ETIMEDOUT || r == -EINTR) {
                continue; /* the deadline is checked above */
            }
        }
        if (r == -EINTR) {
            continue;
        }
        if (r < 0) {
            /* What arrived before the loss is still worth writing out. */
            sub_finish(st, CLI_EXIT_FAILURE);
            return cli_connection_error(CMD, st->client, "waiting for messages", r);
        }
        /* A message that arrives after the deadline does not count. */
        if (cli_deadline_passed(&st->deadline)) {
            return sub_finish(st, CLI_EXIT_TIMEOUT);
        }

        sub_print(args, st->client, &m);
        if (ferror_unlocked(stdout)) {
            return sub_finish(st, CLI_EXIT_FAILURE);
        }
        if (++received == args->count) {
            return sub_finish(st, CLI_EXIT_OK);
        }

        sub_check_dropped(st);
    }
}

int cmd_sub(int argc, char **argv)
{
    int64_t start_ms = cli_now_ms();
    sub_args args = {.format = SUB_FORMAT_LINES};
    CLI_CLEANUP_CLIENT sb_client *client = NULL;
    int r;

    r = sub_parse(argc, argv, &args);
    if (r != 0) {
        return r < 0 ? CLI_EXIT_OK : r; /* -1: --help was printed */
    }
    /* Before anything touches stdout: setvbuf() must come first. */
    setvbuf(stdout, sub_stdout_buffer, _IOFBF, sizeof(sub_stdout_buffer));

    sub_state st = {
        .deadline = {.set = args.timeout_ms > 0, .at_ms = start_ms + args.timeout_ms},
        /* The first drop is reported at once. */
        .dropped_reported_ms = start_ms - SUB_DROPPED_REPORT_MS,
    };

    /* -t bounds the connect too, but never below 1 ms: 0 would mean the
     * library's default. */
    int connect_ms = cli_deadline_bounded_ms(&st.deadline);
    if (cli_connect_reconnecting(CMD, args.endpoint, connect_ms < 1 ? 1 : connect_ms,
                                 !args.no_reconnect, args.quiet, &client) < 0) {
        return CLI_EXIT_FAILURE;
    }
    st.client = client;

    r = sub_subscribe(&st, &args);
    if (r != 0) {
        return r;
    }
    return sub_loop(&st, &args);
}
