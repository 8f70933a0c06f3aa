/*
 * fuzz_hello.c - the HELLO payload parser (broker/hello.c) over arbitrary
 * bytes, as a peer may send them before it has said anything valid.
 *
 * Invariants: the result is one of the documented codes; *out is written on
 * success only; an accepted HELLO has protocol 1 and a NUL-terminated name
 * of at most HELLO_NAME_MAX bytes, valid UTF-8 without a control
 * character; and writing the accepted values back as JSON and parsing that
 * again gives the same values.
 */
#include "fuzz.h"

#include "hello.h"
#include "text.h"

#include <errno.h>
#include <json-c/json.h>
#include <string.h>

static void check_round_trip(const struct hello *h)
{
    json_object *o = json_object_new_object();
    FUZZ_CHECK(o != NULL);
    json_object_object_add(o, "protocol", json_object_new_int64(h->protocol));
    if (h->has_name) {
        json_object_object_add(o, "name", json_object_new_string(h->name));
    }
    json_object_object_add(o, "echo", json_object_new_boolean(h->echo));
    size_t len;
    const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
    struct hello again;
    FUZZ_CHECK(hello_parse((const uint8_t *)s, len, &again) == 0);
    FUZZ_CHECK(again.protocol == h->protocol && again.echo == h->echo);
    FUZZ_CHECK(again.has_name == h->has_name && strcmp(again.name, h->name) == 0);
    json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hello h;
    struct hello before;
    memset(&h, 0xA5, sizeof(h));
    memcpy(&before, &h, sizeof(h));
    int r = hello_parse(data, size, &h);
    FUZZ_CHECK(r == 0 || r == -EPROTO || r == -EPROTONOSUPPORT || r == -EINVAL || r == -ENOMEM);
    if (r != 0) {
        FUZZ_CHECK(memcmp(&h, &before, sizeof(h)) == 0);
        return 0;
    }
    FUZZ_CHECK(h.protocol == 1);
    FUZZ_CHECK(memchr(h.name, '\0', sizeof(h.name)) != NULL);
    FUZZ_CHECK(strlen(h.name) <= HELLO_NAME_MAX);
    FUZZ_CHECK(h.has_name || h.name[0] == '\0');
    for (size_t i = 0, len = strlen(h.name); i < len;) {
        uint32_t cp = 0;
        int n = text_utf8_next(h.name + i, len - i, &cp);
        FUZZ_CHECK(n > 0 && !text_is_control(cp));
        i += (size_t)n;
    }
    check_round_trip(&h);
    return 0;
}
