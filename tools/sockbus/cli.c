/*
 * cli.c - helpers every `sockbus` subcommand uses.
 *
 * Connecting: the endpoint rule lives in the library (sb_endpoint_resolve);
 * here we turn a failure into the one line a person needs: which endpoint,
 * why, and what to try; the same goes for a refusal or a lost connection
 * later. Option parsing: one wording for bad options, and the parsing of
 * counts, durations and the options several commands share. Waiting: the -t
 * deadline of sub and reply, and confirming a subscription or a reply under
 * it, so that "our time is up" (exit 124) and "the broker is slow" (exit 1)
 * are told apart in one place. Output: JSON string escaping, base64
 * and UTF-8 validation for `sub --json`. These run once per message on the
 * hot path, so they work on runs of bytes and write through the stdio
 * buffer with the unlocked calls (the command is single-threaded).
 *
 * Why one file of about 750 lines: it is the one place where what the
 * commands share lives (cli.h is its table of contents), and its parts
 * share the wording of an error line (cli_escape(), the broker's detail).
 * The output encoders at its end (JSON strings, base64, UTF-8, about 150
 * lines) need nothing else here: they are the part to move out when it
 * grows.
 */
#include "cli.h"

#include "endpoint.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* "sockbus CMD" is how the client names itself to the broker, so that
 * `sockbus stat` shows which command holds a connection. */
#define CLI_CLIENT_NAME_MAX 64

/* Room for what an error line is about: a subject and a queue group name
 * (SB_SUBJECT_MAX each) and the words around them. */
#define CLI_WHAT_MAX (2 * SB_SUBJECT_MAX + 64)

/* First allocation for cli_read_stdin(); it doubles up to the limit. */
#define CLI_STDIN_INITIAL (64u * 1024u)

bool cli_system;

/* What is at `path`, when it is not a socket: "a regular file", ...; NULL
 * for a socket or nothing at all. */
static const char *not_a_socket(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0 || S_ISSOCK(st.st_mode)) {
        return NULL;
    }
    if (S_ISREG(st.st_mode)) {
        return "a regular file";
    }
    if (S_ISDIR(st.st_mode)) {
        return "a directory";
    }
    if (S_ISFIFO(st.st_mode)) {
        return "a FIFO";
    }
    return S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device" : "not a socket";
}

