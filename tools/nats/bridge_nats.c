/*
 * bridge_nats.c - the NATS side: one libnats connection, its reconnect and
 * buffer, the import subscriptions and the replies to exported requests.
 *
 * libnats keeps the connection up itself: it retries for ever
 * (natsOptions_SetMaxReconnect(-1), also when the first connect fails),
 * subscribes again after a reconnect, and buffers what is published
 * meanwhile, up to --reconnect-buffer bytes; a publish it cannot buffer
 * fails, and the bridge counts that message as dropped (dropped_export).
 * Its own echo is off (natsOptions_SetNoEcho), and every message the
 * bridge sends carries its id, so that nothing it sends comes back in.
 *
 * libnats delivers messages on its own threads. They go through one
 * bounded queue to the main thread, which owns the bus connection: the
 * callback appends and wakes the main thread through an eventfd, and
 * waits while the queue is full, so a slow bus makes libnats' own pending
 * buffer fill, and what libnats then drops (its slow-consumer limit) is
 * counted (natsSubscription_GetDropped(), dropped_import).
 */
#include "bridge.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* ---- the queue from libnats' threads to the main thread ------------------ */

static int inq_init(struct bridge_inq *q, size_t cap)
{
    memset(q, 0, sizeof(*q));
    q->msgs = calloc(cap, sizeof(*q->msgs));
    q->kinds = calloc(cap, 1);
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->msgs == NULL || q->kinds == NULL || q->efd < 0) {
        free(q->msgs);
        free(q->kinds);
        if (q->efd >= 0) {
            close(q->efd);
        }
        return -ENOMEM;
    }
    q->cap = cap;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->room, &ca);
    pthread_condattr_destroy(&ca);
    return 0;
}

static void inq_deinit(struct bridge_inq *q)
{
    if (q->msgs == NULL) {
        return;
    }
    for (size_t i = 0; i < q->len; i++) {
        natsMsg_Destroy(q->msgs[(q->head + i) % q->cap]);
    }
    free(q->msgs);
    free(q->kinds);
    close(q->efd);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->room);
    memset(q, 0, sizeof(*q));
}

static void inq_push(struct bridge_inq *q, natsMsg *m, uint8_t kind)
{
    pthread_mutex_lock(&q->mu);
    while (q->len == q->cap && !q->stopping) {
        /* Bounded, so that stopping is seen even if nobody signals. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&q->room, &q->mu, &ts);
    }
    if (q->stopping) {
        pthread_mutex_unlock(&q->mu);
        natsMsg_Destroy(m);
        return;
    }
    size_t tail = (q->head + q->len) % q->cap;
    q->msgs[tail] = m;
    q->kinds[tail] = kind;
    if (q->len++ == 0) {
        uint64_t one = 1;
        ssize_t w = write(q->efd, &one, sizeof(one));
        (void)w; /* EAGAIN only when the counter is full: it is readable then */
    }
    pthread_mutex_unlock(&q->mu);
}

size_t bridge_nats_drain(struct bridge *b, size_t max)
{
    struct bridge_inq *q = &b->inq;
    natsMsg *batch[256];
    uint8_t kinds[256];
    if (max > 256) {
        max = 256;
    }
    uint64_t count;
    ssize_t r = read(q->efd, &count, sizeof(count));
    (void)r;
    pthread_mutex_lock(&q->mu);
    size_t n = q->len < max ? q->len : max;
    for (size_t i = 0; i < n; i++) {
        batch[i] = q->msgs[q->head];
        kinds[i] = q->kinds[q->head];
        q->head = (q->head + 1) % q->cap;
    }
    q->len -= n;
    size_t left = q->len;
    if (n > 0) {
        pthread_cond_broadcast(&q->room);
    }
    pthread_mutex_unlock(&q->mu);
    for (size_t i = 0; i < n; i++) {
        if (kinds[i] == BRIDGE_IN_IMPORT) {
            bridge_bus_import(b, batch[i]);
        } else {
            bridge_bus_reply_from_nats(b, batch[i]);
        }
        natsMsg_Destroy(batch[i]);
    }
    return left;
}

/* ---- libnats' callbacks (its threads) ------------------------------------ */

static void on_import(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
    struct bridge *b = arg;
    inq_push(&b->inq, m, BRIDGE_IN_IMPORT);
}

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
    struct bridge *b = arg;
    inq_push(&b->inq, m, BRIDGE_IN_REPLY);
}

