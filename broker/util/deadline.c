/*
 * deadline.c - a FIFO of objects sharing one timeout (see deadline.h).
 *
 * The timer is kept due no later than the head's deadline whenever the
 * list is not empty: it is started when the first member arrives and left
 * alone when the head leaves early (it then fires for nothing and is armed
 * again for the new head), and stopped when the list empties. When it
 * fires, every member whose time is up is taken off the list and handed to
 * the callback, oldest first; since the members were added in time order,
 * that stops at the first one still in time.
 */
#include "deadline.h"

#include <stddef.h>

static void on_deadline_timer(uv_timer_t *h);

static struct deadline_link *deadline_oldest(const struct deadline_list *l)
{
    struct list_link *first = list_first(&l->members);
    return first != NULL ? list_entry(first, struct deadline_link, link) : NULL;
}

static void deadline_arm(struct deadline_list *l)
{
    struct deadline_link *oldest = deadline_oldest(l);
    if (oldest == NULL) {
        uv_timer_stop(&l->timer);
        return;
    }
    uint64_t now = uv_now(l->timer.loop);
    uint64_t waited = now - oldest->since;
    uv_timer_start(&l->timer, on_deadline_timer,
                   waited >= l->timeout_ms ? 0 : l->timeout_ms - waited, 0);
}

static void on_deadline_timer(uv_timer_t *h)
{
    struct deadline_list *l = h->data;
    uint64_t now = uv_now(h->loop);
    struct deadline_link *k;
    while ((k = deadline_oldest(l)) != NULL && now - k->since >= l->timeout_ms) {
        deadline_list_remove(k);
        l->expired(k, l->data);
    }
    deadline_arm(l);
}

void deadline_list_init(struct deadline_list *l, uv_loop_t *loop, uint64_t timeout_ms,
                        deadline_expired_cb *expired, void *data)
{
    *l = (struct deadline_list){.timeout_ms = timeout_ms, .expired = expired, .data = data};
    list_init(&l->members);
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
}

void deadline_list_close(struct deadline_list *l)
{
    if (!uv_is_closing((uv_handle_t *)&l->timer)) {
        uv_close((uv_handle_t *)&l->timer, NULL);
    }
}

void deadline_list_add(struct deadline_list *l, struct deadline_link *k)
{
    k->list = l;
    k->since = uv_now(l->timer.loop);
    list_append(&l->members, &k->link);
    l->len++;
    if (!uv_is_active((uv_handle_t *)&l->timer)) {
        deadline_arm(l);
    }
}

void deadline_list_remove(struct deadline_link *k)
{
    struct deadline_list *l = k->list;
    if (l == NULL) {
        return;
    }
    list_unlink(&k->link);
    l->len--;
    k->list = NULL;
    if (list_empty(&l->members)) {
        uv_timer_stop(&l->timer);
    }
}
