/*
 * harness.c - start a private sockbusd, talk to it raw or through the
 * library, run the sockbus command. See harness.h.
 */
#include "harness.h"

#include "frame.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HARNESS_MAX_ARGS 64

int64_t harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *env_path(const char *name)
{
    const char *p = getenv(name);
    cr_assert(p != NULL && *p != '\0', "%s is not set: run the tests with meson test", name);
    return p;
}

int harness_mkdir(struct harness_broker *b)
{
    memset(b, 0, sizeof(*b));
    b->pid = -1;
    snprintf(b->dir, sizeof(b->dir), "/tmp/sbtest-XXXXXX");
    if (mkdtemp(b->dir) == NULL) {
        return -errno;
    }
    snprintf(b->socket, sizeof(b->socket), "%s/s.sock", b->dir);
    snprintf(b->log, sizeof(b->log), "%s/broker.log", b->dir);
    return 0;
}

/*
 * $SOCKBUSD_WRAPPER, when set, is a command (words split on spaces) that
 * the broker runs under, e.g. "valgrind --error-exitcode=99
 * --leak-check=full --errors-for-leak-kinds=definite": the broker's exit
 * status then carries the wrapper's verdict, which harness_stop() asserts
 * is 0, and the wrapper's report lands in the broker's log. Writes the
 * words to argv and returns their count.
 */
static size_t wrapper_args(const char **argv, size_t max)
{
    static char words[1024];
    const char *w = getenv("SOCKBUSD_WRAPPER");
    if (w == NULL || *w == '\0') {
        return 0;
    }
    cr_assert(strlen(w) < sizeof(words), "SOCKBUSD_WRAPPER is too long");
    strcpy(words, w);
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(words, " ", &save); t != NULL && n < max;
         t = strtok_r(NULL, " ", &save)) {
        argv[n++] = t;
    }
    return n;
}

bool harness_wrapped(void)
{
    const char *w = getenv("SOCKBUSD_WRAPPER");
    return w != NULL && *w != '\0';
}

int harness_ready_ms(void)
{
    const char *v = getenv("HARNESS_READY_MS");
    if (v != NULL && atoi(v) > 0) {
        return atoi(v);
    }
    /* Valgrind takes a few seconds to start a program on a slow machine. */
    return harness_wrapped() ? 6 * HARNESS_READY_MS : HARNESS_READY_MS;
}

static pid_t spawn_broker(struct harness_broker *b, const char *const *args)
{
    const char *argv[HARNESS_MAX_ARGS];
    size_t n = wrapper_args(argv, HARNESS_MAX_ARGS / 2);
    bool wrapped = n > 0;
    argv[n++] = env_path("SOCKBUSD");
    for (size_t i = 0; args != NULL && args[i] != NULL && n < HARNESS_MAX_ARGS - 1; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(b->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        if (wrapped) {
            execvp(argv[0], (char *const *)argv);
        } else {
            execv(argv[0], (char *const *)argv);
        }
        _exit(127);
    }
    return pid;
}

static bool socket_accepts(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    bool ok = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    close(fd);
    return ok;
}

/* The TCP port the broker logged ("... and tcp port N"), or 0. */
static unsigned logged_tcp_port(const struct harness_broker *b)
{
    char log[4096];
    harness_read_log(b, log, sizeof(log));
    const char *p = strstr(log, "tcp port ");
    return p ? (unsigned)strtoul(p + strlen("tcp port "), NULL, 10) : 0;
}

/* Say on stderr why the broker is not ready, with its log, and return r:
 * the assertion that follows in the test names no broker and no cause. */
static int not_ready(const struct harness_broker *b, int r)
{
    static char log[16 * 1024];
    harness_read_log(b, log, sizeof(log));
    if (r == -ECHILD) {
        fprintf(stderr, "harness: sockbusd on %s exited before it was ready; its log:\n%s\n",
                b->socket, log);
    } else {
        fprintf(stderr,
                "harness: sockbusd on %s was not ready within %d ms (set HARNESS_READY_MS to "
                "wait longer on a slow machine); its log:\n%s\n",
                b->socket, harness_ready_ms(), log);
    }
    return r;
}

/*
 * Spawn a broker on b->socket (with `tcp`, also on a free loopback port)
 * and wait, bounded, until it is ready: it accepts and has logged the end
 * of its start-up (which names the TCP port; its warnings come before
 * that). Shared by harness_start() and harness_restart(), so that both
 * keep one rule for readiness.
 */
static int spawn_ready(struct harness_broker *b, bool tcp, const char *const *extra)
{
    const char *args[HARNESS_MAX_ARGS];
    size_t n = 0;
    args[n++] = "--socket";
    args[n++] = b->socket;
    if (tcp) {
        args[n++] = "--tcp";
        args[n++] = "127.0.0.1:0";
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < HARNESS_MAX_ARGS - 1; i++) {
        args[n++] = extra[i];
    }
    args[n] = NULL;
    b->pid = spawn_broker(b, args);
    if (b->pid < 0) {
        return -errno;
    }
    int64_t deadline = harness_now_ms() + harness_ready_ms();
    while (harness_now_ms() < deadline) {
        int status;
        if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
            b->pid = -1;
            return not_ready(b, -ECHILD);
        }
        if (socket_accepts(b->socket) && harness_wait_logged(b, "listening on")) {
            unsigned port = tcp ? logged_tcp_port(b) : 0;
            if (!tcp || port != 0) {
                if (tcp) {
                    snprintf(b->tcp, sizeof(b->tcp), "tcp://127.0.0.1:%u", port);
                }
                return 0;
            }
        }
        poll(NULL, 0, 5); /* bounded polling, not a guess at start-up time */
    }
    /* A broker that is not ready is not left running past the test. */
    kill(b->pid, SIGKILL);
    waitpid(b->pid, NULL, 0);
    b->pid = -1;
    return not_ready(b, -ETIMEDOUT);
}