static void on_disconnected(natsConnection *nc, void *arg)
{
    struct bridge *b = arg;
    atomic_store(&b->stats.nats_connected, false);
    if (atomic_load(&b->closing)) {
        return;
    }
    atomic_fetch_add(&b->stats.nats_disconnects, 1);
    bridge_log(b, BRIDGE_LOG_NORMAL,
               "NATS connection lost; reconnecting (messages are buffered "
               "up to --reconnect-buffer, then counted as dropped)");
}

static void on_reconnected(natsConnection *nc, void *arg)
{
    struct bridge *b = arg;
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    atomic_store(&b->stats.nats_connected, true);
    atomic_fetch_add(&b->stats.nats_reconnects, 1);
    bridge_log(b, BRIDGE_LOG_NORMAL, "NATS connection back, to %s", url);
}

static void on_connected(natsConnection *nc, void *arg)
{
    /* Only when the first connect failed and a retry succeeded. */
    struct bridge *b = arg;
    atomic_store(&b->stats.nats_connected, true);
    bridge_log(b, BRIDGE_LOG_NORMAL, "connected to NATS");
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *arg)
{
    struct bridge *b = arg;
    bridge_log(b, BRIDGE_LOG_VERBOSE, "NATS: %s", natsStatus_GetText(err));
}

/* ---- start and stop ------------------------------------------------------ */

int bridge_nats_start(struct bridge *b)
{
    if (inq_init(&b->inq, BRIDGE_QUEUE_DEFAULT) < 0) {
        return -ENOMEM;
    }
    natsInbox *inbox = NULL;
    natsStatus s = natsInbox_Create(&inbox);
    if (s != NATS_OK) {
        return -ENOMEM;
    }
    int n = snprintf(b->nats_inbox, sizeof(b->nats_inbox), "%s.", (const char *)inbox);
    /* The instance part of the id: the inbox's unique token. */
    const char *unique = strchr((const char *)inbox, '.');
    snprintf(b->id, sizeof(b->id), "%s/%s", b->opt.name,
             unique != NULL ? unique + 1 : (const char *)inbox);
    natsInbox_Destroy(inbox);
    if (n < 0 || (size_t)n >= sizeof(b->nats_inbox)) {
        return -ENAMETOOLONG;
    }
    b->nats_inbox_len = (size_t)n;

    s = natsOptions_Create(&b->nopts);
    if (s == NATS_OK) {
        s = natsOptions_SetServers(b->nopts, (const char **)b->opt.nats.items,
                                   (int)b->opt.nats.len);
    }
    if (s == NATS_OK) {
        /* The order given: the first server is the nearest. */
        s = natsOptions_SetNoRandomize(b->nopts, true);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetName(b->nopts, b->id);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetNoEcho(b->nopts, true);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetMaxReconnect(b->nopts, -1);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetReconnectWait(b->nopts, 100);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetReconnectJitter(b->nopts, 100, 1000);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetReconnectBufSize(b->nopts, (int)b->opt.reconnect_buffer);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetDisconnectedCB(b->nopts, on_disconnected, b);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetReconnectedCB(b->nopts, on_reconnected, b);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetErrorHandler(b->nopts, on_error, b);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetRetryOnFailedConnect(b->nopts, true, on_connected, b);
    }
    if (s == NATS_OK) {
        /* Generous pending limits: the bounded queue above is the real
         * backpressure; what libnats drops past these is counted. */
        s = natsOptions_SetMaxPendingMsgs(b->nopts, 1 << 20);
    }
    if (s != NATS_OK) {
        bridge_log(b, BRIDGE_LOG_QUIET, "cannot set up the NATS options: %s",
                   natsStatus_GetText(s));
        return -EINVAL;
    }
    s = natsConnection_Connect(&b->nc, b->nopts);
    if (s == NATS_OK) {
        atomic_store(&b->stats.nats_connected, true);
        bridge_log(b, BRIDGE_LOG_VERBOSE, "connected to NATS");
    } else if (s == NATS_NOT_YET_CONNECTED) {
        bridge_log(b, BRIDGE_LOG_NORMAL, "NATS (%s) not reachable yet; retrying in the background",
                   b->opt.nats.items[0]);
    } else {
        bridge_log(b, BRIDGE_LOG_QUIET, "cannot connect to NATS at %s: %s; check the URL",
                   b->opt.nats.items[0], natsStatus_GetText(s));
        return -ECONNREFUSED;
    }
    s = NATS_OK;

    b->import_subs = calloc(b->opt.imports.len + 1, sizeof(*b->import_subs));
    if (b->import_subs == NULL) {
        return -ENOMEM;
    }
    const char *subject = NULL; /* the one an error line names */
    for (size_t i = 0; i < b->opt.imports.len && s == NATS_OK; i++) {
        subject = b->opt.imports.items[i];
        s = natsConnection_Subscribe(&b->import_subs[i], b->nc, b->opt.imports.items[i], on_import,
                                     b);
        if (s == NATS_OK) {
            s = natsSubscription_SetPendingLimits(b->import_subs[i], 1 << 20, 256 << 20);
        }
    }
    char reply[160];
    if (s == NATS_OK) {
        snprintf(reply, sizeof(reply), "%s*", b->nats_inbox);
        subject = reply;
        s = natsConnection_Subscribe(&b->reply_sub, b->nc, reply, on_reply, b);
    }
    if (s != NATS_OK) {
        bridge_log(b, BRIDGE_LOG_QUIET,
                   "cannot subscribe to '%s' on NATS at %s: %s; check that the server lets "
                   "this user subscribe to it",
                   subject, b->opt.nats.items[0], natsStatus_GetText(s));
        return -EINVAL;
    }
    return 0;
}

