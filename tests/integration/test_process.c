/*
 * test_process.c - the broker and the command as Unix processes: signals a
 * user may send, a terminal that hangs up, standard descriptors that are
 * closed, and a socket path another user got to first.
 *
 * No signal a user may send leaves the socket or the lock file behind:
 * the ones the broker ignores leave it serving, and a later SIGTERM still
 * stops it in order (ERR 9 to its clients, files removed, exit 0); SIGQUIT
 * and SIGXCPU stop it in order themselves. A broker started with fds 0-2
 * closed must neither block on its log nor abort at exit. A path whose
 * files belong to another uid is refused without touching them; that
 * needs files owned by another uid, so those tests run as root (as CI
 * does) and are skipped otherwise.
 *
 * Every wait is bounded: readiness is polled with a deadline, frames are
 * read with a timeout, exits are awaited with a deadline.
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
#include <grp.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

/* After SIGTERM the broker is gone within a second; twice that is waited
 * for, so that a slow exit is seen as slow rather than killed. */
#define STOP_MS 1000

/* The uid that owns the squatter's files (nobody), and the uid a victim
 * broker runs as: neither root nor nobody. */
#define OTHER_UID  65534
#define VICTIM_UID 4242

static struct harness_broker broker;

static void teardown(void)
{
    harness_cleanup(&broker);
}

TestSuite(process, .fini = teardown, .timeout = 120);

/* ---- helpers ------------------------------------------------------------ */

static bool path_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
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

static void lock_path(char *out, size_t len)
{
    snprintf(out, len, "%s.lock", broker.socket);
}

/* Wait (bounded) until the broker's socket accepts; asserts it does. */
static void wait_ready(void)
{
    int64_t deadline = harness_now_ms() + harness_ready_ms();
    for (;;) {
        int status;
        cr_assert_neq(waitpid(broker.pid, &status, WNOHANG), broker.pid,
                      "sockbusd exited at start (status %d)", status);
        if (socket_accepts(broker.socket)) {
            return;
        }
        cr_assert_lt(harness_now_ms(), deadline, "sockbusd did not become ready");
        poll(NULL, 0, 5);
    }
}

static sb_client *client(const char *name)
{
    sb_client *c = NULL;
    sb_options o = {.endpoint = broker.socket, .name = name, .timeout_ms = HARNESS_IO_MS};
    int r = sb_connect(&c, &o);
    cr_assert_eq(r, 0, "sb_connect as %s: %s", name, sb_strerror(r));
    return c;
}

