/*
 * acceptor.h - accepting connections on a listening socket, and staying up
 * when the process runs out of file descriptors.
 *
 * The broker accepts by itself rather than through uv_listen(): libuv's
 * own answer to EMFILE silently closes every waiting connection and never
 * tells the application, so the broker could neither log it nor tell the
 * clients why. Here the listening fd is watched with a uv_poll_t and
 * accept4() is called directly. On EMFILE or ENFILE the acceptor frees a
 * reserve descriptor, accepts each waiting client, sends it ERR 5 ("out of
 * file descriptors") and closes it, then takes the reserve back: clients
 * fail fast with a clear error, existing clients are served as before, and
 * the next connection is accepted normally as soon as descriptors are free
 * again. If even that fails, accepting pauses for ACCEPTOR_RETRY_MS and
 * is retried. The condition is logged once, then at most once per
 * ACCEPTOR_LOG_INTERVAL_MS with the number of clients refused meanwhile.
 */
#ifndef SOCKBUS_ACCEPTOR_H
#define SOCKBUS_ACCEPTOR_H

#include "transport.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Connections accepted per readiness event, so that a flood of connects
 * cannot starve the clients already connected. */
#define ACCEPTOR_BATCH 64
/* Pause before accepting again when the backlog could not be refused. */
#define ACCEPTOR_RETRY_MS 100
/* Overload is logged at most this often (with a count in between). */
#define ACCEPTOR_LOG_INTERVAL_MS 60000

/* A connection was accepted: `fd` (non-blocking, close-on-exec) is the
 * callee's from here on, to be opened with `transport`. */
typedef void acceptor_cb(void *data, int fd, const struct transport_ops *transport);

struct acceptor {
    uv_poll_t poll;
    uv_timer_t retry;
    acceptor_cb *cb;
    void *data;
    const uint32_t *nconns; /* the connections open now, for the log */
    const struct transport_ops *transport;
    int fd;         /* the listening socket (owned); -1 when none */
    int reserve_fd; /* held to be freed on EMFILE; -1 when none */
    bool open;      /* handles initialized; acceptor_close() closes them */
    char name[300]; /* "PATH" or "tcp HOST:PORT", for log lines */

    /* Overload reporting. */
    bool overloaded_logged;
    uint64_t last_log_ms;
    uint64_t refused_unlogged; /* clients refused since the last log line */
};

/*
 * Start accepting on the listening socket `fd` on `loop`: each new
 * connection goes to cb(data, fd, transport). Takes ownership of fd, also
 * on failure. `name` is copied for log lines; *nconns (may be NULL) is
 * read for them too: how many connections are open when descriptors run
 * out. Returns 0 or a negative libuv error (with fd closed).
 */
int acceptor_start(struct acceptor *a, uv_loop_t *loop, int fd,
                   const struct transport_ops *transport, const char *name, acceptor_cb *cb,
                   void *data, const uint32_t *nconns);

/* Stop accepting: close the handles (asynchronously, as uv_close() does)
 * and the fds. Harmless on an acceptor that never started or is closed. */
void acceptor_close(struct acceptor *a);

#endif /* SOCKBUS_ACCEPTOR_H */
