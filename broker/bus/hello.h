/*
 * hello.h - the HELLO frame's JSON payload (docs/protocol.md, HELLO):
 * {"protocol":1,"name":"...","echo":true}, name and echo optional.
 *
 * Parsing is a pure function of the bytes, apart from json-c's heap use,
 * so the connection code and the fuzz target share one implementation.
 */
#ifndef SOCKBUS_HELLO_H
#define SOCKBUS_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A client name longer than this is cut to this many bytes. */
#define HELLO_NAME_MAX 128u

struct hello {
    int64_t protocol;
    bool echo;                     /* true unless "echo":false */
    bool has_name;                 /* "name" was given */
    char name[HELLO_NAME_MAX + 1]; /* NUL terminated; "" without a name */
};

/*
 * Parse `len` bytes of HELLO JSON (no terminator needed; the caller keeps
 * the buffer). A name is copied up to its first NUL byte, with every
 * control character (C0, DEL, C1) and every ill-formed UTF-8 subpart
 * replaced by U+FFFD, and cut before a character that would pass
 * HELLO_NAME_MAX bytes: what is kept is always valid UTF-8 that prints on
 * one line. Returns 0 and fills *out, or:
 *   -EPROTO           not exactly one JSON object (invalid JSON, another
 *                     type, trailing bytes), or "protocol" missing or not
 *                     an integer
 *   -EPROTONOSUPPORT  "protocol" is an integer other than 1
 *   -EINVAL           "name" is not a string or "echo" not a boolean
 *   -ENOMEM           out of memory
 * The checks run in that order. *out is written only on success.
 */
int hello_parse(const uint8_t *json, size_t len, struct hello *out);

#endif /* SOCKBUS_HELLO_H */