void bridge_nats_stop(struct bridge *b)
{
    atomic_store(&b->closing, true);
    pthread_mutex_lock(&b->inq.mu);
    b->inq.stopping = true;
    pthread_cond_broadcast(&b->inq.room);
    pthread_mutex_unlock(&b->inq.mu);
    if (b->nc != NULL) {
        /* Push out what is buffered, briefly; then close. */
        natsConnection_FlushTimeout(b->nc, 1000);
    }
    if (b->import_subs != NULL) {
        for (size_t i = 0; i < b->opt.imports.len; i++) {
            natsSubscription_Destroy(b->import_subs[i]);
        }
        free(b->import_subs);
        b->import_subs = NULL;
    }
    natsSubscription_Destroy(b->reply_sub);
    b->reply_sub = NULL;
    for (size_t i = 0; i < b->nr.len; i++) {
        free(b->nr.to[(b->nr.head + i) % BRIDGE_NO_RESPONDERS_MAX]);
    }
    free(b->nr.to);
    free(b->nr.due_ms);
    b->nr.to = NULL;
    b->nr.due_ms = NULL;
    b->nr.len = 0;
    if (b->nc != NULL) {
        natsConnection_Close(b->nc);
        natsConnection_Destroy(b->nc);
        b->nc = NULL;
    }
    natsOptions_Destroy(b->nopts);
    b->nopts = NULL;
    /* libnats' threads may still be in a callback given `b` (a lost
     * connection reported late): the library is torn down, and its
     * threads have ended, before anything a callback touches is freed. */
    nats_CloseAndWait(2000);
    if (b->inq.msgs != NULL) {
        inq_deinit(&b->inq);
    }
}

uint64_t bridge_nats_dropped(struct bridge *b)
{
    uint64_t total = 0;
    for (size_t i = 0; b->import_subs != NULL && i < b->opt.imports.len; i++) {
        int64_t d = 0;
        if (b->import_subs[i] != NULL &&
            natsSubscription_GetDropped(b->import_subs[i], &d) == NATS_OK && d > 0) {
            total += (uint64_t)d;
        }
    }
    int64_t d = 0;
    if (b->reply_sub != NULL && natsSubscription_GetDropped(b->reply_sub, &d) == NATS_OK && d > 0) {
        total += (uint64_t)d;
    }
    return total;
}

/* ---- from the bus to NATS (main thread) ---------------------------------- */

static void publish(struct bridge *b, natsMsg *nm, uint64_t *ok, uint64_t *dropped)
{
    natsStatus s = natsConnection_PublishMsg(b->nc, nm);
    natsMsg_Destroy(nm);
    if (s == NATS_OK) {
        (*ok)++;
    } else {
        (*dropped)++;
        bridge_log(b, BRIDGE_LOG_VERBOSE, "dropped a message to NATS: %s", natsStatus_GetText(s));
    }
}

