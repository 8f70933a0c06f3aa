/*
 * bridge_reconnect.c - keeping the bus connection up.
 *
 * The bridge reconnects by itself rather than through the library's
 * reconnect (sb_options.reconnect), which would hold imports in its
 * buffer while the bus is away: a bridge counts them as dropped instead,
 * so that its counters say what was lost. When
 * a call on the bus connection fails, the client is closed and a new
 * connect is tried after a backoff, from 10 ms doubling to 1 s with
 * jitter, for ever; a new connection gets every subscription again
 * (bridge_bus_subscribe()). The main loop asks when the next attempt is
 * due (bridge_reconnect_wait_ms()) and makes it (bridge_reconnect_poll()).
 * Messages from NATS that arrive while the bus is away are counted as
 * dropped (dropped_import), never queued without bound.
 */
#include "bridge.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 1000

void bridge_reconnect_init(struct bridge *b)
{
    b->bus = NULL;
    b->reconnect_at_ms = 0; /* at once */
    b->backoff_ms = BACKOFF_MIN_MS;
}

static void schedule(struct bridge *b, int64_t now_ms)
{
    /* Jitter: 50..100 % of the backoff, so that bridges restarted together
     * do not knock together. */
    int wait = b->backoff_ms / 2 + (int)(random() % (b->backoff_ms / 2 + 1));
    b->reconnect_at_ms = now_ms + wait;
    b->backoff_ms = b->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b->backoff_ms * 2;
}

int bridge_reconnect_poll(struct bridge *b, int64_t now_ms)
{
    if (b->bus != NULL) {
        return 0;
    }
    if (now_ms < b->reconnect_at_ms) {
        return -EAGAIN;
    }
    sb_options o = {
        .endpoint = b->opt.endpoint,
        .name = "sockbus-nats",
        .no_echo = true,
        .timeout_ms = 2000,
    };
    char err[SB_CONNECT_ERR_MAX];
    sb_client *c;
    int r = sb_connect_ex(&c, &o, err, sizeof(err));
    if (r < 0) {
        if (!b->bus_told_down) {
            bridge_log(b, BRIDGE_LOG_NORMAL, "%s; retrying", err);
            b->bus_told_down = true;
        }
        schedule(b, now_ms);
        return r;
    }
    b->bus = c;
    bridge_bus_setup_client(b);
    r = bridge_bus_subscribe(b);
    if (r < 0) {
        bridge_log(b, BRIDGE_LOG_QUIET, "cannot subscribe on the bus (%s): %s", sb_endpoint(c),
                   sb_strerror(r));
        sb_close(c);
        b->bus = NULL;
        schedule(b, now_ms);
        return r;
    }
    if (b->stats.bus_connected || b->bus_told_down) {
        bridge_log(b, BRIDGE_LOG_NORMAL, "bus connection back (%s), subscriptions renewed",
                   sb_endpoint(c));
    } else {
        bridge_log(b, BRIDGE_LOG_VERBOSE, "connected to the bus at %s", sb_endpoint(c));
    }
    if (b->bus_was_up) {
        b->stats.bus_reconnects++;
    }
    b->bus_was_up = true;
    b->bus_told_down = false;
    b->bus_told_drops = false;
    b->stats.bus_connected = true;
    b->backoff_ms = BACKOFF_MIN_MS;
    return 0;
}

void bridge_reconnect_lost(struct bridge *b, int err)
{
    if (b->bus == NULL) {
        return;
    }
    bridge_log(b, BRIDGE_LOG_NORMAL, "bus connection lost (%s); reconnecting", sb_strerror(err));
    sb_close(b->bus);
    b->bus = NULL;
    b->stats.bus_connected = false;
    b->bus_told_down = true;
    b->backoff_ms = BACKOFF_MIN_MS;
    schedule(b, bridge_now_ms());
}

int bridge_reconnect_wait_ms(const struct bridge *b, int64_t now_ms)
{
    if (b->bus != NULL) {
        return -1;
    }
    int64_t d = b->reconnect_at_ms - now_ms;
    return d < 0 ? 0 : (int)d;
}
