/*
 * test_service.c - the broker as a service: socket activation (with
 * systemd-socket-activate, and with sockets this test passes itself),
 * readiness and status on a NOTIFY_SOCKET the test reads, SIGHUP reloads
 * of the config file, --check-config, and the log's timestamps.
 *
 * A broker started here by hand (spawn_activated()) gets its listening
 * sockets as fds 3, 4, ... with LISTEN_PID and LISTEN_FDS, exactly as
 * systemd passes them; its stderr goes to the harness's log file and its
 * pid into the harness struct, so that harness_stop() judges its exit and
 * its sanitizer reports like any other broker's.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static struct harness_broker broker;

static void teardown(void)
{
    harness_cleanup(&broker);
}

TestSuite(service, .fini = teardown, .timeout = 90);

/* ---- helpers ------------------------------------------------------------- */

static void path_in(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", broker.dir, name);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int listen_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0, "bind %s: %s", path,
                 strerror(errno));
    cr_assert_eq(listen(fd, 16), 0);
    return fd;
}

static int listen_tcp_on(uint32_t addr, unsigned *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(addr)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(listen(fd, 16), 0);
    socklen_t len = sizeof(sin);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

static int listen_tcp(unsigned *port)
{
    return listen_tcp_on(INADDR_LOOPBACK, port);
}

/* A datagram socket at DIR/notify.sock, as systemd's NOTIFY_SOCKET. */
static int notify_socket(char *path, size_t len)
{
    path_in(path, len, "notify.sock");
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    return fd;
}

/* Read notifications until one holds `needle` (within HARNESS_IO_MS);
 * everything read is appended to seen[]. True if it came. */
static bool notify_wait(int fd, const char *needle, char *seen, size_t seen_len)
{
    int64_t deadline = harness_now_ms() + HARNESS_IO_MS;
    for (;;) {
        int left = (int)(deadline - harness_now_ms());
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0) {
            return false;
        }
        char buf[512];
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0) {
            return false;
        }
        buf[n] = '\0';
        size_t used = strlen(seen);
        snprintf(seen + used, seen_len - used, "%s|", buf);
        if (strstr(buf, needle) != NULL) {
            return true;
        }
    }
}

/*
 * Start sockbusd with `args` (after argv[0]) and the `nfds` sockets of
 * fds[] as its fds 3, 4, ..., with LISTEN_PID (its own pid) and LISTEN_FDS,
 * plus `env` ("NAME=VALUE" strings, NULL-terminated, may be NULL); with no
 * sockets, no LISTEN_* variables (a broker started by hand). Its
 * stderr goes to broker.log, its pid to broker.pid. The test's copies of
 * the sockets are closed.
 */
static void spawn_activated(const int *fds, int nfds, const char *const *env,
                            const char *const *args)
{
    const char *argv[32];
    size_t n = 0;
    argv[n++] = getenv("SOCKBUSD");
    for (size_t i = 0; args[i] != NULL && n < 31; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int log = open(broker.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(log, STDERR_FILENO);
        /* Out of the way of 3.. first, then into place (dup2() clears
         * close-on-exec on the copy). */
        int high[8];
        for (int i = 0; i < nfds; i++) {
            high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 64);
        }
        for (int i = 0; i < nfds; i++) {
            dup2(high[i], 3 + i);
        }
        char v[32];
        snprintf(v, sizeof(v), "%d", (int)getpid());
        if (nfds > 0) {
            setenv("LISTEN_PID", v, 1);
            snprintf(v, sizeof(v), "%d", nfds);
            setenv("LISTEN_FDS", v, 1);
        }
        for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
            putenv((char *)env[i]);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < nfds; i++) {
        close(fds[i]);
    }
    broker.pid = pid;
}

/* Connect to `endpoint` until it answers (bounded). */
static sb_client *connect_to(const char *endpoint, const char *name)
{
    sb_options o = {.endpoint = endpoint, .name = name, .timeout_ms = HARNESS_IO_MS};
    sb_client *c = NULL;
    char err[SB_CONNECT_ERR_MAX];
    int r = sb_connect_ex(&c, &o, err, sizeof(err));
    cr_assert_eq(r, 0, "connect to %s: %s", endpoint, err);
    return c;
}

