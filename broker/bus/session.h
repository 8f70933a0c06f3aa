/*
 * session.h - a client's life on the bus: accepted, waiting for its HELLO,
 * welcomed, ending, gone.
 *
 * The broker's acceptors hand each new socket to session_accept(), which
 * makes it a peer (peer.h), decides its ACL rule once, and gives it
 * hello_timeout_ms for its HELLO (at most max_unwelcomed wait at a time).
 * The net layer reaches the bus only through session_conn_ops: each frame
 * goes to proto.c, and the end of a connection takes the peer out of the
 * routing table and $SYS.CLIENTS, announces it, and frees it.
 */
#ifndef SOCKBUS_SESSION_H
#define SOCKBUS_SESSION_H

#include "conn.h"

struct broker_config;
struct bus;
struct net;

/* What net calls for the bus's connections: give it to net_init(). */
extern const struct conn_ops session_conn_ops;

/*
 * Set up the bus (bus_init()) over `net` with `cfg`, the peers' HELLO
 * deadline and the flow policy. Returns 0 or -ENOMEM; either way
 * session_close() and session_deinit() must follow.
 */
int session_init(struct bus *b, struct net *net, const struct broker_config *cfg);

/* Close the HELLO deadline's timer (once no peer waits any more). */
void session_close(struct bus *b);

/* Release the bus (bus_deinit()), after the loop has ended. */
void session_deinit(struct bus *b);

/*
 * An acceptor's callback (acceptor.h): `bus` is the struct bus, `fd` the
 * accepted socket (owned from here on, also on failure). Errors are
 * logged; the broker goes on.
 */
void session_accept(void *bus, int fd, const struct transport_ops *transport);

#endif /* SOCKBUS_SESSION_H */
