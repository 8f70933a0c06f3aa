/*
 * bench_relay.c - the "relay" transports: the broker's process layout with
 * none of its work. A relay process sits where the broker would, between
 * the sender and its receivers (or the requester and the responder), reads
 * what arrives into one buffer and writes it out unchanged: no parsing, no
 * routing, no queues. The peers are the raw rows' (bench_raw.c), whose
 * sender already writes MSG frames as the broker would deliver them, so a
 * receiver cannot tell a relay from a broker. A broker row against its
 * relay row is then the broker's own cost against the least any process in
 * the middle can cost: the same hops, wake-ups and copies through the
 * kernel, on the same kind of socket.
 *
 * One direction (thru, fanout): a blocking read of up to BENCH_RELAY_READ
 * bytes, written whole to every receiver in turn; no poll(), since there is
 * one input. Both directions (rtt): poll() on the two sockets, and what is
 * readable is written to the other side, as an event loop would.
 */
#include "bench.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* One read, as much as a raw receiver reads at once (BENCH_RAW_READ). */
#define BENCH_RELAY_READ (256u * 1024u)

/* Read once from a blocking socket. Returns the bytes read, 0 at the end
 * of the stream, or -errno. */
static ssize_t relay_read(int fd, uint8_t *buf, size_t cap)
{
    for (;;) {
        ssize_t n = recv(fd, buf, cap, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        return n < 0 ? -errno : n;
    }
}

/* A failure, unless the row is already failing for another reason (then
 * the peer that went away is that reason's consequence). */
static int relay_fail(bench_shared *sh, const char *what, int err)
{
    if (bench_aborted(sh)) {
        return -1;
    }
    return bench_fail(sh, "relay: %s: %s", what, strerror(err));
}

/* thru, fanout: copy until the sender closes its side. */
static int relay_one_way(bench_shared *sh, uint8_t *buf, int in, const int *out, unsigned count)
{
    for (;;) {
        ssize_t n = relay_read(in, buf, BENCH_RELAY_READ);
        if (n == 0) {
            return 0; /* the sender is done: its end marker went through */
        }
        if (n < 0) {
            return relay_fail(sh, "cannot read from the sender", (int)-n);
        }
        for (unsigned i = 0; i < count; i++) {
            int r = bench_write_all(out[i], buf, (size_t)n);
            if (r < 0) {
                return relay_fail(sh, "cannot write to a receiver", -r);
            }
        }
    }
}

/* rtt: copy both ways until one side closes. */
static int relay_two_way(bench_shared *sh, uint8_t *buf, int requester, int responder)
{
    struct pollfd pfd[2] = {
        {.fd = requester, .events = POLLIN},
        {.fd = responder, .events = POLLIN},
    };
    for (;;) {
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return relay_fail(sh, "poll", errno);
        }
        for (int i = 0; i < 2; i++) {
            if (pfd[i].revents == 0) {
                continue;
            }
            ssize_t n = relay_read(pfd[i].fd, buf, BENCH_RELAY_READ);
            if (n == 0) {
                return 0; /* the requester sent its end marker and left */
            }
            if (n < 0) {
                return relay_fail(sh,
                                  i == 0 ? "cannot read from the requester"
                                         : "cannot read from the responder",
                                  (int)-n);
            }
            int r = bench_write_all(pfd[1 - i].fd, buf, (size_t)n);
            if (r < 0) {
                return relay_fail(
                    sh, i == 0 ? "cannot write to the responder" : "cannot write to the requester",
                    -r);
            }
        }
    }
}

int bench_relay_run(const bench_job *job, bench_shared *sh, int in, const int *out, unsigned count)
{
    uint8_t *buf = malloc(BENCH_RELAY_READ);
    int r;

    if (buf == NULL) {
        r = bench_fail(sh, "relay: out of memory for a %u-byte buffer", BENCH_RELAY_READ);
    } else if (job->workload == BENCH_RTT) {
        r = relay_two_way(sh, buf, in, out[0]);
    } else {
        r = relay_one_way(sh, buf, in, out, count);
    }
    free(buf);
    close(in);
    for (unsigned i = 0; i < count; i++) {
        close(out[i]);
    }
    return r;
}