static bool is_socket(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/*
 * Nothing answers at the default path: say where the rule looked and why
 * ($XDG_RUNTIME_DIR set or not), and when a broker's socket sits where the
 * other branch of the rule would have looked (a broker started with
 * XDG_RUNTIME_DIR set and a client without, or the other way round), name
 * it. Returns the hint ("" when the endpoint was named).
 */
static const char *default_path_hint(const char *endpoint, const char *explicit_endpoint, char *buf,
                                     size_t len)
{
    const char *env = getenv("SOCKBUS_SOCKET");
    if (explicit_endpoint != NULL || (env != NULL && *env != '\0') || cli_system) {
        return "";
    }
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    char other[SB_ENDPOINT_MAX];
    if (xdg != NULL && *xdg != '\0') {
        snprintf(other, sizeof(other), "/tmp/sockbus-%lu.sock", (unsigned long)getuid());
        if (is_socket(other)) {
            snprintf(buf, len,
                     " (looked there because XDG_RUNTIME_DIR is set here; a broker's socket is at "
                     "%s, where the rule looks without XDG_RUNTIME_DIR: was sockbusd started "
                     "without it? pass -s %s, or start sockbusd with XDG_RUNTIME_DIR set)",
                     other, other);
        } else {
            snprintf(buf, len, " (looked there because XDG_RUNTIME_DIR is set)");
        }
        return buf;
    }
    snprintf(other, sizeof(other), "/run/user/%lu/sockbus.sock", (unsigned long)getuid());
    if (is_socket(other)) {
        snprintf(buf, len,
                 " (looked there because XDG_RUNTIME_DIR is not set here; a broker's socket is "
                 "at %s, where the rule looks with XDG_RUNTIME_DIR=/run/user/%lu: set it, or "
                 "pass -s %s)",
                 other, (unsigned long)getuid(), other);
    } else {
        snprintf(buf, len, " (looked there because XDG_RUNTIME_DIR is not set)");
    }
    return buf;
}

/* The advice that fits a failed connect. `explicit_endpoint` is what -s
 * gave (NULL if nothing), so the hint can say how to start a broker that
 * listens exactly there. */
static void connect_error(const char *endpoint, const char *explicit_endpoint, int timeout_ms,
                          int err)
{
    const char *why = sb_strerror(err);

    switch (err) {
    case -EACCES:
    case -EPERM:
        fprintf(stderr,
                "sockbus: cannot connect to %s: %s; the socket's owner can share it with "
                "'sockbusd --mode 0660 --group NAME' (or pass -s ENDPOINT / set "
                "SOCKBUS_SOCKET)\n",
                endpoint, why);
        return;
    case -ETIMEDOUT:
        fprintf(stderr,
                "sockbus: cannot connect to %s: no answer within %d.%03d s; is sockbusd "
                "stuck or overloaded? (-t SECONDS waits longer)\n",
                endpoint, timeout_ms / 1000, timeout_ms % 1000);
        return;
    case SB_E_LIMIT:
        fprintf(stderr,
                "sockbus: cannot connect to %s: %s (max_connections); try again later or "
                "raise sockbusd's limit\n",
                endpoint, why);
        return;
    case SB_E_VERSION:
    case SB_E_PROTOCOL:
    case SB_E_HELLO_REQUIRED:
        fprintf(stderr,
                "sockbus: cannot connect to %s: %s; use sockbus and sockbusd from the same "
                "release\n",
                endpoint, why);
        return;
    case SB_E_SHUTDOWN:
        fprintf(stderr, "sockbus: cannot connect to %s: %s; try again once it is back\n", endpoint,
                why);
        return;
    case -EPIPE:
    case -ECONNRESET:
    case SB_E_CLOSED:
        /* A broker that refuses a connection (ERR 5 at max_connections,
         * or shutting down) closes it at once; our HELLO may then fail
         * before its ERR can be read. */
        fprintf(stderr,
                "sockbus: cannot connect to %s: the broker closed the connection during the "
                "handshake (%s); it may be at max_connections or shutting down, try again "
                "later\n",
                endpoint, why);
        return;
    default:
        break;
    }

    /* Something that is not a socket: no broker can listen there. */
    const char *what = sb_endpoint_is_tcp(endpoint) ? NULL : not_a_socket(endpoint);
    if (what != NULL) {
        fprintf(stderr,
                "sockbus: cannot connect to %s: not a socket (%s); give the broker's socket "
                "with -s PATH\n",
                endpoint, what);
        return;
    }
    /* Nothing listens there (ENOENT, ECONNREFUSED on a stale socket, a
     * closed TCP port) or something else went wrong: say how to start one. */
    char hint[3 * SB_ENDPOINT_MAX + 256];
    if (sb_endpoint_is_tcp(endpoint)) {
        fprintf(stderr,
                "sockbus: cannot connect to %s: %s; is sockbusd listening there? start it "
                "with 'sockbusd --tcp %s' (or pass -s ENDPOINT / set SOCKBUS_SOCKET)\n",
                endpoint, why, endpoint + strlen("tcp://"));
    } else if (explicit_endpoint != NULL && strcmp(endpoint, SB_ENDPOINT_SYSTEM) == 0) {
        fprintf(stderr,
                "sockbus: cannot connect to the system broker at %s: %s; is it running? start "
                "it with 'systemctl start sockbusd.socket' (or 'sockbusd --system')\n",
                endpoint, why);
    } else if (explicit_endpoint != NULL) {
        fprintf(stderr,
                "sockbus: cannot connect to %s: %s; is sockbusd running? start it with "
                "'sockbusd --socket %s' (or pass another -s ENDPOINT)\n",
                endpoint, why, endpoint);
    } else {
        fprintf(stderr,
                "sockbus: cannot connect to %s%s: %s; is sockbusd running? start it with "
                "'sockbusd' (or pass -s ENDPOINT / set SOCKBUS_SOCKET)\n",
                endpoint, default_path_hint(endpoint, explicit_endpoint, hint, sizeof(hint)), why);
    }
}

/* The two lines of a command that reconnects: the broker went away, and
 * it is back (with how long it was away: what may have been missed). */
static void cli_on_state(sb_client *client, const sb_state_change *change, void *arg)
{
    const char *cmd = arg;
    if (change->state == SB_STATE_DISCONNECTED) {
        fprintf(stderr, "sockbus %s: lost the connection to %s (%s); reconnecting\n", cmd,
                sb_endpoint(client), sb_strerror(change->err));
    } else if (change->state == SB_STATE_RECONNECTED) {
        int64_t gap = ((int64_t)change->back_at.tv_sec - change->lost_at.tv_sec) * 1000 +
                      (change->back_at.tv_nsec - change->lost_at.tv_nsec) / 1000000;
        gap = gap < 0 ? 0 : gap;
        fprintf(stderr,
                "sockbus %s: reconnected to %s after %lld.%03lld s (messages published "
                "meanwhile were missed)\n",
                cmd, sb_endpoint(client), (long long)(gap / 1000), (long long)(gap % 1000));
    }
}

int cli_connect(const char *cmd, const char *endpoint, int timeout_ms, sb_client **out)
{
    return cli_connect_reconnecting(cmd, endpoint, timeout_ms, false, false, out);
}

int cli_connect_reconnecting(const char *cmd, const char *endpoint, int timeout_ms, bool reconnect,
                             bool quiet, sb_client **out)
{
    char resolved[SB_ENDPOINT_MAX];
    char name[CLI_CLIENT_NAME_MAX];
    sb_client *client = NULL;
    int r;

    /* An empty -s is a mistake (an unset variable in a script, say), not
     * a request for the default. */
    if (endpoint != NULL && *endpoint == '\0') {
        fprintf(stderr,
                "sockbus %s: -s '' names no endpoint; give a socket path or "
                "tcp://HOST:PORT, or leave -s out for the default\n",
                cmd);
        return -EINVAL;
    }
    if (endpoint == NULL && cli_system) {
        endpoint = SB_ENDPOINT_SYSTEM;
    }
    r = sb_endpoint_resolve(endpoint, resolved, sizeof(resolved));
    if (r < 0) {
        if (endpoint != NULL) {
            fprintf(stderr,
                    "sockbus: cannot use endpoint '%s': %s; a socket path must be shorter than "
                    "%zu bytes, pass a shorter -s ENDPOINT\n",
                    endpoint, sb_strerror(r), sizeof(((struct sockaddr_un *)NULL)->sun_path));
        } else {
            fprintf(stderr,
                    "sockbus: cannot use the default endpoint: %s; set SOCKBUS_SOCKET (or "
                    "XDG_RUNTIME_DIR) to a shorter path, or pass -s ENDPOINT\n",
                    sb_strerror(r));
        }
        return r;
    }
    /* A TCP endpoint is checked before connecting: "tcp://localhost" has
     * no port, and no broker to blame. */
    char host[SB_ENDPOINT_MAX];
    char port[8];
    if (sb_endpoint_is_tcp(resolved) &&
        endpoint_parse_tcp(resolved, host, sizeof(host), port, sizeof(port)) < 0) {
        fprintf(stderr,
                "sockbus %s: invalid endpoint '%s': write tcp://HOST:PORT with a port from 1 "
                "to 65535, e.g. tcp://127.0.0.1:7447 (tcp://[::1]:7447 for IPv6)\n",
                cmd, resolved);
        return -EINVAL;
    }

    snprintf(name, sizeof(name), "sockbus %s", cmd);
    if (timeout_ms <= 0) {
        timeout_ms = CLI_TIMEOUT_DEFAULT_MS;
    }
    /* The library resolves the endpoint itself, the same way: given the
     * default path rather than our copy of it, it checks who serves it. */
    sb_options opts = {
        .endpoint = endpoint,
        .name = name,
        .timeout_ms = timeout_ms,
        .reconnect = reconnect,
    };
    char why[SB_CONNECT_ERR_MAX];
    r = sb_connect_ex(&client, &opts, why, sizeof(why));
    if (r == SB_E_UNTRUSTED) {
        fprintf(stderr, "sockbus: %s\n", why);
        return r;
    }
    if (r < 0) {
        connect_error(resolved, endpoint, timeout_ms, r);
        return r;
    }
    if (reconnect && !quiet) {
        sb_set_state_cb(client, cli_on_state, (void *)cmd);
    }
    *out = client;
    return 0;
}

const char *cli_escape(const char *text, char *buf, size_t len)
{
    text_escape(buf, len, text, strlen(text));
    return buf;
}

const char *cli_broker_detail(sb_client *client, int err, char *buf, size_t len)
{
    const char *text = sb_last_error(client);
    char escaped[CLI_ESCAPE_MAX(255)];

    /* Leave it out when it would only repeat sb_strerror(). */
    if (text == NULL || *text == '\0' || strcmp(text, sb_strerror(err)) == 0) {
        return "";
    }
    snprintf(buf, len, " (broker: %s)", cli_escape(text, escaped, sizeof(escaped)));
    return buf;
}

int cli_connection_error(const char *cmd, sb_client *client, const char *what, int err)
{
    char detail[CLI_BROKER_DETAIL_MAX];

    fprintf(
        stderr, "sockbus %s: lost connection to %s while %s: %s%s; %s\n", cmd, sb_endpoint(client),
        what, sb_strerror(err), cli_broker_detail(client, err, detail, sizeof(detail)),
        err == SB_E_SHUTDOWN        ? "try again once the broker is back"
        : err == SB_E_SLOW_CONSUMER ? "a lossless subscriber must keep reading; read faster, or "
                                      "subscribe without --lossless"
                                    : "is sockbusd still running?");
    return CLI_EXIT_FAILURE;
}

bool cli_is_broker_refusal(int err)
{
    return err == SB_E_SUBJECT || err == SB_E_PERMISSION || err == SB_E_LIMIT || err == SB_E_SID ||
           err == SB_E_REQUEST;
}

int cli_refusal_error(const char *cmd, sb_client *client, int err, const char *hint,
                      const char *fmt, ...)
{
    char what[CLI_WHAT_MAX];
    char detail[CLI_BROKER_DETAIL_MAX];
    va_list ap;

    /* Formatted first so that the line is one fprintf(), one write(2). */
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    fprintf(stderr, "sockbus %s: the broker at %s refused %s: %s%s%s\n", cmd, sb_endpoint(client),
            what, sb_strerror(err), cli_broker_detail(client, err, detail, sizeof(detail)), hint);
    return CLI_EXIT_FAILURE;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sockbus %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "; try 'sockbus %s --help'\n", cmd);
    return CLI_EXIT_USAGE;
}

