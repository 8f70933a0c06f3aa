/*
 * hello.c - parsing the HELLO payload (see hello.h).
 *
 * The payload comes straight from an unauthenticated peer, so nothing in it
 * is trusted: json-c parses exactly `len` bytes (the frame is not NUL
 * terminated), anything after the one object makes it invalid, and the
 * name is copied into a fixed-size field, cleaned of what is not printable
 * UTF-8 (a name is a label: a client is not refused for it). The result
 * depends only on the bytes; the connection code maps the errors to ERR
 * codes.
 */
#include "hello.h"

#include "sockbus.h"
#include "text.h"

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

/*
 * Copy a client's name into out[HELLO_NAME_MAX + 1] as UTF-8 without
 * control characters: each control character and each ill-formed subpart
 * becomes one U+FFFD. The name goes out again in $SYS answers and events
 * (JSON, which must be UTF-8) and in the log, so it is made clean once,
 * here, rather than at every place it is shown. Stops before a character
 * that would pass HELLO_NAME_MAX bytes, so a cut never splits one.
 */
static void hello_copy_name(char *out, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        int n = text_utf8_next(s + i, len - i, &cp);
        bool replace = n < 0 || text_is_control(cp);
        size_t take = (size_t)(n < 0 ? -n : n);
        const char *bytes = replace ? TEXT_REPLACEMENT : s + i;
        size_t blen = replace ? TEXT_REPLACEMENT_LEN : take;
        if (o + blen > HELLO_NAME_MAX) {
            break;
        }
        memcpy(out + o, bytes, blen);
        o += blen;
        i += take;
    }
    out[o] = '\0';
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
            const char *s = json_object_get_string(name);
            hello_copy_name(h.name, s, strlen(s));
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