/* A message published on `subject` by one client reaches another. */
static void roundtrip(const char *endpoint, const char *subject)
{
    sb_client *s = connect_to(endpoint, "svc-sub");
    sb_client *p = connect_to(endpoint, "svc-pub");
    cr_assert_eq(sb_subscribe(s, subject, NULL, NULL), 0);
    cr_assert_eq(sb_flush(s, HARNESS_IO_MS), 0);
    cr_assert_eq(sb_publish(p, subject, NULL, "hi", 2), 0);
    cr_assert_eq(sb_flush(p, HARNESS_IO_MS), 0);
    sb_msg m = harness_expect_msg(s);
    cr_assert_str_eq(m.subject, subject);
    sb_close(p);
    sb_close(s);
}

static void wait_logged(const char *needle)
{
    char log[8192];
    bool ok = harness_wait_logged(&broker, needle);
    harness_read_log(&broker, log, sizeof(log));
    cr_assert(ok, "the broker did not log '%s'; log: %s", needle, log);
}

/* Wait until the log holds `needle` at least `count` times. */
static void wait_logged_n(const char *needle, int count)
{
    static char log[64 * 1024];
    int64_t deadline = harness_now_ms() + HARNESS_IO_MS;
    for (;;) {
        harness_read_log(&broker, log, sizeof(log));
        int n = 0;
        for (const char *p = log; (p = strstr(p, needle)) != NULL; p += strlen(needle)) {
            n++;
        }
        if (n >= count) {
            return;
        }
        cr_assert(harness_now_ms() < deadline, "the broker logged '%s' %d times, not %d: %s",
                  needle, n, count, log);
        poll(NULL, 0, 10);
    }
}

static const char *find_program(const char *name, char *buf, size_t len)
{
    static const char *const dirs[] = {"/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(buf, len, "%s/%s", dirs[i], name);
        if (access(buf, X_OK) == 0) {
            return buf;
        }
    }
    return NULL;
}

/* ---- socket activation --------------------------------------------------- */

/*
 * Start systemd-socket-activate listening on `act`, to run the broker with
 * `args` (NULL-terminated) on the first connection, with NOTIFY_SOCKET
 * `notify_path`. It execs the broker in its own process: broker.pid is the
 * broker's. Skips the test when the program is not installed.
 */