/* Was argv[optind - 1] "--NAME=VALUE" for a long option that takes no
 * argument? getopt_long() reports that as '?' with optopt set to the
 * option's val, just like an unknown short option, and sets no longindex. */
static const struct option *long_option_with_value(const char *arg, const struct option *opts)
{
    const char *eq = strchr(arg, '=');

    if (strncmp(arg, "--", 2) != 0 || eq == NULL) {
        return NULL;
    }
    size_t len = (size_t)(eq - (arg + 2));
    for (const struct option *o = opts; o->name != NULL; o++) {
        /* getopt_long() accepts unambiguous prefixes, so compare those. */
        if (o->has_arg == no_argument && o->val == optopt && strncmp(o->name, arg + 2, len) == 0) {
            return o;
        }
    }
    return NULL;
}

int cli_option_error(const char *cmd, char **argv, int ch, const struct option *opts)
{
    const char *arg = argv[optind - 1];
    bool is_long = strncmp(arg, "--", 2) == 0;

    if (ch == ':') {
        /* A missing argument is always the last thing getopt consumed, so
         * argv[optind - 1] is the option itself. */
        if (is_long) {
            return cli_usage_error(cmd, "option '%s' needs an argument", arg);
        }
        return cli_usage_error(cmd, "option '-%c' needs an argument", optopt);
    }
    if (optopt == 0) {
        /* Unknown or ambiguous long option; leave out any "=VALUE".
         * getopt_long() takes unambiguous prefixes, so "--re" may be both
         * "--retain" and "--reply". */
        size_t len = strcspn(arg, "=");
        int matches = 0;
        for (const struct option *o = opts; is_long && o->name != NULL; o++) {
            matches += strncmp(o->name, arg + 2, len - 2) == 0;
        }
        if (matches > 1) {
            return cli_usage_error(cmd, "option '%.*s' is ambiguous, spell it out", (int)len, arg);
        }
        return cli_usage_error(cmd, "unknown option '%.*s'", (int)len, arg);
    }
    const struct option *o = long_option_with_value(arg, opts);
    if (o != NULL) {
        return cli_usage_error(cmd, "option '--%s' takes no argument", o->name);
    }
    return cli_usage_error(cmd, "unknown option '-%c'", optopt);
}

