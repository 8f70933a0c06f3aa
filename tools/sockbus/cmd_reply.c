/*
 * cmd_reply.c - `sockbus reply`: answer the requests on a subject, with a
 * fixed MESSAGE or with the output of a COMMAND run once per request.
 *
 * Requests are taken one at a time with sb_next_msg(). A message without a
 * reply subject is not a request: it is skipped (and, with -v, said so
 * once). Each answer is published on the request's reply subject and
 * followed by an sb_flush() barrier, so the reply is with the broker, not
 * in our buffer, before we take the next request or wait for a command to
 * be reaped; the barrier also reports a broker that refused the reply.
 *
 * A COMMAND runs with fork() and execvp() (no shell). The request payload
 * is written to its stdin while its stdout is read, both non-blocking under
 * one poll(), so a command that writes a lot before reading all of its
 * input cannot deadlock against us. Its stderr is read under the same
 * poll(): passed on to ours as it comes, its last REPLY_ERR_TAIL bytes
 * kept. Once stdout and stderr have ended the command is reaped, and how
 * it ended decides the reply: exit status 0 sends its stdout; a non-zero
 * status, a signal, or a command that cannot be started sends an error
 * reply, so that a requester is neither left to its timeout nor handed an
 * empty success: the header REPLY_ERROR_HEADER says what happened (e.g.
 * "Sockbus-Error: 'sh' exited with status 3"), the payload is the tail of
 * the command's stderr, and `sockbus req` shows both and exits 1
 * (docs/protocol.md, Request/reply). An answer that does not fit in one
 * frame gets an empty reply and one line on stderr: a truncated reply
 * would look like a valid one.
 *
 * With --sender, the subscription asks who sent each request, and a
 * COMMAND finds it in its environment (SOCKBUS_SENDER_UID and the like):
 * what the kernel said of the requester, never what it wrote, so that a
 * script can answer by uid.
 *
 * Why one file of this size: the options, running a COMMAND and the
 * request loop serve this one subcommand and share its reply_state.
 * Running a COMMAND (exec, the poll exchange, the stderr tail, reaping) is
 * the seam to split along once another command needs it.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CMD "reply"

/* How much of the request goes to the command per write(2), and how much
 * of its output we take per read(2). */
#define REPLY_IO_CHUNK (64u * 1024u)

/* How much of a failed command's stderr goes back in its error reply. */
#define REPLY_ERR_TAIL 1024u
/* The header of an error reply, one "Name: value" line. */
#define REPLY_ERROR_HEADER "Sockbus-Error: "

/* GNU order: options may follow the operands, "--" ends them;
 * ":": report a missing argument as ':' rather than '?'. */
#define REPLY_OPTSTRING ":s:q:n:t:vh"

enum {
    OPT_SENDER = 256,
    OPT_NO_RECONNECT,
    OPT_QUIET,
};

