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
 * The connection runs in the main loop, through libnats' event-loop
 * interface: the main thread polls its socket with the bus's, reads and
 * parses what came (natsConnection_ProcessReadEvent()), takes the
 * messages from synchronous subscriptions and publishes them on the bus
 * in batches, and writes what it published to NATS in one go when the
 * socket is writable (send-at-once, so no flusher thread waits a
 * millisecond first). No exported or imported message crosses a thread:
 * no wakeup, no lock handed back and forth per message; libnats keeps its
 * reconnect and timer threads, and the delivery thread of the reply
 * subscription (replies come through a bounded queue, see below). What
 * arrives faster than the bus takes waits in the
 * subscriptions' pending lists, within limits of
 * 1,048,576 messages and 256 MiB each; what libnats drops past those is
 * counted (natsSubscription_GetDropped(), dropped_nats_slow). When more
 * than BRIDGE_NATS_OUT_MAX bytes wait to go to NATS, the loop stops
 * reading the bus until they are written, so a slow NATS link holds the
 * local publishers back (the export subscriptions are lossless).
 */
#include "bridge.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* ---- libnats' socket in the main loop ------------------------------------ */

/*
 * libnats' event-loop interface (natsOptions_SetEventLoop): it tells the
 * loop which socket to watch, and whether for reading or writing; the
 * loop calls natsConnection_ProcessReadEvent() and ProcessWriteEvent().
 * The callbacks run on the main thread (a publish asking to be written)
 * or on libnats' reconnect thread (a new socket): the state is behind a
 * mutex, and a change made off the main thread wakes its poll().
 */
static void wake_main(struct bridge *b)
{
    uint64_t one = 1;
    ssize_t w = write(b->ev.wake, &one, sizeof(one));
    (void)w; /* EAGAIN only when the counter is full: it is readable then */
}

static void ev_changed(struct bridge *b)
{
    if (!pthread_equal(pthread_self(), b->main_thread)) {
        wake_main(b);
    }
}

static natsStatus ev_attach(void **user, void *loop, natsConnection *nc, natsSock fd)
{
    struct bridge *b = loop;
    pthread_mutex_lock(&b->ev.mu);
    b->ev.fd = (int)fd;
    b->ev.read = true;
    b->ev.write = false;
    pthread_mutex_unlock(&b->ev.mu);
    *user = b;
    ev_changed(b);
    return NATS_OK;
}

static natsStatus ev_set(struct bridge *b, bool *what, bool on)
{
    pthread_mutex_lock(&b->ev.mu);
    bool changed = *what != on;
    *what = on;
    pthread_mutex_unlock(&b->ev.mu);
    if (changed) {
        ev_changed(b);
    }
    return NATS_OK;
}

static natsStatus ev_read(void *user, bool add)
{
    struct bridge *b = user;
    return ev_set(b, &b->ev.read, add);
}

static natsStatus ev_write(void *user, bool add)
{
    struct bridge *b = user;
    return ev_set(b, &b->ev.write, add);
}

static natsStatus ev_detach(void *user)
{
    struct bridge *b = user;
    pthread_mutex_lock(&b->ev.mu);
    b->ev.fd = -1;
    b->ev.read = b->ev.write = false;
    pthread_mutex_unlock(&b->ev.mu);
    ev_changed(b);
    return NATS_OK;
}

static int ev_init(struct bridge_ev *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->fd = -1;
    ev->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ev->wake < 0) {
        return -errno;
    }
    pthread_mutex_init(&ev->mu, NULL);
    return 0;
}

static void ev_deinit(struct bridge_ev *ev)
{
    if (ev->wake > 0) {
        close(ev->wake);
        pthread_mutex_destroy(&ev->mu);
    }
    memset(ev, 0, sizeof(*ev));
    ev->fd = -1;
}

void bridge_nats_pollfd(struct bridge *b, struct pollfd *p)
{
    pthread_mutex_lock(&b->ev.mu);
    p->fd = b->ev.fd;
    p->events = (short)((b->ev.read ? POLLIN : 0) | (b->ev.write ? POLLOUT : 0));
    pthread_mutex_unlock(&b->ev.mu);
    if (p->events == 0) {
        p->fd = -1;
    }
    p->revents = 0;
}

void bridge_nats_events(struct bridge *b, short revents)
{
    if (b->nc == NULL) {
        return;
    }
    /* An error or a hang-up is seen by reading: libnats then reconnects. */
    if (revents & (POLLIN | POLLERR | POLLHUP)) {
        natsConnection_ProcessReadEvent(b->nc);
    }
    if (revents & POLLOUT) {
        natsConnection_ProcessWriteEvent(b->nc);
    }
}

