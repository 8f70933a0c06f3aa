/*
 * test_listener.c - the socket file lifecycle (docs/architecture.md, The socket file) and the TCP
 * listener.
 *
 * Each test runs in its own mkdtemp() directory, removed afterwards, so
 * tests can run in parallel and leave nothing behind. Every Unix test also
 * checks what is left on disk, because "never delete what is not ours" and
 * "leave nothing behind" are the point of the module.
 */
#include "listener.h"
#include "listener_tcp.h"

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define ERR_LEN 512

static char tmpdir[64];

static void tmpdir_setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sb-listener-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void tmpdir_teardown(void)
{
    if (tmpdir[0] != '\0') {
        nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

#define LTEST(name) Test(listener, name, .init = tmpdir_setup, .fini = tmpdir_teardown)

static void in_tmp(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", tmpdir, name);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void lock_path_of(const char *path, char *out, size_t len)
{
    snprintf(out, len, "%s.lock", path);
}

static int unix_connect(const char *path)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(s, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    if (connect(s, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int e = errno;
        close(s);
        return -e;
    }
    return s;
}

/* A plain listening socket at path, bound without any lock: another
 * program, or a broker that predates the lock. */
static int plain_listen(const char *path)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(s, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    cr_assert_eq(bind(s, (struct sockaddr *)&sun, sizeof(sun)), 0, "bind: %s", strerror(errno));
    cr_assert_eq(listen(s, 4), 0);
    return s;
}

static void write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(content, f);
    fclose(f);
}

static void assert_file_content(const char *path, const char *content)
{
    char buf[128] = {0};
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s is gone", path);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    cr_assert_eq(n, strlen(content));
    cr_assert_str_eq(buf, content);
}

static void assert_closed_state(const struct listener_unix *l)
{
    cr_assert_eq(l->fd, -1);
    cr_assert_eq(l->lock_fd, -1);
}

LTEST(fresh_path_is_socket_0600_and_accepts)
{
    char path[128], lock[160], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    lock_path_of(path, lock, sizeof(lock));
    struct listener_unix l;

    int r = listener_unix_open(&l, path, 0600, NULL, err, sizeof(err));
    cr_assert_eq(r, 0, "open: %d %s", r, err);
    cr_assert_geq(l.fd, 0);
    cr_assert_geq(l.lock_fd, 0);
    cr_assert(fcntl(l.fd, F_GETFL) & O_NONBLOCK);
    cr_assert(fcntl(l.fd, F_GETFD) & FD_CLOEXEC);
    cr_assert(fcntl(l.lock_fd, F_GETFD) & FD_CLOEXEC);

    struct stat st;
    cr_assert_eq(lstat(path, &st), 0);
    cr_assert(S_ISSOCK(st.st_mode));
    cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", (unsigned)(st.st_mode & 0777));
    cr_assert_eq(st.st_ino, l.ino);
    cr_assert_eq(st.st_dev, l.dev);
    cr_assert(exists(lock));

    int c = unix_connect(path);
    cr_assert_geq(c, 0, "connect: %s", strerror(-c));
    int a = accept4(l.fd, NULL, NULL, SOCK_CLOEXEC);
    cr_assert_geq(a, 0, "accept: %s", strerror(errno));
    close(a);
    close(c);

    listener_unix_close(&l);
}

LTEST(restrictive_umask_does_not_matter)
{
    /* The process umask must neither widen nor narrow the requested mode. */
    char path[128], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    struct listener_unix l;
    mode_t old = umask(0077);
    int r = listener_unix_open(&l, path, 0660, NULL, err, sizeof(err));
    umask(old);
    cr_assert_eq(r, 0, "open: %d %s", r, err);
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0660, "mode %o", (unsigned)(st.st_mode & 0777));
    listener_unix_close(&l);
}

LTEST(second_open_while_locked_is_addrinuse)
{
    char path[128], lock[160], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    lock_path_of(path, lock, sizeof(lock));
    struct listener_unix first, second;

    cr_assert_eq(listener_unix_open(&first, path, 0600, NULL, err, sizeof(err)), 0, "%s", err);
    int r = listener_unix_open(&second, path, 0600, NULL, err, sizeof(err));
    cr_assert_eq(r, -EADDRINUSE, "got %d", r);
    cr_assert_not_null(strstr(err, lock), "message: %s", err);
    cr_assert_not_null(strstr(err, "another sockbusd is running"), "message: %s", err);
    cr_assert_null(strchr(err, '\n'));
    assert_closed_state(&second);
    listener_unix_close(&second); /* harmless on a failed open */

    /* The first broker is untouched: same file, lock still there, answers. */
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0);
    cr_assert_eq(st.st_ino, first.ino);
    cr_assert(exists(lock));
    int c = unix_connect(path);
    cr_assert_geq(c, 0);
    close(c);

    listener_unix_close(&first);
    cr_assert_not(exists(path));
    cr_assert_not(exists(lock));
}

LTEST(live_socket_without_lock_is_addrinuse_and_untouched)
{
    char path[128], lock[160], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    lock_path_of(path, lock, sizeof(lock));
    int other = plain_listen(path);
    struct stat before;
    cr_assert_eq(lstat(path, &before), 0);

    struct listener_unix l;
    int r = listener_unix_open(&l, path, 0600, NULL, err, sizeof(err));
    cr_assert_eq(r, -EADDRINUSE, "got %d", r);
    cr_assert_not_null(strstr(err, path), "message: %s", err);
    assert_closed_state(&l);

    struct stat after;
    cr_assert_eq(lstat(path, &after), 0);
    cr_assert_eq(after.st_ino, before.st_ino);
    cr_assert_not(exists(lock), "the lock file we created was left behind");
    int c = unix_connect(path);
    cr_assert_geq(c, 0, "the other program no longer answers");
    close(c);
    close(other);
}

LTEST(stale_socket_is_replaced)
{
    char path[128], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    close(plain_listen(path)); /* a broker that died without cleaning up */
    cr_assert(exists(path));
    cr_assert_eq(unix_connect(path), -ECONNREFUSED);

    struct listener_unix l;
    int r = listener_unix_open(&l, path, 0600, NULL, err, sizeof(err));
    cr_assert_eq(r, 0, "open: %d %s", r, err);
    int c = unix_connect(path);
    cr_assert_geq(c, 0);
    close(c);
    listener_unix_close(&l);
    cr_assert_not(exists(path));
}

LTEST(leftover_unlocked_lock_file_is_reused)
{
    char path[128], lock[160], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    lock_path_of(path, lock, sizeof(lock));
    write_file(lock, "");
    close(plain_listen(path));

    struct listener_unix l;
    int r = listener_unix_open(&l, path, 0600, NULL, err, sizeof(err));
    cr_assert_eq(r, 0, "open: %d %s", r, err);
    listener_unix_close(&l);
    cr_assert_not(exists(lock));
}

LTEST(regular_file_is_eexist_and_kept)
{
    char path[128], lock[160], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    lock_path_of(path, lock, sizeof(lock));
    write_file(path, "precious\n");

    struct listener_unix l;
    int r = listener_unix_open(&l, path, 0600, NULL, err, sizeof(err));
    cr_assert_eq(r, -EEXIST, "got %d", r);
    cr_assert_not_null(strstr(err, path), "message: %s", err);
    cr_assert_not_null(strstr(err, "regular file"), "message: %s", err);
    assert_closed_state(&l);
    assert_file_content(path, "precious\n");
    cr_assert_not(exists(lock));
}

LTEST(directory_is_eexist_and_kept)
{
    char path[128], lock[160], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    lock_path_of(path, lock, sizeof(lock));
    cr_assert_eq(mkdir(path, 0700), 0);

    struct listener_unix l;
    int r = listener_unix_open(&l, path, 0600, NULL, err, sizeof(err));
    cr_assert_eq(r, -EEXIST, "got %d", r);
    cr_assert_not_null(strstr(err, "directory"), "message: %s", err);
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    cr_assert_not(exists(lock));
}

LTEST(symlink_is_eexist_and_kept)
{
    /* Even a link to a stale socket: we never follow or delete a link. */
    char path[128], target[128], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    in_tmp(target, sizeof(target), "target.sock");
    close(plain_listen(target));
    cr_assert_eq(symlink(target, path), 0);

    struct listener_unix l;
    int r = listener_unix_open(&l, path, 0600, NULL, err, sizeof(err));
    cr_assert_eq(r, -EEXIST, "got %d", r);
    cr_assert_not_null(strstr(err, "symbolic link"), "message: %s", err);
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0);
    cr_assert(S_ISLNK(st.st_mode));
    cr_assert(exists(target));
}