static const struct option reply_options[] = {
    {"socket", required_argument, NULL, 's'},
    {"queue", required_argument, NULL, 'q'},
    {"count", required_argument, NULL, 'n'},
    {"timeout", required_argument, NULL, 't'},
    {"verbose", no_argument, NULL, 'v'},
    {"sender", no_argument, NULL, OPT_SENDER},
    {"no-reconnect", no_argument, NULL, OPT_NO_RECONNECT},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct reply_args {
    const char *endpoint; /* -s, or NULL for the default rule */
    const char *queue;    /* NULL: no queue group */
    uint64_t count;       /* 0: no limit */
    int64_t timeout_ms;   /* 0: no limit */
    bool verbose;
    bool sender;         /* --sender: COMMAND learns who asked */
    bool no_reconnect;   /* --no-reconnect: a lost broker ends the command */
    bool quiet;          /* --quiet: no lines about reconnecting */
    const char *subject; /* a subject, or a pattern */
    const char *message; /* the fixed answer ("" when none is given) */
    char **command;      /* NULL, or execvp() arguments, NULL terminated */
} reply_args;

typedef struct reply_state {
    sb_client *client;
    const reply_args *args;
    cli_deadline deadline; /* -t */
    char *out;             /* the command's output, reused from request to request */
    size_t out_cap;
    uint64_t answered;
    bool told_ignored;     /* -v: said once that messages without reply are skipped */
    const sb_msg *request; /* the request being answered (--sender) */
} reply_state;

/* One run of COMMAND. */
typedef struct reply_run {
    pid_t pid;
    size_t len;     /* bytes of its stdout in reply_state.out */
    bool too_large; /* it wrote more than fits in one reply: send none */
    int exec_errno; /* 0, or why execvp() failed */
    bool timed_out; /* -t passed while it ran: it was killed, no reply */
    int status;     /* how it ended (waitpid()), once reaped */
    bool reaped;
    /* The last bytes of its stderr, for an error reply. */
    char err_tail[REPLY_ERR_TAIL];
    size_t err_len;
} reply_run;

static void reply_usage(FILE *out)
{
    fprintf(out, "usage: sockbus reply [OPTIONS] SUBJECT [MESSAGE]\n"
                 "       sockbus reply [OPTIONS] SUBJECT -- COMMAND [ARGUMENT...]\n"
                 "\n"
                 "Answer every request on SUBJECT (a subject, or a pattern with '*' and '>')\n"
                 "with MESSAGE, or with an empty message when there is none. With\n"
                 "'-- COMMAND', run COMMAND (no shell) once per request with the request's\n"
                 "payload on its stdin; its stdout, byte for byte, is the reply. When it\n"
                 "exits non-zero, is killed or cannot be run, the reply is an error reply\n"
                 "instead: a 'Sockbus-Error:' header saying so, and the end of its stderr\n"
                 "('sockbus req' shows both and exits 1). A reply that does not fit in one\n"
                 "message gets an empty reply and one line on stderr. Messages without a\n"
                 "reply subject are ignored.\n"
                 "When the broker goes away, reply says so on stderr, reconnects as soon as\n"
                 "it is back, subscribes again and goes on.\n"
                 "\n"
                 "Options (before or after SUBJECT; after '--', they are COMMAND's):\n"
                 "  -s, --socket ENDPOINT  broker socket path or tcp://HOST:PORT (default:\n"
                 "                         $SOCKBUS_SOCKET, $XDG_RUNTIME_DIR/sockbus.sock,\n"
                 "                         /tmp/sockbus-UID.sock)\n"
                 "  -q, --queue GROUP      answer in queue group GROUP: each request goes to\n"
                 "                         one member of the group\n"
                 "  -n, --count COUNT      exit 0 after answering COUNT requests\n"
                 "  -t, --timeout SECONDS  exit 124 if SECONDS pass, counted from the start,\n"
                 "                         before COUNT requests (a COMMAND still running\n"
                 "                         then is killed); also bounds connecting\n"
                 "                         (fractional, or with a unit: 0.5, 250ms, 1m)\n"
                 "  -v, --verbose          log each request answered on stderr, and (once)\n"
                 "                         that messages without a reply subject are ignored\n"
                 "      --sender           learn who sent each request, as the kernel says:\n"
                 "                         COMMAND gets SOCKBUS_SENDER_PID, _UID, _GID and\n"
                 "                         _CLIENT_ID in its environment (none over TCP)\n"
                 "      --no-reconnect     exit 1 when the broker goes away, instead of\n"
                 "                         reconnecting and subscribing again\n"
                 "      --quiet            no line on stderr when the broker goes away and\n"
                 "                         when it is back\n"
                 "  -h, --help             show this help and exit\n"
                 "\n"
                 "Exit status: 0 after COUNT requests, 1 on failure (refused subscription,\n"
                 "lost connection with --no-reconnect), 2 on a bad command line, 124 when\n"
                 "SECONDS pass first.\n"
                 "\n"
                 "Examples:\n"
                 "  sockbus reply service.ping pong\n"
                 "  sockbus reply time.now -- date\n"
                 "  sockbus reply -q workers text.upper -- tr a-z A-Z\n");
}

/*
 * The operands, argv[optind..end) once getopt has read the options before
 * `end`, the "--" that starts COMMAND (cli_options_end(); argc if none):
 * SUBJECT [MESSAGE], or SUBJECT and then "-- COMMAND...". A "--" with no
 * operand before it only ends the options, as everywhere: then SUBJECT
 * follows it, and a second "--" starts COMMAND.
 */
static int reply_parse_operands(int argc, char **argv, int end, reply_args *args)
{
    char **ops = argv + optind;
    int nops = end - optind;
    char **command = NULL;
    int ncommand = 0;

    if (end < argc && nops == 0) {
        ops = argv + end + 1;
        nops = argc - end - 1;
        for (int i = 0; i < nops; i++) {
            if (strcmp(ops[i], "--") == 0) {
                command = ops + i + 1;
                ncommand = nops - i - 1;
                nops = i;
                break;
            }
        }
    } else if (end < argc) {
        command = argv + end + 1;
        ncommand = argc - end - 1;
    }
    if (nops < 1) {
        return cli_usage_error(CMD, "missing SUBJECT");
    }
    args->subject = ops[0];
    args->message = "";

    if (command != NULL) {
        /* The command's arguments are its own, options included ("sh -c
         * ..."): argv[argc] is NULL, so command is NULL-terminated. */
        if (nops > 1) {
            return cli_usage_error(CMD, "give either MESSAGE or '-- COMMAND' after SUBJECT, "
                                        "not both");
        }
        if (ncommand == 0) {
            return cli_usage_error(CMD, "missing COMMAND after '--'");
        }
        args->command = command;
        return 0;
    }
    if (nops > 2) {
        return cli_usage_error(CMD,
                               "too many arguments after '%s'; quote a MESSAGE that holds "
                               "spaces, or run a command with 'SUBJECT -- COMMAND ARGS...'",
                               ops[1]);
    }
    if (nops == 2) {
        args->message = ops[1];
    }
    return 0;
}

static int reply_parse(int argc, char **argv, reply_args *args)
{
    int ch;
    int r = 0;
    /* Options are read up to the "--" before COMMAND: what follows it is
     * the command's. */
    int end = cli_options_end(argc, argv, reply_options, REPLY_OPTSTRING);

    while ((ch = getopt_long(end, argv, REPLY_OPTSTRING, reply_options, NULL)) != -1) {
        switch (ch) {
        case 's':
            args->endpoint = optarg;
            break;
        case 'q':
            r = cli_parse_queue(CMD, optarg, &args->queue);
            break;
        case 'n':
            r = cli_parse_count_option(CMD, optarg, &args->count);
            break;
        case 't':
            r = cli_parse_deadline(CMD, optarg, &args->timeout_ms);
            break;
        case OPT_SENDER:
            args->sender = true;
            break;
        case 'v':
            args->verbose = true;
            break;
        case OPT_NO_RECONNECT:
            args->no_reconnect = true;
            break;
        case OPT_QUIET:
            args->quiet = true;
            break;
        case 'h':
            reply_usage(stdout);
            return -1;
        default:
            return cli_option_error(CMD, argv, ch, reply_options);
        }
        if (r != 0) {
            return r;
        }
    }

    r = reply_parse_operands(argc, argv, end, args);
    if (r != 0) {
        return r;
    }
    return cli_check_subject(CMD, "subject", args->subject, true, "");
}

/* The command gets our pipes as fds 0 and 1; with 0, 1 and 2 open, a new
 * pipe is never one of them, so dup2() cannot clobber one end with the
 * other. */
static void reply_open_std_fds(void)
{
    for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0) {
            return; /* no /dev/null: go on, a failed dup2() is reported per request */
        }
    }
}

