/*
 * proto.c - the op dispatch and the table of errors (see proto.h).
 *
 * Dispatch. proto_frame() counts the frame, and then a peer that has not
 * sent its HELLO yet gets proto_hello() or a fatal ERR 8; a welcomed peer's
 * frame goes to proto_ops[op]. PUB is the hot path: its row is
 * router_publish() itself, and only a nonzero answer (a $SYS. subject, a
 * refusal) takes the way out of line, proto_answer(). Nothing in the
 * dispatch allocates.
 *
 * Errors. Every refusal a client can see is one row of proto_errors[],
 * indexed by the code the refusing module returned: router.c's ROUTER_E_*,
 * sys.c's SYS_E_*, and the protocol's own PROTO_E_* (HELLO and the ops a
 * client may not send), numbered one after the other. A row gives the
 * wire code, the text, and what goes with it: whether the ERR names the
 * frame's subject, whether it is a denial ($SYS.STATS "denied"), whether
 * it ends the connection, and which configured limit the text quotes. The
 * texts are templates, filled by proto_format(): %s the frame's subject,
 * %r its reply subject, %i its sid, %n the limit, %d a detail from the
 * handler (strerror() for a real failure, the reason a $SYS.CLIENTS page
 * request is malformed, the op a client may not send). What a client sent
 * is quoted raw here and escaped by conn_queue_err_text().
 */
#include "proto.h"

#include "bus.h"
#include "config.h"
#include "conn.h"
#include "frame.h"
#include "handshake.h"
#include "log.h"
#include "peer.h"
#include "router.h"
#include "sockbus.h"
#include "sys.h"
#include "text.h"
#include "version.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the table of errors ------------------------------------------------ */

enum {
    NAMES_SUBJECT = 1, /* the ERR carries the frame's subject */
    DENIED = 2,        /* counts in $SYS.STATS "denied" */
    FATAL = 4,         /* ends the connection (conn_end()) */
};

struct proto_error_row {
    uint8_t wire;               /* FRAME_ERR_* */
    uint8_t flags;              /* NAMES_SUBJECT, DENIED, FATAL */
    enum config_limit_id limit; /* quoted by %n */
    const char *text;           /* a template: see the top of this file */
};