int harness_start(struct harness_broker *b, bool tcp, const char *const *extra)
{
    int r = harness_mkdir(b);
    if (r < 0) {
        return r;
    }
    return spawn_ready(b, tcp, extra);
}

int harness_wait_pid(pid_t pid, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(status)) {
                return WEXITSTATUS(status);
            }
            return 128 + WTERMSIG(status);
        }
        if (r < 0 || harness_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        poll(NULL, 0, 2);
    }
}

int harness_run_broker(struct harness_broker *b, const char *const *args, int timeout_ms)
{
    pid_t pid = spawn_broker(b, args);
    if (pid < 0) {
        return -1;
    }
    return harness_wait_pid(pid, timeout_ms);
}

int harness_terminate(struct harness_broker *b, int timeout_ms)
{
    if (b->pid <= 0) {
        return -1;
    }
    kill(b->pid, SIGTERM);
    int status = harness_wait_pid(b->pid, timeout_ms);
    b->pid = -1;
    return status;
}

int harness_kill(struct harness_broker *b, int sig)
{
    if (b->pid <= 0) {
        return -1;
    }
    kill(b->pid, sig);
    int status = harness_wait_pid(b->pid, HARNESS_IO_MS);
    b->pid = -1;
    return status;
}

int harness_restart(struct harness_broker *b, const char *const *extra)
{
    return spawn_ready(b, false, extra);
}

static void remove_dir(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "harness: could not remove %s\n", dir);
    }
}

/* Did the broker's log record a sanitizer or leak report? */
static bool log_has_report(const char *log)
{
    return strstr(log, "AddressSanitizer") != NULL || strstr(log, "LeakSanitizer") != NULL ||
           strstr(log, "runtime error:") != NULL;
}

int harness_stop(struct harness_broker *b)
{
    bool was_running = b->pid > 0;
    int status = harness_terminate(b, HARNESS_IO_MS);
    if (b->dir[0] != '\0') {
        static char log[64 * 1024];
        harness_read_log(b, log, sizeof(log));
        /* Every test also checks that the broker shut down cleanly and
         * that the sanitizers, when built in, found nothing. */
        if (log_has_report(log) || (was_running && status != 0)) {
            fprintf(stderr, "---- sockbusd log (exit %d) ----\n%s\n----\n", status, log);
            remove_dir(b->dir);
            b->dir[0] = '\0';
            cr_assert_fail("sockbusd exited with %d or reported a sanitizer error", status);
        }
        remove_dir(b->dir);
        b->dir[0] = '\0';
    }
    return status;
}

void harness_cleanup(struct harness_broker *b)
{
    harness_terminate(b, HARNESS_IO_MS);
    if (b->dir[0] != '\0') {
        remove_dir(b->dir);
        b->dir[0] = '\0';
    }
}

