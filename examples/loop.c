/*
 * loop.c - drive libsockbus from your own event loop: a responder.
 *
 *     loop [SUBJECT [COUNT]]
 *
 * Answers every request on SUBJECT (default "example.upper") with its
 * payload in upper case, and exits 0 after COUNT requests (default: runs
 * until it is killed). It survives a restart of the broker: the library
 * reconnects and subscribes again, and the loop follows the socket as it
 * changes. Try it with a broker running:
 *
 *     ./loop &
 *     sockbus req example.upper 'hello'        # prints HELLO
 *
 * The library never blocks inside the loop: poll() waits on sb_fd() for
 * the events sb_events() asks for, and sb_process() writes what it can,
 * reads what is there, and hands each message to the callback. The
 * callback publishes the reply, which only buffers it; the comments in
 * main() show where it leaves. A real program puts its other descriptors
 * in the same poll() set.
 *
 * When the broker goes away, sb_fd() becomes -1 until the library is
 * back: the loop then polls nothing but waits sb_timeout_ms(), after which
 * sb_process() tries again. The state callback says when that happens (a
 * loop that registers the socket with epoll or libuv would stop watching
 * the old one there, and watch change->fd on RECONNECTED).
 *
 * Build it against the installed library:
 *
 *     cc -o loop loop.c $(pkg-config --cflags --libs sockbus)
 */
#define _POSIX_C_SOURCE 200809L

#include <sockbus.h>

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long the blocking calls before and after the loop may take, in
 * milliseconds. */
#define STEP_TIMEOUT_MS 5000

struct responder {
    unsigned long answered;
    int err; /* the first error of a publish made in the callback */
};

/*
 * The message callback, called from sb_process(). The message (its
 * subject, reply and payload) is valid only during this call. Publishing
 * from here is allowed: sb_publish() copies the reply into the client's
 * output buffer and returns; it does not read, so it cannot move the
 * message under us.
 */
static void on_request(sb_client *client, const sb_msg *msg, void *arg)
{
    struct responder *state = arg;
    if (msg->reply_len == 0 || state->err < 0) {
        return; /* not a request (nobody waits for an answer) */
    }
    char *upper = malloc(msg->payload_len > 0 ? msg->payload_len : 1);
    if (upper == NULL) {
        state->err = -ENOMEM;
        return;
    }
    const unsigned char *in = msg->payload;
    for (size_t i = 0; i < msg->payload_len; i++) {
        upper[i] = (char)toupper(in[i]);
    }
    int r = sb_publish(client, msg->reply, NULL, upper, msg->payload_len);
    free(upper);
    if (r < 0) {
        state->err = r;
        return;
    }
    state->answered++;
}

/* The state callback: one line when the broker goes away and one when it
 * is back. This loop asks sb_fd() on every turn, so it needs nothing else
 * from here. */
static void on_state(sb_client *client, const sb_state_change *change, void *arg)
{
    (void)arg;
    if (change->state == SB_STATE_DISCONNECTED) {
        fprintf(stderr, "loop: lost the broker at %s (%s); reconnecting\n", sb_endpoint(client),
                sb_strerror(change->err));
    } else if (change->state == SB_STATE_RECONNECTED) {
        long long gap = (long long)(change->back_at.tv_sec - change->lost_at.tv_sec) * 1000 +
                        (change->back_at.tv_nsec - change->lost_at.tv_nsec) / 1000000;
        fprintf(stderr, "loop: the broker at %s is back after %lld ms\n", sb_endpoint(client), gap);
    }
}

static int fail(sb_client *client, const char *what, int err)
{
    fprintf(stderr, "loop: %s: %s\n", what, sb_strerror(err));
    sb_close(client); /* accepts NULL */
    return EXIT_FAILURE;
}

int main(int argc, char **argv)
{
    const char *subject = argc > 1 ? argv[1] : "example.upper";
    unsigned long count = 0;
    if (argc > 3 || (argc > 2 && sscanf(argv[2], "%lu", &count) != 1)) {
        fprintf(stderr, "usage: loop [SUBJECT [COUNT]]\n");
        return 2;
    }

    sb_options opts = {.name = "loop-example", .timeout_ms = STEP_TIMEOUT_MS, .reconnect = true};
    char why[SB_CONNECT_ERR_MAX];
    sb_client *client = NULL;
    int r = sb_connect_ex(&client, &opts, why, sizeof(why));
    if (r < 0) {
        fprintf(stderr, "loop: %s\n", why);
        return EXIT_FAILURE;
    }

    struct responder state = {0};
    sb_set_msg_cb(client, on_request, &state);
    sb_set_state_cb(client, on_state, NULL);
    r = sb_subscribe(client, subject, NULL, NULL);
    if (r < 0) {
        return fail(client, subject, r);
    }
    /* Blocking calls are fine before the loop starts: this one confirms
     * the subscription (an ACL may refuse it), so requesters sent from now
     * on reach us. */
    r = sb_flush(client, STEP_TIMEOUT_MS);
    if (r < 0) {
        return fail(client, subject, r);
    }
    /* Said once the subscription is in, so that whoever started us knows
     * when requests will find us. */
    if (printf("loop: answering requests on %s\n", subject) < 0 || fflush(stdout) != 0) {
        perror("loop: stdout");
        sb_close(client);
        return EXIT_FAILURE;
    }

    while (count == 0 || state.answered < count) {
        /* Ask sb_events() every time: it adds POLLOUT while output is
         * buffered, which is how a reply published in the callback gets
         * written. */
        /* While the broker is away sb_fd() is -1, which poll() skips, and
         * sb_timeout_ms() says when sb_process() wants to dial again
         * (otherwise it is -1: wait for the socket only). */
        struct pollfd pfd = {.fd = sb_fd(client), .events = sb_events(client)};
        if (poll(&pfd, 1, sb_timeout_ms(client)) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail(client, "poll", -errno);
        }
        /* sb_process() first writes what is buffered, then reads and calls
         * on_request() for each message. The replies published there stay
         * in the buffer when it returns; sb_events() now includes POLLOUT,
         * the next poll() returns at once, and the next sb_process() writes
         * them out. */
        r = sb_process(client);
        if (r < 0) {
            return fail(client, "connection", r);
        }
        if (state.err == SB_E_DISCONNECTED) {
            state.err = 0; /* a reply lost with the broker: its requester learns */
        }
        if (state.err < 0) {
            return fail(client, "reply", state.err);
        }
    }
    /* The last replies may still be buffered: leaving the loop, push them
     * out and wait until the broker has them. sb_close() alone writes only
     * what the socket takes at once. */
    r = sb_flush(client, STEP_TIMEOUT_MS);
    if (r < 0) {
        return fail(client, "flush", r);
    }
    sb_close(client);
    return EXIT_SUCCESS;
}
