/*
 * bridge.h - sockbus-nats, the bridge between a local bus and NATS: what
 * its files share.
 *
 *   main.c              the loop: the bus socket, the NATS socket, the
 *                       wakeups from libnats' threads, signals, timers
 *   bridge_options.c    the command line, the config file, --help
 *   bridge_bus.c        the bus side: subscriptions, messages from the bus
 *                       to NATS, messages from NATS to the bus, STATS
 *   bridge_reconnect.c  the bus side's reconnect: backoff, connect again,
 *                       subscribe again
 *   bridge_nats.c       the NATS side: libnats' connection in the main
 *                       loop, its reconnect and buffer, subscriptions
 *   bridge_map.c        the mapping of a message and its headers, both ways
 *   bridge_replies.c    the reply subjects of requests in flight, by token
 *   bridge_stats.c      the counters and their JSON
 *
 * One thread (main.c's) owns the bus connection and every counter but the
 * NATS connection state, and runs libnats' connection through its
 * event-loop interface: messages from NATS are read, and messages to it
 * written, on that thread. libnats' own threads (reconnect, timers, the
 * delivery of replies) only wake it (bridge_nats.c).
 */
#ifndef SOCKBUS_BRIDGE_H
#define SOCKBUS_BRIDGE_H

#include "sockbus.h"

#include <nats/nats.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BRIDGE_PROG "sockbus-nats"

/* NATS headers the bridge writes and reads (docs/scaling.md, "Headers"). */
#define BRIDGE_HDR_ID      "Sockbus-Bridge"  /* which bridge sent it: NAME/INSTANCE */
#define BRIDGE_HDR_HEADERS "Sockbus-Headers" /* the sockbus header block, base64 */
#define BRIDGE_HDR_STATUS  "Status"          /* NATS' status: "503" is no responders */

/* Defaults of the options. */
#define BRIDGE_RECONNECT_BUFFER_DEFAULT (8 * 1024 * 1024)
#define BRIDGE_MAX_REQUESTS_DEFAULT     65536u
#define BRIDGE_REPLY_QUEUE              65536u
#define BRIDGE_NATS_IOBUF               (256 * 1024)
#define BRIDGE_NATS_OUT_MAX             (8 * 1024 * 1024) /* unsent bytes before the bus waits */
#define BRIDGE_NO_RESPONDERS_DELAY_MS   50
#define BRIDGE_NO_RESPONDERS_MAX        4096u

enum bridge_log { BRIDGE_LOG_QUIET = 0, BRIDGE_LOG_NORMAL = 1, BRIDGE_LOG_VERBOSE = 2 };

/* A list of owned strings. */
struct bridge_list {
    char **items;
    size_t len;
};

struct bridge_options {
    char *endpoint; /* -s; NULL: the default rule */
    struct bridge_list nats;
    struct bridge_list exports;
    struct bridge_list imports;
    char *name;
    int log;
    int64_t reconnect_buffer;   /* libnats' buffer while NATS is away, bytes */
    uint32_t max_requests;      /* requests in flight remembered each way */
    int no_responders_delay_ms; /* before "no responders" goes to NATS */
};

/* Parse argv (and the config file it names). Returns 0, 1 when the
 * program should exit 0 (--help, --version), or -1 after a line on stderr
 * (exit 2). */
int bridge_options_parse(struct bridge_options *o, int argc, char **argv);
void bridge_options_deinit(struct bridge_options *o);

/* Reply subjects by token: a ring of `cap` slots, the newest `cap`
 * requests remembered (bridge_replies.c). A token is BRIDGE_TOKEN_LEN hex
 * digits: the request's number, then a keyed tag that makes it
 * unguessable. */
#define BRIDGE_TOKEN_LEN 32

struct bridge_replies {
    char **subjects;
    uint64_t *numbers; /* the request number each slot holds; 0: none */
    uint32_t cap;
    uint64_t next;
    uint64_t key[2]; /* the tags' SipHash key, from getrandom() */
};

