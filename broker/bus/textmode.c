/*
 * textmode.c - text mode's session (see textmode.h).
 *
 * Each command becomes the frame a binary client would have sent (PUB,
 * SUB, UNSUB, PING), built in a buffer of its own, and goes through
 * proto_dispatch(): routing, the ACL, the limits and the errors are those
 * of frames, and nothing here routes. What text mode adds is small:
 *
 * - Answers. A command that was carried out is answered "+OK" (SUB: "+OK
 *   <sid>", the broker numbering a text client's subscriptions). The
 *   answer is put in front of whatever the command itself queued to the
 *   same connection (its own echo, a retained value replayed to a new
 *   subscription), so that a person reads the answer first. A refusal is
 *   the frame's ERR, written as "-ERR <code> <text>" (net/textout.c).
 * - REQ. The broker subscribes the client's inbox, "_INBOX.<id>.*", at
 *   its first REQ (a subscription like any other, with the next sid), and
 *   publishes the request with "_INBOX.<id>.<n>" as its reply subject; the
 *   reply arrives as a MSG on that subject. Whether anyone receives the
 *   request is asked of the trie just before it is published (nothing can
 *   change in between: one thread), and "-ERR 0 no responders for
 *   <subject>" follows the "+OK" at once; the NO_RESPONDERS MSG the router
 *   sends as well is not written to a text client.
 * - STATS. $SYS.STATS, answered on the "+OK" line itself, under the ACL
 *   rule that governs a $SYS.STATS request.
 *
 * The HELLO deadline: until its first four bytes, a connection is like any
 * other that has not said HELLO, and hello_timeout_ms ends it (the broker
 * cannot tell what an idle socket is). Those four bytes make it a client
 * at once, as a HELLO would: from then on it counts against
 * max_connections, not max_unwelcomed, and no deadline applies, since a
 * person at a terminal may be silent for minutes.
 */
#include "textmode.h"

#include "acl.h"
#include "bus.h"
#include "config.h"
#include "conn.h"
#include "frame.h"
#include "interest.h"
#include "log.h"
#include "peer.h"
#include "proto.h"
#include "router.h"
#include "sockbus.h"
#include "sys.h"
#include "textcmd.h"
#include "textout.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_STATS "$SYS.STATS"

static const char text_help[] =
    "# sockbus text mode: one command per line, the verb in any case\r\n"
    "# PUB <subject> [<text>]   publish the rest of the line\r\n"
    "# REQ <subject> [<text>]   a request: +OK, then the reply as a MSG on your inbox\r\n"
    "# SUB <pattern> [<queue>]  subscribe (* one token, > the rest): +OK <sid>\r\n"
    "# UNSUB <sid>              end a subscription\r\n"
    "# PING                     PONG\r\n"
    "# STATS                    the broker's counters, as JSON\r\n"
    "# HELP                     this text\r\n"
    "# QUIT                     close the connection\r\n"
    "# a message arrives as MSG <subject> <sid> [<reply>] <nbytes>, then its bytes\r\n"
    "+OK\r\n";

/* Queue a line (with its "\r\n") at the end. */
static void text_put(struct conn *c, const char *s, size_t len)
{
    if (conn_takes_output(c) && conn_queue_frame(c, TEXTOUT_OP_LINE, 0, 0, NULL, 0, s, len) < 0) {
        conn_close(c);
    }
}

/* Queue a line in front of what was queued from byte `at` of `out` on: the
 * answer to a command goes before what the command itself queued. */
static void text_put_at(struct conn *c, size_t at, const char *s, size_t len)
{
    struct conn_buf *out = &c->out;
    if (!conn_takes_output(c)) {
        return;
    }
    if (at > out->len) {
        at = out->len;
    }
    size_t size = frame_encoded_size(0, 0, 0, len);
    if (connbuf_reserve(out, size) < 0) {
        conn_close(c);
        return;
    }
    memmove(out->data + at + size, out->data + at, out->len - at);
    frame_encode(out->data + at, TEXTOUT_OP_LINE, 0, 0, NULL, 0, NULL, 0, NULL, 0, s, len);
    out->len += size;
    for (size_t i = 0; i < out->nsegs; i++) {
        if (out->segs[i].at > at) {
            out->segs[i].at += size; /* bodies queued by the command */
        }
    }
    schedule_charge(&c->net->schedule, size);
    conn_mark_dirty(c);
}

/* A subject or pattern longer than any valid one is cut to one byte more:
 * still refused as invalid, and a frame can carry it. */
static size_t text_cut(size_t len)
{
    return len > SB_SUBJECT_MAX ? SB_SUBJECT_MAX + 1u : len;
}

/*
 * The frame a binary client would have sent: encoded into a buffer of its
 * own (the router's scratch buffer may be reused while the frame is
 * handled) and described in *f. Returns the buffer (free it after
 * handling), or NULL when out of memory.
 */
