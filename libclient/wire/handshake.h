/*
 * handshake.h - the payloads of the first two frames of a connection,
 * HELLO and WELCOME (docs/protocol.md, "HELLO", "WELCOME" and
 * "Handshake"): both encoded and both parsed here, so that the broker, the
 * library and the fuzz target share one implementation of each.
 *
 *   HELLO    {"protocol":1,"name":"...","echo":true}, name and echo optional
 *   WELCOME  {"protocol":1,"server":"sockbusd","version":"...","client_id":N,
 *             "max_frame":N,"max_pending":N,"inbox_prefix":"_INBOX.N."}
 *
 * Parsing is a pure function of the bytes, apart from json-c's heap use:
 * exactly `len` bytes are read (a frame's payload is not NUL terminated),
 * and anything after the one JSON object makes the payload invalid. The
 * callers map the errors to what they do: the broker to ERR codes, the
 * library to a failed connect.
 */
#ifndef SOCKBUS_HANDSHAKE_H
#define SOCKBUS_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A client name longer than this is cut to this many bytes. */
#define HELLO_NAME_MAX 128u

/* Room of each text field of WELCOME, NUL included: a longer value is cut
 * (on a character boundary) to fit. */
#define WELCOME_TEXT_MAX 64u

/* A HELLO, as the broker reads it. */
struct handshake_hello {
    int64_t protocol;
    bool echo;                     /* true unless "echo":false */
    bool has_name;                 /* "name" was given */
    char name[HELLO_NAME_MAX + 1]; /* NUL terminated; "" without a name */
};

/*
 * A WELCOME: what the broker encodes, and what the library reads back.
 * A field the payload lacks (or gives with the wrong type, or out of range)
 * parses as 0 or "", so that a client keeps its own default for it.
 */
struct handshake_welcome {
    int64_t protocol;
    char server[WELCOME_TEXT_MAX];  /* "sockbusd" */
    char version[WELCOME_TEXT_MAX]; /* the broker's version */
    uint64_t client_id;             /* unique for the life of the broker */
    uint32_t max_frame;             /* 16..UINT32_MAX, or 0: not given */
    uint64_t max_pending;           /* bytes queued to one connection */
    char inbox_prefix[WELCOME_TEXT_MAX];
};

/*
 * Write the HELLO payload for a client called `name` (NULL: no name; it is
 * sent whole, the broker cuts it) that does (`echo`) or does not want its
 * own messages, for protocol SB_PROTOCOL_VERSION. On success *json is a
 * NUL-terminated string the caller owns and frees with free(), and *len its
 * length. Returns 0 or -ENOMEM; the outputs are written only on success.
 */
int handshake_hello_encode(const char *name, bool echo, char **json, size_t *len);

/*
 * Parse `len` bytes of HELLO JSON (the caller keeps the buffer). A name is
 * copied up to its first NUL byte, with every control character (C0, DEL,
 * C1) and every ill-formed UTF-8 subpart replaced by U+FFFD, and cut before
 * a character that would pass HELLO_NAME_MAX bytes: what is kept is always
 * valid UTF-8 that prints on one line. Returns 0 and fills *out, or:
 *   -EPROTO           not exactly one JSON object (invalid JSON, another
 *                     type, trailing bytes, more than INT_MAX bytes), or
 *                     "protocol" missing or not an integer
 *   -EPROTONOSUPPORT  "protocol" is an integer other than 1
 *   -EINVAL           "name" is not a string or "echo" not a boolean
 *   -ENOMEM           out of memory
 * The checks run in that order. *out is written only on success.
 */
int handshake_hello_parse(const uint8_t *json, size_t len, struct handshake_hello *out);

/*
 * Write the WELCOME payload for `w`: every field, in the order of the
 * comment at the top. On success *json is a NUL-terminated string the
 * caller owns and frees with free(), and *len its length. Returns 0 or
 * -ENOMEM; the outputs are written only on success.
 */
int handshake_welcome_encode(const struct handshake_welcome *w, char **json, size_t *len);

/*
 * Parse `len` bytes of WELCOME JSON (the caller keeps the buffer). Keys it
 * does not know are ignored, and so is a known key with a value of the
 * wrong type, or a max_frame outside 16..UINT32_MAX: the field is then 0 or
 * "". Text fields are cut to fit WELCOME_TEXT_MAX on a character boundary.
 * Returns 0 and fills *out, -EPROTO when the payload is not exactly one
 * JSON object (invalid JSON, another type, trailing bytes, more than
 * INT_MAX bytes), or -ENOMEM. *out is written only on success.
 */
int handshake_welcome_parse(const uint8_t *json, size_t len, struct handshake_welcome *out);

#endif /* SOCKBUS_HANDSHAKE_H */
