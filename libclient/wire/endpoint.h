/*
 * endpoint.h - endpoint helpers shared by the library and the broker.
 */
#ifndef SOCKBUS_ENDPOINT_H
#define SOCKBUS_ENDPOINT_H

#include "sockbus.h"

/*
 * Split "tcp://HOST:PORT" (or plain "HOST:PORT"; "[::1]:PORT" for IPv6) into
 * host and port strings. Returns 0, or -EINVAL for a malformed endpoint or
 * a port outside 1..65535. Outputs are written only on success.
 */
int endpoint_parse_tcp(const char *endpoint, char *host, size_t host_len, char *port,
                       size_t port_len);

#endif /* SOCKBUS_ENDPOINT_H */
