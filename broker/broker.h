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
#include "activation.h"
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
    uint32_t status_clients; /* the count in the last STATUS= sent */
};

/*
 * Set up the broker on `loop` with `cfg` (copied; its ACL must outlive the
 * broker): listen on the Unix socket (and TCP when configured). With `act`
 * active (socket activation: activation.h), serve its sockets instead of
 * binding (TCP is still bound for cfg->tcp when none was inherited); the
 * sockets taken are set to -1 in *act. `act` may be NULL. On failure
 * returns a negative errno and writes one line to err; nothing is left
 * open.
 */
int broker_init(struct broker *b, uv_loop_t *loop, const struct broker_config *cfg,
                struct activation *act, char *err, size_t err_len);

/* Tell the service manager the broker accepts clients (READY=1) and how
 * many it has (STATUS=); later counts go with the trim timer, when they
 * change (notify.h). */
void broker_ready(struct broker *b);

/*
 * Apply a reloaded configuration `next` (a complete one: file, then flags)
 * to the running broker: limits, log level and ACL at once. Settings that
 * take a restart (socket, tcp, mode, group, max_frame) are logged when
 * they differ and keep their value (written back into *next). The broker
 * takes next->acl and frees the ACL it had, once no connection points into
 * it (reload.h). Returns the number of subscriptions the new ACL ended, or
 * -ENOMEM (see reload_apply()).
 */
int64_t broker_reload(struct broker *b, struct broker_config *next);

/* Begin an orderly stop: close the listeners, tell every client (ERR 9)
 * and close the connections; the loop ends when all handles are closed.
 * Idempotent. */
void broker_stop(struct broker *b);

/* Release what broker_init() set up, after the loop has ended: removes the
 * socket file if it is still ours. */
void broker_deinit(struct broker *b);

#endif /* SOCKBUS_BROKER_H */
