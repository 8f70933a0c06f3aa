/*
 * listener_tcp.h - the optional TCP listener (--tcp HOST:PORT).
 */
#ifndef SOCKBUS_LISTENER_TCP_H
#define SOCKBUS_LISTENER_TCP_H

#include <stddef.h>

/*
 * Bind and listen on TCP `hostport` ("HOST:PORT", "tcp://HOST:PORT" or
 * "[IPV6]:PORT"; port 0 picks a free port). On success *fd is the
 * non-blocking, close-on-exec listening socket, owned by the caller, and
 * *port_out (if not NULL) the bound port. A host with several addresses is
 * bound on the first that works. On failure a negative errno (-EINVAL for a
 * malformed endpoint or a host that does not resolve, -EADDRINUSE for a port
 * in use) and one line in err; *fd and *port_out are not written.
 */
int listener_tcp_open(const char *hostport, int *fd, unsigned *port_out, char *err, size_t err_len);

#endif /* SOCKBUS_LISTENER_TCP_H */
