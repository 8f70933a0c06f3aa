/*
 * list.h - intrusive, circular, doubly linked lists.
 *
 * An object that can be on a list embeds a `struct list_link`; the list
 * itself is a `struct list_link` head. Insertion and removal are O(1) and
 * allocate nothing, and an object always knows whether it is on a list,
 * so whoever frees it can take it off first: the broker's rule is that no
 * connection is ever freed while any list still links it.
 *
 * A link that is on no list points to itself (list_init()), so
 * list_unlink() on it is harmless and list_linked() tells the truth.
 */
#ifndef SOCKBUS_LIST_H
#define SOCKBUS_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list_link {
    struct list_link *prev;
    struct list_link *next;
};

/* The object of type `type` whose member `member` is the link `link`. */
#define list_entry(link, type, member) ((type *)((char *)(link)-offsetof(type, member)))

/* An empty list head, or a link on no list. */
static inline void list_init(struct list_link *l)
{
    l->prev = l;
    l->next = l;
}

static inline bool list_empty(const struct list_link *head)
{
    return head->next == head;
}

/* Is this link on a list? (For a head: does the list hold anything?) */
static inline bool list_linked(const struct list_link *l)
{
    return l->next != l;
}

/* Put `l` (on no list) at the end of `head`. */
static inline void list_append(struct list_link *head, struct list_link *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

/* Take `l` off its list, if it is on one. */
static inline void list_unlink(struct list_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    list_init(l);
}

/* The first link of `head`, or NULL when it is empty. */
static inline struct list_link *list_first(const struct list_link *head)
{
    return list_empty(head) ? NULL : head->next;
}

/* Move everything on `from` to the (empty) head `to`; `from` is left
 * empty. */
static inline void list_move_all(struct list_link *from, struct list_link *to)
{
    if (list_empty(from)) {
        list_init(to);
        return;
    }
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    list_init(from);
}

#endif /* SOCKBUS_LIST_H */