LTEST(close_removes_socket_and_lock_and_is_idempotent)
{
    char path[128], lock[160], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    lock_path_of(path, lock, sizeof(lock));
    struct listener_unix l;
    cr_assert_eq(listener_unix_open(&l, path, 0600, NULL, err, sizeof(err)), 0, "%s", err);

    listener_unix_close(&l);
    cr_assert_not(exists(path));
    cr_assert_not(exists(lock));
    assert_closed_state(&l);
    listener_unix_close(&l);
    assert_closed_state(&l);

    /* The path is free again for the next broker. */
    cr_assert_eq(listener_unix_open(&l, path, 0600, NULL, err, sizeof(err)), 0, "%s", err);
    listener_unix_close(&l);
}

LTEST(close_keeps_a_file_that_replaced_ours)
{
    char path[128], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    struct listener_unix l;
    cr_assert_eq(listener_unix_open(&l, path, 0600, NULL, err, sizeof(err)), 0, "%s", err);

    cr_assert_eq(unlink(path), 0);
    write_file(path, "someone else's\n");
    listener_unix_close(&l);
    assert_file_content(path, "someone else's\n");
}

LTEST(close_keeps_a_socket_that_replaced_ours)
{
    char path[128], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    struct listener_unix l;
    cr_assert_eq(listener_unix_open(&l, path, 0600, NULL, err, sizeof(err)), 0, "%s", err);

    /* Keep our old file alive under another name so its inode number
     * cannot be reused by the new socket. */
    char moved[128];
    in_tmp(moved, sizeof(moved), "old.sock");
    cr_assert_eq(rename(path, moved), 0);
    int other = plain_listen(path);
    listener_unix_close(&l);
    int c = unix_connect(path);
    cr_assert_geq(c, 0, "the other socket was removed");
    close(c);
    close(other);
}