static const struct proto_error_row proto_errors[PROTO_E_END] = {
    [ROUTER_E_SUBJECT_INVALID] = {FRAME_ERR_SUBJECT, NAMES_SUBJECT, CONFIG_LIMIT_NONE,
                                  "cannot publish on '%s': invalid subject or reply subject"},
    [ROUTER_E_PATTERN_INVALID] = {FRAME_ERR_SUBJECT, NAMES_SUBJECT, CONFIG_LIMIT_NONE,
                                  "cannot subscribe to '%s': invalid pattern or queue group"},
    [ROUTER_E_PUB_DENIED] = {FRAME_ERR_PERMISSION, NAMES_SUBJECT | DENIED, CONFIG_LIMIT_NONE,
                             "permission denied: cannot publish on '%s'"},
    [ROUTER_E_REPLY_DENIED] = {FRAME_ERR_PERMISSION, NAMES_SUBJECT | DENIED, CONFIG_LIMIT_NONE,
                               "permission denied: cannot use '%r' as a reply subject: not your "
                               "inbox and not a subject you may publish on"},
    [ROUTER_E_REPLY_SYS] = {FRAME_ERR_PERMISSION, NAMES_SUBJECT | DENIED, CONFIG_LIMIT_NONE,
                            "permission denied: cannot use '%r' as a reply subject: $SYS. "
                            "subjects are the broker's own"},
    [ROUTER_E_SUB_DENIED] = {FRAME_ERR_PERMISSION, NAMES_SUBJECT | DENIED, CONFIG_LIMIT_NONE,
                             "permission denied: cannot subscribe to '%s'"},
    [ROUTER_E_LOSSLESS_DENIED] = {FRAME_ERR_PERMISSION, NAMES_SUBJECT | DENIED, CONFIG_LIMIT_NONE,
                                  "permission denied: cannot subscribe to '%s' losslessly; "
                                  "subscribe without LOSSLESS"},
    [ROUTER_E_SUB_LIMIT] = {FRAME_ERR_LIMIT, NAMES_SUBJECT, CONFIG_MAX_SUBSCRIPTIONS,
                            "cannot subscribe to '%s': max_subscriptions (%n) reached"},
    [ROUTER_E_SUB_BYTES] = {FRAME_ERR_LIMIT, NAMES_SUBJECT, CONFIG_MAX_SUBSCRIPTION_BYTES,
                            "cannot subscribe to '%s': max_subscription_bytes (%n) reached"},
    [ROUTER_E_SID_IN_USE] = {FRAME_ERR_SID, NAMES_SUBJECT, CONFIG_LIMIT_NONE,
                             "cannot subscribe to '%s': sid %i is zero or in use"},
    [ROUTER_E_SID_UNKNOWN] = {FRAME_ERR_SID, 0, CONFIG_LIMIT_NONE,
                              "cannot unsubscribe: unknown sid %i"},
    [ROUTER_E_RETAIN_FULL] = {FRAME_ERR_LIMIT, NAMES_SUBJECT, CONFIG_MAX_RETAINED_BYTES,
                              "cannot retain '%s': max_retained_bytes (%n) reached; it was "
                              "delivered but not stored"},
    [ROUTER_E_FDS_TCP] = {FRAME_ERR_PROTOCOL, FATAL, CONFIG_LIMIT_NONE,
                          "a PUB with FDS on a TCP connection: file descriptors travel only over "
                          "a Unix socket"},
    [ROUTER_E_FDS_RETAIN] = {FRAME_ERR_PROTOCOL, FATAL, CONFIG_LIMIT_NONE,
                             "a PUB with both FDS and RETAIN on '%s': descriptors are never "
                             "retained"},
    [ROUTER_E_FDS_COUNT] = {FRAME_ERR_PROTOCOL, FATAL, CONFIG_MAX_FDS_PER_MSG,
                            "a PUB with FDS on '%s' claims %i file descriptors: 1 to "
                            "max_fds_per_msg (%n)"},
    [ROUTER_E_FDS_MISSING] = {FRAME_ERR_PROTOCOL, FATAL, CONFIG_LIMIT_NONE,
                              "a PUB with FDS on '%s' claims %i file descriptors, more than were "
                              "received with it"},
    [ROUTER_E_FDS_LIMIT] = {FRAME_ERR_LIMIT, NAMES_SUBJECT, CONFIG_MAX_FDS,
                            "cannot publish on '%s': the broker holds max_fds (%n) file "
                            "descriptors; its descriptors were closed, try again later"},
    [SYS_E_DENIED] = {FRAME_ERR_PERMISSION, NAMES_SUBJECT | DENIED, CONFIG_LIMIT_NONE,
                      "permission denied: cannot publish on '%s'"},
    [SYS_E_REQUEST_INVALID] = {FRAME_ERR_REQUEST, NAMES_SUBJECT, CONFIG_LIMIT_NONE,
                               "invalid $SYS.CLIENTS request: %d; send nothing, or "
                               "{\"offset\":N,\"limit\":M} with N >= 0 and M >= 1"},
    [SYS_E_INTEREST_INVALID] = {FRAME_ERR_REQUEST, NAMES_SUBJECT, CONFIG_LIMIT_NONE,
                                "invalid $SYS.INTEREST request: the payload must be a subject "
                                "(1 to 1024 bytes, no wildcards)"},
    [SYS_E_ANSWER_TOO_LARGE] = {FRAME_ERR_LIMIT, NAMES_SUBJECT, CONFIG_MAX_FRAME,
                                "the answer to '%s' exceeds max_frame (%n); raise --max-frame"},
    [PROTO_E_PUB_FAILED] = {FRAME_ERR_LIMIT, NAMES_SUBJECT, CONFIG_LIMIT_NONE,
                            "cannot publish on '%s': %d"},
    [PROTO_E_SUB_FAILED] = {FRAME_ERR_LIMIT, NAMES_SUBJECT, CONFIG_LIMIT_NONE,
                            "cannot subscribe to '%s': %d"},
    [PROTO_E_HELLO_REQUIRED] = {FRAME_ERR_HELLO_REQUIRED, FATAL, CONFIG_LIMIT_NONE,
                                "HELLO required before any other frame"},
    [PROTO_E_HELLO_TIMEOUT] = {FRAME_ERR_HELLO_REQUIRED, FATAL, CONFIG_HELLO_TIMEOUT_MS,
                               "no HELLO within hello_timeout_ms (%n ms)"},
    [PROTO_E_HELLO_INVALID] = {FRAME_ERR_PROTOCOL, FATAL, CONFIG_LIMIT_NONE,
                               "invalid HELLO: expected a JSON object with \"protocol\""},
    [PROTO_E_HELLO_FIELDS] = {FRAME_ERR_PROTOCOL, FATAL, CONFIG_LIMIT_NONE,
                              "invalid HELLO: \"name\" must be a string, \"echo\" a boolean"},
    [PROTO_E_VERSION] = {FRAME_ERR_VERSION, FATAL, CONFIG_LIMIT_NONE,
                         "unsupported protocol version: this broker speaks 1"},
    [PROTO_E_MAX_CONNECTIONS] = {FRAME_ERR_LIMIT, FATAL, CONFIG_MAX_CONNECTIONS,
                                 "max_connections (%n) reached; try again later"},
    [PROTO_E_MAX_UNWELCOMED] = {FRAME_ERR_LIMIT, FATAL, CONFIG_LIMIT_NONE,
                                "too many connections waiting for HELLO; try again later"},
    [PROTO_E_SECOND_HELLO] = {FRAME_ERR_PROTOCOL, FATAL, CONFIG_LIMIT_NONE,
                              "a second HELLO: a connection says HELLO once"},
    [PROTO_E_OP_FORBIDDEN] = {FRAME_ERR_PROTOCOL, FATAL, CONFIG_LIMIT_NONE,
                              "a client may not send %d"},
    [PROTO_E_SUB_REVOKED] = {FRAME_ERR_PERMISSION, NAMES_SUBJECT, CONFIG_LIMIT_NONE,
                             "permission denied: subscription %i to '%s' ended: the reloaded "
                             "access rules no longer allow it"},
    [PROTO_E_SLOW_CONSUMER] = {FRAME_ERR_SLOW_CONSUMER, FATAL, CONFIG_LOSSLESS_STALL_MS,
                               "slow consumer: a lossless subscription's queue stayed over "
                               "max_pending for lossless_stall_ms (%n ms); read faster"},
};

