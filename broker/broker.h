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
#include "deadline.h"
#include "listener.h"
#include "retain.h"
#include "subtrie.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define BROKER_VERSION "0.1.0"
#define BROKER_NAME    "sockbusd"

/* Limits (DESIGN §4): each has a default, a flag and a config key. */
#define BROKER_MAX_FRAME_DEFAULT          1114112u
#define BROKER_MAX_CONNECTIONS_DEFAULT    4096u
#define BROKER_MAX_SUBSCRIPTIONS_DEFAULT  65536u
#define BROKER_MAX_PENDING_DEFAULT        (8u * 1024u * 1024u)
#define BROKER_MAX_RETAINED_BYTES_DEFAULT (64u * 1024u * 1024u)
#define BROKER_HELLO_TIMEOUT_MS_DEFAULT   5000u

/* max_unwelcomed is max_connections / 4 unless set, but not below this:
 * a broker with a handful of connections must still take a few clients
 * that connect at the same moment (all are waiting for their HELLO at
 * once) without refusing one. */
#define BROKER_MAX_UNWELCOMED_MIN_DEFAULT 16u
/* Heap bytes a connection's subscriptions may cost (router_sub_cost()):
 * enough for max_subscriptions subscriptions of a typical 40-byte,
 * 4-token pattern (about 700 bytes each; a unit test checks that they
 * fit). */
#define BROKER_MAX_SUBSCRIPTION_BYTES_DEFAULT (48u * 1024u * 1024u)

/* The smallest max_frame that still carries a full-length subject. */
#define BROKER_MAX_FRAME_MIN 4096u

/* How often buffers left large by a burst are given back (conn_trim()). */
#define BROKER_TRIM_MS 1000u

/* Freed subscriptions and retained values worth this many bytes since the
 * last trim make the trim timer hand free heap pages back to the system
 * (mem_give_back()). */
#define BROKER_GIVE_BACK_MIN (1024u * 1024u)

/* Size of the read buffer shared by all connections (see conn.c). */
#define BROKER_READ_CHUNK (64u * 1024u)

struct acl;

struct broker_config {
    char socket_path[108];
    char tcp[256];  /* "" for none */
    unsigned mode;  /* socket file mode, default 0600 */
    char group[64]; /* "" for none */
    uint32_t max_frame;
    uint32_t max_connections; /* welcomed clients (past HELLO) */
    /* Connections accepted and still waiting for their HELLO; 0 until
     * broker_config_finish() gives it its default. */
    uint32_t max_unwelcomed;
    uint32_t hello_timeout_ms;
    uint32_t max_subscriptions;
    uint64_t max_subscription_bytes; /* per connection */
    uint64_t max_pending;
    uint64_t max_retained_bytes;
    /* Access control from the config file's "acl" section; NULL: none,
     * everything is allowed to whoever can open the socket. Owned by
     * whoever loaded it (main.c), and must outlive the broker. */
    struct acl *acl;
};

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

/* Defaults for every field of the config. */
void broker_config_init(struct broker_config *cfg);

/* Give the settings whose default depends on others their value, once
 * the flags and the config file are applied (max_unwelcomed). Idempotent. */
void broker_config_finish(struct broker_config *cfg);

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