LTEST(forget_fd_leaves_fd_open_and_file_managed)
{
    char path[128], lock[160], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    lock_path_of(path, lock, sizeof(lock));
    struct listener_unix l;
    cr_assert_eq(listener_unix_open(&l, path, 0600, NULL, err, sizeof(err)), 0, "%s", err);

    int fd = l.fd;
    listener_unix_forget_fd(&l);
    cr_assert_eq(l.fd, -1);
    listener_unix_close(&l);
    cr_assert_geq(fcntl(fd, F_GETFD), 0, "the forgotten fd was closed");
    cr_assert_not(exists(path));
    cr_assert_not(exists(lock));
    close(fd);
}

LTEST(mode_0660_honored)
{
    char path[128], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    struct listener_unix l;
    cr_assert_eq(listener_unix_open(&l, path, 0660, NULL, err, sizeof(err)), 0, "%s", err);
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0660, "mode %o", (unsigned)(st.st_mode & 0777));
    listener_unix_close(&l);
}

LTEST(group_by_name_is_applied)
{
    /* Our own group: the one group every user may chown to. */
    struct group *gr = getgrgid(getegid());
    if (gr == NULL) {
        cr_skip_test("no name for gid %u", (unsigned)getegid());
    }
    char group[64];
    snprintf(group, sizeof(group), "%s", gr->gr_name);
    char path[128], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    struct listener_unix l;
    cr_assert_eq(listener_unix_open(&l, path, 0660, group, err, sizeof(err)), 0, "%s", err);
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0);
    cr_assert_eq(st.st_gid, getegid());
    cr_assert_eq(st.st_mode & 0777, 0660);
    listener_unix_close(&l);
}

