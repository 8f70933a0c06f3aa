/*
 * reload.c - a reloaded configuration, applied to the clients already
 * connected (reload.h).
 *
 * A connection keeps a pointer to its ACL rule, resolved at accept, so
 * that a check costs no lookup. A reload builds a whole new ACL beside the
 * old one; this walk then points every connection at its rule in the new
 * one, all in one go between two frames (the broker has one thread), and
 * only then may the caller free the old ACL: no connection is ever judged
 * by a rule that is gone, or by a mix of old and new rules. The walk is
 * O(connections + subscriptions), once per reload, which an administrator
 * asks for; nothing on a client's path pays for it.
 *
 * A subscription the new rule denies is ended like an UNSUB, and the
 * client is told with ERR 4 (non-fatal), naming the pattern and its sid.
 */
#include "reload.h"

#include "acl.h"
#include "bus.h"
#include "config.h"
#include "conn.h"
#include "flow.h"
#include "frame.h"
#include "list.h"
#include "peer.h"
#include "proto.h"
#include "router.h"
#include "sidmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* End the subscriptions of `p` that its rule no longer allows. Returns how
 * many, or -ENOMEM. */
static int64_t reload_subs(struct bus *b, struct peer *p)
{
    if (p->subs.len == 0) {
        return 0;
    }
    /* Collected first: ending one changes the map being walked. */
    struct sub **denied = malloc(p->subs.len * sizeof(*denied));
    if (denied == NULL) {
        return -ENOMEM;
    }
    size_t n = 0;
    uint32_t sid;
    void *v;
    for (size_t i = 0; sidmap_next(&p->subs, &i, &sid, &v);) {
        struct sub *s = v;
        if (!acl_may_subscribe(p->acl_rule, p->conn.id, sub_pattern(s), s->pattern_len)) {
            denied[n++] = s;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct sub *s = denied[i];
        /* The ERR names the pattern (as the SUB's did), and the text the
         * sid: it is told before the subscription's memory goes. */
        struct frame f = {
            .op = FRAME_OP_SUB,
            .sid = s->sid,
            .subject = (const uint8_t *)sub_pattern(s),
            .subject_len = s->pattern_len,
        };
        proto_fail(p, PROTO_E_SUB_REVOKED, &f, NULL);
        router_unsubscribe(b, p, s->sid, 0);
    }
    free(denied);
    return (int64_t)n;
}

int64_t reload_apply(struct bus *b)
{
    const struct broker_config *cfg = b->cfg;
    b->unwelcomed.timeout_ms = cfg->hello_timeout_ms;
    flow_apply(b);

    int64_t ended = 0;
    bool failed = false;
    struct list_link *next;
    for (struct list_link *l = b->net->conns.next; l != &b->net->conns; l = next) {
        next = l->next; /* conn_close() below may unlink l */
        struct conn *c = list_entry(l, struct conn, all);
        if (c->closing) {
            continue;
        }
        struct peer *p = peer_of(c);
        struct acl_peer who = {
            .tcp = c->transport->acl_tcp,
            .has_cred = c->has_cred,
            .uid = c->cred.uid,
            .gid = c->cred.gid,
        };
        p->acl_rule = acl_find_for_socket(cfg->acl, conn_fd(c), &who);
        if (cfg->acl == NULL || c->draining) {
            continue;
        }
        int64_t n = reload_subs(b, p);
        if (n < 0) {
            failed = true;
            conn_close(c);
            continue;
        }
        ended += n;
    }
    return failed ? -ENOMEM : ended;
}