/* The long option that `name` (after "--", before any "=") names, as
 * getopt_long() reads it: exactly, or as the one option it abbreviates. */
static const struct option *long_option_named(const char *name, size_t len,
                                              const struct option *opts)
{
    const struct option *hit = NULL;
    int matches = 0;
    for (const struct option *o = opts; len > 0 && o->name != NULL; o++) {
        if (strncmp(o->name, name, len) == 0) {
            if (strlen(o->name) == len) {
                return o;
            }
            hit = o;
            matches++;
        }
    }
    return matches == 1 ? hit : NULL;
}

int cli_options_end(int argc, char **argv, const struct option *opts, const char *optstring)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            return i;
        }
        if (a[0] != '-' || a[1] == '\0') {
            continue; /* an operand */
        }
        if (a[1] == '-') {
            const struct option *o = long_option_named(a + 2, strcspn(a + 2, "="), opts);
            if (o != NULL && o->has_arg == required_argument && strchr(a, '=') == NULL) {
                i++; /* "--queue GROUP": GROUP is the option's */
            }
            continue;
        }
        /* A cluster of short options ("-vq GROUP", "-qGROUP"). */
        for (const char *c = a + 1; *c != '\0'; c++) {
            const char *p = *c == ':' ? NULL : strchr(optstring, *c);
            if (p == NULL) {
                break;
            }
            if (p[1] == ':') {
                i += c[1] == '\0';
                break;
            }
        }
    }
    return argc;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int cli_parse_duration_ms(const char *text, int64_t *ms)
{
    /* strtod() also takes leading blanks, signs, hex, "inf" and "nan":
     * none of them is a duration a person means. */
    if (text == NULL || !(is_digit(text[0]) || (text[0] == '.' && is_digit(text[1]))) ||
        strpbrk(text, "xX") != NULL) {
        return -EINVAL;
    }
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (errno != 0 || end == text || !(value >= 0.0)) {
        return -EINVAL;
    }

    double scale;
    if (*end == '\0' || strcmp(end, "s") == 0) {
        scale = 1000.0;
    } else if (strcmp(end, "ms") == 0) {
        scale = 1.0;
    } else if (strcmp(end, "m") == 0) {
        scale = 60000.0;
    } else {
        return -EINVAL;
    }

    double scaled = value * scale;
    /* Far beyond any useful wait, and keeps deadline arithmetic (now +
     * duration) away from overflow. */
    if (!(scaled <= (double)(INT64_MAX / 4))) {
        return -EINVAL;
    }
    int64_t result = (int64_t)scaled;
    if ((double)result < scaled) {
        result++; /* round up: "-t 0.0001" must not mean "do not wait" */
    }
    *ms = result;
    return 0;
}

