/*
 * activation.c - inherited listening sockets (activation.h).
 *
 * With libsystemd (the `systemd` build feature, when libsystemd is found)
 * the descriptors are counted by sd_listen_fds() and typed by
 * sd_is_socket_unix() and sd_is_socket_inet(): the reference
 * implementation of the protocol. Without it, the same protocol is read
 * here, so that a broker built without libsystemd is still activated by
 * systemd, systemd-socket-activate or any supervisor that speaks it: it
 * is two environment variables, and getsockopt() tells the sockets apart.
 * Either way the variables are unset once read.
 */
#include "activation.h"

#include "errmsg.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

/* A decimal number in [0, max], the whole string. */
static int env_number(const char *s, unsigned long long max, unsigned long long *out)
{
    if (s == NULL || *s < '0' || *s > '9') {
        return -EINVAL;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static void unset_listen_env(void)
{
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

int activation_listen_fds_env(void)
{
    const char *pid_s = getenv("LISTEN_PID");
    const char *fds_s = getenv("LISTEN_FDS");
    unsigned long long pid;
    unsigned long long n;
    int r = 0;
    if (pid_s == NULL || fds_s == NULL) {
        r = 0;
    } else if (env_number(pid_s, INT32_MAX, &pid) < 0) {
        r = -EINVAL;
    } else if ((pid_t)pid != getpid()) {
        r = 0; /* meant for another process (our parent) */
    } else if (env_number(fds_s, ACTIVATION_FDS_MAX, &n) < 0) {
        r = -EINVAL;
    } else {
        r = (int)n;
    }
    unset_listen_env();
    return r;
}

enum activation_kind activation_classify(int fd)
{
#ifdef HAVE_LIBSYSTEMD
    if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0) {
        return ACTIVATION_UNIX;
    }
    if (sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, 1, 0) > 0) {
        return ACTIVATION_TCP;
    }
    return ACTIVATION_OTHER;
#else
    int type = 0;
    int domain = 0;
    int listening = 0;
    socklen_t len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
        return ACTIVATION_OTHER;
    }
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening) {
        return ACTIVATION_OTHER;
    }
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0) {
        return ACTIVATION_OTHER;
    }
    if (domain == AF_UNIX) {
        return ACTIVATION_UNIX;
    }
    return domain == AF_INET || domain == AF_INET6 ? ACTIVATION_TCP : ACTIVATION_OTHER;
#endif
}

static int listen_fds(void)
{
#ifdef HAVE_LIBSYSTEMD
    int n = sd_listen_fds(1);
    return n > ACTIVATION_FDS_MAX ? -EINVAL : n;
#else
    return activation_listen_fds_env();
#endif
}

/* The bound path or port of an inherited socket, for logs and $SYS. */
static void describe(struct activation *a, int fd, enum activation_kind kind)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        return;
    }
    if (kind == ACTIVATION_UNIX) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss;
        size_t max = len > offsetof(struct sockaddr_un, sun_path)
                         ? len - offsetof(struct sockaddr_un, sun_path)
                         : 0;
        if (max > 0 && sun->sun_path[0] != '\0') {
            size_t n = strnlen(sun->sun_path, max);
            if (n < sizeof(a->unix_path)) {
                memcpy(a->unix_path, sun->sun_path, n);
                a->unix_path[n] = '\0';
            }
        }
    } else if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        a->tcp_port = ntohs(sin->sin_port);
        a->tcp_loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
        a->tcp_port = ntohs(sin6->sin6_port);
        a->tcp_loopback =
            IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) ||
            (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && sin6->sin6_addr.s6_addr[12] == 127);
    }
}

int activation_take(struct activation *a, char *err, size_t err_len)
{
    *a = (struct activation){.unix_fd = -1, .tcp_fd = -1};
    int n = listen_fds();
    if (n < 0) {
        return errmsg(err, err_len, -EINVAL,
                      "cannot use the sockets passed by the service manager (%s): LISTEN_FDS "
                      "must be a number of descriptors up to %d; start sockbusd from a socket "
                      "unit, or without LISTEN_PID and LISTEN_FDS",
                      strerror(-n), ACTIVATION_FDS_MAX);
    }
    if (n == 0) {
        return 0;
    }
    a->active = true;
    for (int fd = ACTIVATION_FDS_START; fd < ACTIVATION_FDS_START + n; fd++) {
        enum activation_kind kind = activation_classify(fd);
        int *slot = kind == ACTIVATION_UNIX  ? &a->unix_fd
                    : kind == ACTIVATION_TCP ? &a->tcp_fd
                                             : NULL;
        if (slot == NULL || *slot >= 0) {
            activation_close(a);
            return errmsg(err, err_len, -EINVAL,
                          "inherited descriptor %d is %s; sockbusd serves one listening Unix "
                          "stream socket and one TCP socket: check ListenStream= in the socket "
                          "unit",
                          fd,
                          slot == NULL ? "not a listening Unix or TCP stream socket"
                                       : "a second socket of the same kind");
        }
        int fl = fcntl(fd, F_GETFD);
        int sfl = fcntl(fd, F_GETFL);
        if (fl < 0 || sfl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0 ||
            fcntl(fd, F_SETFL, sfl | O_NONBLOCK) < 0) {
            int e = errno;
            activation_close(a);
            return errmsg(err, err_len, -e, "inherited descriptor %d: %s", fd, strerror(e));
        }
        *slot = fd;
        describe(a, fd, kind);
    }
    return 0;
}

void activation_close(struct activation *a)
{
    if (a->unix_fd >= 0) {
        close(a->unix_fd);
        a->unix_fd = -1;
    }
    if (a->tcp_fd >= 0) {
        close(a->tcp_fd);
        a->tcp_fd = -1;
    }
}