/* Bounded text being built. */
struct proto_text {
    char buf[256];
    size_t len;
};

static void text_put(struct proto_text *t, const void *s, size_t n)
{
    size_t room = sizeof(t->buf) - 1 - t->len; /* as a C string, like vsnprintf() */
    n = n < room ? n : room;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
}

/* Fill the template of `e` (see the top of this file). */
static void proto_format(struct proto_text *t, const struct proto_error_row *e,
                         const struct broker_config *cfg, const struct frame *f, const char *detail)
{
    t->len = 0;
    for (const char *s = e->text; *s != '\0'; s++) {
        if (s[0] != '%' || s[1] == '\0') {
            text_put(t, s, 1);
            continue;
        }
        char num[24];
        switch (*++s) {
        case 's':
            if (f != NULL) {
                text_put(t, f->subject, f->subject_len);
            }
            break;
        case 'r':
            if (f != NULL) {
                text_put(t, f->reply, f->reply_len);
            }
            break;
        case 'i':
            text_put(t, num, (size_t)snprintf(num, sizeof(num), "%u", f != NULL ? f->sid : 0u));
            break;
        case 'n':
            text_put(t, num,
                     (size_t)snprintf(num, sizeof(num), "%llu",
                                      (unsigned long long)config_limit_get(cfg, e->limit)));
            break;
        case 'd':
            if (detail != NULL) {
                text_put(t, detail, strlen(detail));
            }
            break;
        default:
            text_put(t, s, 1); /* "%%" and the like: the character itself */
            break;
        }
    }
}

void proto_fail(struct peer *p, int code, const struct frame *f, const char *detail)
{
    struct bus *b = p->bus;
    if (code <= 0 || code >= PROTO_E_END || proto_errors[code].text == NULL) {
        conn_close(&p->conn); /* a code without a row: a bug, not the client's */
        return;
    }
    const struct proto_error_row *e = &proto_errors[code];
    struct proto_text t;
    proto_format(&t, e, b->cfg, f, detail);
    if (e->flags & DENIED) {
        b->stats.denied++;
    }
    if (e->flags & FATAL) {
        char line[sizeof(t.buf) + 1];
        memcpy(line, t.buf, t.len);
        line[t.len] = '\0';
        conn_end(&p->conn, e->wire, line);
        return;
    }
    bool names = (e->flags & NAMES_SUBJECT) && f != NULL;
    conn_queue_err_text(&p->conn, e->wire, names ? f->subject : NULL, names ? f->subject_len : 0,
                        t.buf, t.len);
}