void harness_read_log(const struct harness_broker *b, char *buf, size_t len)
{
    buf[0] = '\0';
    FILE *f = fopen(b->log, "r");
    if (f == NULL) {
        return;
    }
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

sb_client *harness_client(const struct harness_broker *b, const char *name, bool echo)
{
    sb_client *c = NULL;
    sb_options o = {.endpoint = b->socket, .name = name, .no_echo = !echo};
    int r = sb_connect(&c, &o);
    cr_assert_eq(r, 0, "sb_connect(%s): %s", b->socket, sb_strerror(r));
    return c;
}

sb_client *harness_tcp_client(const struct harness_broker *b, const char *name)
{
    sb_client *c = NULL;
    sb_options o = {.endpoint = b->tcp, .name = name};
    int r = sb_connect(&c, &o);
    cr_assert_eq(r, 0, "sb_connect(%s): %s", b->tcp, sb_strerror(r));
    return c;
}

void harness_subscribe(sb_client *c, const char *pattern, uint32_t flags)
{
    cr_assert_eq(sb_subscribe_ex(c, pattern, NULL, flags, NULL), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
}

ssize_t harness_sendmsg_fds(int fd, const void *buf, size_t len, const int *fds, size_t nfds,
                            int flags)
{
    union {
        char buf[CMSG_SPACE(FRAME_FDS_MAX * sizeof(int))];
        struct cmsghdr align;
    } control;
    cr_assert_leq(nfds, FRAME_FDS_MAX);
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(h), fds, nfds * sizeof(int));
    }
    return sendmsg(fd, &mh, MSG_NOSIGNAL | flags);
}

void harness_write(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        cr_assert(n > 0, "write to broker failed: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

int harness_read(int fd, void *buf, size_t len, int timeout_ms)
{
    uint8_t *p = buf;
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (len > 0) {
        int left = (int)(deadline - harness_now_ms());
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, left) <= 0) {
            return -1;
        }
        ssize_t n = recv(fd, p, len, 0);
        if (n <= 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

long harness_read_frame(int fd, uint8_t *hdr, uint8_t *body, size_t body_cap, int timeout_ms)
{
    if (harness_read(fd, hdr, FRAME_HEADER_SIZE, timeout_ms) < 0) {
        return harness_wait_eof(fd, 0) ? 0 : -1;
    }
    uint32_t size = frame_get_u32(hdr);
    if (size < FRAME_HEADER_SIZE || size - FRAME_HEADER_SIZE > body_cap) {
        return -1;
    }
    if (harness_read(fd, body, size - FRAME_HEADER_SIZE, timeout_ms) < 0) {
        return -1;
    }
    return (long)size;
}

bool harness_wait_eof(int fd, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    uint8_t buf[4096];
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int left = (int)(deadline - harness_now_ms());
        if (poll(&pfd, 1, left < 0 ? 0 : left) <= 0) {
            return false;
        }
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            return true;
        }
        if (n < 0) {
            return false;
        }
    }
}

int harness_raw(const struct harness_broker *b, bool hello)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", b->socket);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0, "connect %s: %s", b->socket,
                 strerror(errno));
    if (hello) {
        static const char json[] = "{\"protocol\":1}";
        uint8_t frame[64];
        size_t n = frame_encode(frame, FRAME_OP_HELLO, 0, 0, NULL, 0, NULL, 0, NULL, 0, json,
                                sizeof(json) - 1);
        harness_write(fd, frame, n);
        uint8_t hdr[16];
        uint8_t body[512];
        long size = harness_read_frame(fd, hdr, body, sizeof(body), HARNESS_IO_MS);
        cr_assert(size > 0 && hdr[4] == FRAME_OP_WELCOME, "no WELCOME");
    }
    return fd;
}

int harness_raw_named(const struct harness_broker *b, const char *name)
{
    int fd = harness_raw(b, false);
    char json[1024];
    int n = snprintf(json, sizeof(json), "{\"protocol\":1,\"name\":\"%s\"}", name);
    cr_assert(n > 0 && (size_t)n < sizeof(json), "name too long for harness_raw_named()");
    uint8_t frame[sizeof(json) + FRAME_HEADER_SIZE];
    size_t len =
        frame_encode(frame, FRAME_OP_HELLO, 0, 0, NULL, 0, NULL, 0, NULL, 0, json, (size_t)n);
    harness_write(fd, frame, len);
    uint8_t hdr[16];
    uint8_t body[512];
    long size = harness_read_frame(fd, hdr, body, sizeof(body), HARNESS_IO_MS);
    cr_assert(size > 0 && hdr[4] == FRAME_OP_WELCOME, "no WELCOME for name [%s]", name);
    return fd;
}

static void drain_fd(int fd, char **out, size_t *out_len)
{
    size_t cap = 4096;
    size_t len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (cap - len < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
}

/* argv[0] replaced by $SOCKBUS, the rest copied, NULL-terminated. */
static void cli_args(const char **args, const char *const *argv)
{
    size_t n = 0;
    args[n++] = env_path("SOCKBUS");
    for (size_t i = 1; argv[i] != NULL && n < HARNESS_MAX_ARGS - 1; i++) {
        args[n++] = argv[i];
    }
    args[n] = NULL;
}

pid_t harness_cli_spawn(const char *const *argv, int *out_fd)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    const char *args[HARNESS_MAX_ARGS];
    cli_args(args, argv);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, STDIN_FILENO);
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    close(p[1]);
    *out_fd = p[0];
    return pid;
}

