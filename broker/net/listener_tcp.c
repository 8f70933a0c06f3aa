/*
 * listener_tcp.c - the optional TCP listener (--tcp HOST:PORT).
 *
 * The endpoint is parsed by the clients' own parser (endpoint.h), so that
 * the broker listens on exactly what a client would connect to, with one
 * exception: port 0, which asks the kernel for a free port. A host name is
 * resolved before the loop starts; of its addresses the first that binds
 * is used. Like the Unix listener, the socket is bound and listened on
 * here and handed to an acceptor, and every failure is one line.
 */
#include "listener_tcp.h"

#include "endpoint.h"
#include "errmsg.h"
#include "listener.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Longest host and port endpoint_parse_tcp() may hand us. */
#define TCP_HOST_MAX 256
#define TCP_PORT_MAX 8

/*
 * endpoint_parse_tcp() is the clients' parser and refuses port 0, which is
 * right for connecting; a listener asks for port 0 to get an ephemeral one.
 * So a port of all zeros is swapped for a stand-in while the shared parser
 * judges the rest (prefix, brackets, host), then put back.
 */
static int tcp_parse(const char *hostport, char *host, size_t host_len, char *port, size_t port_len)
{
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || colon[1] == '\0' || colon[strspn(colon + 1, "0") + 1] != '\0') {
        return endpoint_parse_tcp(hostport, host, host_len, port, port_len);
    }
    char stand_in[SB_ENDPOINT_MAX];
    size_t prefix = (size_t)(colon + 1 - hostport);
    if (prefix + sizeof("1") > sizeof(stand_in)) {
        return -EINVAL;
    }
    memcpy(stand_in, hostport, prefix);
    memcpy(stand_in + prefix, "1", sizeof("1"));
    int r = endpoint_parse_tcp(stand_in, host, host_len, port, port_len);
    if (r < 0) {
        return r;
    }
    snprintf(port, port_len, "0");
    return 0;
}

static int gai_to_errno(int gai)
{
    switch (gai) {
    case EAI_SYSTEM:
        return errno != 0 ? -errno : -EIO;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_AGAIN:
        return -EAGAIN;
    default:
        /* No such host, no address of a usable family: the endpoint names
         * nothing we can listen on. */
        return -EINVAL;
    }
}

static unsigned sockaddr_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    }
    if (ss->ss_family == AF_INET6) {
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    }
    return 0;
}

int listener_tcp_open(const char *hostport, int *fd, unsigned *port_out, char *err, size_t err_len)
{
    char host[TCP_HOST_MAX];
    char port[TCP_PORT_MAX];

    if (hostport == NULL || tcp_parse(hostport, host, sizeof(host), port, sizeof(port)) < 0) {
        return errmsg(
            err, err_len, -EINVAL,
            "cannot listen on TCP endpoint \"%s\": expected HOST:PORT, tcp://HOST:PORT or "
            "[IPV6]:PORT with PORT 0 to 65535; fix --tcp",
            hostport != NULL ? hostport : "");
    }

    struct addrinfo hints = {
        .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
    };
    struct addrinfo *res = NULL;
    errno = 0;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        int r = gai_to_errno(gai);
        return errmsg(
            err, err_len, r,
            "cannot listen on %s: cannot resolve host %s: %s; use a numeric address such as "
            "127.0.0.1",
            hostport, host, gai_strerror(gai));
    }

    /* One fd per listener: the first address that binds wins ("localhost"
     * may give ::1 and 127.0.0.1; a client tries both). */
    int s = -1;
    int e = EADDRNOTAVAIL;
    const char *step = "bind";
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        s = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (s < 0) {
            e = errno;
            step = "socket";
            continue;
        }
        /* A restarted broker must not wait out TIME_WAIT of its old
         * connections; on Linux this still refuses a second listener. */
        int one = 1;
        if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
            e = errno;
            step = "setsockopt";
        } else if (bind(s, ai->ai_addr, ai->ai_addrlen) < 0) {
            e = errno;
            step = "bind";
        } else if (listen(s, LISTENER_BACKLOG) < 0) {
            e = errno;
            step = "listen";
        } else {
            break;
        }
        close(s);
        s = -1;
    }
    freeaddrinfo(res);

    if (s < 0) {
        if (e == EADDRINUSE) {
            errmsg(err, err_len, -e,
                   "cannot listen on %s: the port is in use; stop the program using it or "
                   "pick another --tcp HOST:PORT",
                   hostport);
        } else if (e == EADDRNOTAVAIL) {
            errmsg(err, err_len, -e,
                   "cannot listen on %s: no interface of this host has that address; use "
                   "127.0.0.1 or an address of this host in --tcp HOST:PORT",
                   hostport);
        } else {
            errmsg(err, err_len, -e, "cannot listen on %s: %s: %s; pick another --tcp HOST:PORT",
                   hostport, step, strerror(e));
        }
        return -e;
    }

    struct sockaddr_storage ss;
    socklen_t ss_len = sizeof(ss);
    if (getsockname(s, (struct sockaddr *)&ss, &ss_len) < 0) {
        e = errno;
        close(s);
        return errmsg(err, err_len, -e, "cannot listen on %s: getsockname: %s", hostport,
                      strerror(e));
    }

    *fd = s;
    if (port_out != NULL) {
        *port_out = sockaddr_port(&ss);
    }
    return 0;
}