/* Keep up to `limit` bytes of output in st->out; past that, only count. */
static int reply_keep_output(reply_state *st, reply_run *run, const char *data, size_t n,
                             size_t limit)
{
    if (run->too_large || run->len + n > limit) {
        run->too_large = true;
        return 0;
    }
    if (run->len + n > st->out_cap) {
        size_t cap = st->out_cap ? st->out_cap : REPLY_IO_CHUNK;
        while (cap < run->len + n) {
            cap *= 2;
        }
        char *p = realloc(st->out, cap);
        if (p == NULL) {
            return -ENOMEM;
        }
        st->out = p;
        st->out_cap = cap;
    }
    memcpy(st->out + run->len, data, n);
    run->len += n;
    return 0;
}

/* Pass a chunk of the command's stderr on to ours, and keep its tail. */
static void reply_keep_stderr(reply_run *run, const char *data, size_t n)
{
    ssize_t ignored = write(STDERR_FILENO, data, n);
    (void)ignored;
    if (n >= REPLY_ERR_TAIL) {
        memcpy(run->err_tail, data + n - REPLY_ERR_TAIL, REPLY_ERR_TAIL);
        run->err_len = REPLY_ERR_TAIL;
        return;
    }
    size_t keep = run->err_len + n > REPLY_ERR_TAIL ? REPLY_ERR_TAIL - n : run->err_len;
    memmove(run->err_tail, run->err_tail + run->err_len - keep, keep);
    memcpy(run->err_tail + keep, data, n);
    run->err_len = keep + n;
}

