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

/* A $SYS.CLIENTS page holds this many clients unless the request asks for
 * fewer or more, and never more than SYS_CLIENTS_LIMIT_MAX. A client
 * object is at most about 570 bytes (a 128-byte name whose every byte JSON
 * escapes, and every counter at its largest), so a full page stays below
 * about 143 KB, far below the default max_frame; a page that would still
 * exceed max_frame is cut shorter (docs/protocol.md, $SYS). */
#define SYS_CLIENTS_LIMIT_DEFAULT 100u
#define SYS_CLIENTS_LIMIT_MAX     250u

/* Is this subject one of the broker's own? */
bool sys_subject(const void *subject, size_t len);

/*
 * A client published on a $SYS. subject. Requests (with a reply subject)
 * to $SYS.STATS and $SYS.CLIENTS are answered (-E2BIG if the answer
 * exceeds max_frame); anything else is refused with -EACCES. A
 * $SYS.CLIENTS request whose paging payload is malformed gets its ERR
 * (ERR 11) from here, and 0 is returned.
 */
int sys_handle(struct broker *b, struct conn *c, const struct frame *f);

/* Publish $SYS.EVENT.CONNECT (after HELLO) or DISCONNECT for `c`. */
void sys_event(struct broker *b, struct conn *c, bool connected);

/* List a welcomed connection in $SYS.CLIENTS (appended: O(1)). Returns 0 or
 * -ENOMEM. */
int sys_list(struct broker *b, struct conn *c);

/* Take a connection out of $SYS.CLIENTS when it starts to end: the last
 * listed connection takes its place (O(1)). Does nothing if it is not
 * listed. */
void sys_unlist(struct broker *b, struct conn *c);

#endif /* SOCKBUS_SYS_H */
