/*
 * config.h - the broker's settings: struct broker_config, the default and
 * the range of every limit, and the JSON config file (sockbusd --config
 * FILE).
 *
 * Every limit has a name, a default (here), a command-line flag (main.c)
 * and a config key (config.c); docs/security.md lists them, and
 * docs/protocol.md (Limits) says what a client sees of them.
 *
 * The file is one JSON object. Its keys are the long command-line flags
 * with '_' for '-': "socket", "tcp", "mode", "group", "max_frame",
 * "max_connections", "max_unwelcomed", "hello_timeout_ms",
 * "max_subscriptions", "max_subscription_bytes", "max_pending",
 * "max_retained_bytes", "lossless_stall_ms", "max_fds_per_msg", "max_fds",
 * "unix_send_buffer", "log", and "acl"
 * (acl_config.h). A flag given on
 * the command line wins over the same setting in the file.
 */
#ifndef SOCKBUS_CONFIG_H
#define SOCKBUS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The limits' defaults (docs/protocol.md, Limits). */
#define BROKER_MAX_FRAME_DEFAULT          1114112u
#define BROKER_MAX_CONNECTIONS_DEFAULT    4096u
#define BROKER_MAX_SUBSCRIPTIONS_DEFAULT  65536u
#define BROKER_MAX_PENDING_DEFAULT        (8u * 1024u * 1024u)
#define BROKER_MAX_RETAINED_BYTES_DEFAULT (64u * 1024u * 1024u)
#define BROKER_HELLO_TIMEOUT_MS_DEFAULT   5000u
/* How long a lossless subscriber's queue may stay over max_pending (until
 * it falls below half of it) before ERR 6 cuts it. */
#define BROKER_LOSSLESS_STALL_MS_DEFAULT 5000u
#define BROKER_MAX_FDS_PER_MSG_DEFAULT   16u
#define BROKER_MAX_FDS_DEFAULT           4096u

/* SO_SNDBUF of the broker's end of each Unix connection: what may be in
 * flight to one client in the kernel, besides max_pending (transport.c
 * says why this size). */
#define BROKER_UNIX_SEND_BUFFER_DEFAULT (1024u * 1024u)
#define BROKER_UNIX_SEND_BUFFER_MAX     (64u * 1024u * 1024u)

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

/* Files larger than this are refused: a config is a few KiB. */
#define CONFIG_FILE_MAX (1024u * 1024u)

struct acl;

struct broker_config {
    char socket_path[108];
    char tcp[256];  /* "" for none */
    unsigned mode;  /* socket file mode, default 0600 */
    char group[64]; /* "" for none */
    uint32_t max_frame;
    uint32_t max_connections; /* welcomed clients (past HELLO) */
    /* Connections accepted and still waiting for their HELLO; 0 until
     * config_finish() gives it its default. */
    uint32_t max_unwelcomed;
    uint32_t hello_timeout_ms;
    uint32_t max_subscriptions;
    uint64_t max_subscription_bytes; /* per connection */
    uint64_t max_pending;
    uint64_t max_retained_bytes;
    uint32_t lossless_stall_ms;
    uint32_t max_fds_per_msg; /* descriptors one PUB may carry (at most 253) */
    uint32_t max_fds;         /* descriptors held for messages in flight */
    /* SO_SNDBUF of the broker's end of each Unix connection. */
    uint32_t unix_send_buffer;
    /* Access control from the config file's "acl" section; NULL: none,
     * everything is allowed to whoever can open the socket. Owned by
     * whoever loaded it (main.c), and must outlive the broker. */
    struct acl *acl;
};

/*
 * The numeric limits, each one row of config_limits[]: its config key (the
 * flag is the same with '-' for '_'), its default, its range, and its
 * field. config_init() sets the defaults, main.c reads the flags,
 * config.c the keys, and proto.c quotes the values in ERR texts, all
 * through this one table.
 */
enum config_limit_id {
    CONFIG_LIMIT_NONE, /* no row: for tables that may name none */
    CONFIG_MAX_FRAME,
    CONFIG_MAX_CONNECTIONS,
    CONFIG_MAX_UNWELCOMED,
    CONFIG_HELLO_TIMEOUT_MS,
    CONFIG_MAX_SUBSCRIPTIONS,
    CONFIG_MAX_SUBSCRIPTION_BYTES,
    CONFIG_MAX_PENDING,
    CONFIG_MAX_RETAINED_BYTES,
    CONFIG_LOSSLESS_STALL_MS,
    CONFIG_MAX_FDS_PER_MSG,
    CONFIG_MAX_FDS,
    CONFIG_UNIX_SEND_BUFFER,
    CONFIG_LIMITS
};

struct config_limit {
    const char *key;        /* "max_frame" */
    uint64_t default_value; /* 0 for max_unwelcomed: see config_finish() */
    uint64_t min;
    uint64_t max;
    size_t offset; /* of the field in struct broker_config */
    size_t size;   /* of the field: 4 or 8 */
    bool bytes;    /* a size: "64k" and "16m" are taken too (units.h) */
};

extern const struct config_limit config_limits[CONFIG_LIMITS];

/* The row whose key is `key`, or NULL. */
const struct config_limit *config_limit_find(const char *key);

/* A limit's value in cfg, and setting it (v within its range). */
uint64_t config_limit_get(const struct broker_config *cfg, enum config_limit_id id);
void config_limit_set(struct broker_config *cfg, const struct config_limit *l, uint64_t v);

/* Every field at its default. */
void config_init(struct broker_config *cfg);

/* Give the settings whose default depends on others their value, once
 * the flags and the config file are applied (max_unwelcomed). Idempotent. */
void config_finish(struct broker_config *cfg);

/*
 * Read the config file at `path` and apply its keys to *cfg (keys absent
 * from the file leave their field alone). "socket" is stored unresolved in
 * cfg->socket_path for the caller to resolve; "acl" puts a new ACL in
 * cfg->acl, which the caller then owns (acl_free()), replacing (and
 * freeing) one that was there; "log" ("quiet", "normal" or "verbose") sets
 * log_level.
 *
 * Returns 0, or a negative errno with one line in err naming the file and
 * what is wrong with it: the key for an unknown key (with the list of known
 * ones), a wrong type or an out-of-range value; json-c's message with the
 * line and column for invalid JSON; the system's message for a file that
 * cannot be read. On failure neither *cfg nor log_level is changed.
 */
int config_load(const char *path, struct broker_config *cfg, char *err, size_t err_len);

#endif /* SOCKBUS_CONFIG_H */