void bridge_nats_export(struct bridge *b, const sb_msg *m)
{
    char reply[160];
    const char *nreply = NULL;
    if (m->reply_len > 0) {
        char token[BRIDGE_TOKEN_LEN + 1];
        if (bridge_replies_put(&b->to_bus, m->reply, m->reply_len, token) < 0) {
            b->stats.dropped_export++;
            return;
        }
        snprintf(reply, sizeof(reply), "%s%s", b->nats_inbox, token);
        nreply = reply;
        b->stats.requests++;
    }
    natsMsg *nm;
    natsStatus s = bridge_map_to_nats(b, &nm, m->subject, nreply, m);
    if (s != NATS_OK) {
        b->stats.dropped_export++;
        return;
    }
    publish(b, nm, &b->stats.exported, &b->stats.dropped_export);
}

/* Nobody here: NATS' own way of saying so, an empty message with status
 * 503, which NATS requesters take as "no responders". */
static void no_responders_send(struct bridge *b, const char *to)
{
    natsMsg *nm = NULL;
    natsStatus s = natsMsg_Create(&nm, to, NULL, NULL, 0);
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(nm, BRIDGE_HDR_STATUS, "503");
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(nm, BRIDGE_HDR_ID, b->id);
    }
    if (s != NATS_OK) {
        natsMsg_Destroy(nm);
        b->stats.dropped_replies++;
        return;
    }
    publish(b, nm, &b->stats.no_responders, &b->stats.dropped_replies);
}

/*
 * A request imported from NATS found nobody on this bus. Others may still
 * answer it: a NATS responder, or another bridge's bus. The first answer
 * wins at the requester, so "no responders" is held back for
 * --no-responders-delay ms, and a real answer within that time comes
 * first (the requester then ignores the late "no responders"). With no
 * delay, or the holding queue full, it goes at once.
 */
static void no_responders_later(struct bridge *b, const char *to)
{
    int delay = b->opt.no_responders_delay_ms;
    if (delay <= 0 || b->nr.len == BRIDGE_NO_RESPONDERS_MAX) {
        no_responders_send(b, to);
        return;
    }
    if (b->nr.to == NULL) {
        b->nr.to = calloc(BRIDGE_NO_RESPONDERS_MAX, sizeof(*b->nr.to));
        b->nr.due_ms = calloc(BRIDGE_NO_RESPONDERS_MAX, sizeof(*b->nr.due_ms));
        if (b->nr.to == NULL || b->nr.due_ms == NULL) {
            no_responders_send(b, to);
            return;
        }
    }
    char *copy = strdup(to);
    if (copy == NULL) {
        no_responders_send(b, to);
        return;
    }
    size_t tail = (b->nr.head + b->nr.len) % BRIDGE_NO_RESPONDERS_MAX;
    b->nr.to[tail] = copy;
    b->nr.due_ms[tail] = bridge_now_ms() + delay;
    b->nr.len++;
}

int bridge_nats_no_responders_due(struct bridge *b, int64_t now_ms)
{
    while (b->nr.len > 0) {
        size_t h = b->nr.head;
        if (b->nr.due_ms[h] > now_ms) {
            return (int)(b->nr.due_ms[h] - now_ms);
        }
        no_responders_send(b, b->nr.to[h]);
        free(b->nr.to[h]);
        b->nr.to[h] = NULL;
        b->nr.head = (h + 1) % BRIDGE_NO_RESPONDERS_MAX;
        b->nr.len--;
    }
    return -1;
}

void bridge_nats_reply_from_bus(struct bridge *b, const sb_msg *m)
{
    const char *token;
    size_t token_len;
    const char *to = NULL;
    if (bridge_replies_token(m->subject, m->subject_len, b->inbox_prefix, b->inbox_prefix_len,
                             &token, &token_len) == 0) {
        to = bridge_replies_get(&b->to_nats, token, token_len);
    }
    if (to == NULL) {
        b->stats.dropped_replies++;
        bridge_log(b, BRIDGE_LOG_VERBOSE, "dropped a reply to an unknown or forgotten request");
        return;
    }
    if (m->flags & SB_MSG_NO_RESPONDERS) {
        no_responders_later(b, to);
        return;
    }
    natsMsg *nm = NULL;
    natsStatus s = bridge_map_to_nats(b, &nm, to, NULL, m);
    if (s != NATS_OK) {
        b->stats.dropped_replies++;
        return;
    }
    publish(b, nm, &b->stats.replies, &b->stats.dropped_replies);
}
