/*
 * cmd_req.c - `sockbus req`: send one request and print its reply.
 *
 * The request goes out with sb_request_send() and is followed by an
 * sb_flush() barrier before we wait for the reply. The broker answers in
 * the order of our frames, so by the time the barrier returns it has
 * either refused the request (an ERR, which the flush returns: publishing
 * on a $SYS. subject it does not serve, say), or answered NO_RESPONDERS, or
 * handed the request to a responder. Without the barrier a refusal would
 * look like a silent responder and cost the user the whole -t wait.
 *
 * One timeout, -t, bounds connecting and, separately, the wait for the
 * reply (from the moment the request is sent). Reading the request from
 * stdin is not bounded: that is the user's own input.
 */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

#define CMD "req"

enum {
    OPT_RAW = 256,
};

/* GNU order: options may follow the operands, "--" ends them;
 * ":": report a missing argument as ':' rather than '?'. */
#define REQ_OPTSTRING ":s:t:h"

static const struct option req_options[] = {
    {"socket", required_argument, NULL, 's'},
    {"timeout", required_argument, NULL, 't'},
    {"raw", no_argument, NULL, OPT_RAW},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct req_args {
    const char *endpoint; /* -s, or NULL for the default rule */
    const char *subject;
    const char *message; /* NULL: the request is all of stdin */
    bool raw;
    int timeout_ms;
} req_args;

static void req_usage(FILE *out)
{
    fprintf(out, "usage: sockbus req [OPTIONS] SUBJECT [MESSAGE]\n"
                 "\n"
                 "Send MESSAGE as a request on SUBJECT and print the reply. Without MESSAGE,\n"
                 "all of stdin, byte for byte, is the request.\n"
                 "\n"
                 "Options (before or after SUBJECT; '--' ends them):\n"
                 "  -s, --socket ENDPOINT  broker socket path or tcp://HOST:PORT (default:\n"
                 "                         $SOCKBUS_SOCKET, $XDG_RUNTIME_DIR/sockbus.sock,\n"
                 "                         /tmp/sockbus-UID.sock)\n"
                 "  -t, --timeout SECONDS  longest wait to connect, and for the reply once the\n"
                 "                         request is sent (default 5; 0.5, 250ms, 1m)\n"
                 "      --raw              print the reply's bytes only; without it a newline\n"
                 "                         follows a reply that does not end with one\n"
                 "  -h, --help             show this help and exit\n"
                 "\n"
                 "A MESSAGE that starts with '-' needs '--' before it:\n"
                 "sockbus req SUBJECT -- -5\n"
                 "\n"
                 "Exit status: 0 when a reply was printed; 1 when nobody serves SUBJECT (at\n"
                 "once), when no reply came within SECONDS, or on another failure (one line\n"
                 "on stderr says which); 2 on a bad command line.\n"
                 "\n"
                 "Examples:\n"
                 "  sockbus req time.now\n"
                 "  sockbus req -t 0.5 math.upper 'hello'\n"
                 "  sockbus req config.render < template.txt\n");
}

static int req_parse(int argc, char **argv, req_args *args)
{
    int ch;
    int r = 0;

    while ((ch = getopt_long(argc, argv, REQ_OPTSTRING, req_options, NULL)) != -1) {
        switch (ch) {
        case 's':
            args->endpoint = optarg;
            break;
        case 't':
            r = cli_parse_timeout(CMD, optarg, &args->timeout_ms);
            break;
        case OPT_RAW:
            args->raw = true;
            break;
        case 'h':
            req_usage(stdout);
            return -1;
        default:
            return cli_option_error(CMD, argv, ch, req_options);
        }
        if (r != 0) {
            return r;
        }
    }

    r = cli_parse_subject_message(CMD, argc, argv, &args->subject, &args->message);
    if (r != 0) {
        return r;
    }

    return cli_check_subject(CMD, "subject", args->subject, false, " in a request subject");
}

static int req_too_large(sb_client *client, const req_args *args, const char *what)
{
    fprintf(stderr,
            "sockbus req: %s is too large for one request on '%s': the broker at %s takes "
            "frames of at most %u bytes (max_frame); send less, or raise 'sockbusd "
            "--max-frame'\n",
            what, args->subject, sb_endpoint(client), (unsigned)sb_max_frame(client));
    return CLI_EXIT_FAILURE;
}

/* What went wrong while the request was out, as one line; returns the
 * exit code. */
static int req_error(sb_client *client, const req_args *args, int err)
{
    switch (err) {
    case SB_E_NO_RESPONDERS:
        fprintf(stderr,
                "sockbus req: no responders for %s at %s; is a service (such as 'sockbus "
                "reply %s ...') running?\n",
                args->subject, sb_endpoint(client), args->subject);
        return CLI_EXIT_FAILURE;
    case -ETIMEDOUT:
        fprintf(stderr,
                "sockbus req: no reply within %d.%03d s for %s: a responder took the request "
                "but did not answer; is it slow or stuck? (-t SECONDS waits longer)\n",
                args->timeout_ms / 1000, args->timeout_ms % 1000, args->subject);
        return CLI_EXIT_FAILURE;
    default:
        break;
    }
    if (cli_is_broker_refusal(err)) {
        return cli_refusal_error(
            CMD, client, err,
            err == SB_E_PERMISSION && strncmp(args->subject, "$SYS.", 5) == 0
                ? "; the broker serves $SYS.STATS and $SYS.CLIENTS ('sockbus stat')"
                : "",
            "the request on '%s'", args->subject);
    }
    return cli_connection_error(CMD, client, "waiting for the reply", err);
}

/* The header of an error reply (docs/protocol.md, Request/reply). */
#define REQ_ERROR_HEADER "Sockbus-Error: "
/* How much of an error reply's detail (a command's stderr) is shown. */
#define REQ_ERROR_TAIL 300

/*
 * An error reply (the header REQ_ERROR_HEADER): one line on stderr with
 * what the responder said and the end of the detail it sent (escaped, its
 * last line breaks shown as \x0a); returns the exit code, 1. Returns 0 for
 * an ordinary reply.
 */
static int req_error_reply(const req_args *args, const sb_msg *reply)
{
    size_t hl = strlen(REQ_ERROR_HEADER);
    const char *h = reply->headers;
    if (reply->headers_len < hl || memcmp(h, REQ_ERROR_HEADER, hl) != 0) {
        return 0;
    }
    size_t wl = 0;
    while (hl + wl < reply->headers_len && h[hl + wl] != '\r' && h[hl + wl] != '\n') {
        wl++;
    }
    const char *p = reply->payload;
    size_t len = reply->payload_len;
    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r')) {
        len--; /* a last line break says nothing */
    }
    size_t from = len > REQ_ERROR_TAIL ? len - REQ_ERROR_TAIL : 0;
    char what[CLI_ESCAPE_MAX(256)];
    char tail[CLI_ESCAPE_MAX(REQ_ERROR_TAIL)];
    text_escape(what, sizeof(what), h + hl, wl < 256 ? wl : 256);
    text_escape(tail, sizeof(tail), p + from, len - from);
    fprintf(stderr, "sockbus req: the responder on %s failed: %s%s%s%s\n", args->subject, what,
            len > 0 ? "; it said: " : "", from > 0 ? "..." : "", tail);
    return CLI_EXIT_FAILURE;
}