LTEST(unknown_group_is_einval_and_touches_nothing)
{
    char path[128], lock[160], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    lock_path_of(path, lock, sizeof(lock));
    struct listener_unix l;
    int r = listener_unix_open(&l, path, 0660, "no-such-group-sockbus", err, sizeof(err));
    cr_assert_eq(r, -EINVAL, "got %d", r);
    cr_assert_not_null(strstr(err, "no-such-group-sockbus"), "message: %s", err);
    assert_closed_state(&l);
    cr_assert_not(exists(path));
    cr_assert_not(exists(lock));
}

LTEST(bad_mode_is_einval)
{
    char path[128], err[ERR_LEN] = "";
    in_tmp(path, sizeof(path), "b.sock");
    struct listener_unix l;
    cr_assert_eq(listener_unix_open(&l, path, 04600, NULL, err, sizeof(err)), -EINVAL);
    cr_assert_not(exists(path));
}

LTEST(path_too_long_is_enametoolong)
{
    char path[256], err[ERR_LEN] = "";
    struct sockaddr_un sun;
    int n = snprintf(path, sizeof(path), "%s/", tmpdir);
    while ((size_t)n < sizeof(sun.sun_path)) {
        path[n++] = 'x';
    }
    path[n] = '\0';
    struct listener_unix l;
    int r = listener_unix_open(&l, path, 0600, NULL, err, sizeof(err));
    cr_assert_eq(r, -ENAMETOOLONG, "got %d", r);
    cr_assert_not_null(strstr(err, "--socket"), "message: %s", err);
    assert_closed_state(&l);

    /* One byte shorter fits exactly (the NUL takes the last byte). */
    path[sizeof(sun.sun_path) - 1] = '\0';
    r = listener_unix_open(&l, path, 0600, NULL, err, sizeof(err));
    cr_assert_eq(r, 0, "open: %d %s", r, err);
    listener_unix_close(&l);
}

LTEST(missing_parent_directory_names_it)
{
    char dir[128], path[160], err[ERR_LEN] = "";
    in_tmp(dir, sizeof(dir), "nope");
    snprintf(path, sizeof(path), "%s/b.sock", dir);
    struct listener_unix l;
    int r = listener_unix_open(&l, path, 0600, NULL, err, sizeof(err));
    cr_assert_eq(r, -ENOENT, "got %d", r);
    char want[200];
    snprintf(want, sizeof(want), "directory %s does not exist", dir);
    cr_assert_not_null(strstr(err, want), "message: %s", err);
    assert_closed_state(&l);
}

LTEST(null_err_buffer_is_fine)
{
    char path[128];
    in_tmp(path, sizeof(path), "b.sock");
    write_file(path, "x");
    struct listener_unix l;
    cr_assert_eq(listener_unix_open(&l, path, 0600, NULL, NULL, 0), -EEXIST);
}

/* --- TCP ------------------------------------------------------------------ */

static int tcp_connect(int family, const char *addr, unsigned port)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        cr_assert_eq(inet_pton(AF_INET, addr, &in->sin_addr), 1);
        len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        cr_assert_eq(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
        len = sizeof(*in6);
    }
    int s = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(s, 0);
    if (connect(s, (struct sockaddr *)&ss, len) < 0) {
        int e = errno;
        close(s);
        return -e;
    }
    return s;
}

static void assert_tcp_accepts(int fd, int family, const char *addr, unsigned port)
{
    int c = tcp_connect(family, addr, port);
    cr_assert_geq(c, 0, "connect to port %u: %s", port, strerror(-c));
    /* Loopback handshakes complete before connect() returns, but accept on
     * a non-blocking fd may still race the queueing: poll briefly. */
    int a = -1;
    for (int i = 0; i < 100 && a < 0; i++) {
        a = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (a < 0) {
            cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "accept: %s", strerror(errno));
            usleep(10000);
        }
    }
    cr_assert_geq(a, 0, "accept");
    close(a);
    close(c);
}

