/*
 * pubsub.c - publish and subscribe with libsockbus, the blocking way.
 *
 * Connects to the broker (the default endpoint: $SOCKBUS_SOCKET, else
 * $XDG_RUNTIME_DIR/sockbus.sock, else /tmp/sockbus-UID.sock), subscribes
 * to "sensors.>", publishes three readings, waits until the broker has
 * processed them (sb_flush), and prints the messages its own subscription
 * received: the client hears its own publishes unless it connects with
 * no_echo. Every call is checked; a failure prints one line on stderr and
 * exits 1, so with no broker running it says so instead of crashing.
 *
 * Build it against the installed library:
 *
 *     cc -o pubsub pubsub.c $(pkg-config --cflags --libs sockbus)
 *
 * and run it with a broker: `sockbusd & ./pubsub`.
 */
#define _POSIX_C_SOURCE 200809L

#include <sockbus.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long any one step may take, in milliseconds. */
#define STEP_TIMEOUT_MS 5000

static const char *const readings[][2] = {
    {"sensors.kitchen.temp", "21.5"},
    {"sensors.kitchen.humidity", "40"},
    {"sensors.garage.temp", "12.0"},
};
#define READINGS (sizeof(readings) / sizeof(readings[0]))

/* One line on stderr: what failed, and why (sb_strerror names any code). */
static int fail(sb_client *client, const char *what, int err)
{
    fprintf(stderr, "pubsub: %s: %s\n", what, sb_strerror(err));
    sb_close(client); /* accepts NULL */
    return EXIT_FAILURE;
}

int main(void)
{
    /* sb_connect_ex() also writes one line for a person saying which
     * endpoint it tried and what to do (start sockbusd, set
     * SOCKBUS_SOCKET, ...). */
    sb_options opts = {.name = "pubsub-example", .timeout_ms = STEP_TIMEOUT_MS};
    char why[SB_CONNECT_ERR_MAX];
    sb_client *client = NULL;
    int r = sb_connect_ex(&client, &opts, why, sizeof(why));
    if (r < 0) {
        fprintf(stderr, "pubsub: %s\n", why);
        return EXIT_FAILURE;
    }

    uint32_t sid;
    r = sb_subscribe(client, "sensors.>", NULL, &sid);
    if (r < 0) {
        return fail(client, "subscribe to sensors.>", r);
    }
    for (size_t i = 0; i < READINGS; i++) {
        const char *value = readings[i][1];
        r = sb_publish(client, readings[i][0], NULL, value, strlen(value));
        if (r < 0) {
            return fail(client, readings[i][0], r);
        }
    }
    /* Publishes are buffered; the flush sends them and returns once the
     * broker has processed them, which also reports a refused SUB (an ACL
     * may deny it) as SB_E_PERMISSION. */
    r = sb_flush(client, STEP_TIMEOUT_MS);
    if (r < 0) {
        return fail(client, "flush", r);
    }

    /* The broker queued our messages to us before it answered the flush,
     * so they are here or on their way. A message is valid until the next
     * call on the client: print it before asking for the next one. */
    for (size_t got = 0; got < READINGS; got++) {
        sb_msg m;
        r = sb_next_msg(client, &m, STEP_TIMEOUT_MS);
        if (r < 0) {
            return fail(client, "receive", r);
        }
        printf("%s: %.*s\n", m.subject, (int)m.payload_len, (const char *)m.payload);
    }
    if (fflush(stdout) != 0) {
        perror("pubsub: stdout");
        sb_close(client);
        return EXIT_FAILURE;
    }
    sb_close(client);
    return EXIT_SUCCESS;
}