int bridge_replies_init(struct bridge_replies *r, uint32_t cap);
void bridge_replies_deinit(struct bridge_replies *r);
/* Remember `subject` (len bytes); writes its token, NUL terminated. */
int bridge_replies_put(struct bridge_replies *r, const char *subject, size_t len,
                       char token[BRIDGE_TOKEN_LEN + 1]);
/* The subject of `token` (len bytes), or NULL when it was never given out
 * (a guess) or is forgotten. */
const char *bridge_replies_get(const struct bridge_replies *r, const char *token, size_t len);
/* The token at the end of `subject` after `prefix`; -EINVAL if none. */
int bridge_replies_token(const char *subject, size_t len, const char *prefix, size_t prefix_len,
                         const char **token, size_t *token_len);

/* The counters, docs/scaling.md "Counters". */
struct bridge_stats {
    uint64_t exported;         /* bus -> NATS */
    uint64_t imported;         /* NATS -> bus */
    uint64_t requests;         /* requests crossed, both ways */
    uint64_t replies;          /* replies routed back, both ways */
    uint64_t no_responders;    /* "no responders" carried across, both ways */
    uint64_t dropped_export;   /* bus -> NATS: NATS refused it (away, buffer full) */
    uint64_t dropped_import;   /* NATS -> bus: the bus was away or refused it */
    uint64_t dropped_bus_slow; /* the broker's DROPPED for the bridge */
    uint64_t dropped_replies;  /* replies to a forgotten request or a token never given */
    uint64_t loops;            /* our own messages back from NATS, ignored */
    uint64_t bus_errors;       /* ERRs from the broker */
    uint64_t bus_reconnects;
    atomic_uint_fast64_t nats_reconnects;
    atomic_uint_fast64_t nats_disconnects;
    atomic_bool nats_connected;
    bool bus_connected;
};

/* libnats' socket as the main loop polls it (bridge_nats.c): libnats says
 * what to wait for through its event-loop callbacks, from the main thread
 * or from its reconnect thread. */
struct bridge_ev {
    pthread_mutex_t mu;
    int fd; /* -1: not attached */
    bool read, write;
    int wake; /* eventfd: readable when the main loop must look again */
};

/* Replies from NATS, handed from libnats' delivery thread to the main
 * thread (bridge_nats.c): a bounded FIFO. */
struct bridge_inq {
    pthread_mutex_t mu;
    pthread_cond_t room;
    natsMsg **msgs;
    size_t cap, head, len;
    bool stopping;
};

struct bridge {
    struct bridge_options opt;
    struct bridge_stats stats;
    char id[256]; /* NAME/INSTANCE, the value of Sockbus-Bridge */

    /* The bus side. */
    sb_client *bus;
    uint32_t *export_sids; /* one per export pattern, for the current connection */
    uint32_t stats_sid;
    uint32_t inbox_sid;
    char stats_subject[SB_SUBJECT_MAX + 1];
    char inbox_prefix[64]; /* _INBOX.<client_id>.nats. */
    size_t inbox_prefix_len;
    int64_t reconnect_at_ms; /* when to try again; bridge_reconnect.c */
    int backoff_ms;
    bool bus_told_down;    /* said once that it is away */
    bool bus_told_drops;   /* said once per outage that imports are dropped */
    bool bus_was_up;       /* connected before: the next connect is a reconnect */
    bool lossless_refused; /* the broker's ACL forbids lossless exports */

    /* The NATS side. */
    natsConnection *nc;
    natsOptions *nopts;
    natsSubscription **import_subs;
    natsSubscription *reply_sub;
    char nats_inbox[128]; /* <inbox>. : reply subjects of exported requests */
    size_t nats_inbox_len;
    struct bridge_ev ev;
    struct bridge_inq replies_in;
    pthread_t main_thread;
    atomic_bool closing; /* our own close: not a loss to report */

    /* Requests in flight: the bus's reply subjects (for exported requests)
     * and NATS' (for imported ones). */
    struct bridge_replies to_bus;
    struct bridge_replies to_nats;

    /* "No responders" answers for NATS, held back for
     * no_responders_delay_ms (bridge_nats.c): a FIFO, as they all wait
     * the same time. */
    struct {
        char **to;
        int64_t *due_ms;
        size_t head, len;
    } nr;