static uint8_t *text_frame(uint8_t op, uint32_t sid, const void *subject, size_t subject_len,
                           const void *reply, size_t reply_len, const void *payload,
                           size_t payload_len, struct frame *f)
{
    subject_len = text_cut(subject_len);
    reply_len = text_cut(reply_len);
    size_t size = frame_encoded_size(subject_len, reply_len, 0, payload_len);
    uint8_t *buf = size <= UINT32_MAX ? malloc(size) : NULL;
    if (buf == NULL) {
        return NULL;
    }
    frame_encode(buf, op, 0, sid, subject, subject_len, reply, reply_len, NULL, 0, payload,
                 payload_len);
    if (frame_parse(buf, size, UINT32_MAX, f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Build and handle a frame; 0 when it was carried out, nonzero when it was
 * refused (and told) or memory ran out (the connection is closed). */
static int text_do(struct peer *p, uint8_t op, uint32_t sid, const void *subject,
                   size_t subject_len, const void *reply, size_t reply_len, const void *payload,
                   size_t payload_len)
{
    /* max_frame bounds what the broker sends too: a line of max_frame
     * bytes makes a frame a few bytes longer than its text. */
    size_t size = frame_encoded_size(text_cut(subject_len), text_cut(reply_len), 0, payload_len);
    if (size > p->bus->cfg->max_frame) {
        conn_queue_err(&p->conn, FRAME_ERR_LIMIT, subject, text_cut(subject_len),
                       "cannot publish on '%.*s': as a frame the message takes %zu bytes, over "
                       "max_frame (%u); send less",
                       (int)text_cut(subject_len), (const char *)subject, size,
                       (unsigned)p->bus->cfg->max_frame);
        return -EMSGSIZE;
    }
    struct frame f;
    uint8_t *buf =
        text_frame(op, sid, subject, subject_len, reply, reply_len, payload, payload_len, &f);
    if (buf == NULL) {
        conn_close(&p->conn);
        return -ENOMEM;
    }
    int r = proto_dispatch(p, &f);
    free(buf);
    return r;
}

/* The next sid for a subscription of this text client: counting up from
 * 1, past those in use. */
static uint32_t text_next_sid(struct peer *p)
{
    do {
        p->text.last_sid++;
        if (p->text.last_sid == 0) {
            p->text.last_sid = 1;
        }
    } while (sidmap_find(&p->subs, p->text.last_sid) != NULL);
    return p->text.last_sid;
}

static void text_sub(struct peer *p, const struct textcmd *cmd)
{
    struct conn *c = &p->conn;
    uint32_t sid = text_next_sid(p);
    size_t at = c->out.len;
    if (text_do(p, FRAME_OP_SUB, sid, cmd->arg, cmd->arg_len, cmd->extra, cmd->extra_len, NULL,
                0) == 0) {
        char line[32];
        int n = snprintf(line, sizeof(line), "+OK %" PRIu32 "\r\n", sid);
        text_put_at(c, at, line, (size_t)n);
    }
}

/* The inbox subscription, "_INBOX.<id>.*", made at the first REQ and
 * again if the client ended it. Returns 0, or nonzero when it was refused
 * (told). */
static int text_inbox(struct peer *p)
{
    if (p->text.inbox_sid != 0 && sidmap_find(&p->subs, p->text.inbox_sid) != NULL) {
        return 0;
    }
    char pattern[48];
    int n = snprintf(pattern, sizeof(pattern), "_INBOX.%" PRIu64 ".*", p->conn.id);
    uint32_t sid = text_next_sid(p);
    int r = text_do(p, FRAME_OP_SUB, sid, pattern, (size_t)n, NULL, 0, NULL, 0);
    if (r == 0) {
        p->text.inbox_sid = sid;
    }
    return r;
}

static void text_req(struct peer *p, const struct textcmd *cmd)
{
    struct conn *c = &p->conn;
    struct bus *b = p->bus;
    if (text_inbox(p) != 0) {
        return;
    }
    char reply[64];
    int rn = snprintf(reply, sizeof(reply), "_INBOX.%" PRIu64 ".%" PRIu64, p->conn.id,
                      ++p->text.last_req);
    /* Who would receive it, asked now: the publish below reaches exactly
     * these (a text client has echo on: no filter). The broker answers
     * $SYS. requests itself. */
    size_t reach = 1;
    if (!router_subject_is_sys(cmd->arg, cmd->arg_len)) {
        interest_count(b, (const char *)cmd->arg, cmd->arg_len, &reach);
    }
    size_t at = c->out.len;
    if (text_do(p, FRAME_OP_PUB, 0, cmd->arg, cmd->arg_len, reply, (size_t)rn, cmd->extra,
                cmd->extra_len) != 0) {
        return;
    }
    text_put_at(c, at, "+OK\r\n", 5);
    if (reach == 0) {
        char line[64 + SB_SUBJECT_MAX];
        int n = snprintf(line, sizeof(line), "-ERR 0 no responders for %.*s\r\n", (int)cmd->arg_len,
                         (const char *)cmd->arg);
        text_put(c, line, (size_t)n);
    }
}

static void text_stats(struct peer *p)
{
    struct bus *b = p->bus;
    if (b->cfg->acl != NULL && !acl_may_publish(p->acl_rule, TEXT_STATS, sizeof(TEXT_STATS) - 1)) {
        struct frame f;
        uint8_t *buf =
            text_frame(FRAME_OP_PUB, 0, TEXT_STATS, sizeof(TEXT_STATS) - 1, NULL, 0, NULL, 0, &f);
        if (buf == NULL) {
            conn_close(&p->conn);
            return;
        }
        proto_fail(p, SYS_E_DENIED, &f, NULL);
        free(buf);
        return;
    }
    char *json;
    size_t len;
    char *line = NULL;
    if (sys_stats_json(b, &json, &len) == 0) {
        line = malloc(len + 6);
        if (line != NULL) {
            memcpy(line, "+OK ", 4);
            memcpy(line + 4, json, len);
            memcpy(line + 4 + len, "\r\n", 2);
            text_put(&p->conn, line, len + 6);
        }
        free(json);
    }
    if (line == NULL) {
        conn_close(&p->conn);
    }
    free(line);
}

/* A line that is no command: -ERR 1, and the session goes on. */
static void text_refuse(struct conn *c, const uint8_t *line, size_t len, const char *why)
{
    if (strcmp(why, "unknown verb") == 0) {
        size_t wlen;
        const uint8_t *w = textcmd_first_word(line, len, &wlen);
        conn_queue_err(c, FRAME_ERR_PROTOCOL, NULL, 0,
                       "unknown verb '%.*s'; type HELP for the commands",
                       (int)(wlen < 32 ? wlen : 32), (const char *)w);
        return;
    }
    conn_queue_err(c, FRAME_ERR_PROTOCOL, NULL, 0, "%s; type HELP for the commands", why);
}

bool text_begin(struct conn *c)
{
    struct peer *p = peer_of(c);
    struct bus *b = p->bus;
    if (p->hello_done || p->bytes_in != 0) {
        return false;
    }
    deadline_list_remove(&p->wait);
    int r = proto_admit(p, "text", true);
    if (r > 0) {
        proto_fail(p, r, NULL, NULL); /* max_connections: -ERR 5, then closed */
        return true;
    }
    if (r < 0) {
        conn_close(c);
        return true;
    }
    sys_event(b, p, true);
    if (log_level >= LOG_VERBOSE) {
        char peer[TRANSPORT_DESCRIBE_MAX];
        conn_describe(c, peer, sizeof(peer));
        log_verbose("client %llu connected: %s in text mode", (unsigned long long)c->id, peer);
    }
    return true;
}

void text_line(struct conn *c, const uint8_t *line, size_t len)
{
    struct peer *p = peer_of(c);
    struct bus *b = p->bus;
    p->bytes_in += len;
    b->stats.bytes_in += len;
    struct textcmd cmd;
    const char *why = "";
    int r = textcmd_parse(line, len, &cmd, &why);
    if (r == TEXTCMD_EMPTY) {
        return;
    }
    if (r < 0) {
        text_refuse(c, line, len, why);
        return;
    }
    size_t at = c->out.len;
    switch (cmd.verb) {
    case TEXTCMD_PUB:
        if (text_do(p, FRAME_OP_PUB, 0, cmd.arg, cmd.arg_len, NULL, 0, cmd.extra, cmd.extra_len) ==
            0) {
            text_put_at(c, at, "+OK\r\n", 5);
        }
        break;
    case TEXTCMD_REQ:
        text_req(p, &cmd);
        break;
    case TEXTCMD_SUB:
        text_sub(p, &cmd);
        break;
    case TEXTCMD_UNSUB:
        if (text_do(p, FRAME_OP_UNSUB, cmd.sid, NULL, 0, NULL, 0, NULL, 0) == 0) {
            text_put(c, "+OK\r\n", 5);
        }
        break;
    case TEXTCMD_PING:
        text_do(p, FRAME_OP_PING, 0, NULL, 0, NULL, 0, NULL, 0);
        break;
    case TEXTCMD_STATS:
        text_stats(p);
        break;
    case TEXTCMD_HELP:
        text_put(c, text_help, sizeof(text_help) - 1);
        break;
    case TEXTCMD_QUIT:
        text_put(c, "+OK\r\n", 5);
        conn_end(c, 0, NULL);
        break;
    }
}