static void spawn_socket_activate(const char *act, const char *notify_path, const char *const *args)
{
    char prog[64];
    if (find_program("systemd-socket-activate", prog, sizeof(prog)) == NULL) {
        cr_skip_test("systemd-socket-activate is not installed (Debian: systemd)");
    }
    static char notify_env[160];
    snprintf(notify_env, sizeof(notify_env), "NOTIFY_SOCKET=%s", notify_path);
    const char *argv[40];
    size_t n = 0;
    argv[n++] = prog;
    argv[n++] = "-l";
    argv[n++] = act;
    argv[n++] = "-E";
    argv[n++] = notify_env;
    /* The sanitizers' settings, when the build has them. */
    static const char *const pass[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"};
    for (size_t i = 0; i < 3; i++) {
        if (getenv(pass[i]) != NULL) {
            argv[n++] = "-E";
            argv[n++] = pass[i];
        }
    }
    argv[n++] = getenv("SOCKBUSD");
    for (size_t i = 0; args[i] != NULL && n < 39; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int log = open(broker.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(log, STDERR_FILENO);
        dup2(log, STDOUT_FILENO);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    broker.pid = pid;
    wait_logged("Listening on");
}

/*
 * The real thing: systemd-socket-activate listens on DIR/act.sock and
 * starts the broker on the first connection with that socket as fd 3.
 * The broker serves it (a message goes through), says READY=1 and its
 * client count on the test's NOTIFY_SOCKET, STOPPING=1 on SIGTERM, and
 * never touches the path it would have bound (--socket DIR/own.sock: no
 * socket, no lock) nor removes the socket it was given.
 */
Test(service, systemd_socket_activate_serves_and_notifies)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    char act[128];
    char own[128];
    char own_lock[140];
    char notify_path[128];
    path_in(act, sizeof(act), "act.sock");
    path_in(own, sizeof(own), "own.sock");
    snprintf(own_lock, sizeof(own_lock), "%s.lock", own);
    int nfd = notify_socket(notify_path, sizeof(notify_path));
    const char *args[] = {"--socket", own, NULL};
    spawn_socket_activate(act, notify_path, args);

    roundtrip(act, "act.x");
    char seen[2048] = "";
    cr_assert(notify_wait(nfd, "READY=1", seen, sizeof(seen)), "no READY=1; got [%s]", seen);
    cr_assert(notify_wait(nfd, "STATUS=", seen, sizeof(seen)), "no STATUS=; got [%s]", seen);
    wait_logged("passed by the service manager");
    cr_assert(!exists(own) && !exists(own_lock), "an activated broker bound or locked %s", own);

    kill(broker.pid, SIGTERM);
    cr_assert(notify_wait(nfd, "STOPPING=1", seen, sizeof(seen)), "no STOPPING=1; got [%s]", seen);
    cr_assert_eq(harness_wait_pid(broker.pid, HARNESS_IO_MS), 0);
    broker.pid = -1;
    cr_assert(exists(act), "the broker removed the socket the service manager owns");
    cr_assert(!exists(own) && !exists(own_lock));
    close(nfd);
    harness_stop(&broker);
}

/*
 * The units as written: the command line of ExecStart= in `unit` (under
 * packaging/systemd/), with @sysconfdir@'s config file taken from the
 * tree and %t the test's directory, run by systemd-socket-activate as
 * systemd would run it. It serves, says READY=1, reloads on SIGHUP (the
 * units' ExecReload=) with RELOADING=1 and READY=1, stops on SIGTERM with
 * STOPPING=1 and exit 0, and creates nothing of its own: not the socket
 * its --socket or --system names, not /run/sockbus.
 */
static void check_unit(const char *unit)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", getenv("SOCKBUS_UNIT_DIR"), unit);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot read %s", path);
    static char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        found = strncmp(line, "ExecStart=", 10) == 0;
    }
    fclose(f);
    cr_assert(found, "no ExecStart= in %s", path);
    line[strcspn(line, "\n")] = '\0';

    /* The words after the program, with the unit's placeholders filled. */
    static char words[16][256];
    const char *args[17];
    size_t n = 0;
    char *save = NULL;
    strtok_r(line + 10, " ", &save); /* @bindir@/sockbusd */
    for (char *w = strtok_r(NULL, " ", &save); w != NULL && n < 16;
         w = strtok_r(NULL, " ", &save)) {
        if (strcmp(w, "@sysconfdir@/sockbus/sockbusd.json") == 0) {
            snprintf(words[n], sizeof(words[n]), "%s", getenv("SOCKBUS_SYSTEM_CONFIG"));
        } else if (strncmp(w, "%t/", 3) == 0) {
            snprintf(words[n], sizeof(words[n]), "%s/%s", broker.dir, w + 3);
        } else {
            snprintf(words[n], sizeof(words[n]), "%s", w);
        }
        cr_assert(strchr(words[n], '@') == NULL && strchr(words[n], '%') == NULL,
                  "%s: a placeholder this test does not know: %s", unit, w);
        args[n] = words[n];
        n++;
    }
    args[n] = NULL;

    bool run_existed = exists("/run/sockbus");
    char act[128];
    char own[128];
    char notify_path[128];
    path_in(act, sizeof(act), "act.sock");
    path_in(own, sizeof(own), "sockbus.sock");
    int nfd = notify_socket(notify_path, sizeof(notify_path));
    spawn_socket_activate(act, notify_path, args);
    roundtrip(act, "unit.x");
    char seen[2048] = "";
    cr_assert(notify_wait(nfd, "READY=1", seen, sizeof(seen)), "%s: no READY=1; got [%s]", unit,
              seen);
    seen[0] = '\0';
    bool config = false;
    for (size_t i = 0; i < n; i++) {
        config = config || strcmp(args[i], "--config") == 0;
    }
    kill(broker.pid, SIGHUP);
    if (config) {
        cr_assert(notify_wait(nfd, "RELOADING=1", seen, sizeof(seen)), "%s: no RELOADING=1 [%s]",
                  unit, seen);
        cr_assert(notify_wait(nfd, "READY=1", seen, sizeof(seen)),
                  "%s: no READY=1 after reload [%s]", unit, seen);
        wait_logged("reloaded");
    } else {
        wait_logged("no --config file to reload");
    }
    roundtrip(act, "unit.y");
    kill(broker.pid, SIGTERM);
    cr_assert(notify_wait(nfd, "STOPPING=1", seen, sizeof(seen)), "%s: no STOPPING=1 [%s]", unit,
              seen);
    int status = harness_wait_pid(broker.pid, HARNESS_IO_MS);
    broker.pid = -1;
    char log[4096];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert_eq(status, 0, "%s: exit %d; log: %s", unit, status, log);
    cr_assert(exists(act), "%s: the socket systemd owns was removed", unit);
    cr_assert(!exists(own), "%s: the broker bound %s besides the socket it was given", unit, own);
    cr_assert(run_existed || !exists("/run/sockbus"), "%s: the broker created /run/sockbus", unit);
    close(nfd);
    harness_stop(&broker);
}