LTEST(tcp_ephemeral_port_accepts)
{
    const char *endpoints[] = {"127.0.0.1:0", "tcp://127.0.0.1:0"};
    for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
        char err[ERR_LEN] = "";
        int fd = -1;
        unsigned port = 0;
        int r = listener_tcp_open(endpoints[i], &fd, &port, err, sizeof(err));
        cr_assert_eq(r, 0, "%s: %d %s", endpoints[i], r, err);
        cr_assert_geq(fd, 0);
        cr_assert_neq(port, 0u);
        cr_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
        cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        assert_tcp_accepts(fd, AF_INET, "127.0.0.1", port);
        close(fd);
    }

    /* Port 0 means "any free port", not one fixed port: two at once differ. */
    int fd1 = -1, fd2 = -1;
    unsigned port1 = 0, port2 = 0;
    char err[ERR_LEN] = "";
    cr_assert_eq(listener_tcp_open("127.0.0.1:0", &fd1, &port1, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(listener_tcp_open("127.0.0.1:0", &fd2, &port2, err, sizeof(err)), 0, "%s", err);
    cr_assert_neq(port1, port2);
    close(fd1);
    close(fd2);
}

LTEST(tcp_ipv6_loopback)
{
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    if (probe < 0) {
        cr_skip_test("no IPv6");
    }
    close(probe);
    char err[ERR_LEN] = "";
    int fd = -1;
    unsigned port = 0;
    int r = listener_tcp_open("[::1]:0", &fd, &port, err, sizeof(err));
    if (r == -EADDRNOTAVAIL) {
        cr_skip_test("no ::1 here: %s", err);
    }
    cr_assert_eq(r, 0, "%d %s", r, err);
    assert_tcp_accepts(fd, AF_INET6, "::1", port);
    close(fd);
}

LTEST(tcp_port_in_use_is_addrinuse)
{
    char err[ERR_LEN] = "";
    int fd = -1;
    unsigned port = 0;
    cr_assert_eq(listener_tcp_open("127.0.0.1:0", &fd, &port, err, sizeof(err)), 0, "%s", err);

    char ep[64];
    snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%u", port);
    int fd2 = -42;
    unsigned port2 = 4242;
    int r = listener_tcp_open(ep, &fd2, &port2, err, sizeof(err));
    cr_assert_eq(r, -EADDRINUSE, "got %d", r);
    cr_assert_not_null(strstr(err, ep), "message: %s", err);
    cr_assert_eq(fd2, -42, "fd written on failure");
    cr_assert_eq(port2, 4242u, "port written on failure");
    close(fd);
}

LTEST(tcp_bad_endpoints_are_einval)
{
    const char *bad[] = {
        "",
        "127.0.0.1",
        "127.0.0.1:",
        ":7447",
        "tcp://",
        "tcp://:7447",
        "127.0.0.1:http",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:99999999999999999999",
        "[]:7447",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[ERR_LEN] = "";
        int fd = -42;
        int r = listener_tcp_open(bad[i], &fd, NULL, err, sizeof(err));
        cr_assert_eq(r, -EINVAL, "\"%s\": got %d (%s)", bad[i], r, err);
        cr_assert_eq(fd, -42, "\"%s\": fd written on failure", bad[i]);
        cr_assert_neq(err[0], '\0', "\"%s\": no message", bad[i]);
        cr_assert_null(strchr(err, '\n'));
    }
    int fd = -42;
    cr_assert_eq(listener_tcp_open(NULL, &fd, NULL, NULL, 0), -EINVAL);
}

/* --- files of another user at the path ------------------------------------ */

/* The uid of the files' owner (nobody), and of a broker that is neither
 * root nor that owner. Giving a file away takes root: CI runs as root, and
 * these tests are skipped otherwise. */
#define OTHER_UID  65534
#define VICTIM_UID 4242

static void skip_unless_root(void)
{
    if (geteuid() != 0) {
        cr_skip_test("needs root, to give files to another uid (CI runs as root)");
    }
}

/* Run listener_unix_open(path) as `uid` in a child (0: as we are); returns
 * its result and its message in err. The listener, if it opened, is
 * closed again in the child. */
static int open_as(uid_t uid, const char *path, char *err, size_t err_len)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        if (uid != 0 && (setgid(uid) < 0 || setuid(uid) < 0)) {
            _exit(125);
        }
        char msg[ERR_LEN] = "";
        struct listener_unix l;
        int r = listener_unix_open(&l, path, 0600, NULL, msg, sizeof(msg));
        listener_unix_close(&l);
        ssize_t n = write(p[1], &r, sizeof(r));
        n = write(p[1], msg, strlen(msg) + 1);
        (void)n;
        _exit(0);
    }
    close(p[1]);
    int r = 0;
    cr_assert_eq(read(p[0], &r, sizeof(r)), (ssize_t)sizeof(r), "the child did not report");
    ssize_t n = read(p[0], err, err_len - 1);
    err[n > 0 ? n : 0] = '\0';
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    return r;
}