/* Print the reply; a reader that went away (EPIPE) ends us quietly. */
static int req_print(const req_args *args, const sb_msg *reply)
{
    const char *p = reply->payload;
    size_t len = reply->payload_len;

    fwrite(p, 1, len, stdout);
    if (!args->raw && (len == 0 || p[len - 1] != '\n')) {
        putchar('\n');
    }
    return cli_flush_stdout(CMD);
}

int cmd_req(int argc, char **argv)
{
    req_args args = {.timeout_ms = CLI_TIMEOUT_DEFAULT_MS};
    CLI_CLEANUP_CLIENT sb_client *client = NULL;
    CLI_CLEANUP_FREE char *input = NULL;
    int r;

    r = req_parse(argc, argv, &args);
    if (r != 0) {
        return r < 0 ? CLI_EXIT_OK : r; /* -1: --help was printed */
    }

    /* A broker that goes away must give a clear error line from the
     * library's write, and a closed stdout an EPIPE we can handle, not a
     * silent death by SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);

    if (cli_connect(CMD, args.endpoint, args.timeout_ms, &client) < 0) {
        return CLI_EXIT_FAILURE;
    }

    sb_pub request = {.subject = args.subject};
    if (args.message != NULL) {
        request.payload = args.message;
        request.payload_len = strlen(args.message);
    } else {
        size_t len = 0;
        r = cli_read_stdin(CMD, sb_max_payload(client, strlen(args.subject), 0, 0), &input, &len);
        if (r == -EMSGSIZE) {
            return req_too_large(client, &args, "stdin");
        }
        if (r != 0) {
            return r;
        }
        request.payload = input;
        request.payload_len = len;
    }

    uint32_t token;
    r = sb_request_send(client, &request, &token);
    if (r == -EMSGSIZE) {
        return req_too_large(client, &args, args.message != NULL ? "MESSAGE" : "stdin");
    }
    if (r < 0) {
        return cli_connection_error(CMD, client, "sending the request", r);
    }

    /* The barrier: a refusal, or NO_RESPONDERS, is known when it returns
     * (see the top of this file). */
    int64_t deadline = cli_now_ms() + args.timeout_ms;
    r = sb_flush(client, args.timeout_ms);
    if (r == -ETIMEDOUT) {
        fprintf(stderr,
                "sockbus req: the broker at %s did not take the request within %d.%03d s; is "
                "it overloaded? (-t SECONDS waits longer)\n",
                sb_endpoint(client), args.timeout_ms / 1000, args.timeout_ms % 1000);
        return CLI_EXIT_FAILURE;
    }
    if (r < 0) {
        return req_error(client, &args, r);
    }

    sb_msg reply;
    r = sb_request_wait(client, token, &reply, cli_remaining_ms(deadline));
    if (r < 0) {
        return req_error(client, &args, r);
    }
    r = req_error_reply(&args, &reply);
    return r != 0 ? r : req_print(&args, &reply);
}