int cli_parse_count(const char *text, uint64_t *count)
{
    if (text == NULL || !is_digit(text[0]) || strspn(text, "0123456789") != strlen(text)) {
        return -EINVAL;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || value == 0) {
        return -EINVAL;
    }
    *count = (uint64_t)value;
    return 0;
}

/* What both kinds of -t accept, and the one wording for what they do not. */
static int parse_timeout_ms(const char *cmd, const char *arg, int64_t max_ms, int64_t *timeout_ms)
{
    int64_t ms;

    if (cli_parse_duration_ms(arg, &ms) < 0 || ms == 0 || ms > max_ms) {
        return cli_usage_error(cmd, "invalid timeout '%s': give seconds > 0, e.g. 5, 0.5 or 250ms",
                               arg);
    }
    *timeout_ms = ms;
    return 0;
}

int cli_parse_timeout(const char *cmd, const char *arg, int *timeout_ms)
{
    int64_t ms = 0; /* written when r is 0; the compiler cannot tell */
    int r = parse_timeout_ms(cmd, arg, INT_MAX, &ms);

    if (r == 0) {
        *timeout_ms = (int)ms;
    }
    return r;
}

int cli_parse_deadline(const char *cmd, const char *arg, int64_t *timeout_ms)
{
    /* cli_parse_duration_ms() keeps it far below INT64_MAX already. */
    return parse_timeout_ms(cmd, arg, INT64_MAX, timeout_ms);
}