/*
 * Feed in[0..in_len) to the command's stdin (in_fd) while reading its
 * stdout (out_fd) until EOF, and its stderr (err_fd) until EOF. Both fds are ours and non-blocking;
 * in_fd is closed here. A command that exits or closes stdin before taking all of the request is
 * not an error (`date` reads nothing). Returns 0 at EOF, -ETIMEDOUT when -t passes first, or
 * another negative errno.
 */
static int reply_exchange(reply_state *st, reply_run *run, int in_fd, int out_fd, int err_fd,
                          const uint8_t *in, size_t in_len, size_t limit)
{
    char chunk[REPLY_IO_CHUNK]; /* read here, then copied to st->out: the
                                 * output past `limit` must be read too,
                                 * and a process start costs far more */
    size_t written = 0;
    int r = 0;

    if (in_len == 0) {
        close(in_fd);
        in_fd = -1;
    }
    while (out_fd >= 0 || err_fd >= 0) {
        struct pollfd fds[3] = {
            {.fd = out_fd, .events = POLLIN},
            {.fd = in_fd, .events = POLLOUT}, /* poll() skips a negative fd */
            {.fd = err_fd, .events = POLLIN},
        };
        int n = poll(fds, 3, cli_deadline_wait_ms(&st->deadline, -1));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            r = -errno;
            break;
        }
        if (n == 0) {
            r = -ETIMEDOUT;
            break;
        }
        if (fds[1].revents != 0) {
            size_t want = in_len - written < REPLY_IO_CHUNK ? in_len - written : REPLY_IO_CHUNK;
            ssize_t w = write(in_fd, in + written, want);
            if (w > 0) {
                written += (size_t)w;
            }
            if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == in_len) {
                /* Done, or EPIPE: the command takes no more input. */
                close(in_fd);
                in_fd = -1;
            }
        }
        if (fds[2].revents != 0) {
            ssize_t got = read(err_fd, chunk, sizeof(chunk));
            if (got > 0) {
                reply_keep_stderr(run, chunk, (size_t)got);
            } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                err_fd = -1; /* EOF (the caller closes it) */
            }
        }
        if (fds[0].revents != 0) {
            ssize_t got = read(out_fd, chunk, sizeof(chunk));
            if (got == 0) {
                out_fd = -1; /* EOF: the answer is complete (the caller closes it) */
                continue;
            }
            if (got < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    continue;
                }
                r = -errno;
                break;
            }
            r = reply_keep_output(st, run, chunk, (size_t)got, limit);
            if (r < 0) {
                break;
            }
        }
    }
    if (in_fd >= 0) {
        close(in_fd);
    }
    return r;
}