/* The broker still routes: a publish reaches a subscriber. */
static void assert_serves(const char *what)
{
    int status;
    cr_assert_eq(waitpid(broker.pid, &status, WNOHANG), 0, "after %s the broker is gone (%s)", what,
                 WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "exit");
    sb_client *sub = client("sub");
    sb_client *pub = client("pub");
    cr_assert_eq(sb_subscribe(sub, "proc.check", NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_publish(pub, "proc.check", NULL, "ok", 2), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    sb_msg m;
    int r = sb_next_msg(sub, &m, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "after %s: no round trip: %s", what, sb_strerror(r));
    sb_close(pub);
    sb_close(sub);
}

/*
 * Stop with `signum` and check the orderly stop: `raw` (a welcomed raw
 * client) gets ERR 9 then EOF, the broker exits 0 within STOP_MS, and the
 * socket and lock files are gone.
 */
static void assert_orderly_stop(int signum, int raw)
{
    char lock[160];
    lock_path(lock, sizeof(lock));
    cr_assert(path_exists(lock), "no lock file %s while running", lock);
    int64_t t0 = harness_now_ms();
    cr_assert_eq(kill(broker.pid, signum), 0);
    int status = harness_wait_pid(broker.pid, 2 * STOP_MS);
    int64_t took = harness_now_ms() - t0;
    broker.pid = -1;
    cr_assert_eq(status, 0, "exit status %d after %s, expected 0", status, strsignal(signum));
    cr_assert_lt(took, STOP_MS, "the broker took %lld ms to stop", (long long)took);
    cr_assert(!path_exists(broker.socket), "the socket file is still there");
    cr_assert(!path_exists(lock), "the lock file is still there");
    uint8_t hdr[FRAME_HEADER_SIZE];
    uint8_t body[1024];
    long size = harness_read_frame(raw, hdr, body, sizeof(body), HARNESS_IO_MS);
    cr_assert(size > 0, "the client got %s instead of ERR 9", size == 0 ? "EOF" : "nothing");
    cr_assert_eq(hdr[4], FRAME_OP_ERR, "the client got %s, expected ERR", frame_op_name(hdr[4]));
    cr_assert_eq(frame_get_u32(hdr + 12), FRAME_ERR_SHUTDOWN, "the client got ERR %u",
                 frame_get_u32(hdr + 12));
    cr_assert(harness_wait_eof(raw, HARNESS_IO_MS), "no EOF after ERR 9");
    close(raw);
}

/* ---- signals ------------------------------------------------------------ */

/* A signal the broker must survive: it still serves, and SIGTERM then
 * stops it in order. */
static void check_survives(int signum, const char *name)
{
    const char *const args[] = {"-v", NULL};
    int r = harness_start(&broker, false, args);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    int raw = harness_raw(&broker, true);
    cr_assert_eq(kill(broker.pid, signum), 0);
    if (signum == SIGHUP) {
        cr_assert(harness_wait_logged(&broker, "SIGHUP: no --config file to reload; ignored"),
                  "SIGHUP was not logged");
    }
    assert_serves(name);
    assert_orderly_stop(SIGTERM, raw);
    harness_stop(&broker);
}

Test(process, sighup_is_logged_and_ignored)
{
    check_survives(SIGHUP, "SIGHUP");
}

Test(process, sigusr1_is_ignored)
{
    check_survives(SIGUSR1, "SIGUSR1");
}

Test(process, sigusr2_is_ignored)
{
    check_survives(SIGUSR2, "SIGUSR2");
}

Test(process, sigalrm_is_ignored)
{
    check_survives(SIGALRM, "SIGALRM");
}

Test(process, realtime_signals_are_ignored)
{
    check_survives(SIGRTMIN, "SIGRTMIN");
    check_survives(SIGRTMIN + 3, "SIGRTMIN+3");
    /* Valgrind keeps the highest real-time signal for itself (it kills its
     * threads with it), so under a wrapper that one says nothing about
     * the broker. */
    if (!harness_wrapped()) {
        check_survives(SIGRTMAX, "SIGRTMAX");
    }
}

/* The real-time signals below SIGRTMIN (32 and 33 with glibc) are the C
 * library's, which will not let a program change their action; any user
 * may still send them. */
Test(process, signals_reserved_by_the_c_library_are_ignored)
{
    if (SIGRTMIN == __SIGRTMIN) {
        cr_skip_test("this C library reserves no real-time signal");
    }
    for (int s = __SIGRTMIN; s < SIGRTMIN; s++) {
        char name[32];
        snprintf(name, sizeof(name), "signal %d", s);
        check_survives(s, name);
    }
}

Test(process, every_other_terminating_signal_is_ignored)
{
    const struct {
        int signum;
        const char *name;
    } signals[] = {
        {SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"}, {SIGIO, "SIGIO"},
        {SIGPWR, "SIGPWR"},       {SIGXFSZ, "SIGXFSZ"}, {SIGPIPE, "SIGPIPE"},
#ifdef SIGSTKFLT
        {SIGSTKFLT, "SIGSTKFLT"},
#endif
    };
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
        check_survives(signals[i].signum, signals[i].name);
    }
}

/* SIGQUIT (Ctrl-\) and SIGXCPU (the soft CPU limit) stop the broker in
 * order, like SIGTERM. */
static void check_stops(int signum, const char *logged)
{
    int r = harness_start(&broker, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    int raw = harness_raw(&broker, true);
    assert_orderly_stop(signum, raw);
    static char log[8192];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert_not_null(strstr(log, logged), "log: %s", log);
    harness_stop(&broker);
}

Test(process, sigquit_stops_in_order)
{
    check_stops(SIGQUIT, "SIGQUIT: shutting down");
}

Test(process, sigxcpu_stops_in_order)
{
    check_stops(SIGXCPU, "SIGXCPU: shutting down");
}

/* A broker started in the foreground of a terminal (its controlling
 * terminal, as from a shell) survives the terminal hanging up. */
Test(process, terminal_hangup_does_not_end_a_foreground_broker)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    cr_assert(master >= 0, "posix_openpt: %s", strerror(errno));
    cr_assert_eq(grantpt(master), 0);
    cr_assert_eq(unlockpt(master), 0);
    char slave[128];
    cr_assert_eq(ptsname_r(master, slave, sizeof(slave)), 0);
    const char *sockbusd = getenv("SOCKBUSD");
    cr_assert_not_null(sockbusd, "SOCKBUSD is not set: run the tests with meson test");
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        /* A new session whose controlling terminal is the pty: the
         * broker is its leader and in its foreground. */
        setsid();
        int tty = open(slave, O_RDWR);
        if (tty < 0 || ioctl(tty, TIOCSCTTY, 0) < 0) {
            _exit(126);
        }
        dup2(tty, STDIN_FILENO);
        dup2(tty, STDOUT_FILENO);
        dup2(tty, STDERR_FILENO);
        if (tty > STDERR_FILENO) {
            close(tty);
        }
        execl(sockbusd, sockbusd, "--socket", broker.socket, "-v", (char *)NULL);
        _exit(127);
    }
    broker.pid = pid;
    /* Its log on the terminal says when it is up. */
    static char seen[8192];
    size_t len = 0;
    int64_t deadline = harness_now_ms() + harness_ready_ms();
    while (strstr(seen, "listening on") == NULL) {
        int left = (int)(deadline - harness_now_ms());
        cr_assert_gt(left, 0, "sockbusd did not say it listens; terminal: %s", seen);
        struct pollfd pfd = {.fd = master, .events = POLLIN};
        if (poll(&pfd, 1, left) > 0) {
            ssize_t n = read(master, seen + len, sizeof(seen) - 1 - len);
            cr_assert_gt(n, 0, "the terminal closed: %s", seen);
            len += (size_t)n;
            seen[len] = '\0';
        }
    }
    wait_ready();
    int raw = harness_raw(&broker, true);

    /* Hang up: the kernel sends SIGHUP to the session's leader, the
     * broker, before close() returns. */
    close(master);
    assert_serves("the terminal hung up");
    assert_orderly_stop(SIGTERM, raw);
    harness_stop(&broker);
}

/* ---- closed standard descriptors ---------------------------------------- */

/* Start sockbusd with `args` and fds 0..2 closed where `closed` says. */
static void start_with_closed_stdio(const bool closed[3], const char *const *args)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    const char *argv[16];
    size_t n = 0;
    argv[n++] = getenv("SOCKBUSD");
    cr_assert_not_null(argv[0], "SOCKBUSD is not set: run the tests with meson test");
    argv[n++] = "--socket";
    argv[n++] = broker.socket;
    for (size_t i = 0; args != NULL && args[i] != NULL; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int log = open(broker.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        for (int fd = 0; fd < 3; fd++) {
            if (closed[fd]) {
                close(fd);
            } else if (fd == STDERR_FILENO && log >= 0) {
                dup2(log, fd);
            }
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    broker.pid = pid;
    wait_ready();
}

/* Connect and leave `cycles` times, with a name that makes each cycle's -v
 * log lines long: with its log in a pipe of libuv's that nobody reads, a
 * broker blocks for good after about 64 KiB of it. */
static void connect_cycles(int cycles)
{
    char name[101];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    for (int i = 0; i < cycles; i++) {
        sb_client *c = NULL;
        sb_options o = {.endpoint = broker.socket, .name = name, .timeout_ms = HARNESS_IO_MS};
        int r = sb_connect(&c, &o);
        cr_assert_eq(r, 0, "connect %d: %s", i, sb_strerror(r));
        sb_close(c);
    }
}

static void check_closed_stdio(const bool closed[3], int cycles)
{
    const char *const args[] = {"-v", NULL};
    start_with_closed_stdio(closed, args);
    connect_cycles(cycles);
    assert_serves("the connect cycles");
    int raw = harness_raw(&broker, true);
    assert_orderly_stop(SIGTERM, raw);
    harness_stop(&broker);
}

Test(process, broker_with_stdio_closed_logs_and_stops_cleanly)
{
    const bool all[3] = {true, true, true};
    check_closed_stdio(all, 400);
}

Test(process, broker_with_one_std_fd_closed_stops_cleanly)
{
    for (int fd = 0; fd < 3; fd++) {
        bool closed[3] = {false, false, false};
        closed[fd] = true;
        check_closed_stdio(closed, 10);
    }
}

/* `sockbus pub SUBJECT` reads its messages from stdin; with stdin closed,
 * that is nothing (not the broker's socket, which would take fd 0). */
Test(process, sockbus_pub_with_stdin_closed_reads_nothing)
{
    int r = harness_start(&broker, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    sb_client *sub = client("sub");
    cr_assert_eq(sb_subscribe(sub, "proc.stdin", NULL, NULL), 0);
    cr_assert_eq(sb_flush(sub, HARNESS_IO_MS), 0);

    const char *sockbus = getenv("SOCKBUS");
    cr_assert_not_null(sockbus, "SOCKBUS is not set: run the tests with meson test");
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(STDIN_FILENO);
        execl(sockbus, sockbus, "pub", "-s", broker.socket, "proc.stdin", (char *)NULL);
        _exit(127);
    }
    int status = harness_wait_pid(pid, HARNESS_IO_MS);
    cr_assert_eq(status, 0, "sockbus pub with stdin closed: exit %d (-1: it hung)", status);
    harness_expect_none(sub);
    sb_close(sub);
    harness_stop(&broker);
}

/* ---- a path another user got to first ----------------------------------- */

static void skip_unless_root(void)
{
    if (geteuid() != 0) {
        cr_skip_test("needs root, to give files to another uid (CI runs as root)");
    }
}

/* A listening socket at `path`, given to OTHER_UID: an impostor's. */
static int squat_socket(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    cr_assert(fd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0, "bind %s: %s", path,
                 strerror(errno));
    cr_assert_eq(listen(fd, 16), 0);
    cr_assert_eq(chmod(path, 0777), 0);
    cr_assert_eq(chown(path, OTHER_UID, OTHER_UID), 0, "chown: %s", strerror(errno));
    return fd;
}

/* Run sockbusd on broker.socket as `uid` (root stays root) to its exit;
 * returns its status. */
static int run_as(uid_t uid)
{
    const char *sockbusd = getenv("SOCKBUSD");
    cr_assert_not_null(sockbusd, "SOCKBUSD is not set: run the tests with meson test");
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int log = open(broker.log, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (log < 0 || dup2(log, STDERR_FILENO) < 0) {
            _exit(126);
        }
        if (uid != 0 && (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0)) {
            _exit(125);
        }
        execl(sockbusd, sockbusd, "--socket", broker.socket, (char *)NULL);
        _exit(127);
    }
    return harness_wait_pid(pid, HARNESS_IO_MS);
}

static void expect_refusal_line(uid_t victim)
{
    static char log[4096];
    harness_read_log(&broker, log, sizeof(log));
    char *nl = strchr(log, '\n');
    cr_assert(nl != NULL && nl[1] == '\0', "expected one line, got: %s", log);
    cr_assert_not_null(strstr(log, broker.socket), "the line does not name the path: %s", log);
    char owner[64];
    snprintf(owner, sizeof(owner), "belongs to uid %d, not to us (uid %d)", OTHER_UID, (int)victim);
    cr_assert_not_null(strstr(log, owner), "the line does not name the owner: %s", log);
    cr_assert_not_null(strstr(log, "XDG_RUNTIME_DIR"), "the line does not say what to do: %s", log);
}

/* In a directory anyone may write (like /tmp), another user bound the
 * path first and listens there. The broker refuses to start, says so, and
 * neither connects to the impostor (who would learn who we are and could
 * make us think the path taken) nor removes its socket. */
static void check_squatted_socket(uid_t victim)
{
    skip_unless_root();
    cr_assert_eq(harness_mkdir(&broker), 0);
    cr_assert_eq(chmod(broker.dir, 01777), 0);
    int impostor = squat_socket(broker.socket);
    struct stat before;
    cr_assert_eq(lstat(broker.socket, &before), 0);

    int status = run_as(victim);
    cr_assert_eq(status, 1, "exit status %d, expected 1", status);
    expect_refusal_line(victim);
    int knocked = accept4(impostor, NULL, NULL, SOCK_CLOEXEC);
    cr_assert(knocked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK),
              "the broker connected to the impostor's socket");
    struct stat after;
    cr_assert_eq(lstat(broker.socket, &after), 0, "the impostor's socket was removed");
    cr_assert_eq(after.st_ino, before.st_ino);
    char lock[160];
    lock_path(lock, sizeof(lock));
    cr_assert(!path_exists(lock), "the refused broker left its lock file behind");
    close(impostor);
    harness_cleanup(&broker);
}

Test(process, socket_of_another_user_is_refused_as_root)
{
    check_squatted_socket(0);
}

Test(process, socket_of_another_user_is_refused_as_a_user)
{
    check_squatted_socket(VICTIM_UID);
}

/* Another user made PATH.lock first (readable and writable by all, and
 * locked by them: the broker would say "another sockbusd is running"). */
Test(process, lock_file_of_another_user_is_refused)
{
    skip_unless_root();
    cr_assert_eq(harness_mkdir(&broker), 0);
    cr_assert_eq(chmod(broker.dir, 01777), 0);
    char lock[160];
    lock_path(lock, sizeof(lock));
    int fd = open(lock, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    cr_assert(fd >= 0);
    cr_assert_eq(fchmod(fd, 0666), 0);
    cr_assert_eq(fchown(fd, OTHER_UID, OTHER_UID), 0);
    cr_assert_eq(flock(fd, LOCK_EX | LOCK_NB), 0);

    const uid_t victims[] = {0, VICTIM_UID};
    for (size_t i = 0; i < 2; i++) {
        int status = run_as(victims[i]);
        cr_assert_eq(status, 1, "exit status %d, expected 1", status);
        expect_refusal_line(victims[i]);
        struct stat st;
        cr_assert_eq(lstat(lock, &st), 0, "the other user's lock file was removed");
        cr_assert_eq(st.st_uid, (uid_t)OTHER_UID);
        cr_assert(!path_exists(broker.socket), "the broker created its socket anyway");
    }
    close(fd);
    harness_cleanup(&broker);
}
