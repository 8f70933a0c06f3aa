/*
 * whoami.c - a responder that answers by who asks, as the kernel says.
 *
 * Subscribes to a subject (default "example.whoami") with SB_SUB_SENDER,
 * so that every request carries the requester's pid, uid and gid as the
 * kernel gave them to the broker when the requester connected
 * (SO_PEERCRED). It answers root one way, its own user another, and
 * everyone else a third, without asking the broker and without trusting
 * anything the requester wrote: see docs/security.md, "Authorising
 * requests by uid". Over TCP there are no credentials, and it says so.
 *
 *     cc -o whoami whoami.c $(pkg-config --cflags --libs sockbus)
 *     ./whoami &                       # with a broker running
 *     sockbus req example.whoami       # "you are uid 1000, as I am: welcome"
 *
 * With a COUNT it answers that many requests and exits 0.
 */
#define _POSIX_C_SOURCE 200809L

#include <sockbus.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STEP_TIMEOUT_MS 5000

static int fail(sb_client *client, const char *what, int err)
{
    fprintf(stderr, "whoami: %s: %s\n", what, sb_strerror(err));
    sb_close(client); /* accepts NULL */
    return EXIT_FAILURE;
}

/* The answer for the sender of one request. */
static void answer_for(const sb_msg *msg, char *out, size_t len)
{
    sb_sender who;
    if (sb_msg_sender(msg, &who) < 0 || who.transport != 1) {
        snprintf(out, len, "I cannot tell who you are (no credentials over TCP): no");
    } else if (who.uid == 0) {
        snprintf(out, len, "you are root (pid %ld): yes", (long)who.pid);
    } else if (who.uid == getuid()) {
        snprintf(out, len, "you are uid %lu, as I am: welcome", (unsigned long)who.uid);
    } else {
        snprintf(out, len, "you are uid %lu, a stranger: no", (unsigned long)who.uid);
    }
}

int main(int argc, char **argv)
{
    const char *subject = argc > 1 ? argv[1] : "example.whoami";
    unsigned long count = 0;
    if (argc > 3 || (argc > 2 && sscanf(argv[2], "%lu", &count) != 1)) {
        fprintf(stderr, "usage: whoami [SUBJECT [COUNT]]\n");
        return 2;
    }
    sb_options opts = {.name = "whoami-example", .timeout_ms = STEP_TIMEOUT_MS};
    char why[SB_CONNECT_ERR_MAX];
    sb_client *client = NULL;
    int r = sb_connect_ex(&client, &opts, why, sizeof(why));
    if (r < 0) {
        fprintf(stderr, "whoami: %s\n", why);
        return EXIT_FAILURE;
    }
    r = sb_subscribe_ex(client, subject, NULL, SB_SUB_SENDER, NULL);
    if (r == 0) {
        r = sb_flush(client, STEP_TIMEOUT_MS); /* the subscription is confirmed */
    }
    if (r < 0) {
        return fail(client, subject, r);
    }
    printf("whoami: answering requests on %s\n", subject);
    fflush(stdout);
    for (unsigned long answered = 0; count == 0 || answered < count;) {
        sb_msg msg;
        r = sb_next_msg(client, &msg, -1);
        if (r < 0) {
            return fail(client, "waiting for requests", r);
        }
        if (msg.reply_len == 0) {
            continue; /* not a request */
        }
        char text[128];
        answer_for(&msg, text, sizeof(text));
        r = sb_publish(client, msg.reply, NULL, text, strlen(text));
        if (r < 0) {
            return fail(client, "answering", r);
        }
        answered++;
    }
    r = sb_flush(client, STEP_TIMEOUT_MS);
    sb_close(client);
    return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
