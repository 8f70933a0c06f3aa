/*
 * main.c - sockbus-nats: a bridge from the local bus into NATS.
 *
 * One thread runs the loop below; it owns both connections and waits in
 * poll() for four things: the bus socket (sb_events()), the NATS socket
 * (libnats runs in this loop, bridge_nats.c), an eventfd libnats' threads
 * wake the loop with (a new socket after a reconnect, a reply from NATS),
 * and a signalfd.
 * SIGINT and SIGTERM stop the bridge, SIGUSR1 logs its counters; they are
 * blocked before libnats starts its threads, so only the signalfd sees
 * them. When the bus is away, poll()'s timeout is the next reconnect
 * attempt (bridge_reconnect.c). Messages from NATS are handled in batches,
 * so that a flood from NATS cannot keep the bus socket from being read.
 */
#include "bridge.h"
#include "stdfds.h"
#include "text.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

/* How many NATS messages are handled between two looks at the bus. */
#define DRAIN_BATCH 256

static int log_level = BRIDGE_LOG_NORMAL;

void bridge_log(const struct bridge *b, int level, const char *fmt, ...)
{
    if (level > log_level) {
        return;
    }
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    /* Subjects and texts may come from any peer: escaped, one line. */
    char out[TEXT_ESCAPE_MAX(sizeof(line))];
    text_escape(out, sizeof(out), line, len);
    fprintf(stderr, BRIDGE_PROG ": %s\n", out);
}

int64_t bridge_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int bridge_init(struct bridge *b)
{
    b->export_sids = calloc(b->opt.exports.len + 1, sizeof(*b->export_sids));
    if (b->export_sids == NULL) {
        bridge_log(b, BRIDGE_LOG_QUIET, "cannot allocate the %zu export subscription(s): %s",
                   b->opt.exports.len, strerror(ENOMEM));
        return -ENOMEM;
    }
    int r = bridge_replies_init(&b->to_bus, b->opt.max_requests);
    if (r == 0) {
        r = bridge_replies_init(&b->to_nats, b->opt.max_requests);
    }
    if (r < 0) {
        /* Out of memory for the tables, or no key for their tags
         * (getrandom()). */
        bridge_log(b, BRIDGE_LOG_QUIET,
                   "cannot set up the tables of requests in flight (%u each way): %s; %s",
                   b->opt.max_requests, strerror(-r),
                   r == -ENOMEM ? "try a smaller --max-requests"
                                : "the kernel's random source (getrandom()) is not available");
        return r;
    }
    snprintf(b->stats_subject, sizeof(b->stats_subject), "$BRIDGE.%s.STATS", b->opt.name);
    bridge_reconnect_init(b);
    return 0;
}

static void bridge_deinit(struct bridge *b)
{
    if (b->bus != NULL) {
        sb_flush(b->bus, 1000);
        sb_close(b->bus);
        b->bus = NULL;
    }
    bridge_nats_stop(b);
    bridge_replies_deinit(&b->to_bus);
    bridge_replies_deinit(&b->to_nats);
    free(b->export_sids);
    free(b->scratch);
    bridge_options_deinit(&b->opt);
}

static int run(struct bridge *b, int sfd)
{
    bool more = false; /* NATS messages may be waiting in the subscriptions */
    for (;;) {
        int64_t now = bridge_now_ms();
        bridge_reconnect_poll(b, now);
        /* Messages from NATS go to the bus while it takes them without
         * blocking: held back by the broker (a lossless subscriber), the
         * loop goes on reading NATS into libnats' bounded pending lists,
         * where what overflows is counted, instead of stopping there. */
        bool bus_full = more && b->bus != NULL && !bridge_bus_writable(b);
        if (more && !bus_full) {
            more = bridge_nats_drain(b, DRAIN_BATCH);
        }
        /* Too much waits to go to NATS: the bus waits (its export
         * subscriptions are lossless, so its publishers do). */
        bool bus_waits = bridge_nats_out_full(b);
        struct pollfd p[4] = {
            {.fd = sfd, .events = POLLIN},
            {.fd = bridge_nats_wake_fd(b), .events = POLLIN},
            {.fd = -1},
            {.fd = -1},
        };
        if (b->bus != NULL && !bus_waits) {
            p[2].fd = sb_fd(b->bus);
            p[2].events = (short)(sb_events(b->bus) | (bus_full ? POLLOUT : 0));
        }
        int timeout = more && !bus_full ? 0 : bridge_reconnect_wait_ms(b, bridge_now_ms());
        int due = bridge_nats_no_responders_due(b, bridge_now_ms());
        if (due >= 0 && (timeout < 0 || due < timeout)) {
            timeout = due;
        }
        /* Last: everything published to NATS above is to be written. */
        bridge_nats_pollfd(b, &p[3]);
        if (poll(p, 4, timeout) < 0 && errno != EINTR) {
            bridge_log(b, BRIDGE_LOG_QUIET, "cannot wait for the bus and NATS (poll): %s; stopping",
                       strerror(errno));
            return 1;
        }
        if (p[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGUSR1) {
                    bridge_stats_print(b);
                } else {
                    bridge_log(b, BRIDGE_LOG_VERBOSE, "stopping on signal %u", si.ssi_signo);
                    return 0;
                }
            }
        }
        if (p[1].revents & POLLIN) {
            /* libnats changed its socket (the next round polls the new
             * one), or a reply came. */
            bridge_nats_woken(b);
            more = true;
        }
        if (p[3].revents != 0) {
            bridge_nats_events(b, p[3].revents);
            more = true;
        }
        if (b->bus != NULL && !bus_waits && (p[2].revents != 0 || (more && !bus_full))) {
            int r = sb_process(b->bus);
            if (r < 0) {
                bridge_reconnect_lost(b, r);
            }
        }
    }
}

int main(int argc, char **argv)
{
    stdfds_open();
    struct bridge *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        fprintf(stderr, BRIDGE_PROG ": out of memory\n");
        return 1;
    }
    int r = bridge_options_parse(&b->opt, argc, argv);
    if (r != 0) {
        bridge_options_deinit(&b->opt);
        free(b);
        return r > 0 ? 0 : 2;
    }
    log_level = b->opt.log;
    srandom((unsigned)(getpid() ^ time(NULL)));

    /* Before libnats starts threads, which inherit the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        fprintf(stderr,
                BRIDGE_PROG ": cannot set up signal handling (signalfd): %s; is the open "
                            "file limit (ulimit -n) reached?\n",
                strerror(errno));
        return 1;
    }

    int status = 1;
    if (bridge_init(b) == 0 && bridge_nats_start(b) == 0) {
        bridge_log(b, BRIDGE_LOG_VERBOSE, "bridge %s: %zu export(s), %zu import(s); stats on %s",
                   b->id, b->opt.exports.len, b->opt.imports.len, b->stats_subject);
        status = run(b, sfd);
        bridge_stats_print(b);
    }
    bridge_deinit(b);
    free(b);
    close(sfd);
    return status;
}
