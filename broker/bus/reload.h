/*
 * reload.h - a reloaded configuration, applied to the clients already
 * connected (sockbusd's SIGHUP: docs/security.md, Reloading).
 */
#ifndef SOCKBUS_RELOAD_H
#define SOCKBUS_RELOAD_H

#include <stdint.h>

struct bus;

/*
 * The bus's settings (bus->cfg, which the caller has just rewritten) have
 * changed: apply those that live outside it (the HELLO deadline, the
 * backlog bound), and give every connection its rule in the current ACL,
 * so that its next operation is judged by it. Subscriptions the new rule
 * no longer allows are ended, each with ERR 4 naming its pattern and sid.
 * Call it between two loop iterations' frames (never while routing), and
 * free the old ACL only after it returns: until then connections point
 * into it. Returns the number of subscriptions ended, or -ENOMEM (the
 * rules are all swapped even then; a peer whose subscriptions could not be
 * checked is closed, since it would otherwise keep what it may no longer
 * have).
 */
int64_t reload_apply(struct bus *b);

#endif /* SOCKBUS_RELOAD_H */
