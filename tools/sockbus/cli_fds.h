/*
 * cli_fds.h - what the commands print and take beside a payload: who sent
 * a message (sub --sender), the file descriptors that came with it (sub
 * -v/--json) and those a publish attaches (pub --attach).
 */
#ifndef SOCKBUS_CLI_FDS_H
#define SOCKBUS_CLI_FDS_H

#include "sockbus.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Most descriptors one message may carry (the kernel's limit per
 * sendmsg(); the broker's max_fds_per_msg is 16 by default). */
#define CLI_ATTACH_MAX 253

/* Open `path` read-only to attach it, appending to fds[*nfds]. Returns 0,
 * or CLI_EXIT_USAGE / CLI_EXIT_FAILURE after one line on stderr. */
int cli_attach_open(const char *cmd, const char *path, int *fds, size_t *nfds);

/* " (pid P uid U gid G)" for -v output, if `msg` says who sent it and
 * `sender` was asked; then " <TYPE PATH>" for each descriptor. */
void cli_print_meta_text(FILE *out, const sb_client *c, const sb_msg *msg, bool sender);

/* ",\"sender\":{...}" when asked and known, and ",\"fds\":[...]" when the
 * message carries descriptors, for --json output. */
void cli_print_meta_json(FILE *out, const sb_client *c, const sb_msg *msg, bool sender);

#endif /* SOCKBUS_CLI_FDS_H */
