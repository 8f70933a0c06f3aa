/*
 * broker.h - the broker: its configuration, its loop and what it owns.
 *
 * One struct broker per process. It owns the libuv loop handles, the
 * listeners, every connection, the subscription router and the counters.
 * Everything runs on the loop thread.
 */
#ifndef SOCKBUS_BROKER_H
#define SOCKBUS_BROKER_H

#include "acceptor.h"
#include "config.h"
#include "deadline.h"
#include "listener.h"
#include "retain.h"
#include "subtrie.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* How often buffers left large by a burst are given back (conn_trim()). */
#define BROKER_TRIM_MS 1000u

/* Freed subscriptions and retained values worth this many bytes since the
 * last trim make the trim timer hand free heap pages back to the system
 * (mem_give_back()). */
#define BROKER_GIVE_BACK_MIN (1024u * 1024u)

/* Size of the read buffer shared by all connections (see conn.c). */
#define BROKER_READ_CHUNK (64u * 1024u)

struct broker_stats {
    uint64_t msgs_in;
    uint64_t msgs_out;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t dropped;
    uint64_t denied; /* PUB and SUB refused by permissions */
};

struct conn;

struct broker {
    uv_loop_t *loop;
    struct broker_config cfg;

    struct listener_unix unix_listener;
    struct acceptor unix_acceptor;
    struct acceptor tcp_acceptor;
    unsigned tcp_port;

    /* Every connection, for shutdown and introspection. */
    struct conn *conns;
    /* The connections $SYS.CLIENTS lists (welcomed, not ending), in an
     * array so that a page starts at its offset in O(1) (sys.c); freed by
     * broker_deinit(). */
    struct conn **listed;
    uint32_t nlisted;
    size_t listed_cap;
    uint32_t nconns;   /* all accepted and not yet closed */
    uint32_t nclients; /* of which past HELLO: what $SYS.STATS counts */
    /* Of which waiting for HELLO (hello_timeout_ms), and closing after a
     * fatal ERR (CONN_DRAIN_MS): each a FIFO with one timer (conn.h). */
    struct deadline_list unwelcomed;
    struct deadline_list draining;
    uv_timer_t trim_timer; /* gives back the buffers of past bursts */
    uint64_t next_client_id;

    /* Connections with output to write this loop iteration (conn.dirty). */
    struct list_link dirty;
    uv_check_t flush_check;
    /* Connections whose input waits for the next iteration (conn.ready),
     * and the idle handle that resumes them (and keeps the loop from
     * blocking while any wait). */
    struct list_link ready;
    uv_idle_t ready_idle;
    /* Loop iterations so far (counted by the flush), and bytes of output
     * queued so far: what conn_process() measures slices with. */
    uint64_t iteration;
    uint64_t work;

    /* Routing. */
    struct subtrie *subs;
    struct subtrie_result match;
    uint64_t nsubs;
    bool routing; /* `match` is being walked */
    struct retain_store retained;
    /* Heap bytes of subscriptions freed since the trim timer last gave
     * memory back (the retained store counts its own). */
    uint64_t freed_bytes;

    /* The iovec array conn_flush() describes a queue with, reused. */
    uv_buf_t *iov;
    size_t iov_cap;

    /* Frames the broker sends itself ($SYS, NO_RESPONDERS) are built here. */
    uint8_t *scratch;
    size_t scratch_cap;

    struct broker_stats stats;
    uint64_t start_ms;
    bool stopping;

    /* Shared read buffer: a connection reads here unless it holds part of a
     * frame (conn.c). One per loop, as libuv runs one read at a time. */
    uint8_t read_chunk[BROKER_READ_CHUNK];
};

/*
 * Set up the broker on `loop`: listen on the Unix socket (and TCP when
 * configured). On failure returns a negative errno and writes one line to
 * err; nothing is left open.
 */
int broker_init(struct broker *b, uv_loop_t *loop, const struct broker_config *cfg, char *err,
                size_t err_len);

/* Begin an orderly stop: tell every client (ERR 9), close the listeners and
 * connections; the loop ends when all handles are closed. */
void broker_stop(struct broker *b);

/* Release what broker_init() set up, after the loop has ended: removes the
 * socket file if it is still ours. */
void broker_deinit(struct broker *b);

/* Mark a connection as having output to write at the end of this
 * iteration. A closing connection is never marked. */
void broker_mark_dirty(struct broker *b, struct conn *c);

/* A connection holds input for the next iteration: resume it then. A
 * closing connection is never put there. */
void broker_mark_ready(struct broker *b, struct conn *c);

/* A connection's memory was released (from its close callback). */
void broker_conn_closed(struct broker *b);

#endif /* SOCKBUS_BROKER_H */
