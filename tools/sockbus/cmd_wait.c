/*
 * cmd_wait.c - `sockbus wait`: wait until a publish on SUBJECT would reach
 * a subscriber.
 *
 * The race it closes: `sockbus reply x ... &` returns before the responder
 * has subscribed, so a `sockbus req x` right behind it may find nobody.
 * `sockbus wait x` in between returns once someone listens on x.
 *
 * Nothing may be missed between "nobody yet" and the subscription that
 * follows, so the order matters: first subscribe to
 * $SYS.EVENT.SUBSCRIBE (confirmed by a flush barrier: from then on every
 * new subscription is announced to us), then ask $SYS.INTEREST how many
 * subscriptions a publish on SUBJECT reaches now. If none, each announced
 * subscription whose pattern matches SUBJECT ends the wait. A subscription
 * made between the two steps is both counted and announced: it ends the
 * wait once, whichever comes first.
 */
#include "cli.h"

#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <string.h>

#define CMD "wait"

#define WAIT_EVENT    "$SYS.EVENT.SUBSCRIBE"
#define WAIT_INTEREST "$SYS.INTEREST"

/* ":": report a missing argument as ':' rather than '?'. Options may come
 * before or after SUBJECT. */
#define WAIT_OPTSTRING ":s:t:h"

static const struct option wait_options[] = {
    {"socket", required_argument, NULL, 's'},
    {"timeout", required_argument, NULL, 't'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct wait_args {
    const char *endpoint; /* -s, or NULL for the default rule */
    const char *subject;
    int64_t timeout_ms; /* -t; 0: no limit */
} wait_args;

static void wait_usage(FILE *out)
{
    fprintf(out, "usage: sockbus wait [OPTIONS] SUBJECT\n"
                 "\n"
                 "Wait until a message published on SUBJECT would reach at least one\n"
                 "subscription: at once if one exists, else as soon as one is made. Use it\n"
                 "between starting a service and using it.\n"
                 "\n"
                 "Options:\n"
                 "  -s, --socket ENDPOINT  broker socket path or tcp://HOST:PORT (default:\n"
                 "                         $SOCKBUS_SOCKET, $XDG_RUNTIME_DIR/sockbus.sock,\n"
                 "                         /tmp/sockbus-UID.sock)\n"
                 "  -t, --timeout SECONDS  give up after SECONDS, counted from the start and\n"
                 "                         connecting included (default: wait for ever;\n"
                 "                         0.5, 250ms, 1m)\n"
                 "  -h, --help             show this help and exit\n"
                 "\n"
                 "Exit status: 0 once SUBJECT has a subscriber; 124 when SECONDS passed\n"
                 "first; 1 on another failure (one line on stderr says which); 2 on a bad\n"
                 "command line.\n"
                 "\n"
                 "Examples:\n"
                 "  sockbus reply time.now \"$(date)\" &\n"
                 "  sockbus wait -t 5 time.now && sockbus req time.now\n");
}

static int wait_parse(int argc, char **argv, wait_args *args)
{
    int ch;
    int r = 0;

    while ((ch = getopt_long(argc, argv, WAIT_OPTSTRING, wait_options, NULL)) != -1) {
        switch (ch) {
        case 's':
            args->endpoint = optarg;
            break;
        case 't':
            r = cli_parse_deadline(CMD, optarg, &args->timeout_ms);
            break;
        case 'h':
            wait_usage(stdout);
            return -1;
        default:
            return cli_option_error(CMD, argv, ch, wait_options);
        }
        if (r != 0) {
            return r;
        }
    }
    if (optind >= argc) {
        return cli_usage_error(CMD, "missing SUBJECT");
    }
    if (argc - optind > 1) {
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind + 1]);
    }
    args->subject = argv[optind];
    return cli_check_subject(CMD, "subject", args->subject, false,
                             " (the subject a message would be published on)");
}

