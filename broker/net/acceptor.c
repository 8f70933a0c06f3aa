/*
 * acceptor.c - the accept loop of a listening socket (see acceptor.h for
 * why it is not uv_listen()).
 *
 * A readiness event on the listening fd accepts up to ACCEPTOR_BATCH
 * connections with accept4() and hands each fd to the callback; the poll
 * is level-triggered, so whatever is left waits for the next iteration.
 * Running out of descriptors is the one error that needs care: the
 * listening socket stays readable while clients wait in its backlog, so
 * simply returning would spin. Those clients are refused instead, through
 * a descriptor kept in reserve for the purpose, and if that does not empty
 * the backlog the acceptor pauses before retrying.
 */
#include "acceptor.h"

#include "frame.h"
#include "listener.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define REFUSAL_TEXT "out of file descriptors; try again later"

static int reserve_open(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Log the overload once, then at most once per interval with a count. */
static void acceptor_log_overload(struct acceptor *a, int err)
{
    uint64_t now = uv_now(a->poll.loop);
    if (!a->overloaded_logged) {
        struct rlimit rl = {0};
        getrlimit(RLIMIT_NOFILE, &rl);
        log_error("accept on %s: %s with %u connections (RLIMIT_NOFILE %llu); refusing new "
                  "clients with ERR 5 until descriptors free up; raise the limit (ulimit -n, "
                  "LimitNOFILE=) or lower --max-connections",
                  a->name, strerror(err), a->nconns != NULL ? *a->nconns : 0,
                  (unsigned long long)rl.rlim_cur);
        a->overloaded_logged = true;
        a->last_log_ms = now;
        a->refused_unlogged = 0;
        return;
    }
    if (now - a->last_log_ms >= ACCEPTOR_LOG_INTERVAL_MS && a->refused_unlogged > 0) {
        log_error("accept on %s: %s: %llu clients refused in the last %llu s", a->name,
                  strerror(err), (unsigned long long)a->refused_unlogged,
                  (unsigned long long)((now - a->last_log_ms) / 1000));
        a->last_log_ms = now;
        a->refused_unlogged = 0;
    }
}

/* Accept one waiting client and refuse it with ERR 5. Returns 0, or the
 * errno of accept4() (EAGAIN once the backlog is empty). */
static int acceptor_refuse_one(struct acceptor *a)
{
    static const char text[] = REFUSAL_TEXT;
    uint8_t frame[FRAME_HEADER_SIZE + sizeof(text)];
    int fd = accept4(a->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        return errno;
    }
    size_t n = frame_encode(frame, FRAME_OP_ERR, 0, FRAME_ERR_LIMIT, NULL, 0, NULL, 0, NULL, 0,
                            text, sizeof(text) - 1);
    /* Best effort: a fresh socket takes a small frame at once. */
    ssize_t w = send(fd, frame, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)w;
    close(fd);
    return 0;
}

static void on_readable(uv_poll_t *h, int status, int events);

static void on_retry(uv_timer_t *h)
{
    struct acceptor *a = h->data;
    if (a->open) {
        uv_poll_start(&a->poll, UV_READABLE, on_readable);
    }
}

/* Stop watching the socket for ACCEPTOR_RETRY_MS. */
static void acceptor_pause(struct acceptor *a)
{
    uv_poll_stop(&a->poll);
    uv_timer_start(&a->retry, on_retry, ACCEPTOR_RETRY_MS, 0);
}

/* Out of descriptors (err: EMFILE, ENFILE, ENOBUFS or ENOMEM): refuse
 * what waits, through the reserve descriptor, or pause. */
static void acceptor_overloaded(struct acceptor *a, int err)
{
    bool drained = false;
    if (a->reserve_fd >= 0) {
        close(a->reserve_fd);
        a->reserve_fd = -1;
        /* Bounded: a flood of connects must not hold the loop. */
        for (unsigned i = 0; i < LISTENER_BACKLOG; i++) {
            int e = acceptor_refuse_one(a);
            if (e == EINTR || e == ECONNABORTED) {
                continue;
            }
            if (e != 0) {
                drained = e == EAGAIN || e == EWOULDBLOCK;
                break;
            }
            a->refused_unlogged++;
        }
        a->reserve_fd = reserve_open();
    }
    acceptor_log_overload(a, err);
    if (!drained) {
        acceptor_pause(a);
    }
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    struct acceptor *a = h->data;
    (void)events;
    if (status < 0) {
        log_error("accept on %s: %s; retrying in %u ms", a->name, uv_strerror(status),
                  ACCEPTOR_RETRY_MS);
        acceptor_pause(a);
        return;
    }
    for (unsigned i = 0; i < ACCEPTOR_BATCH && a->open; i++) {
        int fd = accept4(a->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            a->cb(a->data, fd, a->transport);
            continue;
        }
        int e = errno;
        switch (e) {
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return;
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
            continue; /* that client is gone; the next may be fine */
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            acceptor_overloaded(a, e);
            return;
        default:
            log_error("accept on %s: %s; retrying in %u ms", a->name, strerror(e),
                      ACCEPTOR_RETRY_MS);
            acceptor_pause(a);
            return;
        }
    }
}

int acceptor_start(struct acceptor *a, uv_loop_t *loop, int fd,
                   const struct transport_ops *transport, const char *name, acceptor_cb *cb,
                   void *data, const uint32_t *nconns)
{
    memset(a, 0, sizeof(*a));
    a->cb = cb;
    a->data = data;
    a->nconns = nconns;
    a->transport = transport;
    a->fd = fd;
    a->reserve_fd = reserve_open();
    snprintf(a->name, sizeof(a->name), "%s", name);
    int r = uv_poll_init(loop, &a->poll, fd);
    if (r < 0) {
        close(fd);
        a->fd = -1;
        if (a->reserve_fd >= 0) {
            close(a->reserve_fd);
            a->reserve_fd = -1;
        }
        return r;
    }
    uv_timer_init(loop, &a->retry);
    a->poll.data = a;
    a->retry.data = a;
    a->open = true; /* closed by acceptor_close() from here on */
    return uv_poll_start(&a->poll, UV_READABLE, on_readable);
}

void acceptor_close(struct acceptor *a)
{
    if (!a->open) {
        return;
    }
    a->open = false;
    /* uv_close() stops the poll at once, so the fd may be closed now. */
    uv_close((uv_handle_t *)&a->poll, NULL);
    uv_close((uv_handle_t *)&a->retry, NULL);
    close(a->fd);
    a->fd = -1;
    if (a->reserve_fd >= 0) {
        close(a->reserve_fd);
        a->reserve_fd = -1;
    }
}
