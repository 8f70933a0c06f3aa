/*
 * notify.c - sd_notify(3), through libsystemd or by hand (notify.h).
 *
 * With libsystemd, sd_notify() is the reference. Without it the broker
 * speaks the protocol itself rather than sending nothing: the units in
 * packaging/ say Type=notify, and a broker that never said READY=1 would
 * be killed by systemd after its start timeout, so every build must be
 * able to say it. The protocol is one datagram to the socket named by
 * $NOTIFY_SOCKET, a dozen lines; the credentials systemd checks are the
 * kernel's (SCM_CREDENTIALS is added by the kernel when the receiver asks
 * for it). $NOTIFY_SOCKET stays set: the broker notifies for its whole
 * life, and it starts no children that could misuse it.
 */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

int notify_send_datagram(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0') {
        return 0;
    }
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sun.sun_path)) {
        return -EINVAL;
    }
    memcpy(sun.sun_path, path, len);
    if (path[0] == '@') {
        sun.sun_path[0] = '\0'; /* an abstract socket: no terminator */
    }
    socklen_t addr_len =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, addr_len);
    int e = errno;
    close(fd);
    return n < 0 ? -e : 1;
}

int notify_send(const char *state)
{
#ifdef HAVE_LIBSYSTEMD
    return sd_notify(0, state);
#else
    return notify_send_datagram(state);
#endif
}

int notify_sendf(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return notify_send(buf);
}
