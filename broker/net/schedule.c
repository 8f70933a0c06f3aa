/*
 * schedule.c - the end of each loop iteration (see schedule.h).
 *
 * The check handle runs after the iteration's I/O. It first resumes the
 * connections that hold input from earlier iterations, each with a fresh
 * slice (after everyone who sent something new has had theirs), then
 * writes the output of every connection that has some. Both lists are
 * taken whole before they are walked: a connection that uses up its slice
 * again goes back on the (new) ready list, for the next iteration; a flush
 * may close its connection, which takes it off whatever list it is on,
 * and nothing a flush does marks its own connection again (conn_flush()
 * writes its DROPPED notice in the same write), so the walk ends.
 */
#include "schedule.h"

/* Call `cb` for each link of `head`, taken whole and unlinked one by one
 * before its callback. */
static void schedule_drain(struct list_link *head, schedule_link_cb *cb)
{
    struct list_link batch;
    list_move_all(head, &batch);
    struct list_link *l;
    while ((l = list_first(&batch)) != NULL) {
        list_unlink(l);
        cb(l);
    }
}

static void on_flush_check(uv_check_t *h)
{
    struct schedule *s = h->data;
    s->iteration++; /* a fresh slice for everyone from here on */
    schedule_drain(&s->ready, s->resume);
    if (list_empty(&s->ready)) {
        uv_idle_stop(&s->ready_idle);
    }
    schedule_drain(&s->dirty, s->flush);
}

/* An active idle handle makes the loop poll without blocking: while input
 * waits on the ready list, the next iteration comes at once. */
static void on_ready_idle(uv_idle_t *h)
{
    (void)h;
}

void schedule_init(struct schedule *s, uv_loop_t *loop, schedule_link_cb *flush,
                   schedule_link_cb *resume)
{
    list_init(&s->dirty);
    list_init(&s->ready);
    s->iteration = 0;
    s->work = 0;
    s->flush = flush;
    s->resume = resume;
    uv_check_init(loop, &s->flush_check);
    s->flush_check.data = s;
    uv_check_start(&s->flush_check, on_flush_check);
    uv_idle_init(loop, &s->ready_idle);
    s->ready_idle.data = s;
}

void schedule_close(struct schedule *s)
{
    if (!uv_is_closing((uv_handle_t *)&s->flush_check)) {
        uv_close((uv_handle_t *)&s->flush_check, NULL);
        uv_close((uv_handle_t *)&s->ready_idle, NULL);
    }
}

void schedule_mark_ready(struct schedule *s, struct list_link *link)
{
    if (list_linked(link)) {
        return;
    }
    list_append(&s->ready, link);
    uv_idle_start(&s->ready_idle, on_ready_idle);
}
