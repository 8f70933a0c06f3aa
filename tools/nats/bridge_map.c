/*
 * bridge_map.c - a message on one side as a message on the other.
 *
 * Subject, reply subject and payload cross as they are. A sockbus header
 * block is opaque bytes, and a NATS header value is a line of text, so the
 * block travels base64-encoded (RFC 4648, with padding) in one NATS header,
 * Sockbus-Headers, and comes back byte for byte; a message without headers
 * has none. Every message the bridge sends to NATS also names the bridge,
 * Sockbus-Bridge: NAME/INSTANCE (INSTANCE is unique to the process), so a
 * bridge recognises its own messages if they come back. What does not
 * cross is in docs/scaling.md: retained values, descriptors, the sender's
 * credentials, and NATS headers other than these (a NATS message without
 * Sockbus-Headers arrives with no sockbus headers).
 *
 * Where the data is copied: libnats copies subject, reply and payload into
 * the natsMsg (natsMsg_Create), and the header block into its header map;
 * on the way in, the block is decoded into the bridge's scratch buffer,
 * reused from message to message.
 */
#include "bridge.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t bridge_base64_encode(char *out, const void *in, size_t len)
{
    const uint8_t *p = in;
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int b64_value(char c)
{
    const char *p = c != '\0' ? strchr(b64, c) : NULL;
    return p == NULL ? -1 : (int)(p - b64);
}

int bridge_base64_decode(void *out, size_t *out_len, const char *in, size_t len)
{
    uint8_t *o = out;
    size_t n = 0;
    if (len % 4 != 0) {
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad > 0 || (v[k] = b64_value(in[i + k])) < 0) {
                return -EINVAL;
            }
        }
        uint32_t x =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        o[n++] = (uint8_t)(x >> 16);
        if (pad < 2) {
            o[n++] = (uint8_t)(x >> 8);
        }
        if (pad < 1) {
            o[n++] = (uint8_t)x;
        }
    }
    *out_len = n;
    return 0;
}

static int scratch_reserve(struct bridge *b, size_t n)
{
    if (n <= b->scratch_cap) {
        return 0;
    }
    char *s = realloc(b->scratch, n);
    if (s == NULL) {
        return -ENOMEM;
    }
    b->scratch = s;
    b->scratch_cap = n;
    return 0;
}

natsStatus bridge_map_to_nats(struct bridge *b, natsMsg **out, const char *subject,
                              const char *reply, const sb_msg *m)
{
    natsMsg *nm = NULL;
    natsStatus s = natsMsg_Create(&nm, subject, reply, m->payload, (int)m->payload_len);
    if (s != NATS_OK) {
        return s;
    }
    s = natsMsgHeader_Set(nm, BRIDGE_HDR_ID, b->id);
    if (s == NATS_OK && m->headers_len > 0) {
        if (scratch_reserve(b, BRIDGE_BASE64_LEN(m->headers_len) + 1) < 0) {
            s = NATS_NO_MEMORY;
        } else {
            bridge_base64_encode(b->scratch, m->headers, m->headers_len);
            s = natsMsgHeader_Set(nm, BRIDGE_HDR_HEADERS, b->scratch);
        }
    }
    if (s != NATS_OK) {
        natsMsg_Destroy(nm);
        return s;
    }
    *out = nm;
    return NATS_OK;
}

int bridge_map_headers_from_nats(struct bridge *b, natsMsg *m, size_t *len)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(m, BRIDGE_HDR_HEADERS, &v) != NATS_OK || v == NULL) {
        *len = 0;
        return 0;
    }
    size_t vlen = strlen(v);
    if (scratch_reserve(b, vlen / 4 * 3 + 3) < 0) {
        return -ENOMEM;
    }
    size_t n;
    if (bridge_base64_decode(b->scratch, &n, v, vlen) < 0 || n > UINT16_MAX) {
        return -EINVAL;
    }
    *len = n;
    return 0;
}

bool bridge_map_is_own(const struct bridge *b, natsMsg *m)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, BRIDGE_HDR_ID, &v) == NATS_OK && v != NULL && strcmp(v, b->id) == 0;
}