    /* Scratch for headers, reused. */
    char *scratch;
    size_t scratch_cap;
};

/* main.c: one line on stderr, "sockbus-nats: " first, escaped; shown when
 * `level` is at most the -v/-q level. */
void bridge_log(const struct bridge *b, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* bridge_bus.c */
int bridge_bus_subscribe(struct bridge *b);
void bridge_bus_import(struct bridge *b, natsMsg *m);
void bridge_bus_reply_from_nats(struct bridge *b, natsMsg *m);
void bridge_bus_setup_client(struct bridge *b);
/* The bus socket takes more now (poll() says so): publishing will not
 * block. */
bool bridge_bus_writable(struct bridge *b);

/* bridge_reconnect.c: the bus side's connection, kept up. */
void bridge_reconnect_init(struct bridge *b);
/* Try to connect if it is time; returns 0 when connected (now or before). */
int bridge_reconnect_poll(struct bridge *b, int64_t now_ms);
/* The connection failed: close it and schedule the first retry. */
void bridge_reconnect_lost(struct bridge *b, int err);
/* How long poll() may wait before the next attempt (-1: no attempt due). */
int bridge_reconnect_wait_ms(const struct bridge *b, int64_t now_ms);

/* bridge_nats.c */
int bridge_nats_start(struct bridge *b);
void bridge_nats_stop(struct bridge *b);
/* The pollfd for libnats' socket (fd -1: none), and what poll() said of
 * it: read and parse what came, write what is buffered. */
void bridge_nats_pollfd(struct bridge *b, struct pollfd *p);
void bridge_nats_events(struct bridge *b, short revents);
/* The eventfd libnats' threads wake the main loop with; drained here. */
int bridge_nats_wake_fd(const struct bridge *b);
void bridge_nats_woken(struct bridge *b);
/* More is buffered for NATS than BRIDGE_NATS_OUT_MAX: the bus waits. */
bool bridge_nats_out_full(struct bridge *b);
/* Hand up to `max` messages received from NATS to the bus; returns true
 * when some may be left. */
bool bridge_nats_drain(struct bridge *b, size_t max);
/* Publish a bus message to NATS (bridge_map.c builds it). */
void bridge_nats_export(struct bridge *b, const sb_msg *m);
void bridge_nats_reply_from_bus(struct bridge *b, const sb_msg *m);
/* Messages libnats dropped for its pending limits, all subscriptions. */
uint64_t bridge_nats_dropped(struct bridge *b);
/* Send the "no responders" answers that are due; returns how long until
 * the next one is (-1: none waits). */
int bridge_nats_no_responders_due(struct bridge *b, int64_t now_ms);

/* bridge_map.c */
/* The NATS message for bus message `m`, sent to `subject` with `reply`
 * (NULL: none); carries the bridge id and the sockbus headers. */
natsStatus bridge_map_to_nats(struct bridge *b, natsMsg **out, const char *subject,
                              const char *reply, const sb_msg *m);
/* The sockbus header block of NATS message `m` into b->scratch: *len
 * bytes (0: none). Returns 0 or -EINVAL for a malformed header. */
int bridge_map_headers_from_nats(struct bridge *b, natsMsg *m, size_t *len);
/* Is `m` one of ours, back from NATS? */
bool bridge_map_is_own(const struct bridge *b, natsMsg *m);
size_t bridge_base64_encode(char *out, const void *in, size_t len);
int bridge_base64_decode(void *out, size_t *out_len, const char *in, size_t len);
#define BRIDGE_BASE64_LEN(n) (((n) + 2u) / 3u * 4u)

/* bridge_stats.c: the JSON answer to $BRIDGE.<name>.STATS into a malloc'd
 * string (*out, *len). */
int bridge_stats_json(struct bridge *b, char **out, size_t *len);
uint64_t bridge_stats_dropped(struct bridge *b);
void bridge_stats_print(struct bridge *b);

int64_t bridge_now_ms(void);

#endif /* SOCKBUS_BRIDGE_H */