int cli_parse_count_option(const char *cmd, const char *arg, uint64_t *count)
{
    if (cli_parse_count(arg, count) < 0) {
        return cli_usage_error(cmd, "invalid count '%s': give a whole number > 0", arg);
    }
    return 0;
}

int cli_parse_queue(const char *cmd, const char *arg, const char **queue)
{
    /* The library takes a queue group name by the subject rule. */
    if (!sb_subject_valid(arg, strlen(arg))) {
        fprintf(stderr,
                "sockbus %s: invalid queue group '%s': a group is named like a subject: tokens "
                "of 1+ printable bytes separated by '.', no '*' or '>'\n",
                cmd, arg);
        return CLI_EXIT_USAGE;
    }
    *queue = arg;
    return 0;
}

int cli_check_subject(const char *cmd, const char *what, const char *text, bool pattern,
                      const char *note)
{
    char escaped[256];
    size_t len = strlen(text);

    if (pattern ? sb_pattern_valid(text, len) : sb_subject_valid(text, len)) {
        return 0;
    }
    fprintf(stderr,
            "sockbus %s: invalid %s '%s': tokens are 1+ printable bytes separated by '.'%s%s\n",
            cmd, what, cli_escape(text, escaped, sizeof(escaped)),
            pattern ? "; '*' only as a whole token, '>' only as the last one" : ", no '*' or '>'",
            pattern ? "" : note);
    return CLI_EXIT_USAGE;
}

int cli_parse_subject_message(const char *cmd, int argc, char **argv, const char **subject,
                              const char **message)
{
    int left = argc - optind;

    if (left < 1) {
        return cli_usage_error(cmd, "missing SUBJECT");
    }
    if (left > 2) {
        return cli_usage_error(cmd,
                               "too many arguments after '%s'; quote a MESSAGE that holds spaces",
                               argv[optind + 1]);
    }
    *subject = argv[optind];
    *message = left == 2 ? argv[optind + 1] : NULL;
    return 0;
}

