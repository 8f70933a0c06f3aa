/*
 * peer.c - a peer's memory (see peer.h): allocated zeroed, its sid map
 * empty until its first SUB, its name copied at HELLO.
 */
#include "peer.h"

#include <errno.h>
#include <stdlib.h>

_Static_assert(offsetof(struct peer, conn) == 0, "peer_of() needs the conn first");

int peer_new(struct bus *bus, struct net *net, const struct transport_ops *transport,
             struct peer **out)
{
    struct peer *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return -ENOMEM;
    }
    p->bus = bus;
    sidmap_init(&p->subs);
    list_init(&p->waiting);
    list_init(&p->waiters);
    int r = conn_init(&p->conn, net, transport);
    if (r < 0) {
        free(p);
        return r;
    }
    *out = p;
    return 0;
}

void peer_free(struct peer *p)
{
    if (p == NULL) {
        return;
    }
    sidmap_deinit(&p->subs);
    free(p->name);
    free(p);
}