/* ---- the handlers ------------------------------------------------------- */

/* A handler: 0, a positive code (ROUTER_SYS, or a row of proto_errors[]),
 * or a negative errno (told as `failed`, or, for an op without one, by
 * closing the connection: out of memory for a reply). PUB and SUB go
 * straight to the router. */
typedef int proto_handler(struct bus *b, struct peer *p, const struct frame *f);

struct proto_op {
    proto_handler *handle;
    int failed;
};

static int proto_unsub(struct bus *b, struct peer *p, const struct frame *f)
{
    uint32_t max = f->payload_len >= 4 ? frame_get_u32(f->payload) : 0;
    return router_unsubscribe(b, p, f->sid, max);
}

static int proto_ping(struct bus *b, struct peer *p, const struct frame *f)
{
    (void)b;
    return conn_queue_frame(&p->conn, FRAME_OP_PONG, 0, f->sid, NULL, 0, NULL, 0);
}

static int proto_hello_again(struct bus *b, struct peer *p, const struct frame *f)
{
    (void)b;
    (void)p;
    (void)f;
    return PROTO_E_SECOND_HELLO;
}

/* The ops a welcomed peer may send; the others (WELCOME, MSG, PONG, ...:
 * only the broker sends them) end the connection. */
static const struct proto_op proto_ops[UINT8_MAX + 1] = {
    [FRAME_OP_PUB] = {router_publish, PROTO_E_PUB_FAILED},
    [FRAME_OP_SUB] = {router_subscribe, PROTO_E_SUB_FAILED},
    [FRAME_OP_UNSUB] = {proto_unsub, 0},
    [FRAME_OP_PING] = {proto_ping, 0},
    [FRAME_OP_HELLO] = {proto_hello_again, 0},
};

/* ---- HELLO -------------------------------------------------------------- */

static int proto_welcome(struct peer *p)
{
    const struct broker_config *cfg = p->bus->cfg;
    /* max_pending is not in the contract, but it lets a client pace itself
     * (a publisher that stays within it never makes a reading subscriber
     * lose). */
    struct handshake_welcome w = {
        .protocol = SB_PROTOCOL_VERSION,
        .client_id = p->conn.id,
        .max_frame = cfg->max_frame,
        .max_pending = cfg->max_pending,
    };
    snprintf(w.server, sizeof(w.server), "%s", BROKER_NAME);
    snprintf(w.version, sizeof(w.version), "%s", BROKER_VERSION);
    snprintf(w.inbox_prefix, sizeof(w.inbox_prefix), "_INBOX.%llu.",
             (unsigned long long)p->conn.id);
    char *json;
    size_t len;
    if (handshake_welcome_encode(&w, &json, &len) < 0) {
        return -ENOMEM;
    }
    int r = conn_queue_frame(&p->conn, FRAME_OP_WELCOME, 0, 0, NULL, 0, json, len);
    free(json);
    return r;
}

int proto_admit(struct peer *p, const char *name, bool echo)
{
    struct bus *b = p->bus;
    /* max_connections bounds the welcomed clients (see session_accept()). */
    if (b->nclients >= b->cfg->max_connections) {
        return PROTO_E_MAX_CONNECTIONS;
    }
    if (sys_list(b, p) < 0) {
        return -ENOMEM;
    }
    p->name = name != NULL ? strdup(name) : NULL;
    p->echo = echo;
    p->hello_done = true;
    b->nclients++;
    return 0;
}

/* HELLO: {"protocol":1,"name":"...","echo":true} (handshake_hello_parse()). Returns 0,
 * a PROTO_E_* code or -ENOMEM. */
