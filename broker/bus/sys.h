/*
 * sys.h - the broker's own subjects: $SYS.STATS and $SYS.CLIENTS answered
 * as requests, $SYS.EVENT.CONNECT / DISCONNECT published.
 */
#ifndef SOCKBUS_SYS_H
#define SOCKBUS_SYS_H

#include "router.h"

#include <stdbool.h>
#include <stddef.h>

struct bus;
struct frame;
struct peer;

/* What a PUB on a $SYS. subject may be refused for (after the codes of
 * router.h: proto.c maps both through one table). */
enum sys_error {
    SYS_E_DENIED = ROUTER_E_END, /* not a request the broker answers */
    SYS_E_REQUEST_INVALID,       /* a $SYS.CLIENTS request it cannot use */
    SYS_E_ANSWER_TOO_LARGE,      /* the answer would exceed max_frame */
    SYS_E_INTEREST_INVALID,      /* a $SYS.INTEREST payload that is no subject */
    SYS_E_END
};

/* A $SYS.CLIENTS page holds this many clients unless the request asks for
 * fewer or more, and never more than SYS_CLIENTS_LIMIT_MAX. A client
 * object is at most about 570 bytes (a 128-byte name whose every byte JSON
 * escapes, and every counter at its largest) besides its "subs" (at most
 * SYS_CLIENT_SUBS_BYTES, and max_frame / 8), so a page of 250 clients
 * without subscriptions stays below about 143 KB; a page that would
 * exceed max_frame is cut shorter (docs/protocol.md, $SYS), and one
 * object always fits. */
#define SYS_CLIENTS_LIMIT_DEFAULT 100u
#define SYS_CLIENTS_LIMIT_MAX     250u

/*
 * A client published on a $SYS. subject (router_publish() said ROUTER_SYS).
 * Requests (with a reply subject) to $SYS.STATS and $SYS.CLIENTS are
 * answered: 0, or SYS_E_ANSWER_TOO_LARGE. Anything else is SYS_E_DENIED.
 * A $SYS.CLIENTS request whose paging payload is malformed is
 * SYS_E_REQUEST_INVALID, with the reason in why[why_len]. -ENOMEM.
 */
int sys_handle(struct bus *b, const struct frame *f, char *why, size_t why_len);

/* A client object of $SYS.CLIENTS lists at most this many of its
 * subscriptions in "subs", and only as many as fit in
 * SYS_CLIENT_SUBS_BYTES of JSON (or an eighth of max_frame, if less): a
 * page of clients stays within max_frame however many subscriptions each
 * has. "subs_more": true says that some were left out; "subscriptions"
 * always counts them all. */
#define SYS_CLIENT_SUBS_MAX   64u
#define SYS_CLIENT_SUBS_BYTES (16u * 1024u)

/*
 * $SYS.STATS as one line of JSON, for text mode's STATS: the string (the
 * caller frees it) and its length. Returns 0 or -ENOMEM.
 */
int sys_stats_json(const struct bus *b, char **json, size_t *len);

/* Publish $SYS.EVENT.CONNECT (after HELLO) or DISCONNECT for `p`. */
void sys_event(struct bus *b, struct peer *p, bool connected);

/* List a welcomed peer in $SYS.CLIENTS (appended: O(1)). Returns 0 or
 * -ENOMEM. */
int sys_list(struct bus *b, struct peer *p);

/* Take a peer out of $SYS.CLIENTS when it starts to end: the last
 * listed peer takes its place (O(1)). Does nothing if it is not
 * listed. */
void sys_unlist(struct bus *b, struct peer *p);

#endif /* SOCKBUS_SYS_H */
