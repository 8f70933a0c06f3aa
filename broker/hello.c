/*
 * hello.c - parsing the HELLO payload (see hello.h).
 *
 * The payload comes straight from an unauthenticated peer, so nothing in it
 * is trusted: json-c parses exactly `len` bytes (the frame is not NUL
 * terminated), anything after the one object makes it invalid, and the
 * name is copied into a fixed-size field. The result depends only on the
 * bytes; the connection code maps the errors to ERR codes.
 */
#include "hello.h"

#include "sockbus.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <string.h>

/* Parse exactly buf[0..len) as one JSON value; NULL if it is not one. */
static json_object *parse_whole(const uint8_t *buf, size_t len, int *err)
{
    if (len > INT_MAX) {
        *err = -EPROTO; /* json-c takes an int length */
        return NULL;
    }
    json_tokener *tok = json_tokener_new();
    if (tok == NULL) {
        *err = -ENOMEM;
        return NULL;
    }
    json_object *o = json_tokener_parse_ex(tok, (const char *)buf, (int)len);
    /* Trailing bytes after the value make it invalid too. */
    if (o != NULL && json_tokener_get_parse_end(tok) != len) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    *err = -EPROTO;
    return o;
}

int hello_parse(const uint8_t *json, size_t len, struct hello *out)
{
    int err;
    json_object *o = parse_whole(json, len, &err);
    if (o == NULL) {
        return err;
    }
    json_object *proto;
    if (!json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "protocol", &proto) ||
        !json_object_is_type(proto, json_type_int)) {
        json_object_put(o);
        return -EPROTO;
    }
    struct hello h = {.protocol = json_object_get_int64(proto), .echo = true};
    int r = 0;
    json_object *name;
    json_object *echo;
    if (h.protocol != SB_PROTOCOL_VERSION) {
        r = -EPROTONOSUPPORT;
    } else if (json_object_object_get_ex(o, "name", &name) &&
               !json_object_is_type(name, json_type_string)) {
        r = -EINVAL;
    } else if (json_object_object_get_ex(o, "echo", &echo) &&
               !json_object_is_type(echo, json_type_boolean)) {
        r = -EINVAL;
    } else {
        if (json_object_object_get_ex(o, "name", &name)) {
            /* Like strndup(): up to the first NUL or HELLO_NAME_MAX bytes,
             * but a cut never splits a UTF-8 character (the name goes out
             * again as JSON in $SYS answers and events). */
            const char *s = json_object_get_string(name);
            size_t n = strnlen(s, HELLO_NAME_MAX);
            if (n == HELLO_NAME_MAX && s[n] != '\0') {
                while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
                    n--; /* s[n] continues a character: cut before its lead */
                }
            }
            memcpy(h.name, s, n);
            h.name[n] = '\0';
            h.has_name = true;
        }
        if (json_object_object_get_ex(o, "echo", &echo)) {
            h.echo = json_object_get_boolean(echo);
        }
    }
    json_object_put(o);
    if (r == 0) {
        *out = h;
    }
    return r;
}
