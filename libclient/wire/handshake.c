/*
 * handshake.c - the HELLO and WELCOME payloads, encoded and parsed (see
 * handshake.h).
 *
 * Both parsers read a payload straight from a peer, so nothing in it is
 * trusted: json-c parses exactly `len` bytes (the frame is not NUL
 * terminated), anything after the one object makes it invalid, and every
 * string is copied into a fixed-size field. A HELLO name is also cleaned of
 * what is not printable UTF-8, once, where it enters the broker (a name is
 * a label: a client is not refused for it). The results depend only on the
 * bytes.
 *
 * The encoders build the object with json-c, as the parsers read it, and
 * hand out a copy of its text: the handshake happens once per connection,
 * so one more allocation there buys an interface without json-c in it.
 */
#include "handshake.h"

#include "sockbus.h"
#include "text.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Parse exactly buf[0..len) as one JSON object into *out (the caller
 * puts it). Returns 0, -EPROTO when it is not one, or -ENOMEM. */
static int parse_object(const uint8_t *buf, size_t len, json_object **out)
{
    if (len > INT_MAX) {
        return -EPROTO; /* json-c takes an int length */
    }
    json_tokener *tok = json_tokener_new();
    if (tok == NULL) {
        return -ENOMEM;
    }
    json_object *o = json_tokener_parse_ex(tok, (const char *)buf, (int)len);
    /* Trailing bytes after the value make it invalid too. */
    bool whole = json_tokener_get_parse_end(tok) == len;
    json_tokener_free(tok);
    if (o == NULL || !whole || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return -EPROTO;
    }
    *out = o;
    return 0;
}

/* The integer under `key`, if there is one. */
static bool get_int(json_object *o, const char *key, int64_t *v)
{
    json_object *x;
    if (!json_object_object_get_ex(o, key, &x) || !json_object_is_type(x, json_type_int)) {
        return false;
    }
    *v = json_object_get_int64(x);
    return true;
}

/* The text of a finished object, copied for the caller; frees `o`. */
static int finish(json_object *o, bool ok, char **json, size_t *len)
{
    char *copy = NULL;
    size_t n = 0;
    if (ok) {
        const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n);
        copy = s != NULL ? malloc(n + 1) : NULL;
        if (copy != NULL) {
            memcpy(copy, s, n + 1);
        }
    }
    json_object_put(o);
    if (copy == NULL) {
        return -ENOMEM;
    }
    *json = copy;
    *len = n;
    return 0;
}

/* Add key: value to `o` (which then owns `value`); false if either could
 * not be made. */
static bool add(json_object *o, const char *key, json_object *value)
{
    if (value == NULL) {
        return false;
    }
    if (json_object_object_add(o, key, value) != 0) {
        json_object_put(value);
        return false;
    }
    return true;
}

/*
 * Copy s[0..len) into out[0..cap), NUL terminated. With `clean`, each
 * control character and each ill-formed UTF-8 subpart becomes one U+FFFD,
 * so what is kept is printable UTF-8; without, the bytes stay as they are.
 * Stops before a character (or subpart) that would not fit beside the NUL,
 * so a cut never splits one.
 */
static void copy_text(char *out, size_t cap, const char *s, size_t len, bool clean)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        int n = text_utf8_next(s + i, len - i, &cp);
        bool replace = clean && (n < 0 || text_is_control(cp));
        size_t take = (size_t)(n < 0 ? -n : n);
        const char *bytes = replace ? TEXT_REPLACEMENT : s + i;
        size_t blen = replace ? TEXT_REPLACEMENT_LEN : take;
        if (o + blen >= cap) {
            break;
        }
        memcpy(out + o, bytes, blen);
        o += blen;
        i += take;
    }
    out[o] = '\0';
}

/* ---- HELLO -------------------------------------------------------------- */

int handshake_hello_encode(const char *name, bool echo, char **json, size_t *len)
{
    json_object *o = json_object_new_object();
    if (o == NULL) {
        return -ENOMEM;
    }
    bool ok = add(o, "protocol", json_object_new_int(SB_PROTOCOL_VERSION)) &&
              (name == NULL || add(o, "name", json_object_new_string(name))) &&
              add(o, "echo", json_object_new_boolean(echo));
    return finish(o, ok, json, len);
}

int handshake_hello_parse(const uint8_t *json, size_t len, struct handshake_hello *out)
{
    json_object *o;
    int r = parse_object(json, len, &o);
    if (r < 0) {
        return r;
    }
    struct handshake_hello h = {.echo = true};
    if (!get_int(o, "protocol", &h.protocol)) {
        json_object_put(o);
        return -EPROTO;
    }
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
            /* The name goes out again in $SYS answers and events (JSON,
             * which must be UTF-8) and in the log, so it is made clean
             * here rather than at every place it is shown. */
            const char *s = json_object_get_string(name);
            copy_text(h.name, sizeof(h.name), s, strlen(s), true);
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

/* ---- WELCOME ------------------------------------------------------------ */

int handshake_welcome_encode(const struct handshake_welcome *w, char **json, size_t *len)
{
    json_object *o = json_object_new_object();
    if (o == NULL) {
        return -ENOMEM;
    }
    bool ok = add(o, "protocol", json_object_new_int64(w->protocol)) &&
              add(o, "server", json_object_new_string(w->server)) &&
              add(o, "version", json_object_new_string(w->version)) &&
              add(o, "client_id", json_object_new_int64((int64_t)w->client_id)) &&
              add(o, "max_frame", json_object_new_int64(w->max_frame)) &&
              /* Not in every client's reading, but it lets one pace itself
               * (a publisher that stays within it never makes a reading
               * subscriber lose). */
              add(o, "max_pending", json_object_new_int64((int64_t)w->max_pending)) &&
              add(o, "inbox_prefix", json_object_new_string(w->inbox_prefix));
    return finish(o, ok, json, len);
}

/* The string under `key` into out[WELCOME_TEXT_MAX], or "". */
static void get_text(json_object *o, const char *key, char *out)
{
    json_object *x;
    out[0] = '\0';
    if (json_object_object_get_ex(o, key, &x) && json_object_is_type(x, json_type_string)) {
        const char *s = json_object_get_string(x);
        copy_text(out, WELCOME_TEXT_MAX, s, strlen(s), false);
    }
}

int handshake_welcome_parse(const uint8_t *json, size_t len, struct handshake_welcome *out)
{
    json_object *o;
    int r = parse_object(json, len, &o);
    if (r < 0) {
        return r;
    }
    struct handshake_welcome w = {0};
    int64_t v;
    if (get_int(o, "protocol", &v)) {
        w.protocol = v;
    }
    if (get_int(o, "client_id", &v)) {
        w.client_id = (uint64_t)v;
    }
    if (get_int(o, "max_frame", &v) && v >= 16 && v <= (int64_t)UINT32_MAX) {
        w.max_frame = (uint32_t)v;
    }
    if (get_int(o, "max_pending", &v) && v >= 0) {
        w.max_pending = (uint64_t)v;
    }
    get_text(o, "server", w.server);
    get_text(o, "version", w.version);
    get_text(o, "inbox_prefix", w.inbox_prefix);
    json_object_put(o);
    *out = w;
    return 0;
}