Test(service, system_unit_as_written)
{
    check_unit("sockbusd.service.in");
}

Test(service, user_unit_as_written)
{
    check_unit("user/sockbusd.service.in");
}

/* A Unix and a TCP socket passed together are told apart by type and
 * both served; the client count reaches STATUS= as it changes. */
Test(service, unix_and_tcp_sockets_by_type)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    char act[128];
    char notify_path[128];
    path_in(act, sizeof(act), "act.sock");
    int nfd = notify_socket(notify_path, sizeof(notify_path));
    unsigned port;
    /* TCP first: the order of the fds says nothing about their kind. */
    int fds[2] = {listen_tcp(&port), listen_unix(act)};
    char notify_env[160];
    snprintf(notify_env, sizeof(notify_env), "NOTIFY_SOCKET=%s", notify_path);
    const char *env[] = {notify_env, NULL};
    const char *args[] = {"--socket", broker.socket, NULL};
    spawn_activated(fds, 2, env, args);

    char seen[2048] = "";
    cr_assert(notify_wait(nfd, "READY=1", seen, sizeof(seen)), "no READY=1; got [%s]", seen);
    roundtrip(act, "both.unix");
    char tcp[64];
    snprintf(tcp, sizeof(tcp), "tcp://127.0.0.1:%u", port);
    roundtrip(tcp, "both.tcp");

    /* One client stays: STATUS= says 1 client (sent when the count
     * changes, at most once a second). */
    sb_client *c = connect_to(act, "stays");
    cr_assert(notify_wait(nfd, "STATUS=1 client", seen, sizeof(seen)),
              "no STATUS= with 1 client; got [%s]", seen);
    sb_close(c);
    cr_assert(!exists(broker.socket), "an activated broker bound its own socket too");
    close(nfd);
    harness_stop(&broker);
}

/* LISTEN_PID names another process (the broker's parent was activated,
 * not the broker): the variables are not for it, and it binds its own
 * socket as usual. */
Test(service, listen_pid_of_another_process_is_ignored)
{
    cr_assert_eq(setenv("LISTEN_PID", "1", 1), 0);
    cr_assert_eq(setenv("LISTEN_FDS", "1", 1), 0);
    int r = harness_start(&broker, false, NULL);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    roundtrip(broker.socket, "own.x");
    harness_stop(&broker);
}

/* An inherited descriptor that is not a listening socket: one line that
 * says what is wrong, exit 1. */
Test(service, inherited_fd_that_is_not_a_listening_socket)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    int fds[1] = {open("/dev/null", O_RDONLY | O_CLOEXEC)};
    const char *args[] = {"--socket", broker.socket, NULL};
    spawn_activated(fds, 1, NULL, args);
    int status = harness_wait_pid(broker.pid, HARNESS_IO_MS);
    broker.pid = -1;
    char log[4096];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert_eq(status, 1, "exit %d; log: %s", status, log);
    cr_assert(strstr(log, "descriptor 3") != NULL &&
                  strstr(log, "not a listening Unix or TCP stream socket") != NULL,
              "log: %s", log);
    cr_assert(!exists(broker.socket));
    harness_stop(&broker);
}

/* ---- SIGHUP reloads the config file ---------------------------------------- */

static char config_path[160];

__attribute__((format(printf, 1, 2))) static void write_config(const char *fmt, ...)
{
    char json[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(json, sizeof(json), fmt, ap);
    va_end(ap);
    /* Written beside and renamed, as an editor or a deployment would. */
    char tmp[200];
    snprintf(tmp, sizeof(tmp), "%s.new", config_path);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fputs(json, f) >= 0, true);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(rename(tmp, config_path), 0);
}

