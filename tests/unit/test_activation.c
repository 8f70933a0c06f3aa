/*
 * test_activation.c - the broker's own reading of the socket activation
 * protocol (LISTEN_PID, LISTEN_FDS) and its own sd_notify datagrams, as
 * built without libsystemd (tests/unit/meson.build).
 *
 * The descriptors must be 3, 4, ...: each test that passes some runs the
 * code in a child process, which moves its sockets there first and reports
 * through its exit status.
 */
#include "activation.h"
#include "notify.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/sbtest-act-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(activation, .init = setup, .fini = teardown, .timeout = 30);

static int listen_unix(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s", dir, name);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    cr_assert_eq(listen(fd, 4), 0);
    return fd;
}

static int listen_tcp(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(listen(fd, 4), 0);
    return fd;
}

/* In a child: fds[] as 3, 4, ..., LISTEN_PID = `pid_self` ? its pid : 1,
 * then `check()`; returns the child's exit status. */
static int in_child(const int *fds, int n, bool pid_self, int (*check)(void))
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int high[8];
        for (int i = 0; i < n; i++) {
            high[i] = fcntl(fds[i], F_DUPFD, 64);
        }
        for (int i = 0; i < n; i++) {
            dup2(high[i], 3 + i);
            close(high[i]);
        }
        char v[32];
        snprintf(v, sizeof(v), "%d", pid_self ? (int)getpid() : 1);
        setenv("LISTEN_PID", v, 1);
        snprintf(v, sizeof(v), "%d", n);
        setenv("LISTEN_FDS", v, 1);
        _exit(check());
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* 0 when fd 3 is the Unix socket and fd 4 the TCP one, and the variables
 * are gone; another number says what failed. */
static int check_both(void)
{
    struct activation a;
    char err[256];
    if (activation_take(&a, err, sizeof(err)) != 0 || !a.active) {
        return 1;
    }
    if (a.unix_fd != 3 || a.tcp_fd != 4 || a.tcp_port == 0 ||
        strstr(a.unix_path, "/u.sock") == NULL) {
        return 2;
    }
    if (getenv("LISTEN_PID") != NULL || getenv("LISTEN_FDS") != NULL) {
        return 3;
    }
    if ((fcntl(3, F_GETFD) & FD_CLOEXEC) == 0 || (fcntl(4, F_GETFL) & O_NONBLOCK) == 0) {
        return 4;
    }
    return 0;
}

Test(activation, unix_and_tcp_by_type)
{
    int fds[2] = {listen_unix("u.sock"), listen_tcp()};
    cr_assert_eq(in_child(fds, 2, true, check_both), 0);
}

static int check_not_ours(void)
{
    struct activation a;
    char err[256];
    if (activation_take(&a, err, sizeof(err)) != 0) {
        return 1;
    }
    return a.active || a.unix_fd != -1 || a.tcp_fd != -1 ? 2 : 0;
}

Test(activation, listen_pid_of_another_process)
{
    int fds[1] = {listen_unix("u.sock")};
    cr_assert_eq(in_child(fds, 1, false, check_not_ours), 0);
}

static int check_refused(void)
{
    struct activation a;
    char err[256] = "";
    int r = activation_take(&a, err, sizeof(err));
    return r == -EINVAL && strstr(err, "descriptor 3") != NULL ? 0 : 1;
}

Test(activation, a_socket_that_is_not_listening_is_refused)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cr_assert_eq(in_child(sv, 1, true, check_refused), 0);
}

Test(activation, two_unix_sockets_are_refused)
{
    int fds[2] = {listen_unix("a.sock"), listen_unix("b.sock")};
    cr_assert_eq(in_child(fds, 2, true, check_refused) == 0, false,
                 "two Unix sockets taken without a word");
}

Test(activation, classify)
{
    int u = listen_unix("c.sock");
    int t = listen_tcp();
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cr_assert_eq(activation_classify(u), ACTIVATION_UNIX);
    cr_assert_eq(activation_classify(t), ACTIVATION_TCP);
    cr_assert_eq(activation_classify(d), ACTIVATION_OTHER);
    cr_assert_eq(activation_classify(sv[0]), ACTIVATION_OTHER);
    cr_assert_eq(activation_classify(0), ACTIVATION_OTHER);
}

Test(activation, listen_fds_malformed)
{
    char v[32];
    snprintf(v, sizeof(v), "%d", (int)getpid());
    setenv("LISTEN_PID", v, 1);
    setenv("LISTEN_FDS", "2x", 1);
    cr_assert_eq(activation_listen_fds_env(), -EINVAL);
    cr_assert_null(getenv("LISTEN_FDS"));
    cr_assert_eq(activation_listen_fds_env(), 0, "not activated once the variables are gone");
}

/* ---- notify ---- */

static int notify_receiver(const char *addr, socklen_t len)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, addr, len);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sun, offsetof(struct sockaddr_un, sun_path) + len), 0,
                 "bind: %s", strerror(errno));
    return fd;
}

Test(activation, notify_datagram_to_a_path)
{
    char path[108];
    snprintf(path, sizeof(path), "%s/notify", dir);
    int fd = notify_receiver(path, (socklen_t)strlen(path) + 1);
    setenv("NOTIFY_SOCKET", path, 1);
    cr_assert_eq(notify_send_datagram("READY=1\nSTATUS=0 clients"), 1);
    char buf[128];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    cr_assert_eq(n, 24);
    cr_assert(memcmp(buf, "READY=1\nSTATUS=0 clients", 24) == 0);
    close(fd);
}

Test(activation, notify_datagram_to_an_abstract_socket)
{
    char name[64];
    int len = snprintf(name, sizeof(name), "@sbtest-notify-%d", (int)getpid());
    char addr[64];
    memcpy(addr, name, (size_t)len);
    addr[0] = '\0';
    int fd = notify_receiver(addr, (socklen_t)len);
    setenv("NOTIFY_SOCKET", name, 1);
    cr_assert_eq(notify_send_datagram("STOPPING=1"), 1);
    char buf[64];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    cr_assert(n == 10 && memcmp(buf, "STOPPING=1", 10) == 0);
    close(fd);
}

Test(activation, notify_without_a_manager_sends_nothing)
{
    unsetenv("NOTIFY_SOCKET");
    cr_assert_eq(notify_send("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    cr_assert_eq(notify_send("READY=1"), -EINVAL);
}