static void assert_names_owner(const char *err, const char *file, uid_t us)
{
    char want[96];
    snprintf(want, sizeof(want), "belongs to uid %d, not to us (uid %d)", OTHER_UID, (int)us);
    cr_assert_not_null(strstr(err, want), "message: %s", err);
    cr_assert_not_null(strstr(err, file), "message: %s", err);
    cr_assert_not_null(strstr(err, "XDG_RUNTIME_DIR"), "message: %s", err);
    cr_assert_null(strchr(err, '\n'));
}

/* Another user's lock file, in a directory anyone may write like /tmp:
 * open for all to write (so it could be locked) and private (so that
 * open() fails). Neither is locked, nor removed. */
LTEST(lock_file_of_another_user_is_eperm_and_kept)
{
    skip_unless_root();
    cr_assert_eq(chmod(tmpdir, 01777), 0);
    char path[128], lock[160], err[ERR_LEN];
    in_tmp(path, sizeof(path), "b.sock");
    lock_path_of(path, lock, sizeof(lock));
    const unsigned modes[] = {0666, 0600};
    const uid_t brokers[] = {0, VICTIM_UID};
    for (size_t m = 0; m < 2; m++) {
        write_file(lock, "theirs");
        cr_assert_eq(chmod(lock, modes[m]), 0);
        cr_assert_eq(chown(lock, OTHER_UID, OTHER_UID), 0);
        for (size_t b = 0; b < 2; b++) {
            int r = open_as(brokers[b], path, err, sizeof(err));
            cr_assert_eq(r, -EPERM, "mode %o, uid %d: got %d (%s)", modes[m], (int)brokers[b], r,
                         err);
            assert_names_owner(err, lock, brokers[b]);
            assert_file_content(lock, "theirs");
            cr_assert_not(exists(path), "a socket was created");
        }
        cr_assert_eq(unlink(lock), 0);
    }
}

/* Another user's socket: listening (an impostor) or stale. It is neither
 * connected to nor removed, and our lock file does not stay behind. */
