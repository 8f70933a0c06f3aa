/*
 * deadline.h - a FIFO of objects that share one timeout, watched by one
 * timer.
 *
 * Connections waiting for their HELLO all get the same hello_timeout_ms,
 * and closing connections all get the same CONN_DRAIN_MS; each kind is
 * added in the order it started waiting, so the oldest (the head) always
 * has the earliest deadline. One uv_timer, armed for the head's deadline,
 * is then enough, however many wait: no scan over everyone, adding and
 * removing (from anywhere in the list, when a HELLO arrives or a
 * connection closes) cost O(1). The list links objects through a
 * `struct deadline_link` embedded in them, itself a list.h link.
 */
#ifndef SOCKBUS_DEADLINE_H
#define SOCKBUS_DEADLINE_H

#include "list.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct deadline_list;

/* Embedded in whatever waits; all zero: on no list. */
struct deadline_link {
    struct list_link link;      /* valid while `list` is set */
    struct deadline_list *list; /* the list it is on; NULL if none */
    uint64_t since;             /* loop time when it was added */
};

/* Called for a link whose time is up, after it was taken off the list. It
 * may add the link to another list, or close its object. */
typedef void deadline_expired_cb(struct deadline_link *link, void *data);

struct deadline_list {
    uv_timer_t timer;
    struct list_link members; /* oldest first: the first to expire */
    uint32_t len;
    uint64_t timeout_ms;
    deadline_expired_cb *expired;
    void *data;
};

/* Set up an empty list on `loop` whose members expire `timeout_ms` after
 * they were added, each by a call to `expired(link, data)`. Does not
 * allocate. */
void deadline_list_init(struct deadline_list *l, uv_loop_t *loop, uint64_t timeout_ms,
                        deadline_expired_cb *expired, void *data);

/* Close the timer (asynchronously, as uv_close() does). The list must be
 * empty: its members are not told. */
void deadline_list_close(struct deadline_list *l);

/* Append `k` (on no list) with the loop's current time. */
void deadline_list_add(struct deadline_list *l, struct deadline_link *k);

/* Take `k` off its list; harmless if it is on none. */
void deadline_list_remove(struct deadline_link *k);

static inline bool deadline_linked(const struct deadline_link *k)
{
    return k->list != NULL;
}

#endif /* SOCKBUS_DEADLINE_H */
