/*
 * test_lifecycle.c - the real sockbusd's life: start-up on a path that is
 * free, stale or taken (DESIGN §2), orderly stop on SIGTERM and SIGINT,
 * the socket file's mode, and the command line.
 *
 * Start-up failures run the broker to its exit (harness_run_broker) and
 * then look at what is left on disk and at its stderr. Every wait is
 * bounded: readiness is polled with a deadline, exits are awaited with a
 * deadline, frames are read with a timeout.
 */
#include "harness.h"

#include "frame.h"

#include <criterion/criterion.h>
#include <dirent.h>
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
#include <unistd.h>

/* DESIGN: after SIGTERM/SIGINT the broker is gone within a second. */
#define STOP_MS 1000
#define LOG_MAX (1 << 16)

/* The brokers of the current test; teardown stops whatever is left. */
static struct harness_broker first;
static struct harness_broker second;

/* A test that failed half way: clean up, asserting nothing. Tests that
 * get to their end call finish(), which asserts (harness_stop()). */
static void teardown(void)
{
    harness_cleanup(&second);
    harness_cleanup(&first);
}

/* End of every test body: stop what still runs, asserting that it exits 0
 * and that no log holds a sanitizer report. */
static void finish(void)
{
    if (second.dir[0] != '\0') {
        harness_stop(&second);
    }
    if (first.dir[0] != '\0') {
        harness_stop(&first);
    }
}

TestSuite(lifecycle, .fini = teardown, .timeout = 60);

/* ---- helpers ------------------------------------------------------------ */

static bool path_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void lock_path_of(const struct harness_broker *b, char *out, size_t len)
{
    snprintf(out, len, "%s.lock", b->socket);
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

/*
 * Start sockbusd with exactly `args` in b->dir (made by harness_mkdir()),
 * stderr to b->log, and wait (bounded) until `path` accepts connections.
 * The harness's harness_start() always makes a fresh directory, so it
 * cannot start a broker on a path the test prepared first.
 */
static int start_at(struct harness_broker *b, const char *path, const char *const *args)
{
    const char *argv[32];
    size_t n = 0;
    argv[n++] = getenv("SOCKBUSD");
    cr_assert(argv[0] != NULL, "SOCKBUSD is not set: run the tests with meson test");
    for (size_t i = 0; args[i] != NULL && n < 31; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(b->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    b->pid = pid;
    int64_t deadline = harness_now_ms() + HARNESS_READY_MS;
    while (harness_now_ms() < deadline) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            b->pid = -1;
            return -ECHILD;
        }
        if (socket_accepts(path)) {
            return 0;
        }
        poll(NULL, 0, 5); /* bounded polling for readiness */
    }
    return -ETIMEDOUT;
}

/* Run sockbusd with `args` to its exit, stdout into `out`, stderr into
 * `err` (both NUL terminated). Returns its exit status, or -1. */
static int run_capture(struct harness_broker *b, const char *const *args, char *out, size_t out_len,
                       char *err, size_t err_len)
{
    char out_path[160];
    snprintf(out_path, sizeof(out_path), "%s/stdout", b->dir);
    const char *argv[32];
    size_t n = 0;
    argv[n++] = getenv("SOCKBUSD");
    cr_assert(argv[0] != NULL, "SOCKBUSD is not set");
    for (size_t i = 0; args[i] != NULL && n < 31; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(b->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0) {
            _exit(126);
        }
        dup2(o, STDOUT_FILENO);
        dup2(e, STDERR_FILENO);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status = harness_wait_pid(pid, HARNESS_IO_MS);
    out[0] = '\0';
    FILE *f = fopen(out_path, "r");
    if (f != NULL) {
        size_t got = fread(out, 1, out_len - 1, f);
        out[got] = '\0';
        fclose(f);
    }
    harness_read_log(b, err, err_len);
    return status;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        n += *s == '\n';
    }
    return n;
}

/* stderr is exactly one non-empty line mentioning `needle`. */
static void expect_one_line_naming(const struct harness_broker *b, const char *needle)
{
    static char log[LOG_MAX];
    harness_read_log(b, log, sizeof(log));
    size_t len = strlen(log);
    cr_assert(len > 1 && log[len - 1] == '\n', "stderr is not one line: '%s'", log);
    cr_assert_eq(count_lines(log), 1, "stderr has %zu lines, expected one:\n%s", count_lines(log),
                 log);
    cr_assert_not_null(strstr(log, needle), "stderr does not name '%s': %s", needle, log);
}

/* Names in b->dir other than the broker's log and captured stdout. */
static size_t stray_files(const struct harness_broker *b, char *list, size_t len)
{
    list[0] = '\0';
    size_t n = 0;
    DIR *d = opendir(b->dir);
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            strcmp(e->d_name, "broker.log") == 0 || strcmp(e->d_name, "stdout") == 0) {
            continue;
        }
        n++;
        strncat(list, e->d_name, len - strlen(list) - 2);
        strcat(list, " ");
    }
    closedir(d);
    return n;
}

