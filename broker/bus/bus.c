/*
 * bus.c - setting up and tearing down the bus's data (see bus.h).
 *
 * Only what is shared: the trie and its result vector, the retained store,
 * the scratch buffer and the $SYS.CLIENTS array. Giving memory back lives
 * here too: freed trie nodes and values are small chunks spread through
 * the heap, which free() alone does not return to the system.
 */
#include "bus.h"

#include "config.h"
#include "conn.h"
#include "mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bus_init(struct bus *b, struct net *net, const struct broker_config *cfg)
{
    memset(b, 0, sizeof(*b));
    b->cfg = cfg;
    b->net = net;
    b->start_ms = uv_now(net->loop);
    retain_init(&b->retained);
    return subtrie_new(&b->subs);
}

void bus_deinit(struct bus *b)
{
    retain_deinit(&b->retained);
    free(b->scratch);
    free(b->events);
    b->events = NULL;
    b->scratch = NULL;
    subtrie_result_deinit(&b->match);
    subtrie_free(b->subs);
    b->subs = NULL;
    free(b->listed);
    b->listed = NULL;
}

void bus_give_back(struct bus *b)
{
    /* After a client dropped many subscriptions or values, the allocator
     * holds their pages as free chunks scattered through the heap. Once a
     * lot was freed, hand the free pages back: a walk of the free lists,
     * at most once per call. */
    if (b->freed_bytes + b->retained.freed >= BUS_GIVE_BACK_MIN) {
        mem_give_back();
        b->freed_bytes = 0;
        b->retained.freed = 0;
    }
}