/* In the child: who sent the request, in COMMAND's environment. */
static void reply_set_sender(const sb_msg *request)
{
    static const char *const names[] = {"SOCKBUS_SENDER_PID", "SOCKBUS_SENDER_UID",
                                        "SOCKBUS_SENDER_GID", "SOCKBUS_SENDER_CLIENT_ID"};
    sb_sender s;
    bool known = request != NULL && sb_msg_sender(request, &s) == 0 && s.transport != 2;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        unsetenv(names[i]); /* never one inherited from our own environment */
    }
    if (!known) {
        return;
    }
    char v[24];
    snprintf(v, sizeof(v), "%ld", (long)s.pid);
    setenv(names[0], v, 1);
    snprintf(v, sizeof(v), "%lu", (unsigned long)s.uid);
    setenv(names[1], v, 1);
    snprintf(v, sizeof(v), "%lu", (unsigned long)s.gid);
    setenv(names[2], v, 1);
    snprintf(v, sizeof(v), "%llu", (unsigned long long)s.client_id);
    setenv(names[3], v, 1);
}

/* In the child: become COMMAND, or report why not through err_fd. */
static void reply_exec(char **command, int in_fd, int out_fd, int stderr_fd, int err_fd)
{
    /* We ignore SIGPIPE; the command expects the default. */
    signal(SIGPIPE, SIG_DFL);
    if (dup2(in_fd, STDIN_FILENO) >= 0 && dup2(out_fd, STDOUT_FILENO) >= 0 &&
        dup2(stderr_fd, STDERR_FILENO) >= 0) {
        execvp(command[0], command);
    }
    int e = errno;
    ssize_t ignored = write(err_fd, &e, sizeof(e));
    (void)ignored;
    _exit(127);
}

static int reply_set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ? -errno : 0;
}

/* Close both ends of each pipe in fds[0..n) (a pair per pipe). */
static void reply_close_pipes(int (*fds)[2], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < 2; k++) {
            if (fds[i][k] >= 0) {
                close(fds[i][k]);
                fds[i][k] = -1;
            }
        }
    }
}

/*
 * Wait for the command to end, within -t: it has closed its stdout and
 * stderr, so it is about to, but a command may linger (or hand its
 * descriptors to a child). Polls with WNOHANG rather than block, so that
 * -t still holds; past it, the command is killed. Sets run->status and
 * run->reaped.
 */
static void reply_reap(reply_state *st, reply_run *run)
{
    int delay_ms = 1;
    for (;;) {
        pid_t r = waitpid(run->pid, &run->status, WNOHANG);
        if (r == run->pid) {
            run->reaped = true;
            return;
        }
        if (r < 0 && errno != EINTR) {
            return;
        }
        if (cli_deadline_passed(&st->deadline)) {
            kill(run->pid, SIGKILL);
            waitpid(run->pid, &run->status, 0);
            run->timed_out = true;
            return;
        }
        poll(NULL, 0, delay_ms); /* a bounded wait for an exit that is due */
        delay_ms = delay_ms < 64 ? delay_ms * 2 : delay_ms;
    }
}

/*
 * Run COMMAND on one request and collect its stdout, up to `limit` bytes,
 * in st->out, and the tail of its stderr in run->err_tail. On return the
 * command has ended and been reaped (run->reaped, run->status), or -t
 * passed and it was killed (run->timed_out), or it could not be started
 * (run->exec_errno). Returns 0, or a negative errno when it could not be
 * run at all (pipes, fork).
 */