static void write_file(const char *path, const char *content)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    cr_assert(fd >= 0, "create %s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
}

static void expect_file_content(const char *path, const char *content)
{
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0, "%s is gone", path);
    cr_assert(S_ISREG(st.st_mode), "%s is no longer a regular file", path);
    char buf[256] = {0};
    int fd = open(path, O_RDONLY);
    cr_assert(fd >= 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    cr_assert(n >= 0);
    cr_assert_str_eq(buf, content, "%s was changed", path);
}

/* A socket bound at `path` (listening if `listening`); returns its fd. */
static int bind_socket_at(const char *path, bool listening)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0, "bind %s: %s", path,
                 strerror(errno));
    if (listening) {
        cr_assert_eq(listen(fd, 4), 0);
    }
    return fd;
}

/* Publish -> subscribe round trip through `endpoint`. */
static void assert_endpoint_serves(const char *sub_endpoint, const char *pub_endpoint)
{
    sb_client *sub = NULL;
    sb_client *pub = NULL;
    sb_options so = {.endpoint = sub_endpoint, .name = "sub"};
    sb_options po = {.endpoint = pub_endpoint, .name = "pub"};
    int r = sb_connect(&sub, &so);
    cr_assert_eq(r, 0, "connect %s: %s", sub_endpoint, sb_strerror(r));
    r = sb_connect(&pub, &po);
    cr_assert_eq(r, 0, "connect %s: %s", pub_endpoint, sb_strerror(r));
    uint32_t sid;
    cr_assert_eq(sb_subscribe(sub, "life.check", NULL, &sid), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_publish(pub, "life.check", NULL, "alive", 5), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    sb_msg m;
    r = sb_next_msg(sub, &m, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "round trip through %s -> %s failed: %s", pub_endpoint, sub_endpoint,
                 sb_strerror(r));
    cr_assert_str_eq(m.subject, "life.check");
    cr_assert_eq(m.sid, sid);
    cr_assert_eq(m.payload_len, 5);
    cr_assert_eq(memcmp(m.payload, "alive", 5), 0);
    sb_close(pub);
    sb_close(sub);
}

static void assert_serves(const struct harness_broker *b)
{
    assert_endpoint_serves(b->socket, b->socket);
}

/* Send `signum` and wait for the exit; returns the status and writes the
 * time it took. */
static int stop_with(struct harness_broker *b, int signum, int64_t *took_ms)
{
    int64_t t0 = harness_now_ms();
    cr_assert_eq(kill(b->pid, signum), 0);
    /* Twice the contract, so that a slow exit is measured, not killed. */
    int status = harness_wait_pid(b->pid, 2 * STOP_MS);
    *took_ms = harness_now_ms() - t0;
    b->pid = -1;
    return status;
}

/* ---- start-up on a path that is not free -------------------------------- */

Test(lifecycle, stale_socket_is_replaced)
{
    cr_assert_eq(harness_mkdir(&first), 0);
    /* What a crashed broker leaves: a socket nobody listens on, and its
     * (unlocked) lock file. */
    int fd = bind_socket_at(first.socket, true);
    close(fd);
    char lock[160];
    lock_path_of(&first, lock, sizeof(lock));
    write_file(lock, "");

    const char *const args[] = {"--socket", first.socket, NULL};
    int r = start_at(&first, first.socket, args);
    cr_assert_eq(r, 0, "sockbusd did not start over a stale socket: %s", strerror(-r));
    struct stat after;
    cr_assert_eq(lstat(first.socket, &after), 0);
    cr_assert(S_ISSOCK(after.st_mode));
    cr_assert_eq(after.st_mode & 0777, 0600u, "the new socket has mode %04o",
                 (unsigned)(after.st_mode & 0777));
    assert_serves(&first);

    int64_t took;
    cr_assert_eq(stop_with(&first, SIGTERM, &took), 0);
    cr_assert(!path_exists(first.socket));
    cr_assert(!path_exists(lock));
    finish();
}

Test(lifecycle, regular_file_at_path_is_left_alone)
{
    cr_assert_eq(harness_mkdir(&first), 0);
    write_file(first.socket, "precious data\n");
    const char *const args[] = {"--socket", first.socket, NULL};
    int status = harness_run_broker(&first, args, HARNESS_IO_MS);
    cr_assert_eq(status, 1, "exit status %d, expected 1", status);
    expect_file_content(first.socket, "precious data\n");
    expect_one_line_naming(&first, first.socket);
    /* A failed start leaves nothing of its own behind (no lock file). */
    char stray[512];
    cr_assert_eq(stray_files(&first, stray, sizeof(stray)), 1, "left behind: %s", stray);
    finish();
}

Test(lifecycle, directory_at_path_is_left_alone)
{
    cr_assert_eq(harness_mkdir(&first), 0);
    cr_assert_eq(mkdir(first.socket, 0700), 0);
    char inside[160];
    snprintf(inside, sizeof(inside), "%s/keep", first.socket);
    write_file(inside, "inside");
    const char *const args[] = {"--socket", first.socket, NULL};
    int status = harness_run_broker(&first, args, HARNESS_IO_MS);
    cr_assert_eq(status, 1, "exit status %d, expected 1", status);
    struct stat st;
    cr_assert_eq(lstat(first.socket, &st), 0, "the directory is gone");
    cr_assert(S_ISDIR(st.st_mode));
    expect_file_content(inside, "inside");
    expect_one_line_naming(&first, first.socket);
    char stray[512];
    cr_assert_eq(stray_files(&first, stray, sizeof(stray)), 1, "left behind: %s", stray);
    finish();
}

Test(lifecycle, second_broker_on_same_socket)
{
    int r = harness_start(&first, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    sb_client *early = harness_client(&first, "early", true);

    cr_assert_eq(harness_mkdir(&second), 0);
    const char *const args[] = {"--socket", first.socket, NULL};
    int status = harness_run_broker(&second, args, HARNESS_IO_MS);
    cr_assert_eq(status, 1, "the second broker's exit status is %d, expected 1", status);
    expect_one_line_naming(&second, first.socket);
    static char log[LOG_MAX];
    harness_read_log(&second, log, sizeof(log));
    cr_assert(strstr(log, "another") != NULL || strstr(log, "running") != NULL,
              "the message does not say another broker runs: %s", log);

    /* The first is untouched: its files, its clients, new clients. */
    char lock[160];
    lock_path_of(&first, lock, sizeof(lock));
    cr_assert(path_exists(first.socket), "the second broker removed the first's socket");
    cr_assert(path_exists(lock), "the second broker removed the first's lock file");
    cr_assert_eq(sb_flush(early, HARNESS_IO_MS), 0, "an existing client lost its connection");
    sb_close(early);
    assert_serves(&first);

    int64_t took;
    cr_assert_eq(stop_with(&first, SIGTERM, &took), 0);
    cr_assert(!path_exists(first.socket));
    cr_assert(!path_exists(lock));
    finish();
}

Test(lifecycle, live_socket_without_lock_file_is_left_alone)
{
    /* Someone removed the lock file: the live socket still says "taken". */
    int r = harness_start(&first, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    char lock[160];
    lock_path_of(&first, lock, sizeof(lock));
    cr_assert_eq(unlink(lock), 0);

    cr_assert_eq(harness_mkdir(&second), 0);
    const char *const args[] = {"--socket", first.socket, NULL};
    int status = harness_run_broker(&second, args, HARNESS_IO_MS);
    cr_assert_eq(status, 1, "the second broker's exit status is %d, expected 1", status);
    expect_one_line_naming(&second, first.socket);
    cr_assert(path_exists(first.socket), "the second broker removed a live socket");
    assert_serves(&first);
    finish();
}

/* ---- orderly stop ------------------------------------------------------- */

static void check_orderly_stop(int signum)
{
    int r = harness_start(&first, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    char lock[160];
    lock_path_of(&first, lock, sizeof(lock));
    cr_assert(path_exists(lock), "no lock file %s while running", lock);

    int raw[2];
    for (size_t i = 0; i < 2; i++) {
        raw[i] = harness_raw(&first, true);
    }
    sb_client *lib = harness_client(&first, "lib", true);
    cr_assert_eq(sb_subscribe(lib, "x", NULL, NULL), 0);
    cr_assert_eq(sb_flush(lib, HARNESS_IO_MS), 0);

    int64_t took;
    int status = stop_with(&first, signum, &took);
    cr_assert_eq(status, 0, "exit status %d after %s, expected 0", status, strsignal(signum));
    cr_assert(took < STOP_MS, "the broker took %lld ms to stop", (long long)took);
    cr_assert(!path_exists(first.socket), "the socket file is still there");
    cr_assert(!path_exists(lock), "the lock file is still there");

    /* Every client was told: ERR 9, then EOF. */
    for (size_t i = 0; i < 2; i++) {
        uint8_t hdr[FRAME_HEADER_SIZE];
        uint8_t body[1024];
        long size = harness_read_frame(raw[i], hdr, body, sizeof(body), HARNESS_IO_MS);
        cr_assert(size > 0, "client %zu got %s instead of ERR 9", i, size == 0 ? "EOF" : "nothing");
        cr_assert_eq(hdr[4], FRAME_OP_ERR, "client %zu got %s, expected ERR", i,
                     frame_op_name(hdr[4]));
        cr_assert_eq(frame_get_u32(hdr + 12), FRAME_ERR_SHUTDOWN, "client %zu got ERR %u", i,
                     frame_get_u32(hdr + 12));
        cr_assert(harness_wait_eof(raw[i], HARNESS_IO_MS), "client %zu: no EOF after ERR 9", i);
        close(raw[i]);
    }
    sb_msg m;
    r = sb_next_msg(lib, &m, HARNESS_IO_MS);
    cr_assert_eq(r, SB_E_SHUTDOWN, "the library reports %s, not a shutdown", sb_strerror(r));
    sb_close(lib);
}

Test(lifecycle, sigterm_stops_cleanly)
{
    check_orderly_stop(SIGTERM);
    finish();
}

Test(lifecycle, sigint_stops_cleanly)
{
    check_orderly_stop(SIGINT);
    finish();
}

/* A raw subscriber that never reads, with 16 MiB published to it by *pub:
 * its queue is full and a write to it stays in flight. Returns its fd. */
static int flood_a_stuck_subscriber(struct harness_broker *b, sb_client **pub)
{
    int stuck = harness_raw(b, true);
    uint8_t sub[32];
    size_t n = frame_encode(sub, FRAME_OP_SUB, 0, 1, "flood", 5, NULL, 0, NULL, 0, NULL, 0);
    harness_write(stuck, sub, n);
    *pub = harness_client(b, "pub", true);
    cr_assert_eq(sb_flush(*pub, HARNESS_IO_MS), 0);
    static uint8_t chunk[64 * 1024];
    for (int i = 0; i < 256; i++) {
        cr_assert_eq(sb_publish(*pub, "flood", NULL, chunk, sizeof(chunk)), 0);
    }
    cr_assert_eq(sb_flush(*pub, HARNESS_IO_MS), 0);
    return stuck;
}

Test(lifecycle, stop_is_quick_with_a_client_that_never_reads)
{
    int r = harness_start(&first, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    /* A subscriber that never reads, with megabytes queued to it. */
    sb_client *pub;
    int stuck = flood_a_stuck_subscriber(&first, &pub);

    int64_t took;
    int status = stop_with(&first, SIGTERM, &took);
    cr_assert_eq(status, 0, "exit status %d", status);
    cr_assert(took < STOP_MS, "a client that does not read held the stop for %lld ms",
              (long long)took);
    cr_assert(!path_exists(first.socket));
    sb_close(pub);
    close(stuck);
    finish();
}

Test(lifecycle, replaced_socket_file_is_left_alone_at_stop)
{
    int r = harness_start(&first, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    cr_assert_eq(unlink(first.socket), 0);
    write_file(first.socket, "someone else's\n");
    int64_t took;
    cr_assert_eq(stop_with(&first, SIGTERM, &took), 0);
    expect_file_content(first.socket, "someone else's\n");
    char lock[160];
    lock_path_of(&first, lock, sizeof(lock));
    cr_assert(!path_exists(lock), "the lock file is still there");
    finish();
}

Test(lifecycle, replacing_socket_is_left_alone_at_stop)
{
    /* Replaced by another socket: same kind of file, different inode. */
    int r = harness_start(&first, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    cr_assert_eq(unlink(first.socket), 0);
    int fd = bind_socket_at(first.socket, true);
    int64_t took;
    cr_assert_eq(stop_with(&first, SIGTERM, &took), 0);
    struct stat st;
    cr_assert_eq(lstat(first.socket, &st), 0, "the broker removed a socket that is not its own");
    cr_assert(S_ISSOCK(st.st_mode));
    cr_assert(socket_accepts(first.socket));
    close(fd);
    finish();
}

/* ---- the socket file ---------------------------------------------------- */

static unsigned socket_mode(const char *path)
{
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0);
    cr_assert(S_ISSOCK(st.st_mode), "%s is not a socket", path);
    return st.st_mode & 07777;
}

Test(lifecycle, socket_mode_is_0600_by_default)
{
    /* Whatever the umask the broker inherits. */
    mode_t old = umask(0);
    int r = harness_start(&first, false, NULL);
    umask(old);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    unsigned mode = socket_mode(first.socket);
    cr_assert_eq(mode, 0600u, "socket mode %04o, expected 0600", mode);
    finish();
}

Test(lifecycle, socket_mode_option)
{
    const char *const extra[] = {"--mode", "0660", NULL};
    int r = harness_start(&first, false, extra);
    cr_assert_eq(r, 0, "sockbusd --mode 0660 did not start: %s", strerror(-r));
    unsigned mode = socket_mode(first.socket);
    cr_assert_eq(mode, 0660u, "socket mode %04o, expected 0660", mode);
    assert_serves(&first);
    finish();
}

/* A path of exactly `len` bytes (len < 200) inside b's directory. */
static void path_of_length(const struct harness_broker *b, size_t len, char *path)
{
    size_t dir_len = strlen(b->dir);
    cr_assert_lt(dir_len + 2, len);
    snprintf(path, 200, "%s/", b->dir);
    memset(path + dir_len + 1, 'x', len - dir_len - 1);
    path[len] = '\0';
}

Test(lifecycle, socket_path_too_long)
{
    cr_assert_eq(harness_mkdir(&first), 0);
    /* sun_path holds 107 bytes and a NUL: 108 is one too many. */
    char path[200];
    path_of_length(&first, 108, path);
    const char *const args[] = {"--socket", path, NULL};
    int status = harness_run_broker(&first, args, HARNESS_IO_MS);
    cr_assert(status > 0, "exit status %d, expected a failure", status);
    expect_one_line_naming(&first, "too long");
    char stray[512];
    cr_assert_eq(stray_files(&first, stray, sizeof(stray)), 0, "left behind: %s", stray);
    finish();
}

Test(lifecycle, socket_path_of_107_bytes_works)
{
    cr_assert_eq(harness_mkdir(&first), 0);
    char path[200];
    path_of_length(&first, 107, path);
    const char *const args[] = {"--socket", path, NULL};
    int r = start_at(&first, path, args);
    cr_assert_eq(r, 0, "sockbusd on a 107-byte path did not start: %s", strerror(-r));
    assert_endpoint_serves(path, path);
    int64_t took;
    cr_assert_eq(stop_with(&first, SIGTERM, &took), 0);
    cr_assert(!path_exists(path));
    finish();
}

/* ---- the command line --------------------------------------------------- */

Test(lifecycle, help_prints_usage)
{
    cr_assert_eq(harness_mkdir(&first), 0);
    static char out[LOG_MAX];
    static char err[LOG_MAX];
    const char *const args[] = {"--help", NULL};
    int status = run_capture(&first, args, out, sizeof(out), err, sizeof(err));
    cr_assert_eq(status, 0, "--help exits %d", status);
    cr_assert_not_null(strstr(out, "usage"), "--help prints no usage: %s", out);
    cr_assert_not_null(strstr(out, "--socket"), "usage does not mention --socket: %s", out);
    cr_assert_not_null(strstr(out, "--tcp"), "usage does not mention --tcp: %s", out);
    cr_assert_str_eq(err, "", "--help wrote to stderr: %s", err);

    const char *const short_args[] = {"-h", NULL};
    status = run_capture(&first, short_args, out, sizeof(out), err, sizeof(err));
    cr_assert_eq(status, 0, "-h exits %d", status);
    cr_assert_not_null(strstr(out, "usage"));
    finish();
}

Test(lifecycle, unknown_option_exits_2)
{
    cr_assert_eq(harness_mkdir(&first), 0);
    static char out[LOG_MAX];
    static char err[LOG_MAX];
    const char *const args[] = {"--socket", first.socket, "--bogus", NULL};
    int status = run_capture(&first, args, out, sizeof(out), err, sizeof(err));
    cr_assert_eq(status, 2, "an unknown option exits %d, expected 2", status);
    cr_assert_not_null(strstr(err, "--bogus"), "stderr does not name the option: %s", err);
    cr_assert_not_null(strstr(err, "--help"), "stderr does not point to --help: %s", err);
    cr_assert_str_eq(out, "", "stdout: %s", out);
    cr_assert(!path_exists(first.socket), "a refused command line created the socket");

    const char *const stray_args[] = {"--socket", first.socket, "stray", NULL};
    status = run_capture(&first, stray_args, out, sizeof(out), err, sizeof(err));
    cr_assert_eq(status, 2, "a stray argument exits %d, expected 2", status);
    cr_assert_not_null(strstr(err, "stray"), "stderr: %s", err);
    finish();
}

/* ---- TCP ---------------------------------------------------------------- */

Test(lifecycle, tcp_listener)
{
    int r = harness_start(&first, true, NULL);
    cr_assert_eq(r, 0, "sockbusd --tcp 127.0.0.1:0 did not start: %s", strerror(-r));
    cr_assert(strncmp(first.tcp, "tcp://127.0.0.1:", 16) == 0, "no tcp endpoint: '%s'", first.tcp);
    sb_client *c = NULL;
    sb_options o = {.endpoint = first.tcp, .name = "tcp"};
    r = sb_connect(&c, &o);
    cr_assert_eq(r, 0, "connect %s: %s", first.tcp, sb_strerror(r));
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    sb_close(c);
    /* Both ways between the transports, and TCP to TCP. */
    assert_endpoint_serves(first.tcp, first.socket);
    assert_endpoint_serves(first.socket, first.tcp);
    assert_endpoint_serves(first.tcp, first.tcp);

    int64_t took;
    cr_assert_eq(stop_with(&first, SIGTERM, &took), 0);
    o.timeout_ms = 1000;
    c = NULL;
    cr_assert_eq(sb_connect(&c, &o), -ECONNREFUSED, "the TCP port still answers after the stop");
    finish();
}

/* A second SIGTERM while the broker is already stopping (here: waiting for
 * a client that does not read) must not kill it: it still exits 0 and
 * removes its socket file. */
Test(lifecycle, second_signal_during_stop_is_harmless)
{
    int r = harness_start(&first, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    sb_client *pub;
    int stuck = flood_a_stuck_subscriber(&first, &pub);

    cr_assert_eq(kill(first.pid, SIGTERM), 0);
    /* Stopping has begun once the listener refuses connections. */
    int64_t deadline = harness_now_ms() + STOP_MS;
    while (harness_now_ms() < deadline) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", first.socket);
        bool refused = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0;
        close(fd);
        if (refused) {
            break;
        }
        poll(NULL, 0, 1);
    }
    kill(first.pid, SIGTERM);
    int status = harness_wait_pid(first.pid, 2 * STOP_MS);
    first.pid = -1;
    cr_assert_eq(status, 0, "exit status %d after a second SIGTERM", status);
    cr_assert(!path_exists(first.socket));
    sb_close(pub);
    close(stuck);
    finish();
}