int64_t cli_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cli_remaining_ms(int64_t deadline_ms)
{
    int64_t left = deadline_ms - cli_now_ms();

    if (left <= 0) {
        return 0;
    }
    return left > INT_MAX ? INT_MAX : (int)left;
}

bool cli_deadline_passed(const cli_deadline *deadline)
{
    return deadline->set && cli_now_ms() >= deadline->at_ms;
}

int cli_deadline_wait_ms(const cli_deadline *deadline, int fallback)
{
    return deadline->set ? cli_remaining_ms(deadline->at_ms) : fallback;
}

int cli_deadline_bounded_ms(const cli_deadline *deadline)
{
    int left = cli_deadline_wait_ms(deadline, CLI_TIMEOUT_DEFAULT_MS);

    return left < CLI_TIMEOUT_DEFAULT_MS ? left : CLI_TIMEOUT_DEFAULT_MS;
}

int cli_confirm(const char *cmd, sb_client *client, int wait_ms, const cli_deadline *deadline,
                const char *fmt, ...)
{
    char what[CLI_WHAT_MAX];
    va_list ap;
    int r = sb_flush(client, wait_ms);

    if (r != -ETIMEDOUT) {
        return r;
    }
    if (cli_deadline_passed(deadline)) {
        return CLI_EXIT_TIMEOUT;
    }
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    fprintf(stderr,
            "sockbus %s: the broker at %s did not confirm %s within %d.%03d s; is it "
            "overloaded?\n",
            cmd, sb_endpoint(client), what, wait_ms / 1000, wait_ms % 1000);
    return CLI_EXIT_FAILURE;
}

int cli_subscribe(const char *cmd, sb_client *client, const char *pattern, const char *queue,
                  int wait_ms, const cli_deadline *deadline)
{
    return cli_subscribe_ex(cmd, client, pattern, queue, 0, wait_ms, deadline);
}

int cli_subscribe_ex(const char *cmd, sb_client *client, const char *pattern, const char *queue,
                     uint32_t flags, int wait_ms, const cli_deadline *deadline)
{
    int r = sb_subscribe_ex(client, pattern, queue, flags, NULL);

    if (r < 0) {
        return cli_connection_error(cmd, client, "subscribing", r);
    }
    r = cli_confirm(cmd, client, wait_ms, deadline, "the subscription to '%s'", pattern);
    if (r >= 0) {
        return r;
    }
    if (cli_is_broker_refusal(r)) {
        return cli_refusal_error(cmd, client, r, "", "the subscription to '%s'%s%s%s", pattern,
                                 queue ? " in queue group '" : "", queue ? queue : "",
                                 queue ? "'" : "");
    }
    return cli_connection_error(cmd, client, "subscribing", r);
}

int cli_read_stdin(const char *cmd, size_t limit, char **out, size_t *out_len)
{
    size_t cap = CLI_STDIN_INITIAL;
    size_t len = 0;
    CLI_CLEANUP_FREE char *buf = malloc(cap);

    if (buf == NULL) {
        fprintf(stderr, "sockbus %s: out of memory\n", cmd);
        return CLI_EXIT_FAILURE;
    }
    for (;;) {
        if (len == cap) {
            /* len <= limit here, so limit + 1 leaves room for one more
             * byte: enough to tell "exactly the limit" from "over it". */
            size_t grown = cap * 2 < limit + 1 ? cap * 2 : limit + 1;
            char *p = realloc(buf, grown);
            if (p == NULL) {
                fprintf(stderr, "sockbus %s: out of memory reading stdin\n", cmd);
                return CLI_EXIT_FAILURE;
            }
            buf = p;
            cap = grown;
        }
        ssize_t n = read(STDIN_FILENO, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "sockbus %s: cannot read stdin: %s\n", cmd, strerror(errno));
            return CLI_EXIT_FAILURE;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
        if (len > limit) {
            return -EMSGSIZE;
        }
    }
    *out = buf;
    *out_len = len;
    buf = NULL; /* the caller owns it now */
    return 0;
}

