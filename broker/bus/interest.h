/*
 * interest.h - who listens (docs/protocol.md, Who listens): $SYS.INTEREST
 * answered, $SYS.EVENT.SUBSCRIBE and $SYS.EVENT.UNSUBSCRIBE published.
 *
 * A request on $SYS.INTEREST whose payload is a subject S is answered with
 * {"subject":S,"subscriptions":N}: the subscriptions a publish on S would
 * reach now, a queue group counting once (subtrie_interest(): no group
 * loses its turn for being counted). Every subscription that starts or
 * ends is announced on the event subjects with
 * {"client_id":..,"sid":..,"pattern":"..","queue":".."|null}, but only
 * when someone subscribes to that subject: otherwise no JSON is built,
 * and a SUB pays one walk of the trie for the event's subject.
 */
#ifndef SOCKBUS_INTEREST_H
#define SOCKBUS_INTEREST_H

#include <stdbool.h>
#include <stddef.h>

struct bus;
struct frame;
struct sub;

#define INTEREST_SUBJECT           "$SYS.INTEREST"
#define INTEREST_EVENT_SUBSCRIBE   "$SYS.EVENT.SUBSCRIBE"
#define INTEREST_EVENT_UNSUBSCRIBE "$SYS.EVENT.UNSUBSCRIBE"

/*
 * How many subscriptions a publish on subject[0..len) would reach now, in
 * *count (see subtrie_interest()). Returns 0, -EINVAL for an invalid
 * subject, or -ENOMEM.
 */
int interest_count(struct bus *b, const char *subject, size_t len, size_t *count);

/*
 * Answer the $SYS.INTEREST request `f` (it has a reply subject). Returns
 * 0, -EINVAL when its payload is not a valid subject, -EMSGSIZE, or
 * -ENOMEM.
 */
int interest_answer(struct bus *b, const struct frame *f);

/* bus->sub_event: announce that `s` starts (`added`) or ends. */
void interest_sub_event(struct bus *b, const struct sub *s, bool added);

/* Set up the handle that publishes events held back while routing (after
 * bus_init()), and close it (with the bus's other handles). */
void interest_init(struct bus *b);
void interest_close(struct bus *b);

#endif /* SOCKBUS_INTEREST_H */
