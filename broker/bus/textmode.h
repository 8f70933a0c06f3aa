/*
 * textmode.h - text mode: a person with nc -U, or a script in a pipe
 * (docs/protocol.md, Text mode).
 *
 * A connection whose first four bytes are printable ASCII speaks lines
 * (net tells the bus through conn_ops.text_begin and text_line). Such a
 * client is let in at once, with no HELLO, as a client named "text" with
 * echo on, and each line is one command (textcmd.h). The commands are
 * carried out by the same handlers as frames (proto_dispatch()): the same
 * routing, ACL, limits and slices; only the answers differ, and the
 * connection writes everything it is sent as text (net/textout.h).
 */
#ifndef SOCKBUS_TEXTMODE_H
#define SOCKBUS_TEXTMODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn;

/* conn_ops.text_begin: a peer that has sent nothing else yet becomes a
 * text client (let in, or refused with -ERR 5 when max_connections are
 * in). Returns false for a peer that has sent a frame already. */
bool text_begin(struct conn *c);

/* conn_ops.text_line: carry out one command and answer it. */
void text_line(struct conn *c, const uint8_t *line, size_t len);

#endif /* SOCKBUS_TEXTMODE_H */