int bridge_nats_wake_fd(const struct bridge *b)
{
    return b->ev.wake;
}

void bridge_nats_woken(struct bridge *b)
{
    uint64_t count;
    ssize_t r = read(b->ev.wake, &count, sizeof(count));
    (void)r; /* EAGAIN: nothing to clear */
}

bool bridge_nats_out_full(struct bridge *b)
{
    /* Only while connected: away, libnats buffers in its reconnect buffer
     * and refuses (counted) past --reconnect-buffer. */
    return b->nc != NULL && atomic_load(&b->stats.nats_connected) &&
           natsConnection_Buffered(b->nc) > BRIDGE_NATS_OUT_MAX;
}

/* ---- replies: from libnats' delivery thread to the main thread ---------- */

/*
 * The reply subscription stays asynchronous: a synchronous one hands a
 * "no responders" status to its reader as an error, without the message,
 * and so without the subject that names the request. Replies are few
 * next to the messages of the import subscriptions, which are read
 * synchronously by the main loop.
 */
static int inq_init(struct bridge_inq *q, size_t cap)
{
    memset(q, 0, sizeof(*q));
    q->msgs = calloc(cap, sizeof(*q->msgs));
    if (q->msgs == NULL) {
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
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->room);
    memset(q, 0, sizeof(*q));
}

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
    struct bridge *b = arg;
    struct bridge_inq *q = &b->replies_in;
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
    q->msgs[(q->head + q->len) % q->cap] = m;
    bool wake = q->len++ == 0;
    pthread_mutex_unlock(&q->mu);
    if (wake) {
        wake_main(b);
    }
}

/* Up to `max` replies from the queue, handed over; returns true when
 * some may be left. */
static bool drain_replies(struct bridge *b, size_t max)
{
    struct bridge_inq *q = &b->replies_in;
    natsMsg *batch[256];
    if (max > sizeof(batch) / sizeof(batch[0])) {
        max = sizeof(batch) / sizeof(batch[0]);
    }
    pthread_mutex_lock(&q->mu);
    size_t n = q->len < max ? q->len : max;
    for (size_t i = 0; i < n; i++) {
        batch[i] = q->msgs[q->head];
        q->head = (q->head + 1) % q->cap;
    }
    q->len -= n;
    if (n > 0) {
        pthread_cond_broadcast(&q->room);
    }
    pthread_mutex_unlock(&q->mu);
    for (size_t i = 0; i < n; i++) {
        bridge_bus_reply_from_nats(b, batch[i]);
        natsMsg_Destroy(batch[i]);
    }
    return n == max;
}

/* ---- imports: read by the main loop --------------------------------------- */

/* Up to `max` messages of `sub`, handed over; returns how many. */
static size_t drain_sub(struct bridge *b, natsSubscription *sub, size_t max)
{
    size_t n = 0;
    while (n < max) {
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, sub, 0);
        if (s == NATS_SLOW_CONSUMER) {
            continue; /* said once; the drops are in GetDropped() */
        }
        if (s != NATS_OK) {
            break;
        }
        bridge_bus_import(b, m);
        natsMsg_Destroy(m);
        n++;
    }
    return n;
}

bool bridge_nats_drain(struct bridge *b, size_t max)
{
    if (b->import_subs == NULL) {
        return false;
    }
    /* Replies first: someone waits for each. Then every import pattern in
     * turn, a share each, so that one busy pattern does not hold back the
     * others. */
    bool more = drain_replies(b, max);
    size_t share = b->opt.imports.len > 0 ? max / b->opt.imports.len + 1 : 0;
    for (size_t i = 0; i < b->opt.imports.len; i++) {
        if (b->import_subs[i] != NULL && drain_sub(b, b->import_subs[i], share) == share) {
            more = true;
        }
    }
    return more;
}

