/*
 * bench_broker.c - the private sockbusd that `sockbus bench` runs against
 * unless -s names a running one.
 *
 * It listens on a socket in a new temporary directory and on a TCP
 * loopback port the kernel picks (--tcp 127.0.0.1:0), so both transports
 * reach the same broker process. Its log goes to a file in that directory;
 * we learn the port from its start-up line ("listening on ... and tcp port
 * N") rather than by guessing a free port, which another program could
 * take between our check and its bind. Readiness is a bounded poll: the
 * socket accepts and the port is known, or the broker exited (its last log
 * line says why), or BROKER_READY_MS passed.
 *
 * The broker dies with us: it gets PR_SET_PDEATHSIG, and bench_broker_stop()
 * is called on every way out, including SIGINT (see bench.c). Only the
 * directory we created, and only the files in it, are ever removed.
 *
 * Since we started it, we know its pid, and so can read its resident set
 * from /proc for the idle workload.
 */
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BROKER_NAME        "sockbusd"
#define BROKER_SOCKET_NAME "bench.sock"
#define BROKER_LOG_NAME    "sockbusd.log"
/* How long the broker may take to start, and to stop on SIGTERM. */
#define BROKER_READY_MS 5000
#define BROKER_STOP_MS  3000
#define BROKER_POLL_MS  5

static int64_t broker_now_ms(void)
{
    return (int64_t)(bench_now_ns() / 1000000u);
}

static void broker_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Copy a string, cut to fit (the callers checked the lengths that
 * matter; a cut log line is still worth showing). */
static void copy_text(char *dst, size_t len, const char *src)
{
    size_t n = strlen(src);

    if (n >= len) {
        n = len - 1;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static bool is_executable(const char *path)
{
    return access(path, X_OK) == 0;
}

/* Try dir/rel; write it to out on success. */
static bool try_candidate(const char *dir, const char *rel, char *out, size_t len)
{
    char path[PATH_MAX];

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, rel) >= sizeof(path) ||
        !is_executable(path)) {
        return false;
    }
    char *real = realpath(path, NULL);
    snprintf(out, len, "%s", real ? real : path);
    free(real);
    return true;
}

int bench_broker_find(bench_broker *b, const char *explicit_path)
{
    b->pid = -1;
    if (explicit_path != NULL) {
        if (!is_executable(explicit_path)) {
            fprintf(stderr,
                    "sockbus bench: cannot run the broker '%s': %s; give the sockbusd "
                    "executable with --broker PATH\n",
                    explicit_path, strerror(errno));
            return -1;
        }
        snprintf(b->path, sizeof(b->path), "%s", explicit_path);
        return 0;
    }

    /* Next to us: the build tree keeps tools/sockbus/sockbus and
     * broker/sockbusd; an installation puts both in one bin directory. */
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL) {
            *slash = '\0';
            if (try_candidate(self, "../../broker/" BROKER_NAME, b->path, sizeof(b->path)) ||
                try_candidate(self, BROKER_NAME, b->path, sizeof(b->path))) {
                return 0;
            }
        }
    }

    const char *path = getenv("PATH");
    while (path != NULL && *path != '\0') {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        char dir[PATH_MAX];
        if (len > 0 && len < sizeof(dir)) {
            memcpy(dir, path, len);
            dir[len] = '\0';
            if (try_candidate(dir, BROKER_NAME, b->path, sizeof(b->path))) {
                return 0;
            }
        }
        path = end ? end + 1 : NULL;
    }
    fprintf(stderr,
            "sockbus bench: cannot find %s next to this sockbus or on PATH; pass "
            "--broker PATH, or -s ENDPOINT to bench a running broker\n",
            BROKER_NAME);
    return -1;
}

/* A temporary directory whose socket path fits in sun_path: $TMPDIR if it
 * is short enough, else /tmp. */
