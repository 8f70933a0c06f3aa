/*
 * cmd_pub.c - `sockbus pub`: publish MESSAGE, every line of stdin, or all
 * of stdin, on one subject.
 *
 * The line mode is a throughput path (it is measured in messages per second
 * with 128-byte lines), so stdin is read in large blocks with read(2) and
 * split in place with memchr(); each line goes straight from that block into
 * the library's output buffer with sb_publish(), which batches the writes.
 * The only copy per message is that one, into the output buffer. Nothing is
 * flushed per message: buffered output goes out when the library's buffer
 * fills or when stdin has nothing to read (so `tail -F | sockbus pub` is
 * live), and one sb_flush() at the end is a barrier, so exit status 0
 * means the broker has processed every message.
 */
#include "cli.h"
#include "cli_fds.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define CMD "pub"

/* Block size for reading stdin in line mode: large enough that a pipe
 * full of short lines costs one read(2) per pipe buffer. */
#define PUB_READ_BLOCK (1u << 20)

enum {
    OPT_RETAIN = 256,
    OPT_REPLY,
    OPT_RAW,
    OPT_ATTACH,
    OPT_NO_RECONNECT,
};

/* GNU order: options may follow the operands, "--" ends them;
 * ":": report a missing argument as ':' rather than '?'. */
#define PUB_OPTSTRING ":s:t:qh"

