/*
 * sys.h - the broker's own subjects: $SYS.STATS and $SYS.CLIENTS answered
 * as requests, $SYS.EVENT.CONNECT / DISCONNECT published.
 */
#ifndef SOCKBUS_SYS_H
#define SOCKBUS_SYS_H

#include <stdbool.h>
#include <stddef.h>

struct broker;
struct conn;
struct frame;

#define SYS_PREFIX "$SYS."

/* Is this subject one of the broker's own? */
bool sys_subject(const void *subject, size_t len);

/*
 * A client published on a $SYS. subject. Requests (with a reply subject)
 * to $SYS.STATS and $SYS.CLIENTS are answered (-E2BIG if the answer
 * exceeds max_frame); anything else is refused with -EACCES.
 */
int sys_handle(struct broker *b, struct conn *c, const struct frame *f);

/* Publish $SYS.EVENT.CONNECT (after HELLO) or DISCONNECT for `c`. */
void sys_event(struct broker *b, struct conn *c, bool connected);

#endif /* SOCKBUS_SYS_H */