int harness_cli(const char *const *argv, const void *in, size_t in_len, char **out, size_t *out_len,
                char *err, size_t err_len, int timeout_ms)
{
    char errpath[] = "/tmp/sbtest-err-XXXXXX";
    int errfd = mkstemp(errpath);
    cr_assert(errfd >= 0);
    unlink(errpath);
    int in_pipe[2];
    int out_pipe[2];
    cr_assert_eq(pipe2(in_pipe, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(out_pipe, O_CLOEXEC), 0);
    const char *args[HARNESS_MAX_ARGS];
    cli_args(args, argv);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in_pipe[0], STDIN_FILENO);
        dup2(out_pipe[1], STDOUT_FILENO);
        dup2(errfd, STDERR_FILENO);
        execv(args[0], (char *const *)args);
        _exit(127);
    }
    close(in_pipe[0]);
    close(out_pipe[1]);
    /* Feed stdin from a child so a large input cannot deadlock against a
     * large output. */
    pid_t feeder = fork();
    if (feeder == 0) {
        close(out_pipe[0]);
        const uint8_t *p = in;
        size_t left = in_len;
        while (left > 0) {
            ssize_t w = write(in_pipe[1], p, left);
            if (w <= 0) {
                break;
            }
            p += w;
            left -= (size_t)w;
        }
        _exit(0);
    }
    close(in_pipe[1]);
    /* The output is drained to EOF; the child's timeout bounds the wait. */
    pid_t killer = fork();
    if (killer == 0) {
        poll(NULL, 0, timeout_ms);
        kill(pid, SIGKILL);
        _exit(0);
    }
    drain_fd(out_pipe[0], out, out_len);
    close(out_pipe[0]);
    int status = harness_wait_pid(pid, timeout_ms);
    kill(killer, SIGKILL);
    waitpid(killer, NULL, 0);
    waitpid(feeder, NULL, 0);
    if (err != NULL && err_len > 0) {
        ssize_t e = pread(errfd, err, err_len - 1, 0);
        err[e > 0 ? e : 0] = '\0';
    }
    close(errfd);
    return status;
}

sb_msg harness_expect_msg(sb_client *c)
{
    sb_msg m;
    int r = sb_next_msg(c, &m, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "expected a message: %s", sb_strerror(r));
    return m;
}

void harness_expect_none(sb_client *c)
{
    sb_msg m;
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    int r = sb_next_msg(c, &m, 0);
    cr_assert_eq(r, -ETIMEDOUT, "unexpected message on '%s' (%zu bytes)", r == 0 ? m.subject : "",
                 r == 0 ? m.payload_len : 0);
}

long harness_status_kib(const struct harness_broker *b, const char *field)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)b->pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s: %s", path, strerror(errno));
    char line[256];
    size_t flen = strlen(field);
    long kib = -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            kib = strtol(line + flen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

bool harness_wait_logged(const struct harness_broker *b, const char *needle)
{
    static char log[64 * 1024];
    int64_t deadline = harness_now_ms() + HARNESS_READY_MS;
    for (;;) {
        harness_read_log(b, log, sizeof(log));
        if (strstr(log, needle) != NULL) {
            return true;
        }
        if (harness_now_ms() >= deadline) {
            return false;
        }
        poll(NULL, 0, 5);
    }
}

void harness_freeze(const struct harness_broker *b)
{
    cr_assert_eq(kill(b->pid, SIGSTOP), 0);
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)b->pid);
    for (int64_t until = harness_now_ms() + HARNESS_IO_MS;;) {
        char stat[512] = "";
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f, "cannot open %s: %s", path, strerror(errno));
        size_t n = fread(stat, 1, sizeof(stat) - 1, f);
        fclose(f);
        stat[n] = '\0';
        /* "pid (comm) STATE ...": the state follows the last ')'. */
        const char *state = strrchr(stat, ')');
        if (state != NULL && state[1] == ' ' && (state[2] == 'T' || state[2] == 't')) {
            return;
        }
        cr_assert_lt(harness_now_ms(), until, "the broker did not stop on SIGSTOP");
        poll(NULL, 0, 1);
    }
}

void harness_thaw(const struct harness_broker *b)
{
    cr_assert_eq(kill(b->pid, SIGCONT), 0);
}
