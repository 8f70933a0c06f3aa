/*
 * broker.c - wiring the layers to one loop: start in order, stop in order.
 *
 * Start: the hash keys (before any keyed table exists), the connections
 * (net_init(), with the bus's ops), the bus (session_init()), the trim
 * timer, then the listeners: the Unix socket file (listener.c) and, when
 * asked, TCP, each watched by an acceptor (acceptor.c: not uv_listen(),
 * whose EMFILE handling is silent) that hands new sockets to the bus
 * (session_accept()). libuv never binds the socket file, so it never
 * unlinks it: the broker alone decides when it is removed.
 *
 * Stop: close the acceptors, end every connection (net_close(): ERR 9,
 * one attempt to write it); once the last is closed, net closes its
 * handles and the broker its own, and uv_run() returns.
 */
#include "broker.h"

#include "acl.h"
#include "hash.h"
#include "listener_tcp.h"
#include "log.h"
#include "notify.h"
#include "reload.h"
#include "session.h"
#include "transport.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int broker_listen_unix(struct broker *b, struct activation *act, char *err, size_t err_len)
{
    int fd;
    int r;
    const char *name = b->cfg.socket_path;
    if (act != NULL && act->active) {
        /* Inherited: no lock, no file of ours (unix_listener stays
         * closed, so its close removes nothing). Logs and $SYS name the
         * path the socket is bound to. */
        fd = act->unix_fd;
        act->unix_fd = -1;
        name = act->unix_path[0] != '\0' ? act->unix_path : "an inherited socket";
    } else {
        r = listener_unix_open(&b->unix_listener, b->cfg.socket_path, b->cfg.mode,
                               b->cfg.group[0] ? b->cfg.group : NULL, err, err_len);
        if (r < 0) {
            return r;
        }
        /* The acceptor owns the fd from here on, also on failure; the
         * listener keeps the lock and the file identity for its close. */
        fd = b->unix_listener.fd;
        listener_unix_forget_fd(&b->unix_listener);
    }
    net_listening_on(&b->net, fd);
    r = acceptor_start(&b->unix_acceptor, b->loop, fd, &transport_unix, name, session_accept,
                       &b->bus, &b->net.nconns);
    if (r < 0) {
        snprintf(err, err_len, "cannot listen on %s: %s", name, uv_strerror(r));
        return r;
    }
    return 0;
}

static int broker_listen_tcp(struct broker *b, struct activation *act, char *err, size_t err_len)
{
    int fd;
    int r;
    char name[sizeof(b->cfg.tcp) + 8];
    if (act != NULL && act->tcp_fd >= 0) {
        fd = act->tcp_fd;
        act->tcp_fd = -1;
        b->tcp_port = act->tcp_port;
        snprintf(name, sizeof(name), "tcp port %u", b->tcp_port);
    } else {
        r = listener_tcp_open(b->cfg.tcp, &fd, &b->tcp_port, err, err_len);
        if (r < 0) {
            return r;
        }
        snprintf(name, sizeof(name), "tcp %s", b->cfg.tcp);
    }
    net_listening_on(&b->net, fd);
    r = acceptor_start(&b->tcp_acceptor, b->loop, fd, &transport_tcp, name, session_accept, &b->bus,
                       &b->net.nconns);
    if (r < 0) {
        snprintf(err, err_len, "cannot listen on tcp %s: %s", b->cfg.tcp, uv_strerror(r));
        return r;
    }
    return 0;
}

/* STATUS= for the service manager, when the client count changed since
 * the last one: at most once per trim tick, so that clients coming and
 * going cost no message each. */
static void broker_notify_status(struct broker *b, bool force)
{
    uint32_t n = b->bus.nclients;
    if (!force && n == b->status_clients) {
        return;
    }
    b->status_clients = n;
    notify_sendf("STATUS=%" PRIu32 " client%s", n, n == 1 ? "" : "s");
}

static void on_trim_timer(uv_timer_t *h)
{
    struct broker *b = h->data;
    net_trim(&b->net);
    bus_give_back(&b->bus);
    broker_notify_status(b, false);
}

void broker_ready(struct broker *b)
{
    notify_send("READY=1");
    broker_notify_status(b, true);
}

int broker_init(struct broker *b, uv_loop_t *loop, const struct broker_config *cfg,
                struct activation *act, char *err, size_t err_len)
{
    memset(b, 0, sizeof(*b));
    b->loop = loop;
    b->cfg = *cfg;
    config_finish(&b->cfg);
    b->unix_listener.fd = -1;
    b->unix_listener.lock_fd = -1;