struct err_seen {
    int count;
    int err;
    char subject[256];
    char text[512];
};

static void on_error(sb_client *c, int err, const char *subject, const char *text, void *arg)
{
    (void)c;
    struct err_seen *e = arg;
    e->count++;
    e->err = err;
    snprintf(e->subject, sizeof(e->subject), "%s", subject);
    snprintf(e->text, sizeof(e->text), "%s", text);
}

static int pub(sb_client *c, const char *subject)
{
    cr_assert_eq(sb_publish(c, subject, NULL, "m", 1), 0);
    return sb_flush(c, HARNESS_IO_MS);
}

static void reload(int nth)
{
    kill(broker.pid, SIGHUP);
    wait_logged_n("SIGHUP: ", nth);
}

static void make_config_path(void)
{
    snprintf(config_path, sizeof(config_path), "/tmp/sbtest-svc-XXXXXX");
    int fd = mkstemp(config_path);
    cr_assert(fd >= 0);
    close(fd);
}

static void start_config(const char *json)
{
    make_config_path();
    write_config("%s", json);
    const char *args[] = {"--config", config_path, NULL};
    int r = harness_start(&broker, false, args);
    char log[4096];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert_eq(r, 0, "sockbusd did not start: %s; log: %s", strerror(-r), log);
}

static void end_config(void)
{
    unlink(config_path);
}

/*
 * Change the ACL in the file, SIGHUP: the next PUB of a connected client
 * is judged by the new rules, and its subscription the new rules deny is
 * ended with ERR 4 naming the pattern and the sid (and no longer
 * delivers), while the one they still allow keeps working.
 */
Test(service, sighup_applies_the_new_acl_to_connected_clients)
{
    start_config("{\"acl\": [{\"default\": true, \"publish\": [\"a.>\", \"b.>\"],"
                 " \"subscribe\": [\"a.>\", \"b.>\"]}]}");
    sb_client *c = harness_client(&broker, "reload", true);
    struct err_seen e = {0};
    sb_set_error_cb(c, on_error, &e);
    uint32_t sid_a;
    uint32_t sid_b;
    cr_assert_eq(sb_subscribe(c, "a.>", NULL, &sid_a), 0);
    cr_assert_eq(sb_subscribe(c, "b.x", NULL, &sid_b), 0);
    cr_assert_eq(pub(c, "a.1"), 0, "a.1 allowed before the reload");
    cr_assert_eq(pub(c, "b.x"), 0);
    harness_expect_msg(c);
    harness_expect_msg(c);

    write_config("{\"acl\": [{\"default\": true, \"publish\": [\"b.>\", \"c.>\"],"
                 " \"subscribe\": [\"a.>\"]}]}");
    reload(1);
    wait_logged("1 subscription ended");

    /* The subscription to b.x was ended, and said so; a.> stays. */
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), SB_E_PERMISSION);
    cr_assert_str_eq(e.subject, "b.x");
    cr_assert_eq(pub(c, "a.1"), SB_E_PERMISSION, "a.1 still allowed after the reload");
    cr_assert_str_eq(e.subject, "a.1");
    cr_assert_eq(pub(c, "c.1"), 0, "c.1 not allowed after the reload");
    cr_assert_eq(pub(c, "b.x"), 0);
    harness_expect_none(c);

    sb_client *d = harness_client(&broker, "reload-2", true);
    struct err_seen e2 = {0};
    sb_set_error_cb(d, on_error, &e2);
    cr_assert_eq(sb_subscribe(d, "b.>", NULL, NULL), 0);
    cr_assert_eq(sb_flush(d, HARNESS_IO_MS), SB_E_PERMISSION, "a new SUB uses the new rules");
    sb_close(d);
    sb_close(c);
    harness_stop(&broker);
    end_config();
}