static int reply_run_command(reply_state *st, reply_run *run, const void *in, size_t in_len,
                             size_t limit)
{
    /* stdin, stdout, stderr, and the exec error of the child. */
    int p[4][2] = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
    int r = 0;

    *run = (reply_run){.pid = -1};
    for (size_t i = 0; i < 4 && r == 0; i++) {
        if (pipe2(p[i], O_CLOEXEC) < 0) {
            r = -errno;
        }
    }
    if (r < 0) {
        reply_close_pipes(p, 4);
        return r;
    }

    pid_t pid = fork();
    if (pid == 0) {
        if (st->args->sender) {
            reply_set_sender(st->request);
        }
        reply_exec(st->args->command, p[0][0], p[1][1], p[2][1], p[3][1]);
    }
    r = pid < 0 ? -errno : 0;
    close(p[0][0]);
    close(p[1][1]);
    close(p[2][1]);
    close(p[3][1]);
    p[0][0] = p[1][1] = p[2][1] = p[3][1] = -1;
    /* Our ends: stdin's write end, stdout's and stderr's read ends. */
    for (size_t i = 0; i < 3 && r == 0; i++) {
        r = reply_set_nonblock(p[i][i == 0 ? 1 : 0]);
    }
    if (r < 0) {
        reply_close_pipes(p, 4);
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        return r;
    }
    run->pid = pid;

    r = reply_exchange(st, run, p[0][1], p[1][0], p[2][0], in, in_len, limit);
    p[0][1] = -1; /* closed by reply_exchange() */
    if (r < 0) {
        /* -t passed, or our end of a pipe failed: the answer is lost. */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        run->pid = -1;
        run->timed_out = r == -ETIMEDOUT;
        reply_close_pipes(p, 4);
        return r == -ETIMEDOUT ? 0 : r;
    }

    /* Its stdout has ended, so it has exec'd (the pipe closed) or written
     * why it could not: this read does not block. */
    int e = 0;
    ssize_t n;
    do {
        n = read(p[3][0], &e, sizeof(e));
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(e)) {
        run->exec_errno = e;
    }
    reply_close_pipes(p, 4);
    reply_reap(st, run);
    return 0;
}

/* Publish an answer and wait for the broker to take it. Returns 0 (also
 * when the broker refused this one reply: logged, and we go on), or an
 * exit code. */
static int reply_send_ex(reply_state *st, const char *reply_to, const char *headers,
                         const void *data, size_t len)
{
    sb_pub pub = {
        .subject = reply_to,
        .headers = headers,
        .headers_len = headers != NULL ? strlen(headers) : 0,
        .payload = data,
        .payload_len = len,
    };
    int r = sb_publish_ex(st->client, &pub);
    if (r == -EINVAL) {
        char escaped[CLI_ESCAPE_MAX(SB_SUBJECT_MAX)];
        fprintf(stderr, "sockbus reply: cannot answer on '%s': not a valid subject; skipped\n",
                cli_escape(reply_to, escaped, sizeof(escaped)));
        return 0;
    }
    if (r == SB_E_DISCONNECTED || (r == 0 && sb_state(st->client) == SB_STATE_DISCONNECTED)) {
        /* The broker went away with the request: its requester has
         * failed (or will time out), and a reply to it goes nowhere. */
        return 0;
    }
    if (r < 0) {
        return cli_connection_error(CMD, st->client, "replying", r);
    }
    r = cli_confirm(CMD, st->client, cli_deadline_bounded_ms(&st->deadline), &st->deadline,
                    "a reply");
    if (r >= 0 || r == SB_E_DISCONNECTED) {
        return r >= 0 ? r : 0; /* lost with the broker, as above */
    }
    if (cli_is_broker_refusal(r)) {
        cli_refusal_error(CMD, st->client, r, "", "the reply on '%s'", reply_to);
        return 0;
    }
    return cli_connection_error(CMD, st->client, "replying", r);
}

static void reply_too_large(const reply_state *st, const char *what, const char *reply_to,
                            size_t limit)
{
    fprintf(stderr,
            "sockbus reply: %s is larger than %zu bytes, the most one reply on '%s' can carry "
            "(max_frame %u at %s); sent an empty reply instead (raise 'sockbusd --max-frame')\n",
            what, limit, reply_to, (unsigned)sb_max_frame(st->client), sb_endpoint(st->client));
}

static int reply_send(reply_state *st, const char *reply_to, const void *data, size_t len)
{
    return reply_send_ex(st, reply_to, NULL, data, len);
}

/*
 * The command failed (`why`: "'sh' exited with status 3"): one line on our
 * stderr, and an error reply: the header REPLY_ERROR_HEADER with `why`,
 * and the tail of the command's stderr (or `why` itself, when it wrote
 * nothing there) as the payload.
 */