    if (b->cfg.max_pending < b->cfg.max_frame) {
        snprintf(err, err_len,
                 "max_pending (%llu) is smaller than max_frame (%u): a message of max_frame "
                 "could never be delivered; raise --max-pending or lower --max-frame",
                 (unsigned long long)b->cfg.max_pending, b->cfg.max_frame);
        return -EINVAL;
    }
    /* Before any table exists: every keyed table of the broker hashes with
     * keys from this seed (hash.h). */
    int r = hash_seed_random();
    if (r < 0) {
        snprintf(err, err_len, "cannot read random bytes for the hash keys: %s", strerror(-r));
        return r;
    }
    net_init(&b->net, loop, &session_conn_ops, b->cfg.max_frame);
    b->net.unix_send_buffer = b->cfg.unix_send_buffer;
    uv_timer_init(loop, &b->trim_timer);
    b->trim_timer.data = b;
    r = session_init(&b->bus, &b->net, &b->cfg);
    if (r < 0) {
        snprintf(err, err_len, "cannot start: out of memory");
    } else {
        uv_timer_start(&b->trim_timer, on_trim_timer, BROKER_TRIM_MS, BROKER_TRIM_MS);
        if (act == NULL || !act->active || act->unix_fd >= 0) {
            r = broker_listen_unix(b, act, err, err_len);
        }
    }
    if (r == 0 && (b->cfg.tcp[0] != '\0' || (act != NULL && act->tcp_fd >= 0))) {
        r = broker_listen_tcp(b, act, err, err_len);
    }
    if (r < 0) {
        broker_stop(b);
        uv_run(loop, UV_RUN_DEFAULT); /* let the close callbacks run */
        broker_deinit(b);
        return r;
    }
    return 0;
}

/* A setting that takes a restart: report a change, keep the value in use. */
static void keep_restart_only(const char *key, char *next, const char *cur, size_t len)
{
    if (strcmp(next, cur) != 0) {
        log_error("reload: \"%s\" changed from \"%s\" to \"%s\"; it takes a restart, ignored", key,
                  cur, next);
        snprintf(next, len, "%s", cur);
    }
}

int64_t broker_reload(struct broker *b, struct broker_config *next)
{
    keep_restart_only("socket", next->socket_path, b->cfg.socket_path, sizeof(next->socket_path));
    keep_restart_only("tcp", next->tcp, b->cfg.tcp, sizeof(next->tcp));
    keep_restart_only("group", next->group, b->cfg.group, sizeof(next->group));
    if (next->mode != b->cfg.mode) {
        log_error("reload: \"mode\" changed from %04o to %04o; it takes a restart, ignored",
                  b->cfg.mode, next->mode);
        next->mode = b->cfg.mode;
    }
    if (next->max_frame != b->cfg.max_frame) {
        log_error("reload: \"max_frame\" changed from %u to %u; it takes a restart, ignored",
                  b->cfg.max_frame, next->max_frame);
        next->max_frame = b->cfg.max_frame;
    }
    if (next->max_pending < next->max_frame) {
        log_error("reload: max_pending (%llu) is smaller than max_frame (%u); keeping %llu",
                  (unsigned long long)next->max_pending, next->max_frame,
                  (unsigned long long)b->cfg.max_pending);
        next->max_pending = b->cfg.max_pending;
    }
    struct acl *old = b->cfg.acl;
    b->cfg = *next;
    b->net.unix_send_buffer = b->cfg.unix_send_buffer; /* for connections from now on */
    /* Every connection is pointed at its rule in the new ACL before the
     * old one is freed (reload.c). */
    int64_t ended = reload_apply(&b->bus);
    if (old != b->cfg.acl) {
        acl_free(old);
    }
    return ended;
}

/* Every connection is closed: close the rest, so that uv_run() returns. */
static void on_net_closed(struct net *n)
{
    struct broker *b = (struct broker *)(void *)((char *)n - offsetof(struct broker, net));
    session_close(&b->bus);
    uv_close((uv_handle_t *)&b->trim_timer, NULL);
}

void broker_stop(struct broker *b)
{
    if (b->stopping) {
        return;
    }
    b->stopping = true;
    notify_send("STOPPING=1");
    acceptor_close(&b->unix_acceptor);
    acceptor_close(&b->tcp_acceptor);
    net_close(&b->net, on_net_closed);
}

void broker_deinit(struct broker *b)
{
    listener_unix_close(&b->unix_listener);
    session_deinit(&b->bus);
    net_deinit(&b->net);
}
