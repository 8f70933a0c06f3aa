/*
 * textout.h - what a text-mode connection is sent: frames written as lines
 * (docs/protocol.md, Text mode).
 *
 * Everything the broker queues to a connection is a frame, whatever the
 * connection speaks: the bus, flow control and the slow-consumer policy
 * see one kind of queue. A text-mode connection's queue is turned into
 * text right before it is written (conn_flush()), so that nothing on the
 * way of a message asks which kind its subscriber is. What the text layer
 * says itself (+OK, HELP's lines) travels as a frame of op TEXTOUT_OP_LINE,
 * whose payload is written as it is.
 */
#ifndef SOCKBUS_TEXTOUT_H
#define SOCKBUS_TEXTOUT_H

#include "connbuf.h"

#include <stddef.h>
#include <stdint.h>

/* An op no frame on the wire has: a line of text, written verbatim (the
 * payload, "\r\n" included). Never leaves the broker as a frame. */
#define TEXTOUT_OP_LINE 0x00u

/*
 * Replace the frames `b` holds (its own bytes and shared bodies, whole
 * frames only) by their text: MSG as "MSG <subject> <sid> [<reply>]
 * <nbytes>\r\n<payload>\r\n", PONG as "PONG\r\n", ERR as "-ERR <code>
 * <text>\r\n", DROPPED as "DROPPED <count>\r\n", TEXTOUT_OP_LINE verbatim.
 * A MSG flagged NO_RESPONDERS is left out (the text layer says it as an
 * -ERR line when the request is made) and so is anything else. Returns 0,
 * or -ENOMEM with `b` unchanged.
 */
int textout_encode(struct conn_buf *b);

/*
 * The text of the frames in buf[0..len) (whole frames, as the broker
 * builds them) appended to `out`. Returns 0 or -ENOMEM. For
 * textout_encode() and the fuzz target; stops at the first frame that
 * does not parse.
 */
int textout_frames(const uint8_t *buf, size_t len, struct conn_buf *out);

#endif /* SOCKBUS_TEXTOUT_H */