static int broker_mkdir(bench_broker *b)
{
    const char *tmp = getenv("TMPDIR");
    const size_t room = sizeof(((struct sockaddr_un *)NULL)->sun_path);
    const size_t tail = strlen("/sockbus-bench-XXXXXX/" BROKER_SOCKET_NAME) + 1;

    if (tmp == NULL || *tmp == '\0' || strlen(tmp) + tail > room ||
        strlen(tmp) + tail > sizeof(b->dir)) {
        tmp = "/tmp";
    }
    snprintf(b->dir, sizeof(b->dir), "%s/sockbus-bench-XXXXXX", tmp);
    if (mkdtemp(b->dir) == NULL) {
        int err = errno;
        fprintf(stderr,
                "sockbus bench: cannot create a temporary directory in %s: %s; set TMPDIR to "
                "a writable directory\n",
                tmp, strerror(err));
        b->dir[0] = '\0';
        return -1;
    }
    return 0;
}

static void broker_file(const bench_broker *b, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", b->dir, name);
}

/* The last non-empty line of the broker's log, for an error message. */
static void broker_last_log_line(const bench_broker *b, char *out, size_t len)
{
    char path[PATH_MAX];
    char buf[4096];

    out[0] = '\0';
    broker_file(b, BROKER_LOG_NAME, path, sizeof(path));
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    while (fgets(buf, sizeof(buf), f) != NULL) {
        buf[strcspn(buf, "\n")] = '\0';
        if (buf[0] != '\0') {
            copy_text(out, len, buf);
        }
    }
    fclose(f);
}

/* The port from "... and tcp port N" in the log, or 0 if not there yet. */
static unsigned broker_logged_port(const bench_broker *b)
{
    char path[PATH_MAX];
    char buf[4096];
    unsigned port = 0;

    broker_file(b, BROKER_LOG_NAME, path, sizeof(path));
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    while (port == 0 && fgets(buf, sizeof(buf), f) != NULL) {
        const char *p = strstr(buf, "tcp port ");
        /* Only a whole line: the broker may be half-way through writing. */
        if (p != NULL && strchr(p, '\n') != NULL) {
            unsigned long v = strtoul(p + strlen("tcp port "), NULL, 10);
            port = v > 0 && v <= 65535 ? (unsigned)v : 0;
        }
    }
    fclose(f);
    return port;
}

static bool socket_accepts(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return false;
    }
    copy_text(sun.sun_path, sizeof(sun.sun_path), path);
    bool ok = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    close(fd);
    return ok;
}

static pid_t broker_spawn(const bench_broker *b, const char *socket_path)
{
    char log_path[PATH_MAX];
    pid_t parent = getpid();

    broker_file(b, BROKER_LOG_NAME, log_path, sizeof(log_path));
    pid_t pid = fork();
    if (pid != 0) {
        return pid;
    }
    /* Child: never outlive the bench, even if it is killed. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) {
        _exit(127);
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
    }
    if (log >= 0) {
        dup2(log, STDOUT_FILENO);
        dup2(log, STDERR_FILENO);
    }
    char subs[16];
    char sub_bytes[24];
    char conns[16];
    char *argv[12] = {
        (char *)b->path, (char *)"--socket",    (char *)socket_path,
        (char *)"--tcp", (char *)"127.0.0.1:0",
    };
    int argc = 5;
    if (b->max_subscriptions > 0) {
        snprintf(subs, sizeof(subs), "%u", b->max_subscriptions);
        argv[argc++] = (char *)"--max-subscriptions";
        argv[argc++] = subs;
    }
    if (b->max_subscription_bytes > 0) {
        snprintf(sub_bytes, sizeof(sub_bytes), "%llu", b->max_subscription_bytes);
        argv[argc++] = (char *)"--max-subscription-bytes";
        argv[argc++] = sub_bytes;
    }
    if (b->max_connections > 0) {
        snprintf(conns, sizeof(conns), "%u", b->max_connections);
        argv[argc++] = (char *)"--max-connections";
        argv[argc++] = conns;
    }
    argv[argc] = NULL;
    execv(b->path, argv);
    fprintf(stderr, "sockbusd: cannot execute %s: %s\n", b->path, strerror(errno));
    _exit(127);
}

int bench_broker_start(bench_broker *b)
{
    char socket_path[PATH_MAX];
    char line[512];

    b->pid = -1;
    if (broker_mkdir(b) < 0) {
        return -1;
    }
    broker_file(b, BROKER_SOCKET_NAME, socket_path, sizeof(socket_path));
    fflush(NULL); /* nothing buffered may be written twice */
    b->pid = broker_spawn(b, socket_path);
    if (b->pid < 0) {
        fprintf(stderr, "sockbus bench: cannot start %s: %s\n", b->path, strerror(errno));
        bench_broker_stop(b);
        return -1;
    }

    int64_t deadline = broker_now_ms() + BROKER_READY_MS;
    for (;;) {
        int status;
        if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
            b->pid = -1;
            broker_last_log_line(b, line, sizeof(line));
            fprintf(stderr, "sockbus bench: %s exited at start-up%s%s; try running it by hand\n",
                    b->path, line[0] ? ": " : "", line);
            bench_broker_stop(b);
            return -1;
        }
        unsigned port = broker_logged_port(b);
        if (port != 0 && socket_accepts(socket_path)) {
            copy_text(b->unix_endpoint, sizeof(b->unix_endpoint), socket_path);
            snprintf(b->tcp_endpoint, sizeof(b->tcp_endpoint), "tcp://127.0.0.1:%u", port);
            return 0;
        }
        if (broker_now_ms() >= deadline) {
            broker_last_log_line(b, line, sizeof(line));
            fprintf(stderr,
                    "sockbus bench: %s did not get ready within %d s%s%s; is the machine "
                    "overloaded?\n",
                    b->path, BROKER_READY_MS / 1000, line[0] ? " (last log line: " : "", line);
            bench_broker_stop(b);
            return -1;
        }
        broker_sleep_ms(BROKER_POLL_MS);
    }
}

