/*
 * bridge_bus.c - the bus side: what the bridge subscribes to on the local
 * bus, and the messages that cross, in both directions.
 *
 * The bridge's connection has echo off ("echo": false in its HELLO), so
 * what it publishes here (imports, replies) never comes back to its own
 * export subscriptions: a subject both exported and imported does not
 * loop. It subscribes to each export pattern (lossless, so that a slow
 * NATS link slows local publishers rather than losing messages), to
 * $BRIDGE.<name>.STATS
 * (answered here with the counters), and to its own inbox,
 * _INBOX.<client_id>.nats.>, where the replies to imported requests
 * arrive: an imported request is published here with the reply subject
 * _INBOX.<client_id>.nats.<token>, the token naming NATS' reply subject
 * (bridge_replies.c).
 *
 * Everything runs on the main thread: messages from the bus arrive through
 * sb_process()'s callback, messages from NATS in batches from libnats'
 * subscriptions (bridge_nats_drain()). A message that cannot be published here because
 * the bus is away, or that the broker refuses, is counted as dropped.
 */
#include "bridge.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void answer_stats(struct bridge *b, const sb_msg *m)
{
    if (m->reply_len == 0) {
        return;
    }
    char reply[SB_SUBJECT_MAX + 1];
    memcpy(reply, m->reply, m->reply_len + 1);
    char *json;
    size_t len;
    if (bridge_stats_json(b, &json, &len) < 0) {
        return;
    }
    sb_publish(b->bus, reply, NULL, json, len);
    free(json);
}

static void on_msg(sb_client *c, const sb_msg *m, void *arg)
{
    struct bridge *b = arg;
    if (m->sid == b->stats_sid) {
        answer_stats(b, m);
    } else if (m->sid == b->inbox_sid) {
        bridge_nats_reply_from_bus(b, m);
    } else if ((m->flags & (SB_MSG_RETAINED | SB_MSG_NO_RESPONDERS)) == 0) {
        /* Retained values stay local: a replay is not a new message. */
        bridge_nats_export(b, m);
    }
}

static void on_dropped(sb_client *c, uint64_t count, void *arg)
{
    struct bridge *b = arg;
    b->stats.dropped_bus_slow += count;
    bridge_log(b, BRIDGE_LOG_VERBOSE, "the broker dropped %llu messages for the bridge",
               (unsigned long long)count);
}

static void on_error(sb_client *c, int err, const char *subject, const char *text, void *arg)
{
    struct bridge *b = arg;
    b->stats.bus_errors++;
    /* A refused publish is a message that did not cross. */
    b->stats.dropped_import++;
    bridge_log(b, BRIDGE_LOG_VERBOSE, "the broker refused '%s': %s", subject, sb_strerror(err));
}

void bridge_bus_setup_client(struct bridge *b)
{
    sb_set_msg_cb(b->bus, on_msg, b);
    sb_set_dropped_cb(b->bus, on_dropped, b);
    sb_set_error_cb(b->bus, on_error, b);
}

int bridge_bus_subscribe(struct bridge *b)
{
    int n = snprintf(b->inbox_prefix, sizeof(b->inbox_prefix), "_INBOX.%llu.nats.",
                     (unsigned long long)sb_client_id(b->bus));
    b->inbox_prefix_len = (size_t)n;
    /* Lossless: when NATS is slower than the local publishers, the broker
     * holds them (within its lossless_stall_ms) rather than drop what the
     * bridge has not read. A broker whose ACL forbids it refuses the SUB;
     * then the next connection subscribes without it. */
    uint32_t flags = b->lossless_refused ? 0 : SB_SUB_LOSSLESS;
    for (size_t i = 0; i < b->opt.exports.len; i++) {
        int r = sb_subscribe_ex(b->bus, b->opt.exports.items[i], NULL, flags, &b->export_sids[i]);
        if (r < 0) {
            return r;
        }
    }
    int r = sb_subscribe(b->bus, b->stats_subject, NULL, &b->stats_sid);
    if (r == 0) {
        char inbox[96];
        snprintf(inbox, sizeof(inbox), "%s>", b->inbox_prefix);
        r = sb_subscribe(b->bus, inbox, NULL, &b->inbox_sid);
    }
    if (r == 0) {
        /* Confirmed: a refused pattern (an ACL) says so here. */
        r = sb_flush(b->bus, 5000);
    }
    if (r == SB_E_PERMISSION && !b->lossless_refused) {
        b->lossless_refused = true;
        bridge_log(b, BRIDGE_LOG_NORMAL,
                   "the broker refused a lossless subscription; exporting "
                   "without (what the broker drops for the bridge is "
                   "counted as dropped_bus_slow)");
    }
    return r;
}