/* The ERR that ends a subscription names its pattern and its sid. */
Test(service, sighup_ends_a_denied_subscription_with_err_4)
{
    start_config("{\"acl\": [{\"default\": true, \"publish\": [\">\"],"
                 " \"subscribe\": [\"keep.>\", \"drop.>\"]}]}");
    sb_client *c = harness_client(&broker, "revoked", true);
    struct err_seen e = {0};
    sb_set_error_cb(c, on_error, &e);
    uint32_t sid;
    cr_assert_eq(sb_subscribe(c, "keep.>", NULL, NULL), 0);
    cr_assert_eq(sb_subscribe(c, "drop.x", NULL, &sid), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);

    write_config("{\"acl\": [{\"default\": true, \"publish\": [\">\"],"
                 " \"subscribe\": [\"keep.>\"]}]}");
    reload(1);
    wait_logged("1 subscription ended");
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), SB_E_PERMISSION);
    cr_assert_eq(e.count, 1, "%d errors", e.count);
    cr_assert_str_eq(e.subject, "drop.x");
    char want[64];
    snprintf(want, sizeof(want), "subscription %u to 'drop.x' ended", sid);
    cr_assert(strstr(e.text, want) != NULL, "ERR text [%s] lacks [%s]", e.text, want);

    sb_client *p = harness_client(&broker, "pub", true);
    cr_assert_eq(pub(p, "drop.x"), 0);
    cr_assert_eq(pub(p, "keep.y"), 0);
    sb_msg m = harness_expect_msg(c);
    cr_assert_str_eq(m.subject, "keep.y", "the ended subscription still delivered %s", m.subject);
    harness_expect_none(c);
    sb_close(p);
    sb_close(c);
    harness_stop(&broker);
    end_config();
}

/* A file that does not parse keeps every setting in use, and one line
 * says why. */
Test(service, sighup_with_a_broken_file_keeps_the_old_rules)
{
    start_config("{\"acl\": [{\"default\": true, \"publish\": [\"a.>\"], \"subscribe\": []}]}");
    sb_client *c = harness_client(&broker, "broken", true);
    write_config("{\"acl\": [{\"default\": true, \"publish\": [\"b.>\"]");
    reload(1);
    wait_logged("keeping the settings in use");
    char log[8192];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert(strstr(log, "invalid JSON") != NULL, "the reason is not logged: %s", log);
    cr_assert_eq(pub(c, "a.1"), 0, "the old rules were dropped");
    cr_assert_eq(pub(c, "b.1"), SB_E_PERMISSION, "the broken file's rules were applied");
    /* And a later good file is taken. */
    write_config("{\"acl\": [{\"default\": true, \"publish\": [\"b.>\"], \"subscribe\": []}]}");
    reload(2);
    wait_logged("reloaded");
    cr_assert_eq(pub(c, "b.1"), 0);
    sb_close(c);
    harness_stop(&broker);
    end_config();
}

/* Limits apply at once; keys that take a restart are reported and keep
 * their value. */
Test(service, sighup_applies_limits_and_reports_restart_keys)
{
    start_config("{\"max_subscriptions\": 10}");
    sb_client *c = harness_client(&broker, "limits", true);
    cr_assert_eq(sb_subscribe(c, "l.1", NULL, NULL), 0);
    cr_assert_eq(sb_subscribe(c, "l.2", NULL, NULL), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    write_config("{\"max_subscriptions\": 2, \"max_frame\": 8192, \"mode\": \"0666\"}");
    reload(1);
    wait_logged("reloaded");
    char log[8192];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert(strstr(log, "\"max_frame\" changed") != NULL &&
                  strstr(log, "\"mode\" changed") != NULL && strstr(log, "takes a restart") != NULL,
              "restart-only keys not reported: %s", log);
    cr_assert_eq(sb_subscribe(c, "l.3", NULL, NULL), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), SB_E_LIMIT, "max_subscriptions 2 not applied");
    /* max_frame kept its value: a 100 KiB message still goes through. */
    static char big[100 * 1024];
    cr_assert_eq(sb_publish(c, "l.big", NULL, big, sizeof(big)), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0, "max_frame changed without a restart");
    struct stat st;
    cr_assert_eq(stat(broker.socket, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "mode changed without a restart");
    sb_close(c);
    harness_stop(&broker);
    end_config();
}

/* Without --config, SIGHUP is logged and the broker goes on. */
Test(service, sighup_without_config_is_logged_and_ignored)
{
    int r = harness_start(&broker, false, NULL);
    cr_assert_eq(r, 0);
    reload(1);
    wait_logged("no --config file to reload");
    roundtrip(broker.socket, "still.here");
    harness_stop(&broker);
}

/* RELOADING=1, then READY=1, around a reload, on the NOTIFY_SOCKET. */
Test(service, reload_is_announced_to_the_service_manager)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    char act[128];
    char notify_path[128];
    path_in(act, sizeof(act), "act.sock");
    int nfd = notify_socket(notify_path, sizeof(notify_path));
    snprintf(config_path, sizeof(config_path), "%s/c.json", broker.dir);
    write_config("{\"log\": \"normal\"}");
    char notify_env[160];
    snprintf(notify_env, sizeof(notify_env), "NOTIFY_SOCKET=%s", notify_path);
    const char *env[] = {notify_env, NULL};
    int fds[1] = {listen_unix(act)};
    const char *args[] = {"--config", config_path, NULL};
    spawn_activated(fds, 1, env, args);
    char seen[2048] = "";
    cr_assert(notify_wait(nfd, "READY=1", seen, sizeof(seen)), "no READY=1; got [%s]", seen);
    seen[0] = '\0';
    kill(broker.pid, SIGHUP);
    cr_assert(notify_wait(nfd, "RELOADING=1", seen, sizeof(seen)), "no RELOADING=1; got [%s]",
              seen);
    cr_assert(notify_wait(nfd, "READY=1", seen, sizeof(seen)), "no READY=1 after the reload; [%s]",
              seen);
    close(nfd);
    harness_stop(&broker);
}