/* The number in {"subject":..,"subscriptions":N}; -1 if there is none. */
static int64_t wait_interest_count(const sb_msg *reply)
{
    json_tokener *tok = json_tokener_new();
    if (tok == NULL) {
        return -1;
    }
    json_object *o = json_tokener_parse_ex(tok, reply->payload, (int)reply->payload_len);
    json_tokener_free(tok);
    json_object *n = NULL;
    int64_t count = -1;
    if (o != NULL && json_object_object_get_ex(o, "subscriptions", &n) &&
        json_object_is_type(n, json_type_int)) {
        count = json_object_get_int64(n);
    }
    json_object_put(o);
    return count;
}

/* Does the announced subscription (an event's payload) match SUBJECT? */
static bool wait_event_matches(const sb_msg *m, const char *subject)
{
    json_tokener *tok = json_tokener_new();
    if (tok == NULL) {
        return false;
    }
    json_object *o = json_tokener_parse_ex(tok, m->payload, (int)m->payload_len);
    json_tokener_free(tok);
    json_object *p = NULL;
    bool match = false;
    if (o != NULL && json_object_object_get_ex(o, "pattern", &p) &&
        json_object_is_type(p, json_type_string)) {
        match = sb_pattern_match(json_object_get_string(p), (size_t)json_object_get_string_len(p),
                                 subject, strlen(subject));
    }
    json_object_put(o);
    return match;
}

static int wait_request_error(sb_client *client, const wait_args *args, int err)
{
    if (err == -ETIMEDOUT) {
        fprintf(stderr, "sockbus wait: the broker at %s did not answer %s; is it overloaded?\n",
                sb_endpoint(client), WAIT_INTEREST);
        return CLI_EXIT_FAILURE;
    }
    if (cli_is_broker_refusal(err)) {
        return cli_refusal_error(CMD, client, err,
                                 "; a broker older than $SYS.INTEREST cannot say who listens",
                                 "the question who listens on '%s'", args->subject);
    }
    return cli_connection_error(CMD, client, "asking who listens", err);
}

int cmd_wait(int argc, char **argv)
{
    int64_t start_ms = cli_now_ms();
    wait_args args = {0};
    CLI_CLEANUP_CLIENT sb_client *client = NULL;
    int r;

    r = wait_parse(argc, argv, &args);
    if (r != 0) {
        return r < 0 ? CLI_EXIT_OK : r; /* -1: --help was printed */
    }
    signal(SIGPIPE, SIG_IGN);

    cli_deadline deadline = {.set = args.timeout_ms > 0, .at_ms = start_ms + args.timeout_ms};
    int connect_ms = cli_deadline_bounded_ms(&deadline);
    if (cli_connect(CMD, args.endpoint, connect_ms < 1 ? 1 : connect_ms, &client) < 0) {
        return cli_deadline_passed(&deadline) ? CLI_EXIT_TIMEOUT : CLI_EXIT_FAILURE;
    }

    /* First the announcements, confirmed; then the question (see the top
     * of this file). */
    r = cli_subscribe(CMD, client, WAIT_EVENT, NULL, cli_deadline_bounded_ms(&deadline), &deadline);
    if (r != 0) {
        return r;
    }
    sb_msg reply;
    r = sb_request(client, WAIT_INTEREST, args.subject, strlen(args.subject), &reply,
                   cli_deadline_bounded_ms(&deadline));
    if (r == -ETIMEDOUT && cli_deadline_passed(&deadline)) {
        return CLI_EXIT_TIMEOUT;
    }
    if (r < 0) {
        return wait_request_error(client, &args, r);
    }
    int64_t now = wait_interest_count(&reply);
    if (now < 0) {
        fprintf(stderr, "sockbus wait: the broker at %s answered %s with no count\n",
                sb_endpoint(client), WAIT_INTEREST);
        return CLI_EXIT_FAILURE;
    }
    if (now > 0) {
        return CLI_EXIT_OK;
    }
    for (;;) {
        if (cli_deadline_passed(&deadline)) {
            return CLI_EXIT_TIMEOUT;
        }
        sb_msg m;
        r = sb_next_msg(client, &m, cli_deadline_wait_ms(&deadline, -1));
        if (r == -ETIMEDOUT || r == -EINTR) {
            continue;
        }
        if (r < 0) {
            return cli_connection_error(CMD, client, "waiting for a subscriber", r);
        }
        if (wait_event_matches(&m, args.subject)) {
            return CLI_EXIT_OK;
        }
    }
}