static int proto_hello(struct bus *b, struct peer *p, const struct frame *f)
{
    /* Welcomed or refused below: either way no longer waiting. */
    deadline_list_remove(&p->wait);
    struct handshake_hello h;
    int r = handshake_hello_parse(f->payload, f->payload_len, &h);
    if (r == -EPROTO) {
        return PROTO_E_HELLO_INVALID;
    }
    if (r == -EPROTONOSUPPORT) {
        return PROTO_E_VERSION;
    }
    if (r == -EINVAL) {
        return PROTO_E_HELLO_FIELDS;
    }
    if (r < 0) {
        return r;
    }
    r = proto_admit(p, h.has_name ? h.name : NULL, h.echo);
    if (r != 0) {
        return r;
    }
    if (proto_welcome(p) < 0) {
        return -ENOMEM;
    }
    sys_event(b, p, true);
    if (log_level >= LOG_VERBOSE) {
        /* The name is printable UTF-8 already (handshake_hello_parse()); escaped all
         * the same, like everything a client sends that reaches the log. */
        char name[TEXT_ESCAPE_MAX(HELLO_NAME_MAX)];
        char peer[TRANSPORT_DESCRIBE_MAX];
        text_escape(name, sizeof(name), h.name, strlen(h.name));
        conn_describe(&p->conn, peer, sizeof(peer));
        log_verbose("client %llu connected: %s name '%s'", (unsigned long long)p->conn.id, peer,
                    name);
    }
    return 0;
}

/* ---- dispatch ----------------------------------------------------------- */

/*
 * What a handler's nonzero answer `r` to frame `f` means: a $SYS. subject
 * to answer (ROUTER_SYS), a refusal to tell, or a failure, told as its
 * op's `failed` row (HELLO has none: a failed HELLO closes). Out of line,
 * and given only what the caller holds anyway, so that the hot path, where
 * handlers answer 0, keeps a small frame.
 */
__attribute__((noinline)) static int proto_answer(struct peer *p, int r, const struct frame *f)
{
    struct bus *b = p->bus;
    const struct proto_op *op = &proto_ops[f->op];
    char detail[PROTO_DETAIL_MAX] = "";
    if (r == ROUTER_SYS) {
        b->cause = p; /* a lossless queue its answer fills holds p back */
        r = sys_handle(b, f, detail, sizeof(detail));
        b->cause = NULL;
        if (r == 0) {
            return 0;
        }
    }
    if (r > 0) {
        proto_fail(p, r, f, detail);
    } else if (op->failed != 0) {
        snprintf(detail, sizeof(detail), "%s", strerror(-r));
        proto_fail(p, op->failed, f, detail);
    } else {
        conn_close(&p->conn); /* out of memory for a reply: nothing to say it with */
    }
    return r;
}

/* The first frame of a peer: its HELLO, or a fatal ERR. */
__attribute__((noinline)) static void proto_first(struct bus *b, struct peer *p,
                                                  const struct frame *f)
{
    b->cause = p; /* for its $SYS.EVENT.CONNECT, as for a $SYS answer */
    int r = f->op == FRAME_OP_HELLO ? proto_hello(b, p, f) : PROTO_E_HELLO_REQUIRED;
    b->cause = NULL;
    if (r != 0) {
        proto_answer(p, r, f);
    }
}

/* A frame whose op only the broker sends. */
__attribute__((noinline)) static void proto_forbidden(struct peer *p, const struct frame *f)
{
    char detail[PROTO_DETAIL_MAX];
    snprintf(detail, sizeof(detail), "%s (op 0x%02x)", frame_op_name(f->op), f->op);
    proto_fail(p, PROTO_E_OP_FORBIDDEN, f, detail);
}

/* The op's handler, and its answer out of line. Inlined into
 * proto_frame(), the hot path. */
__attribute__((always_inline)) static inline int proto_run(struct bus *b, struct peer *p,
                                                           const struct frame *f)
{
    int r = proto_ops[f->op].handle(b, p, f);
    return r == 0 ? 0 : proto_answer(p, r, f);
}

int proto_dispatch(struct peer *p, const struct frame *f)
{
    return proto_run(p->bus, p, f);
}

void proto_frame(struct conn *c, const struct frame *f)
{
    struct peer *p = peer_of(c);
    struct bus *b = p->bus;
    p->bytes_in += f->size;
    b->stats.bytes_in += f->size;
    if (!p->hello_done) {
        proto_first(b, p, f);
        return;
    }
    /* A PUB may join the run of those before it, in the same read: the
     * frame stays in place until proto_frames_done(). */
    if (f->op == FRAME_OP_PUB) {
        int r = router_publish_deferred(b, p, f);
        if (r != 0) {
            proto_answer(p, r, f);
        }
        return;
    }
    router_flush(b); /* the PUBs before it go first */
    if (proto_ops[f->op].handle == NULL) {
        proto_forbidden(p, f);
        return;
    }
    proto_run(b, p, f);
}

void proto_frames_done(struct conn *c)
{
    router_read_done(peer_of(c)->bus);
}