LTEST(socket_of_another_user_is_eperm_untouched)
{
    skip_unless_root();
    cr_assert_eq(chmod(tmpdir, 01777), 0);
    char path[128], lock[160], err[ERR_LEN];
    in_tmp(path, sizeof(path), "b.sock");
    lock_path_of(path, lock, sizeof(lock));
    for (int listening = 0; listening < 2; listening++) {
        int s = plain_listen(path);
        cr_assert_eq(fcntl(s, F_SETFL, O_NONBLOCK), 0);
        if (!listening) {
            close(s);
        }
        cr_assert_eq(chmod(path, 0777), 0);
        cr_assert_eq(chown(path, OTHER_UID, OTHER_UID), 0);
        struct stat before;
        cr_assert_eq(lstat(path, &before), 0);
        const uid_t brokers[] = {0, VICTIM_UID};
        for (size_t b = 0; b < 2; b++) {
            int r = open_as(brokers[b], path, err, sizeof(err));
            cr_assert_eq(r, -EPERM, "uid %d: got %d (%s)", (int)brokers[b], r, err);
            assert_names_owner(err, "the socket there", brokers[b]);
            struct stat after;
            cr_assert_eq(lstat(path, &after), 0, "their socket was removed");
            cr_assert_eq(after.st_ino, before.st_ino);
            cr_assert_not(exists(lock), "our lock file stayed behind");
        }
        if (listening) {
            int a = accept4(s, NULL, NULL, SOCK_CLOEXEC);
            cr_assert(a < 0 && errno == EAGAIN, "the listener knocked on their socket");
            close(s);
        }
        cr_assert_eq(unlink(path), 0);
    }
}

/* --- the --system socket directory ---------------------------------------- */

static unsigned dir_mode(const char *dir)
{
    struct stat st;
    cr_assert_eq(lstat(dir, &st), 0, "%s: %s", dir, strerror(errno));
    cr_assert(S_ISDIR(st.st_mode));
    return st.st_mode & 07777;
}

LTEST(run_dir_is_created_0755_whatever_the_umask)
{
    const mode_t umasks[] = {077, 027, 0, 0777};
    for (size_t i = 0; i < sizeof(umasks) / sizeof(umasks[0]); i++) {
        char dir[128], err[ERR_LEN] = "";
        char name[32];
        snprintf(name, sizeof(name), "run%zu", i);
        in_tmp(dir, sizeof(dir), name);
        mode_t old = umask(umasks[i]);
        int r = listener_run_dir(dir, err, sizeof(err));
        umask(old);
        cr_assert_eq(r, 0, "umask %03o: %d %s", (unsigned)umasks[i], r, err);
        cr_assert_eq(dir_mode(dir), 0755u, "umask %03o: mode %04o", (unsigned)umasks[i],
                     dir_mode(dir));
    }
}

LTEST(run_dir_existing_keeps_a_safe_mode)
{
    /* Owned by us; safe modes are used as they are. */
    const unsigned safe[] = {0755, 0700, 0750, 0711, 01777, 01770};
    for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++) {
        char dir[128], err[ERR_LEN] = "";
        char name[32];
        snprintf(name, sizeof(name), "safe%zu", i);
        in_tmp(dir, sizeof(dir), name);
        cr_assert_eq(mkdir(dir, 0700), 0);
        cr_assert_eq(chmod(dir, safe[i]), 0);
        int r = listener_run_dir(dir, err, sizeof(err));
        cr_assert_eq(r, 0, "mode %04o: %d %s", safe[i], r, err);
        cr_assert_eq(dir_mode(dir), safe[i], "mode %04o was changed to %04o", safe[i],
                     dir_mode(dir));
    }
}

LTEST(run_dir_writable_by_others_without_sticky_bit_is_eperm)
{
    const unsigned unsafe[] = {0775, 0777, 0757, 0770, 0722};
    for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++) {
        char dir[128], err[ERR_LEN] = "";
        char name[32];
        snprintf(name, sizeof(name), "unsafe%zu", i);
        in_tmp(dir, sizeof(dir), name);
        cr_assert_eq(mkdir(dir, 0700), 0);
        cr_assert_eq(chmod(dir, unsafe[i]), 0);
        int r = listener_run_dir(dir, err, sizeof(err));
        cr_assert_eq(r, -EPERM, "mode %04o: got %d", unsafe[i], r);
        cr_assert_not_null(strstr(err, dir), "message: %s", err);
        cr_assert_not_null(strstr(err, "chmod 0755"), "message: %s", err);
        cr_assert_not_null(strstr(err, (unsafe[i] & 02) ? "every user" : "its group"),
                           "mode %04o: %s", unsafe[i], err);
        cr_assert_null(strchr(err, '\n'));
        cr_assert_eq(dir_mode(dir), unsafe[i], "a refused directory was changed");
    }
}