/* ---- libnats' callbacks (its threads) ------------------------------------ */

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
    b->main_thread = pthread_self();
    int r = ev_init(&b->ev);
    if (r == 0) {
        r = inq_init(&b->replies_in, BRIDGE_REPLY_QUEUE);
    }
    if (r < 0) {
        bridge_log(b, BRIDGE_LOG_QUIET,
                   "cannot set up the wakeup eventfd or the queue of replies from NATS: %s; "
                   "check the limits on open files and memory (ulimit -n, ulimit -v)",
                   strerror(-r));
        return r;
    }
    natsInbox *inbox = NULL;
    natsStatus s = natsInbox_Create(&inbox);
    if (s != NATS_OK) {
        bridge_log(b, BRIDGE_LOG_QUIET, "cannot make the NATS inbox for replies: %s",
                   natsStatus_GetText(s));
        return -ENOMEM;
    }
    int n = snprintf(b->nats_inbox, sizeof(b->nats_inbox), "%s.", (const char *)inbox);
    /* The instance part of the id: the inbox's unique token. */
    const char *unique = strchr((const char *)inbox, '.');
    snprintf(b->id, sizeof(b->id), "%s/%s", b->opt.name,
             unique != NULL ? unique + 1 : (const char *)inbox);
    natsInbox_Destroy(inbox);
    if (n < 0 || (size_t)n >= sizeof(b->nats_inbox)) {
        bridge_log(b, BRIDGE_LOG_QUIET, "the NATS inbox '%s' is longer than %zu bytes",
                   b->nats_inbox, sizeof(b->nats_inbox) - 1);
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
        /* Generous pending limits: what libnats drops past these is
         * counted. */
        s = natsOptions_SetMaxPendingMsgs(b->nopts, 1 << 20);
    }
    if (s == NATS_OK) {
        /* No reader, flusher or delivery thread: the main loop polls the
         * socket (see the top of this file). */
        s = natsOptions_SetEventLoop(b->nopts, b, ev_attach, ev_read, ev_write, ev_detach);
    }
    if (s == NATS_OK) {
        /* A publish asks the loop to write at once, instead of waking
         * libnats' flusher thread a millisecond later: the loop writes
         * everything buffered in one go once it has handled a batch. */
        s = natsOptions_SetSendAsap(b->nopts, true);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetIOBufSize(b->nopts, BRIDGE_NATS_IOBUF);
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
        bridge_log(b, BRIDGE_LOG_QUIET, "cannot allocate the %zu import subscription(s): %s",
                   b->opt.imports.len, strerror(ENOMEM));
        return -ENOMEM;
    }
    const char *subject = NULL; /* the one an error line names */
    for (size_t i = 0; i < b->opt.imports.len && s == NATS_OK; i++) {
        subject = b->opt.imports.items[i];
        s = natsConnection_SubscribeSync(&b->import_subs[i], b->nc, b->opt.imports.items[i]);
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

/* Write what libnats holds for NATS, for at most `ms`: the loop has
 * stopped, so this polls the socket itself. */
static void flush_out(struct bridge *b, int ms)
{
    int64_t deadline = bridge_now_ms() + ms;
    for (;;) {
        struct pollfd p;
        bridge_nats_pollfd(b, &p);
        int64_t left = deadline - bridge_now_ms();
        if (p.fd < 0 || !(p.events & POLLOUT) || left <= 0) {
            return;
        }
        p.events = POLLOUT;
        if (poll(&p, 1, (int)left) > 0) {
            natsConnection_ProcessWriteEvent(b->nc);
        }
    }
}

void bridge_nats_stop(struct bridge *b)
{
    atomic_store(&b->closing, true);
    if (b->replies_in.msgs != NULL) {
        pthread_mutex_lock(&b->replies_in.mu);
        b->replies_in.stopping = true;
        pthread_cond_broadcast(&b->replies_in.room);
        pthread_mutex_unlock(&b->replies_in.mu);
    }
    if (b->nc != NULL) {
        /* The "no responders" answers still held back go now: waiting
         * for a real answer ends here, and the requesters learn at once
         * that none will come from this bus. Then push out what is
         * buffered, briefly, and close. */
        bridge_nats_no_responders_due(b, INT64_MAX);
        flush_out(b, 1000);
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
    for (size_t i = 0; b->nr.to != NULL && i < BRIDGE_NO_RESPONDERS_MAX; i++) {
        free(b->nr.to[i]);
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
    inq_deinit(&b->replies_in);
    ev_deinit(&b->ev);
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
            bridge_log(b, BRIDGE_LOG_VERBOSE,
                       "dropped a bus request on '%.*s': no memory to remember its reply subject",
                       (int)m->subject_len, m->subject);
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
    /* The slot keeps its buffer once sent, and takes the next subject in
     * it when it is large enough: no allocation per request held, as
     * reply subjects of one kind have similar lengths (bridge_replies.c
     * does the same). */
    size_t tail = (b->nr.head + b->nr.len) % BRIDGE_NO_RESPONDERS_MAX;
    size_t len = strlen(to);
    char *s = b->nr.to[tail];
    if (s == NULL || strlen(s) < len) {
        char *grown = realloc(s, len + 1);
        if (grown == NULL) {
            no_responders_send(b, to);
            return;
        }
        s = grown;
        b->nr.to[tail] = s;
    }
    memcpy(s, to, len + 1);
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
        bridge_log(b, BRIDGE_LOG_VERBOSE,
                   "dropped a reply on '%.*s' from the bus: its request is unknown or "
                   "forgotten (try a larger --max-requests if requests are answered late)",
                   (int)m->subject_len, m->subject);
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
