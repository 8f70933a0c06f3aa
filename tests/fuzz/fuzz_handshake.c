/*
 * fuzz_handshake.c - the HELLO and WELCOME payload parsers
 * (libclient/wire/handshake.c) over arbitrary bytes: a HELLO as a peer may
 * send it before it has said anything valid, a WELCOME as whatever
 * answers a client may send it. Every input goes through both parsers.
 *
 * Invariants: each result is one of the documented codes; *out is written
 * on success only. An accepted HELLO has protocol 1 and a NUL-terminated
 * name of at most HELLO_NAME_MAX bytes, valid UTF-8 without a control
 * character. An accepted WELCOME has NUL-terminated texts that fit
 * WELCOME_TEXT_MAX and a max_frame of 0 or at least 16. And writing the
 * accepted values back with the encoder and parsing that again gives the
 * same values, for both.
 */
#include "fuzz.h"

#include "handshake.h"
#include "text.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void hello_round_trip(const struct handshake_hello *h)
{
    char *json;
    size_t len;
    FUZZ_CHECK(handshake_hello_encode(h->has_name ? h->name : NULL, h->echo, &json, &len) == 0);
    FUZZ_CHECK(strlen(json) == len);
    struct handshake_hello again;
    FUZZ_CHECK(handshake_hello_parse((const uint8_t *)json, len, &again) == 0);
    FUZZ_CHECK(again.protocol == h->protocol && again.echo == h->echo);
    FUZZ_CHECK(again.has_name == h->has_name && strcmp(again.name, h->name) == 0);
    free(json);
}

static void check_hello(const uint8_t *data, size_t size)
{
    struct handshake_hello h;
    struct handshake_hello before;
    memset(&h, 0xA5, sizeof(h));
    memcpy(&before, &h, sizeof(h));
    int r = handshake_hello_parse(data, size, &h);
    FUZZ_CHECK(r == 0 || r == -EPROTO || r == -EPROTONOSUPPORT || r == -EINVAL || r == -ENOMEM);
    if (r != 0) {
        FUZZ_CHECK(memcmp(&h, &before, sizeof(h)) == 0);
        return;
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
    hello_round_trip(&h);
}

static void welcome_round_trip(const struct handshake_welcome *w)
{
    char *json;
    size_t len;
    FUZZ_CHECK(handshake_welcome_encode(w, &json, &len) == 0);
    FUZZ_CHECK(strlen(json) == len);
    struct handshake_welcome again;
    FUZZ_CHECK(handshake_welcome_parse((const uint8_t *)json, len, &again) == 0);
    FUZZ_CHECK(again.protocol == w->protocol && again.client_id == w->client_id);
    FUZZ_CHECK(again.max_frame == w->max_frame && again.max_pending == w->max_pending);
    FUZZ_CHECK(strcmp(again.server, w->server) == 0 && strcmp(again.version, w->version) == 0);
    FUZZ_CHECK(strcmp(again.inbox_prefix, w->inbox_prefix) == 0);
    free(json);
}

static void check_welcome(const uint8_t *data, size_t size)
{
    struct handshake_welcome w;
    struct handshake_welcome before;
    memset(&w, 0xA5, sizeof(w));
    memcpy(&before, &w, sizeof(w));
    int r = handshake_welcome_parse(data, size, &w);
    FUZZ_CHECK(r == 0 || r == -EPROTO || r == -ENOMEM);
    if (r != 0) {
        FUZZ_CHECK(memcmp(&w, &before, sizeof(w)) == 0);
        return;
    }
    const char *texts[] = {w.server, w.version, w.inbox_prefix};
    for (size_t i = 0; i < 3; i++) {
        FUZZ_CHECK(memchr(texts[i], '\0', WELCOME_TEXT_MAX) != NULL);
    }
    FUZZ_CHECK(w.max_frame == 0 || w.max_frame >= 16);
    welcome_round_trip(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_hello(data, size);
    check_welcome(data, size);
    return 0;
}