bool bridge_bus_writable(struct bridge *b)
{
    struct pollfd p = {.fd = sb_fd(b->bus), .events = POLLOUT};
    return poll(&p, 1, 0) > 0 && (p.revents & POLLOUT);
}

/* A publish here failed: a message-level refusal, or the connection. */
static void publish_failed(struct bridge *b, int r)
{
    if (r != -EINVAL && r != -EMSGSIZE) {
        bridge_reconnect_lost(b, r);
    }
}

void bridge_bus_import(struct bridge *b, natsMsg *m)
{
    if (bridge_map_is_own(b, m)) {
        b->stats.loops++;
        return;
    }
    if (b->bus == NULL) {
        b->stats.dropped_import++;
        if (!b->bus_told_drops) {
            bridge_log(b, BRIDGE_LOG_NORMAL,
                       "the bus is away: messages from NATS are dropped "
                       "(and counted) until it is back");
            b->bus_told_drops = true;
        }
        return;
    }
    size_t hlen;
    if (bridge_map_headers_from_nats(b, m, &hlen) < 0) {
        b->stats.dropped_import++;
        bridge_log(b, BRIDGE_LOG_VERBOSE,
                   "dropped a NATS message on '%s' with a malformed " BRIDGE_HDR_HEADERS,
                   natsMsg_GetSubject(m));
        return;
    }
    char reply[96];
    sb_pub pub = {
        .subject = natsMsg_GetSubject(m),
        .headers = hlen > 0 ? b->scratch : NULL,
        .headers_len = hlen,
        .payload = natsMsg_GetData(m),
        .payload_len = (size_t)natsMsg_GetDataLength(m),
    };
    const char *nreply = natsMsg_GetReply(m);
    if (nreply != NULL && nreply[0] != '\0') {
        char token[BRIDGE_TOKEN_LEN + 1];
        if (bridge_replies_put(&b->to_nats, nreply, strlen(nreply), token) < 0) {
            b->stats.dropped_import++;
            bridge_log(b, BRIDGE_LOG_VERBOSE,
                       "dropped a NATS request on '%s': no memory to remember its reply subject",
                       natsMsg_GetSubject(m));
            return;
        }
        snprintf(reply, sizeof(reply), "%s%s", b->inbox_prefix, token);
        pub.reply = reply;
        b->stats.requests++;
    }
    int r = sb_publish_ex(b->bus, &pub);
    if (r < 0) {
        b->stats.dropped_import++;
        bridge_log(b, BRIDGE_LOG_VERBOSE, "dropped a message from NATS: %s", sb_strerror(r));
        publish_failed(b, r);
        return;
    }
    b->stats.imported++;
}

void bridge_bus_reply_from_nats(struct bridge *b, natsMsg *m)
{
    const char *subject = natsMsg_GetSubject(m);
    const char *token;
    size_t token_len;
    const char *to = NULL;
    if (bridge_replies_token(subject, strlen(subject), b->nats_inbox, b->nats_inbox_len, &token,
                             &token_len) == 0) {
        to = bridge_replies_get(&b->to_bus, token, token_len);
    }
    if (to == NULL || b->bus == NULL) {
        b->stats.dropped_replies++;
        bridge_log(b, BRIDGE_LOG_VERBOSE,
                   to == NULL ? "dropped a reply on '%s' from NATS: its request is unknown or "
                                "forgotten (try a larger --max-requests if requests are answered "
                                "late)"
                              : "dropped a reply on '%s' from NATS: the bus is away",
                   subject);
        return;
    }
    sb_pub pub = {.subject = to};
    if (natsMsg_IsNoResponders(m)) {
        pub.flags = SB_PUB_NO_RESPONDERS;
        b->stats.no_responders++;
    } else {
        size_t hlen;
        if (bridge_map_headers_from_nats(b, m, &hlen) < 0) {
            b->stats.dropped_replies++;
            return;
        }
        pub.headers = hlen > 0 ? b->scratch : NULL;
        pub.headers_len = hlen;
        pub.payload = natsMsg_GetData(m);
        pub.payload_len = (size_t)natsMsg_GetDataLength(m);
    }
    int r = sb_publish_ex(b->bus, &pub);
    if (r < 0) {
        b->stats.dropped_replies++;
        publish_failed(b, r);
        return;
    }
    b->stats.replies++;
}