static int reply_send_error(reply_state *st, const reply_run *run, const char *reply_to,
                            const char *subject, const char *why)
{
    fprintf(stderr, "sockbus reply: %s on a request to %s; sent an error reply\n", why, subject);
    char header[512];
    snprintf(header, sizeof(header), REPLY_ERROR_HEADER "%s\r\n", why);
    size_t limit = sb_max_payload(st->client, strlen(reply_to), strlen(header), 0);
    const char *tail = run->err_len > 0 ? run->err_tail : why;
    size_t len = run->err_len > 0 ? run->err_len : strlen(why);
    if (len > limit) {
        tail += len - limit;
        len = limit;
    }
    return reply_send_ex(st, reply_to, header, tail, len);
}

/* -v: one line per request answered (`r` is what reply_send() said). */
static void reply_log_answered(const reply_state *st, int r, const char *subject, size_t in,
                               size_t out)
{
    if (r == 0 && st->args->verbose) {
        fprintf(stderr, "sockbus reply: answered a request on %s (%zu bytes in, %zu out)\n",
                subject, in, out);
    }
}

/* Answer one request. Returns 0 or an exit code. */
static int reply_answer(reply_state *st, const sb_msg *m)
{
    const reply_args *args = st->args;
    /* m points into the client's buffers, which the publish may reuse. */
    char reply_to[SB_SUBJECT_MAX + 1];
    char subject[SB_SUBJECT_MAX + 1];
    size_t request_len = m->payload_len;

    snprintf(reply_to, sizeof(reply_to), "%s", m->reply);
    snprintf(subject, sizeof(subject), "%s", m->subject);
    size_t limit = sb_max_payload(st->client, strlen(reply_to), 0, 0);

    if (args->command == NULL) {
        const char *data = args->message;
        size_t len = strlen(data);
        if (len > limit) {
            reply_too_large(st, "MESSAGE", reply_to, limit);
            len = 0;
        }
        int r = reply_send(st, reply_to, data, len);
        reply_log_answered(st, r, subject, request_len, len);
        return r;
    }

    reply_run run;
    st->request = m;
    int r = reply_run_command(st, &run, m->payload, m->payload_len, limit);
    st->request = NULL;
    char name[CLI_ESCAPE_MAX(64)];
    char why[sizeof(name) + 128];
    /* The command's name goes into a header line: escaped, and cut. */
    char cut[65];
    snprintf(cut, sizeof(cut), "%s", args->command[0]);
    cli_escape(cut, name, sizeof(name));
    if (r < 0) {
        snprintf(why, sizeof(why), "cannot run '%s': %s", name, strerror(-r));
        r = reply_send_error(st, &run, reply_to, subject, why);
        reply_log_answered(st, r, subject, request_len, 0);
        return r;
    }
    if (run.timed_out) {
        fprintf(stderr,
                "sockbus reply: time limit (-t) reached while '%s' ran on a request to %s; "
                "stopped it, that request got no reply\n",
                args->command[0], subject);
        return CLI_EXIT_TIMEOUT;
    }
    if (run.exec_errno != 0) {
        snprintf(why, sizeof(why), "cannot run '%s': %s (is it installed and on PATH?)", name,
                 strerror(run.exec_errno));
        run.err_len = 0;
        r = reply_send_error(st, &run, reply_to, subject, why);
        reply_log_answered(st, r, subject, request_len, 0);
        return r;
    }
    if (run.reaped && WIFEXITED(run.status) && WEXITSTATUS(run.status) != 0) {
        snprintf(why, sizeof(why), "'%s' exited with status %d", name, WEXITSTATUS(run.status));
    } else if (run.reaped && WIFSIGNALED(run.status)) {
        snprintf(why, sizeof(why), "'%s' was killed by signal %d (%s)", name, WTERMSIG(run.status),
                 strsignal(WTERMSIG(run.status)));
    } else {
        why[0] = '\0';
    }
    if (why[0] != '\0') {
        r = reply_send_error(st, &run, reply_to, subject, why);
        reply_log_answered(st, r, subject, request_len, 0);
        return r;
    }
    size_t len = run.len;
    if (run.too_large) {
        char what[64];
        snprintf(what, sizeof(what), "the output of '%.32s'", args->command[0]);
        reply_too_large(st, what, reply_to, limit);
        len = 0;
    }
    r = reply_send(st, reply_to, st->out, len);
    reply_log_answered(st, r, subject, request_len, len);
    return r;
}