/* ---- --check-config -------------------------------------------------------- */

Test(service, check_config_says_valid_or_why_not)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    snprintf(config_path, sizeof(config_path), "%s/c.json", broker.dir);
    write_config("{\"max_connections\": 10, \"acl\": [{\"default\": true, \"publish\": [\">\"]}]}");
    const char *ok[] = {"--check-config", config_path, NULL};
    cr_assert_eq(harness_run_broker(&broker, ok, HARNESS_IO_MS), 0);
    write_config("{\"max_conections\": 10}");
    cr_assert_eq(harness_run_broker(&broker, ok, HARNESS_IO_MS), 1);
    char log[4096];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert(strstr(log, "unknown key \"max_conections\"") != NULL, "log: %s", log);
    cr_assert(!exists(broker.socket), "--check-config started a broker");
    harness_stop(&broker);
}

/* ---- the log ----------------------------------------------------------------- */

/* Lines carry a timestamp, unless stderr is the journal (JOURNAL_STREAM
 * names stderr's device and inode). */
Test(service, log_lines_carry_a_timestamp_unless_stderr_is_the_journal)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    char act[128];
    path_in(act, sizeof(act), "act.sock");
    int fds[1] = {listen_unix(act)};
    const char *args[] = {NULL};
    spawn_activated(fds, 1, NULL, args);
    wait_logged("listening on");
    char log[4096];
    harness_read_log(&broker, log, sizeof(log));
    /* "2026-12-03T12:13:03.123Z sockbusd: listening on ..." */
    cr_assert(strlen(log) > 25 && log[4] == '-' && log[10] == 'T' && log[19] == '.' &&
                  strstr(log, "Z sockbusd: listening on") != NULL,
              "no timestamp: %s", log);
    harness_stop(&broker);

    cr_assert_eq(harness_mkdir(&broker), 0);
    path_in(act, sizeof(act), "act.sock");
    int lfd = open(broker.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    struct stat st;
    cr_assert_eq(fstat(lfd, &st), 0);
    close(lfd);
    char journal[96];
    snprintf(journal, sizeof(journal), "JOURNAL_STREAM=%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    const char *env[] = {journal, NULL};
    int fds2[1] = {listen_unix(act)};
    spawn_activated(fds2, 1, env, args);
    wait_logged("listening on");
    harness_read_log(&broker, log, sizeof(log));
    cr_assert(strncmp(log, "sockbusd: listening on", 22) == 0,
              "a timestamp although stderr is the journal: %s", log);
    harness_stop(&broker);
}

/* ---- settings that work but are probably not what was meant ---------------- */

static void start_args(const char *const *args)
{
    int r = harness_start(&broker, false, args);
    char log[4096];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert_eq(r, 0, "sockbusd did not start: %s; log: %s", strerror(-r), log);
}

static bool logged(const char *needle)
{
    char log[8192];
    harness_read_log(&broker, log, sizeof(log));
    return strstr(log, needle) != NULL;
}

Test(service, tcp_on_a_non_loopback_address_warns)
{
    const char *args[] = {"--tcp", "0.0.0.0:0", NULL};
    start_args(args);
    cr_assert(logged("is not a loopback address: TCP clients have no credentials"),
              "no warning for --tcp 0.0.0.0");
    harness_stop(&broker);
    const char *lo[] = {"--tcp", "127.0.0.1:0", NULL};
    start_args(lo);
    cr_assert(!logged("loopback"), "a warning for --tcp 127.0.0.1");
    harness_stop(&broker);
}

Test(service, group_without_group_access_warns)
{
    char gid[16];
    snprintf(gid, sizeof(gid), "%u", (unsigned)getgid());
    const char *args[] = {"--group", gid, NULL};
    start_args(args);
    cr_assert(logged("does not let the group connect; use --mode 0660"),
              "no warning for --group with mode 0600");
    harness_stop(&broker);
    const char *ok[] = {"--group", gid, "--mode", "0660", NULL};
    start_args(ok);
    cr_assert(!logged("warning"), "a warning for --group with --mode 0660");
    harness_stop(&broker);
}

/* --system's socket is shared by default: mode 0660 with its group (the
 * group sockbus when it exists, or the one given), where a private broker
 * stays at 0600. */
Test(service, system_socket_is_group_accessible_by_default)
{
    char gid[16];
    snprintf(gid, sizeof(gid), "%u", (unsigned)getgid());
    const char *args[] = {"--system", "--group", gid, NULL};
    start_args(args);
    struct stat st;
    cr_assert_eq(stat(broker.socket, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0660, "--system socket mode %o", st.st_mode & 0777);
    cr_assert(!logged("warning"), "a warning for --system --group");
    harness_stop(&broker);
}

/* A TCP socket passed on a non-loopback address: the same warning as
 * --tcp; on loopback, none. */
Test(service, inherited_tcp_socket_on_a_non_loopback_address_warns)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    unsigned port;
    int fds[1] = {listen_tcp_on(INADDR_ANY, &port)};
    const char *args[] = {"--socket", broker.socket, NULL};
    spawn_activated(fds, 1, NULL, args);
    wait_logged("listening on");
    cr_assert(logged("is not on a loopback address: TCP clients have no credentials"),
              "no warning for an inherited socket on 0.0.0.0");
    harness_stop(&broker);

    cr_assert_eq(harness_mkdir(&broker), 0);
    int lo[1] = {listen_tcp(&port)};
    spawn_activated(lo, 1, NULL, args);
    wait_logged("listening on");
    cr_assert(!logged("warning"), "a warning for an inherited socket on loopback");
    harness_stop(&broker);
}

/* The log level applies at once, and a "log" key taken out of the file
 * goes back to the default. */
Test(service, sighup_applies_the_log_level)
{
    start_config("{\"log\": \"normal\"}");
    sb_close(harness_client(&broker, "one", true));
    write_config("{\"log\": \"verbose\"}");
    reload(1);
    wait_logged("reloaded");
    sb_close(harness_client(&broker, "two", true));
    wait_logged("name 'two'");
    write_config("{}");
    reload(2);
    wait_logged_n("reloaded", 2);
    sb_close(harness_client(&broker, "three", true));
    /* A flush barrier through a fourth client, under verbose logging it
     * would have logged "three" by now: the broker handles the connects in
     * order. */
    sb_client *c = harness_client(&broker, "four", true);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    sb_close(c);
    cr_assert(!logged("name 'one'"), "verbose before the reload");
    cr_assert(!logged("name 'three'"), "still verbose after the \"log\" key was removed");
    harness_stop(&broker);
    end_config();
}

/* The broker takes unix://PATH for --socket too, as every client does. */
Test(service, broker_socket_may_be_written_unix_scheme)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    char endpoint[160];
    snprintf(endpoint, sizeof(endpoint), "unix://%s", broker.socket);
    const char *args[] = {"--socket", endpoint, NULL};
    spawn_activated(NULL, 0, NULL, args); /* no sockets passed: binds its own */
    wait_logged("listening on");
    char log[4096];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert(strstr(log, "unix://") == NULL, "the scheme was taken as part of the path: %s", log);
    roundtrip(broker.socket, "scheme.x");
    harness_stop(&broker);
}
