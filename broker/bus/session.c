/*
 * session.c - a client's life on the bus (see session.h).
 *
 * Until its HELLO a connection costs a descriptor and nothing else, and
 * counts against max_unwelcomed, not max_connections: idle sockets cannot
 * keep real clients out, and hello_timeout_ms ends them. The peers waiting
 * are a FIFO with one timer (deadline.h), so the timeout costs no scan.
 * Permissions are decided once, at accept: a PUB only walks that rule.
 *
 * The end comes in two steps, as net reports it. `ending` (a fatal ERR is
 * queued, conn_end()): the peer stops counting as a client of the routing
 * table and of $SYS.CLIENTS at once, although its last frames are still
 * being written. `closing` (conn_close()): a welcomed peer is announced
 * with $SYS.EVENT.DISCONNECT while its object still shows what it had (the
 * event is not queued to itself: it takes no more output). `closed`: the
 * handle is gone and the memory with it.
 */
#include "session.h"

#include "acl.h"
#include "bus.h"
#include "config.h"
#include "flow.h"
#include "interest.h"
#include "log.h"
#include "peer.h"
#include "proto.h"
#include "router.h"
#include "sys.h"
#include "textmode.h"

#include <errno.h>
#include <unistd.h>

static void session_hello_expired(struct deadline_link *wait, void *data)
{
    (void)data;
    struct peer *p = list_entry(wait, struct peer, wait);
    proto_fail(p, PROTO_E_HELLO_TIMEOUT, NULL, NULL); /* logged at -v, as every ERR */
}

/* A lossless subscriber stalled past lossless_stall_ms (flow.c). */
static void session_cut_slow(struct peer *p)
{
    proto_fail(p, PROTO_E_SLOW_CONSUMER, NULL, NULL);
}

int session_init(struct bus *b, struct net *net, const struct broker_config *cfg)
{
    int r = bus_init(b, net, cfg);
    deadline_list_init(&b->unwelcomed, net->loop, cfg->hello_timeout_ms, session_hello_expired,
                       NULL);
    flow_init(b, session_cut_slow);
    interest_init(b);
    b->sub_event = interest_sub_event;
    /* A sender may have the next frame's descriptors in flight before its
     * current frame is complete: twice what one frame may claim. */
    net->fdq_max = 2 * cfg->max_fds_per_msg;
    return r;
}

void session_close(struct bus *b)
{
    deadline_list_close(&b->unwelcomed);
    flow_close(b);
    interest_close(b);
}

void session_deinit(struct bus *b)
{
    bus_deinit(b);
}

void session_accept(void *bus, int fd, const struct transport_ops *transport)
{
    struct bus *b = bus;
    struct peer *p;
    int r = peer_new(b, b->net, transport, &p);
    if (r < 0) {
        log_error("cannot accept a connection: %s",
                  r == -ENOMEM ? "out of memory" : uv_strerror(r));
        close(fd);
        return;
    }
    struct conn *c = &p->conn;
    r = conn_open(c, fd);
    if (r < 0) {
        log_error("cannot accept a connection: %s", uv_strerror(r));
        close(fd); /* not the handle's: it did not take it */
        conn_close(c);
        return;
    }
    struct acl_peer who = {
        .tcp = transport->acl_tcp,
        .has_cred = c->has_cred,
        .uid = c->cred.uid,
        .gid = c->cred.gid,
    };
    p->acl_rule = acl_find_for_socket(b->cfg->acl, fd, &who);
    if (b->unwelcomed.len >= b->cfg->max_unwelcomed) {
        proto_fail(p, PROTO_E_MAX_UNWELCOMED, NULL, NULL);
        return;
    }
    deadline_list_add(&b->unwelcomed, &p->wait);
    if (log_level >= LOG_VERBOSE) {
        /* Before HELLO: it has no name yet. */
        char peer[TRANSPORT_DESCRIBE_MAX];
        conn_describe(c, peer, sizeof(peer));
        log_verbose("client %llu accepted: %s; waiting for HELLO (%u waiting)",
                    (unsigned long long)c->id, peer, b->unwelcomed.len);
    }
    conn_read_start(c);
}

static void session_ending(struct conn *c)
{
    struct peer *p = peer_of(c);
    /* No longer waiting for a HELLO: its slot among max_unwelcomed is free,
     * and the drain deadline replaces the HELLO deadline. */
    deadline_list_remove(&p->wait);
    sys_unlist(p->bus, p);
    router_remove_peer(p->bus, p);
    flow_forget(p->bus, p);
}

static void session_closing(struct conn *c)
{
    struct peer *p = peer_of(c);
    struct bus *b = p->bus;
    deadline_list_remove(&p->wait);
    sys_unlist(b, p);
    if (p->hello_done) {
        b->nclients--;
        sys_event(b, p, false);
    }
    router_remove_peer(b, p);
    flow_forget(b, p);
    if (p->hello_done && log_level >= LOG_VERBOSE) {
        char peer[TRANSPORT_DESCRIBE_MAX];
        conn_describe(c, peer, sizeof(peer));
        log_verbose("client %llu disconnected: %s", (unsigned long long)c->id, peer);
    }
}

static void session_closed(struct conn *c)
{
    peer_free(peer_of(c));
}

const struct conn_ops session_conn_ops = {
    .frame = proto_frame,
    .frames_done = proto_frames_done,
    .ending = session_ending,
    .closing = session_closing,
    .closed = session_closed,
    .drained = flow_drained,
    .text_begin = text_begin,
    .text_line = text_line,
};
