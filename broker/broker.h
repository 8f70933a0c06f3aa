/*
 * broker.h - the broker: one process's wiring of its layers.
 *
 * One struct broker per process, on one libuv loop. It holds the settings,
 * the connections (net/: struct net), the bus over them (bus/: struct
 * bus), the Unix socket file (listener.h) and the acceptors that hand new
 * sockets to the bus, and the trim timer. It holds no logic of its own
 * beyond starting them in order and stopping them in order.
 */
#ifndef SOCKBUS_BROKER_H
#define SOCKBUS_BROKER_H

#include "acceptor.h"
#include "bus.h"
#include "config.h"
#include "conn.h"
#include "listener.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* How often buffers left large by a burst, and heap pages freed by
 * clients that dropped subscriptions or values, are given back
 * (net_trim(), bus_give_back()). */
#define BROKER_TRIM_MS 1000u

struct broker {
    uv_loop_t *loop;
    struct broker_config cfg;
    struct net net; /* large (its read chunk): a broker is not on the stack */
    struct bus bus;

    struct listener_unix unix_listener;
    struct acceptor unix_acceptor;
    struct acceptor tcp_acceptor;
    unsigned tcp_port;

    uv_timer_t trim_timer;
    bool stopping;
};

/*
 * Set up the broker on `loop` with `cfg` (copied; its ACL must outlive the
 * broker): listen on the Unix socket (and TCP when configured). On failure
 * returns a negative errno and writes one line to err; nothing is left
 * open.
 */
int broker_init(struct broker *b, uv_loop_t *loop, const struct broker_config *cfg, char *err,
                size_t err_len);

/* Begin an orderly stop: close the listeners, tell every client (ERR 9)
 * and close the connections; the loop ends when all handles are closed.
 * Idempotent. */
void broker_stop(struct broker *b);

/* Release what broker_init() set up, after the loop has ended: removes the
 * socket file if it is still ours. */
void broker_deinit(struct broker *b);

#endif /* SOCKBUS_BROKER_H */