static const struct option pub_options[] = {
    {"socket", required_argument, NULL, 's'},
    {"timeout", required_argument, NULL, 't'},
    {"retain", no_argument, NULL, OPT_RETAIN},
    {"reply", required_argument, NULL, OPT_REPLY},
    {"raw", no_argument, NULL, OPT_RAW},
    {"attach", required_argument, NULL, OPT_ATTACH},
    {"no-reconnect", no_argument, NULL, OPT_NO_RECONNECT},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct pub_args {
    const char *endpoint; /* -s, or NULL for the default rule */
    const char *subject;
    const char *reply;   /* NULL: no reply subject */
    const char *message; /* NULL: the messages come from stdin */
    bool retain;
    bool raw;
    bool no_reconnect; /* --no-reconnect: a lost broker ends the command */
    bool quiet;        /* -q: no lines about reconnecting */
    int timeout_ms;
    int fds[CLI_ATTACH_MAX]; /* --attach: opened, passed with every message */
    size_t nfds;
} pub_args;

static void pub_usage(FILE *out)
{
    fprintf(out, "usage: sockbus pub [OPTIONS] SUBJECT [MESSAGE]\n"
                 "\n"
                 "Publish MESSAGE on SUBJECT. Without MESSAGE, every line of stdin is a\n"
                 "message, without its newline (and a \\r before it); empty lines and a last\n"
                 "line without a newline count too. Reading lines, pub survives a broker\n"
                 "restart: it says so on stderr, keeps the lines read meanwhile (up to 8 MiB,\n"
                 "then it waits for the broker) and sends them once it is back.\n"
                 "\n"
                 "Options (before or after SUBJECT; '--' ends them):\n"
                 "  -s, --socket ENDPOINT  broker socket path or tcp://HOST:PORT (default:\n"
                 "                         $SOCKBUS_SOCKET, $XDG_RUNTIME_DIR/sockbus.sock,\n"
                 "                         /tmp/sockbus-UID.sock)\n"
                 "      --retain           keep the message as SUBJECT's last value, delivered\n"
                 "                         to every later subscriber (empty MESSAGE: delete it)\n"
                 "      --reply SUBJECT    ask receivers to answer on SUBJECT\n"
                 "      --raw              all of stdin, byte for byte, is one message\n"
                 "      --attach PATH      pass an open file descriptor of PATH (read-only)\n"
                 "                         with every message; repeatable (Unix socket only)\n"
                 "  -t, --timeout SECONDS  longest wait to connect and for the broker to\n"
                 "                         confirm the messages (default 5; 0.5, 250ms, 1m)\n"
                 "      --no-reconnect     reading lines: exit 1 when the broker goes away,\n"
                 "                         instead of reconnecting\n"
                 "  -q, --quiet            no line on stderr when the broker goes away and\n"
                 "                         when it is back\n"
                 "  -h, --help             show this help and exit\n"
                 "\n"
                 "A MESSAGE that starts with '-' needs '--' before it:\n"
                 "sockbus pub SUBJECT -- -5\n"
                 "\n"
                 "Exit status: 0 once the broker has processed every message, 1 on failure,\n"
                 "2 on a bad command line.\n"
                 "\n"
                 "Examples:\n"
                 "  sockbus pub sensors.kitchen.temp 21.5\n"
                 "  tail -F app.log | sockbus pub logs.app\n"
                 "  sockbus pub --raw --retain config.app < app.json\n");
}

static int pub_parse(int argc, char **argv, pub_args *args)
{
    int ch;
    int r = 0;

    while ((ch = getopt_long(argc, argv, PUB_OPTSTRING, pub_options, NULL)) != -1) {
        switch (ch) {
        case 's':
            args->endpoint = optarg;
            break;
        case 't':
            r = cli_parse_timeout(CMD, optarg, &args->timeout_ms);
            break;
        case OPT_RETAIN:
            args->retain = true;
            break;
        case OPT_REPLY:
            args->reply = optarg;
            break;
        case OPT_RAW:
            args->raw = true;
            break;
        case OPT_ATTACH:
            r = cli_attach_open(CMD, optarg, args->fds, &args->nfds);
            break;
        case OPT_NO_RECONNECT:
            args->no_reconnect = true;
            break;
        case 'q':
            args->quiet = true;
            break;
        case 'h':
            pub_usage(stdout);
            return -1;
        default:
            return cli_option_error(CMD, argv, ch, pub_options);
        }
        if (r != 0) {
            return r;
        }
    }

    r = cli_parse_subject_message(CMD, argc, argv, &args->subject, &args->message);
    if (r != 0) {
        return r;
    }
    if (args->raw && args->message != NULL) {
        return cli_usage_error(CMD, "--raw reads the message from stdin; leave out MESSAGE");
    }
    if (args->retain && args->nfds > 0) {
        return cli_usage_error(CMD, "--attach and --retain: file descriptors are never retained");
    }

    r = cli_check_subject(CMD, "subject", args->subject, false, " in a published subject");
    if (r != 0) {
        return r;
    }
    if (args->reply != NULL && *args->reply == '\0') {
        args->reply = NULL;
    }
    if (args->reply != NULL) {
        return cli_check_subject(CMD, "reply subject", args->reply, false, "");
    }
    return 0;
}

/* The largest payload one message on this subject can carry. */
static size_t pub_payload_max(sb_client *client, const pub_args *args)
{
    return sb_max_payload(client, strlen(args->subject),
                          args->reply != NULL ? strlen(args->reply) : 0, 0);
}

static int pub_too_large(sb_client *client, const pub_args *args, const char *what)
{
    fprintf(stderr,
            "sockbus pub: %s is larger than %zu bytes, the largest payload the broker at %s "
            "accepts on '%s' (max_frame %u); send less, or raise 'sockbusd --max-frame'\n",
            what, pub_payload_max(client, args), sb_endpoint(client), args->subject,
            (unsigned)sb_max_frame(client));
    return CLI_EXIT_FAILURE;
}

static int pub_one(sb_client *client, const pub_args *args, const void *data, size_t len)
{
    if (args->nfds > 0) {
        sb_pub pub = {
            .subject = args->subject, .reply = args->reply, .payload = data, .payload_len = len};
        return sb_publish_fds(client, &pub, args->fds, args->nfds);
    }
    if (!args->retain) {
        return sb_publish(client, args->subject, args->reply, data, len);
    }
    sb_pub pub = {
        .subject = args->subject,
        .reply = args->reply,
        .payload = data,
        .payload_len = len,
        .flags = SB_PUB_RETAIN,
    };
    return sb_publish_ex(client, &pub);
}

/* Reading lines while the broker is away, with the reconnect buffer full:
 * wait for it to be back (as long as it takes: the stream goes on), the
 * lines held so far sent and confirmed. */
static int pub_wait_broker(sb_client *client)
{
    int r;
    do {
        r = sb_flush(client, -1);
    } while (r == SB_E_DISCONNECTED);
    return r;
}

/* Publish one line; `line_no` (from 1) names it in errors. */
static int pub_line(sb_client *client, const pub_args *args, const char *line, size_t len,
                    uint64_t line_no)
{
    char what[64];
    int r = pub_one(client, args, line, len);
    while (r == SB_E_DISCONNECTED) {
        r = pub_wait_broker(client);
        if (r == 0) {
            r = pub_one(client, args, line, len);
        }
    }

    if (r == -EMSGSIZE) {
        snprintf(what, sizeof(what), "stdin line %llu", (unsigned long long)line_no);
        return pub_too_large(client, args, what);
    }
    if (r < 0) {
        return cli_connection_error(CMD, client, "publishing", r);
    }
    return 0;
}

/* pub subscribes to nothing, but a broker answers a --reply publish that
 * finds no subscriber with a NO_RESPONDERS message: let sb_process()
 * consume such messages instead of keeping them. */
static void pub_discard_msg(sb_client *client, const sb_msg *msg, void *arg)
{
}

/*
 * Wait until stdin is readable, pushing buffered publishes out meanwhile;
 * while the broker is away, sb_timeout_ms() says when sb_process() tries
 * to reconnect, so that the lines held are sent as soon as it is back,
 * not only when the next line comes.
 * The library writes when its buffer fills or on a flush, so with a slow
 * producer (tail -F | sockbus pub) lines would sit in the buffer while we
 * block in read(). While output is pending, poll both: stdin readable ends
 * the wait, a writable socket gets sb_process(). With a fast producer stdin
 * is always readable and this costs one poll(2) per block read.
 */
static int pub_wait_stdin(sb_client *client)
{
    while ((sb_events(client) & POLLOUT) || sb_timeout_ms(client) >= 0) {
        struct pollfd fds[2] = {
            {.fd = STDIN_FILENO, .events = POLLIN},
            {.fd = sb_fd(client), .events = sb_events(client)},
        };
        int n = poll(fds, 2, sb_timeout_ms(client));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return 0; /* let read() report the trouble with stdin */
        }
        if (fds[0].revents != 0) {
            return 0;
        }
        if (fds[1].revents != 0 || n == 0) {
            int r = sb_process(client);
            if (r < 0) {
                return r;
            }
        }
    }
    return 0;
}

