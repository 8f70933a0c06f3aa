/*
 * endpoint.c - where the broker listens: one rule for the broker and every
 * client, and the parsing of tcp://HOST:PORT endpoints.
 */
#include "endpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#define TCP_PREFIX  "tcp://"
#define UNIX_PREFIX "unix://"

SB_EXPORT bool sb_endpoint_is_tcp(const char *endpoint)
{
    return endpoint != NULL && strncmp(endpoint, TCP_PREFIX, strlen(TCP_PREFIX)) == 0;
}

/* snprintf() that reports truncation as -ENAMETOOLONG. */
static int fit(int n, size_t len)
{
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

SB_EXPORT int sb_endpoint_resolve(const char *explicit_endpoint, char *out, size_t len)
{
    char buf[SB_ENDPOINT_MAX];
    const char *e = explicit_endpoint;
    int r;

    if (e == NULL || *e == '\0') {
        e = getenv("SOCKBUS_SOCKET");
    }
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (e != NULL && strncmp(e, UNIX_PREFIX, strlen(UNIX_PREFIX)) == 0) {
        e += strlen(UNIX_PREFIX); /* unix://PATH is PATH */
        if (*e == '\0') {
            return -EINVAL;
        }
    }
    if (e != NULL && *e != '\0') {
        r = fit(snprintf(buf, sizeof(buf), "%s", e), sizeof(buf));
    } else if (xdg != NULL && *xdg != '\0') {
        r = fit(snprintf(buf, sizeof(buf), "%s/sockbus.sock", xdg), sizeof(buf));
    } else {
        r = fit(snprintf(buf, sizeof(buf), "/tmp/sockbus-%lu.sock", (unsigned long)getuid()),
                sizeof(buf));
    }
    if (r < 0) {
        return r;
    }
    struct sockaddr_un sun;
    if (!sb_endpoint_is_tcp(buf) && strlen(buf) >= sizeof(sun.sun_path)) {
        return -ENAMETOOLONG;
    }
    if (strlen(buf) >= len) {
        return -ENAMETOOLONG; /* out is written only on success */
    }
    strcpy(out, buf);
    return 0;
}

int endpoint_parse_tcp(const char *endpoint, char *host, size_t host_len, char *port,
                       size_t port_len)
{
    const char *hp = endpoint;
    if (sb_endpoint_is_tcp(hp)) {
        hp += strlen(TCP_PREFIX);
    }
    /* The last ':' splits host and port, so "[::1]:7447" works too. */
    const char *colon = strrchr(hp, ':');
    if (colon == NULL || colon == hp || colon[1] == '\0') {
        return -EINVAL;
    }
    const char *h = hp;
    size_t hl = (size_t)(colon - hp);
    bool bracketed = hl >= 2 && h[0] == '[' && h[hl - 1] == ']';
    if (bracketed) {
        h++;
        hl -= 2;
    }
    /* Brackets only around the whole host; an IPv6 host needs them, or
     * "fe80::1:80" would split in the wrong place. */
    if (memchr(h, '[', hl) != NULL || memchr(h, ']', hl) != NULL ||
        (!bracketed && memchr(h, ':', hl) != NULL)) {
        return -EINVAL;
    }
    const char *p = colon + 1;
    size_t pl = strlen(p);
    if (hl == 0 || hl >= host_len || pl >= port_len || strspn(p, "0123456789") != pl) {
        return -EINVAL;
    }
    long portnum = strtol(p, NULL, 10);
    if (portnum <= 0 || portnum > 65535) {
        return -EINVAL;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, p, pl + 1);
    return 0;
}