int bench_broker_rss(const bench_broker *b, uint64_t *bytes)
{
    char path[64];
    char line[256];
    unsigned long long kib = 0;
    bool found = false;

    if (b->pid <= 0) {
        return -ESRCH;
    }
    snprintf(path, sizeof(path), "/proc/%ld/status", (long)b->pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -errno;
    }
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        found = sscanf(line, "VmRSS: %llu kB", &kib) == 1;
    }
    fclose(f);
    if (!found) {
        return -ENODATA; /* a zombie has no VmRSS line */
    }
    *bytes = (uint64_t)kib * 1024u;
    return 0;
}

bool bench_broker_sanitized(const bench_broker *b)
{
    char path[64];
    char line[4096];
    bool found = false;

    if (b->pid <= 0) {
        return false;
    }
    snprintf(path, sizeof(path), "/proc/%ld/maps", (long)b->pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        found = strstr(line, "libasan") != NULL;
    }
    fclose(f);
    return found;
}

/* Remove the files in our directory, then the directory. */
static void broker_rmdir(bench_broker *b)
{
    if (b->dir[0] == '\0') {
        return;
    }
    DIR *d = opendir(b->dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                unlinkat(dirfd(d), e->d_name, 0);
            }
        }
        closedir(d);
    }
    rmdir(b->dir);
    b->dir[0] = '\0';
}

void bench_broker_stop(bench_broker *b)
{
    if (b->pid > 0) {
        char line[512];
        int status = 0;
        bool killed = false;

        kill(b->pid, SIGTERM);
        int64_t deadline = broker_now_ms() + BROKER_STOP_MS;
        for (;;) {
            pid_t r = waitpid(b->pid, &status, WNOHANG);
            if (r == b->pid || (r < 0 && errno != EINTR)) {
                break;
            }
            if (broker_now_ms() >= deadline) {
                kill(b->pid, SIGKILL);
                waitpid(b->pid, &status, 0);
                killed = true;
                break;
            }
            broker_sleep_ms(BROKER_POLL_MS);
        }
        b->pid = -1;
        /* A broker that did not end cleanly (a crash, a sanitizer report,
         * a hang) taints the numbers: say so before its log is gone. */
        if (killed || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            broker_last_log_line(b, line, sizeof(line));
            if (killed) {
                fprintf(stderr, "sockbus bench: warning: %s did not stop within %d s of SIGTERM",
                        b->path, BROKER_STOP_MS / 1000);
            } else if (WIFSIGNALED(status)) {
                fprintf(stderr, "sockbus bench: warning: %s was killed by signal %d (%s)", b->path,
                        WTERMSIG(status), strsignal(WTERMSIG(status)));
            } else {
                fprintf(stderr, "sockbus bench: warning: %s exited with status %d", b->path,
                        WEXITSTATUS(status));
            }
            fprintf(stderr, "%s%s\n", line[0] ? "; its last log line: " : "", line);
        }
    }
    broker_rmdir(b);
}
