/*
 * schedule.h - the per-iteration schedule of the connections: who writes at
 * the end of this loop iteration, who resumes in the next, and how much
 * work one connection may cause in one iteration.
 *
 * Writes are batched: a connection that has output is put on the dirty
 * list (once, however many messages it got), and the list is flushed from
 * one uv_check_t, which libuv runs right after the I/O of an iteration:
 * every frame read in that iteration has been routed by then, so each
 * connection gets at most one write per iteration.
 *
 * Work is sliced: a connection may cause SCHEDULE_SLICE bytes of work per
 * iteration (its frames handled plus the output they queue, counted in
 * `work`). A connection past its slice leaves its remaining frames in its
 * input buffer and goes on the ready list, which is resumed in the next
 * iteration, after everyone who sent something new has had a turn: one
 * client's expensive requests ($SYS answers, big fan-outs) cannot hold the
 * loop. A uv_idle_t keeps the loop from blocking while anyone is ready.
 *
 * The lists link `struct list_link`s embedded in the connections; the
 * schedule calls back its owner (conn.c) with those links, so it needs to
 * know nothing else of a connection.
 */
#ifndef SOCKBUS_SCHEDULE_H
#define SOCKBUS_SCHEDULE_H

#include "list.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/*
 * The work one connection may cause in one loop iteration before the
 * others get their turn: bytes of its frames handled plus bytes those
 * frames queued as output (a $SYS answer, a fan-out). Past it, the rest of
 * what it sent waits in its input buffer for the next iteration, and the
 * broker stops reading from it meanwhile, so a client that sends many
 * expensive requests delays others by about one slice, not by all of its
 * requests. 1 MiB lets a whole 64 KiB read of small messages fan out to
 * about 12 subscribers unsplit: at 256 KiB, fanout 1->4 of 128 B (260 KiB
 * of output per read) split every read and lost about 7% in `sockbus bench
 * fanout -T unix`.
 */
#define SCHEDULE_SLICE (1024u * 1024u)

/* Called for each link taken off a list: write its output, or handle the
 * input it holds. */
typedef void schedule_link_cb(struct list_link *link);

struct schedule {
    /* Output to write at the end of this iteration. */
    struct list_link dirty;
    uv_check_t flush_check;
    /* Input held for the next iteration, and the idle handle that keeps
     * the loop from blocking while any wait. */
    struct list_link ready;
    uv_idle_t ready_idle;
    /* Loop iterations so far (counted by the flush), and bytes of work
     * done so far (handled and queued): what slices are measured with. */
    uint64_t iteration;
    uint64_t work;
    schedule_link_cb *flush;
    schedule_link_cb *resume;
};

/* One connection's use of its slice. Zero: none used yet. */
struct schedule_slice {
    uint64_t iteration; /* the iteration `used` is for */
    size_t used;
};

/* Start the schedule on `loop`: flush(link) for each dirty link and
 * resume(link) for each ready link, once per iteration. */
void schedule_init(struct schedule *s, uv_loop_t *loop, schedule_link_cb *flush,
                   schedule_link_cb *resume);

/* Close its handles (asynchronously, as uv_close() does). */
void schedule_close(struct schedule *s);

/* Put `link` (on no list, or on this one already) on the dirty list. */
static inline void schedule_mark_dirty(struct schedule *s, struct list_link *link)
{
    if (!list_linked(link)) {
        list_append(&s->dirty, link);
    }
}

/* Put `link` on the ready list, for the next iteration. */
void schedule_mark_ready(struct schedule *s, struct list_link *link);

/* Count `bytes` of work toward the slice of whoever is being handled. */
static inline void schedule_charge(struct schedule *s, size_t bytes)
{
    s->work += bytes;
}

/* Has `slice` room left in this iteration? */
static inline bool schedule_slice_left(const struct schedule *s, struct schedule_slice *slice)
{
    if (slice->iteration != s->iteration) {
        slice->iteration = s->iteration;
        slice->used = 0;
    }
    return slice->used < SCHEDULE_SLICE;
}

#endif /* SOCKBUS_SCHEDULE_H */