static int reply_loop(reply_state *st)
{
    const reply_args *args = st->args;
    sb_msg m;

    for (;;) {
        int wait = cli_deadline_wait_ms(&st->deadline, -1);
        int r = sb_next_msg(st->client, &m, wait);
        if (r == -ETIMEDOUT || r == -EINTR) {
            if (cli_deadline_passed(&st->deadline)) {
                return CLI_EXIT_TIMEOUT;
            }
            continue;
        }
        if (r < 0) {
            return cli_connection_error(CMD, st->client, "waiting for requests", r);
        }
        /* A request that arrives after the deadline is not taken. */
        if (cli_deadline_passed(&st->deadline)) {
            return CLI_EXIT_TIMEOUT;
        }
        if (m.reply_len == 0) {
            if (args->verbose && !st->told_ignored) {
                fprintf(stderr,
                        "sockbus reply: ignoring messages on %s without a reply subject (they "
                        "are not requests; send them with 'sockbus req')\n",
                        m.subject);
                st->told_ignored = true;
            }
            continue;
        }

        r = reply_answer(st, &m);
        if (r != 0) {
            return r;
        }
        uint64_t dropped = sb_take_dropped(st->client);
        if (dropped > 0) {
            fprintf(stderr,
                    "sockbus reply: the broker dropped %llu request%s (this responder was too "
                    "slow); their requesters time out\n",
                    (unsigned long long)dropped, dropped == 1 ? "" : "s");
        }
        if (++st->answered == args->count) {
            return CLI_EXIT_OK;
        }
    }
}

int cmd_reply(int argc, char **argv)
{
    int64_t start_ms = cli_now_ms();
    reply_args args = {0};
    CLI_CLEANUP_CLIENT sb_client *client = NULL;
    int r;

    r = reply_parse(argc, argv, &args);
    if (r != 0) {
        return r < 0 ? CLI_EXIT_OK : r; /* -1: --help was printed */
    }

    /* A command that stops reading its stdin must give us EPIPE, not kill
     * us; and a broker that goes away a clear error line. */
    signal(SIGPIPE, SIG_IGN);
    reply_open_std_fds();

    reply_state st = {
        .args = &args,
        .deadline = {.set = args.timeout_ms > 0, .at_ms = start_ms + args.timeout_ms},
    };

    /* -t bounds the connect too, but never below 1 ms: 0 would mean the
     * library's default. */
    int connect_ms = cli_deadline_bounded_ms(&st.deadline);
    if (cli_connect_reconnecting(CMD, args.endpoint, connect_ms < 1 ? 1 : connect_ms,
                                 !args.no_reconnect, args.quiet, &client) < 0) {
        return CLI_EXIT_FAILURE;
    }
    st.client = client;

    /* A MESSAGE that cannot fit even on the shortest reply subject would
     * only ever produce empty replies. */
    size_t most = sb_max_payload(client, 1, 0, 0);
    if (strlen(args.message) > most) {
        fprintf(stderr,
                "sockbus reply: MESSAGE is larger than %zu bytes, the most one message can "
                "carry at %s (max_frame %u); send less, or raise 'sockbusd --max-frame'\n",
                most, sb_endpoint(client), (unsigned)sb_max_frame(client));
        return CLI_EXIT_FAILURE;
    }

    /* Confirmed before we claim to serve anything. */
    r = cli_subscribe_ex(CMD, client, args.subject, args.queue, args.sender ? SB_SUB_SENDER : 0,
                         cli_deadline_bounded_ms(&st.deadline), &st.deadline);
    if (r == 0) {
        r = reply_loop(&st);
    }
    free(st.out);
    return r;
}