LTEST(run_dir_that_is_not_a_directory_is_enotdir)
{
    char file[128], link[128], target[128], err[ERR_LEN] = "";
    in_tmp(file, sizeof(file), "file");
    write_file(file, "x");
    cr_assert_eq(listener_run_dir(file, err, sizeof(err)), -ENOTDIR);
    cr_assert_not_null(strstr(err, "regular file"), "message: %s", err);

    /* Even a link to a good directory: whoever may change the link may
     * point it elsewhere. */
    in_tmp(target, sizeof(target), "target");
    cr_assert_eq(mkdir(target, 0755), 0);
    in_tmp(link, sizeof(link), "link");
    cr_assert_eq(symlink(target, link), 0);
    cr_assert_eq(listener_run_dir(link, err, sizeof(err)), -ENOTDIR);
    cr_assert_not_null(strstr(err, "symbolic link"), "message: %s", err);
    cr_assert_not_null(strstr(err, link), "message: %s", err);
}

LTEST(run_dir_missing_parent_is_named)
{
    char dir[128], err[ERR_LEN] = "";
    in_tmp(dir, sizeof(dir), "nope/run");
    int r = listener_run_dir(dir, err, sizeof(err));
    cr_assert_eq(r, -ENOENT, "got %d", r);
    cr_assert_not_null(strstr(err, dir), "message: %s", err);
    cr_assert_null(strchr(err, '\n'));
}

/* listener_run_dir() as `uid` in a child; returns its result. */
static int run_dir_as(uid_t uid, const char *dir, char *err, size_t err_len)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        if (uid != 0 && (setgid(uid) < 0 || setuid(uid) < 0)) {
            _exit(125);
        }
        char msg[ERR_LEN] = "";
        int r = listener_run_dir(dir, msg, sizeof(msg));
        ssize_t n = write(p[1], &r, sizeof(r));
        n = write(p[1], msg, strlen(msg) + 1);
        (void)n;
        _exit(0);
    }
    close(p[1]);
    int r = 0;
    cr_assert_eq(read(p[0], &r, sizeof(r)), (ssize_t)sizeof(r), "the child did not report");
    ssize_t n = read(p[0], err, err_len - 1);
    err[n > 0 ? n : 0] = '\0';
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    return r;
}

LTEST(run_dir_owned_by_another_user_is_eperm)
{
    skip_unless_root();
    cr_assert_eq(chmod(tmpdir, 0755), 0);
    char dir[128], err[ERR_LEN] = "";
    in_tmp(dir, sizeof(dir), "run");
    cr_assert_eq(mkdir(dir, 0755), 0);

    /* Root's and our own are fine, for root and for a user. */
    cr_assert_eq(run_dir_as(0, dir, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(run_dir_as(VICTIM_UID, dir, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(chown(dir, VICTIM_UID, VICTIM_UID), 0);
    cr_assert_eq(run_dir_as(VICTIM_UID, dir, err, sizeof(err)), 0, "%s", err);

    /* Another user's is not, whoever we are. */
    cr_assert_eq(chown(dir, OTHER_UID, OTHER_UID), 0);
    const uid_t brokers[] = {0, VICTIM_UID};
    for (size_t b = 0; b < 2; b++) {
        int r = run_dir_as(brokers[b], dir, err, sizeof(err));
        cr_assert_eq(r, -EPERM, "uid %d: got %d (%s)", (int)brokers[b], r, err);
        char want[96];
        snprintf(want, sizeof(want), "belongs to uid %d, neither root nor us (uid %d)", OTHER_UID,
                 (int)brokers[b]);
        cr_assert_not_null(strstr(err, want), "message: %s", err);
        cr_assert_not_null(strstr(err, dir), "message: %s", err);
        cr_assert_null(strchr(err, '\n'));
    }
}