static int pub_read_error(void)
{
    fprintf(stderr, "sockbus pub: cannot read stdin: %s\n", strerror(errno));
    return CLI_EXIT_FAILURE;
}

/*
 * Line mode. buf[0..len) holds what has been read and not yet published:
 * at most one partial line after each pass. `scanned` marks how much of it
 * is known to hold no newline, so a long line is searched only once.
 */
static int pub_lines(sb_client *client, const pub_args *args)
{
    size_t limit = pub_payload_max(client, args);
    size_t cap = PUB_READ_BLOCK;
    CLI_CLEANUP_FREE char *buf = malloc(cap);
    size_t len = 0;
    size_t scanned = 0;
    uint64_t line_no = 0;
    int r;

    if (buf == NULL) {
        fprintf(stderr, "sockbus pub: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    for (;;) {
        if (len == cap) {
            /* One partial line fills the buffer. It is at most limit + 1
             * bytes (a '\r' may still be stripped), checked below, so
             * growing up to limit + 2 always leaves room to read. */
            size_t grown = cap * 2 < limit + 2 ? cap * 2 : limit + 2;
            char *p = realloc(buf, grown);
            if (p == NULL) {
                fprintf(stderr, "sockbus pub: out of memory for a %zu-byte line\n", grown);
                return CLI_EXIT_FAILURE;
            }
            buf = p;
            cap = grown;
        }

        r = pub_wait_stdin(client);
        if (r < 0) {
            return cli_connection_error(CMD, client, "publishing", r);
        }
        ssize_t n = read(STDIN_FILENO, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return pub_read_error();
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;

        size_t start = 0;
        char *nl;
        while ((nl = memchr(buf + scanned, '\n', len - scanned)) != NULL) {
            size_t end = (size_t)(nl - buf);
            size_t line_len = end - start;
            if (line_len > 0 && buf[end - 1] == '\r') {
                line_len--;
            }
            r = pub_line(client, args, buf + start, line_len, ++line_no);
            if (r != 0) {
                return r;
            }
            start = end + 1;
            scanned = start;
        }
        scanned = len;
        if (start > 0) {
            /* Keep the partial line at the front of the buffer. */
            memmove(buf, buf + start, len - start);
            len -= start;
            scanned -= start;
        }
        if (len > limit + 1) {
            char what[64];
            snprintf(what, sizeof(what), "stdin line %llu", (unsigned long long)(line_no + 1));
            return pub_too_large(client, args, what);
        }
    }
    /* A last line without a newline is a message too. It has no newline,
     * so no '\r' rule either: its bytes are sent as they are. */
    if (len > 0) {
        r = pub_line(client, args, buf, len, ++line_no);
        if (r != 0) {
            return r;
        }
    }
    return 0;
}

/* --raw: all of stdin is one message, bounded by what the broker takes. */
static int pub_raw(sb_client *client, const pub_args *args)
{
    CLI_CLEANUP_FREE char *buf = NULL;
    size_t len = 0;
    int r = cli_read_stdin(CMD, pub_payload_max(client, args), &buf, &len);

    if (r == -EMSGSIZE) {
        return pub_too_large(client, args, "stdin");
    }
    if (r != 0) {
        return r;
    }
    r = pub_one(client, args, buf, len);
    if (r == -EMSGSIZE) {
        return pub_too_large(client, args, "stdin");
    }
    if (r < 0) {
        return cli_connection_error(CMD, client, "publishing", r);
    }
    return 0;
}

/* The barrier at the end: success means the broker processed everything. */
static int pub_confirm(sb_client *client, const pub_args *args)
{
    int r;
    do {
        /* Lost during the barrier: what it covered is held or lost; the
         * held part goes out after the reconnect, and a new barrier
         * covers it. */
        r = sb_flush(client, args->timeout_ms);
    } while (r == SB_E_DISCONNECTED);

    if (r == 0) {
        return CLI_EXIT_OK;
    }
    if (r == -ETIMEDOUT && sb_state(client) == SB_STATE_DISCONNECTED) {
        fprintf(stderr,
                "sockbus pub: the broker at %s did not come back within %d.%03d s; the "
                "messages read since it went away were not sent (-t SECONDS waits longer)\n",
                sb_endpoint(client), args->timeout_ms / 1000, args->timeout_ms % 1000);
        return CLI_EXIT_FAILURE;
    }
    if (r == -ETIMEDOUT) {
        fprintf(stderr,
                "sockbus pub: the broker at %s did not confirm the messages within %d.%03d s; "
                "is it overloaded? (-t SECONDS waits longer)\n",
                sb_endpoint(client), args->timeout_ms / 1000, args->timeout_ms % 1000);
        return CLI_EXIT_FAILURE;
    }
    if (cli_is_broker_refusal(r)) {
        return cli_refusal_error(CMD, client, r,
                                 r == SB_E_PERMISSION && strncmp(args->subject, "$SYS.", 5) == 0
                                     ? "; subjects under $SYS. are the broker's own"
                                     : "",
                                 "to publish on '%s'", args->subject);
    }
    return cli_connection_error(CMD, client, "waiting for the broker to confirm", r);
}

int cmd_pub(int argc, char **argv)
{
    pub_args args = {.timeout_ms = CLI_TIMEOUT_DEFAULT_MS};
    CLI_CLEANUP_CLIENT sb_client *client = NULL;
    int r;

    r = pub_parse(argc, argv, &args);
    if (r != 0) {
        return r < 0 ? CLI_EXIT_OK : r; /* -1: --help was printed */
    }

    /* A broker that goes away must give a clear error line from the
     * library's write, not a silent death by SIGPIPE. pub never writes to
     * stdout after this, so nothing else depends on SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);

    /* Reading lines, pub is a stream that survives a broker restart. */
    bool reconnect = !args.no_reconnect && args.message == NULL && !args.raw;
    if (cli_connect_reconnecting(CMD, args.endpoint, args.timeout_ms, reconnect, args.quiet,
                                 &client) < 0) {
        return CLI_EXIT_FAILURE;
    }
    sb_set_msg_cb(client, pub_discard_msg, NULL);
    if (args.nfds > 0 && sb_endpoint_is_tcp(sb_endpoint(client))) {
        fprintf(stderr,
                "sockbus pub: cannot --attach over TCP (%s): file descriptors travel only over "
                "a Unix socket; use the broker's socket path\n",
                sb_endpoint(client));
        return CLI_EXIT_FAILURE;
    }

    if (args.message != NULL) {
        r = pub_one(client, &args, args.message, strlen(args.message));
        if (r == -EMSGSIZE) {
            return pub_too_large(client, &args, "MESSAGE");
        }
        if (r < 0) {
            return cli_connection_error(CMD, client, "publishing", r);
        }
    } else {
        r = args.raw ? pub_raw(client, &args) : pub_lines(client, &args);
        if (r != 0) {
            return r;
        }
    }
    return pub_confirm(client, &args);
}