int cli_flush_stdout(const char *cmd)
{
    if (fflush(stdout) == 0 && !ferror(stdout)) {
        return 0;
    }
    if (errno != EPIPE) {
        fprintf(stderr, "sockbus %s: cannot write to stdout: %s\n", cmd, strerror(errno));
    }
    return CLI_EXIT_FAILURE;
}

bool cli_utf8_valid(const void *data, size_t len)
{
    const unsigned char *s = data;
    const unsigned char *end = s + len;

    while (s < end) {
        /* Most payloads are ASCII: check eight bytes at a time. */
        if (end - s >= 8) {
            uint64_t word;
            memcpy(&word, s, sizeof(word));
            if ((word & UINT64_C(0x8080808080808080)) == 0) {
                s += 8;
                continue;
            }
        }
        unsigned char c = *s;
        if (c < 0x80) {
            s++;
            continue;
        }

        size_t more;
        uint32_t cp;
        uint32_t min;
        if (c >= 0xC2 && c <= 0xDF) {
            more = 1;
            cp = c & 0x1Fu;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            more = 2;
            cp = c & 0x0Fu;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3;
            cp = c & 0x07u;
            min = 0x10000;
        } else {
            return false; /* continuation byte, 0xC0/0xC1 overlong, 0xF5.. */
        }
        if ((size_t)(end - s) <= more) {
            return false;
        }
        for (size_t i = 1; i <= more; i++) {
            if ((s[i] & 0xC0u) != 0x80u) {
                return false;
            }
            cp = (cp << 6) | (s[i] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        s += more + 1;
    }
    return true;
}

int cli_json_write_string(FILE *f, const void *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = data;
    size_t run = 0; /* start of the bytes that need no escape */

    putc_unlocked('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        fwrite_unlocked(s + run, 1, i - run, f);
        run = i + 1;

        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t esc_len = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0x0F];
            esc_len = 6;
            break;
        }
        fwrite_unlocked(esc, 1, esc_len, f);
    }
    fwrite_unlocked(s + run, 1, len - run, f);
    putc_unlocked('"', f);
    return ferror_unlocked(f) ? -EIO : 0;
}

static const char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t cli_base64_encode(char *out, const void *data, size_t len)
{
    const unsigned char *s = data;
    char *o = out;
    size_t i = 0;

    for (; len - i >= 3; i += 3) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        *o++ = base64_alphabet[(v >> 18) & 0x3F];
        *o++ = base64_alphabet[(v >> 12) & 0x3F];
        *o++ = base64_alphabet[(v >> 6) & 0x3F];
        *o++ = base64_alphabet[v & 0x3F];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        *o++ = base64_alphabet[(v >> 18) & 0x3F];
        *o++ = base64_alphabet[(v >> 12) & 0x3F];
        *o++ = '=';
        *o++ = '=';
    } else if (len - i == 2) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8);
        *o++ = base64_alphabet[(v >> 18) & 0x3F];
        *o++ = base64_alphabet[(v >> 12) & 0x3F];
        *o++ = base64_alphabet[(v >> 6) & 0x3F];
        *o++ = '=';
    }
    return (size_t)(o - out);
}

int cli_base64_write(FILE *f, const void *data, size_t len)
{
    /* Encode through a stack buffer in whole 3-byte groups, so only the
     * last chunk can carry padding. */
    enum { CHUNK_IN = 3 * 1024 };
    char out[CLI_BASE64_LEN(CHUNK_IN)];
    const unsigned char *s = data;

    while (len > 0) {
        size_t n = len < CHUNK_IN ? len : CHUNK_IN;
        fwrite_unlocked(out, 1, cli_base64_encode(out, s, n), f);
        s += n;
        len -= n;
    }
    return ferror_unlocked(f) ? -EIO : 0;
}
