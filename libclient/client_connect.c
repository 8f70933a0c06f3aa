/*
 * client_connect.c - how a client comes to be and goes: finding the
 * endpoint, connecting over a Unix socket or TCP, checking whom it reached
 * (SO_PEERCRED, the trust check), the HELLO/WELCOME handshake through
 * wire/handshake.c, and closing. This is where reconnecting will live too,
 * as in a dialer: what a connection needs to start over is all here.
 *
 * The dialer (docs/protocol.md, "Reconnecting"). A client made with
 * sb_options.reconnect keeps what a new connection needs: its name, echo,
 * the trust check, the live subscriptions (`subs`, by increasing sid, with
 * the messages an auto-unsubscribe count still allows, counted as they
 * arrive) and, while disconnected, the publishes made meanwhile (`held`,
 * encoded frames, up to reconnect_buffer bytes). A connection error
 * becomes the DISCONNECTED state at the boundary of the call that met it
 * (client_lost_check()): the publishes not written in full are kept,
 * control frames dropped (the replay redoes what matters), the flush and
 * requests in flight fail. Attempts are made by the calls themselves,
 * never by a thread or a timer of ours: a blocking call waits for the next
 * attempt within its timeout, sb_process() makes one once sb_timeout_ms()
 * has passed. A successful attempt says HELLO, waits for WELCOME, replays
 * the subscriptions, the inbox (under the new client id's prefix) and the
 * held publishes, in that order, before anything the application sends
 * next.
 *
 * Connecting never blocks past the deadline given in sb_options: the socket
 * is non-blocking from its creation, a TCP connect is waited for with
 * poll(), and the handshake is one client_pump() for WELCOME. A broker
 * that refuses us sends ERR and closes; sb_connect_ex() reports that ERR
 * (escaped) rather than the broken pipe that follows it.
 */
#include "client.h"

#include "endpoint.h"
#include "handshake.h"
#include "text.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- a client ----------------------------------------------------------- */

int client_new(sb_client **out)
{
    sb_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return -ENOMEM;
    }
    c->fd = -1;
    c->broker_pid = -1;
    c->broker_uid = (uid_t)-1;
    c->max_frame = SB_MAX_FRAME_DEFAULT;
    c->next_sid = 1;
    c->state = SB_STATE_CONNECTED;
    c->wbuf = malloc(CLIENT_WBUF_SIZE);
    c->rbuf = malloc(CLIENT_RBUF_SIZE);
    c->rcap = CLIENT_RBUF_SIZE;
    if (c->wbuf == NULL || c->rbuf == NULL) {
        sb_close(c);
        return -ENOMEM;
    }
    *out = c;
    return 0;
}

/* ---- connecting --------------------------------------------------------- */

/*
 * Send buffer of a client's Unix socket, the same as the broker's end has
 * (its unix_send_buffer). On a Unix stream socket the sender's SO_SNDBUF
 * is all that may be in flight towards the broker (the receiver's
 * SO_RCVBUF plays no part), and the default (net.core.wmem_default, about
 * 208 KiB) holds less than two of our 128 KiB batches: a publisher that
 * runs ahead of the broker blocks in poll() every ~180 KiB, twice as often
 * as over TCP loopback, whose buffers grow by themselves to MiBs. Measured
 * with the broker's system calls and context switches per message while
 * `sockbus bench thru -z 16` ran (perf stat): publisher writes 0.56-0.65
 * per 1000 messages (TCP 0.36), its polls 0.34-0.40 (TCP 0.15-0.18),
 * broker context switches 0.17-0.21 (TCP 0.08); with 1 MiB, 0.35, 0.13-0.18
 * and 0.08, as over TCP. Kernel memory, taken only while bytes are queued:
 * an idle connection costs nothing more. The kernel doubles the value and
 * caps it at net.core.wmem_max.
 */
#define CLIENT_UNIX_SNDBUF (1024 * 1024)

static int connect_unix(const char *path, int64_t deadline, int *out)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sun.sun_path)) {
        return -ENAMETOOLONG;
    }
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int sndbuf = CLIENT_UNIX_SNDBUF; /* best effort: the default only costs speed */
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
            *out = fd;
            return 0;
        }
        int err = errno;
        if (err == EINTR) {
            continue;
        }
        /* A full backlog says EAGAIN on a non-blocking Unix socket: retry
         * shortly rather than fail a client during a connection burst. */
        if (err == EAGAIN && client_remaining_ms(deadline) != 0) {
            poll(NULL, 0, 1);
            continue;
        }
        close(fd);
        return err == EAGAIN ? -ETIMEDOUT : -err;
    }
}

static int connect_tcp(const char *endpoint, int64_t deadline, int *out)
{
    char host[256];
    char port[8];
    int r = endpoint_parse_tcp(endpoint, host, sizeof(host), port, sizeof(port));
    if (r < 0) {
        return r;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    if (getaddrinfo(host, port, &hints, &res) != 0) {
        return -EHOSTUNREACH;
    }
    r = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            r = -errno;
            continue;
        }
        /* EINTR, like EINPROGRESS, leaves the connect going on: the poll
         * and SO_ERROR below learn how it ends. */
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS &&
            errno != EINTR) {
            r = -errno;
            close(fd);
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n;
        do {
            n = poll(&p, 1, client_remaining_ms(deadline));
        } while (n < 0 && errno == EINTR);
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (n == 0) {
            soerr = ETIMEDOUT;
        } else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
            soerr = errno;
        }
        if (soerr != 0) {
            r = -soerr;
            close(fd);
            continue;
        }
        /* Small frames must not wait for Nagle: we batch ourselves. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        *out = fd;
        r = 0;
        break;
    }
    freeaddrinfo(res);
    return r;
}

/* Was the endpoint named explicitly (opts->endpoint, $SOCKBUS_SOCKET),
 * rather than found by the default rule? */
static bool endpoint_explicit(const sb_options *opts)
{
    const char *env = getenv("SOCKBUS_SOCKET");
    return (opts->endpoint != NULL && opts->endpoint[0] != '\0') || (env != NULL && env[0] != '\0');
}

/*
 * Learn who serves the Unix socket just connected (SO_PEERCRED), and with
 * `check`, refuse a broker that is neither us nor root: on a default path
 * anyone who can write to the directory (anyone at all, in /tmp) may have
 * bound the socket first, and what we would send it (publishes, requests)
 * is ours. Runs before anything is sent. Returns 0, SB_E_UNTRUSTED with a
 * line in err, or a negative errno.
 */
static int client_check_broker(sb_client *c, bool check, char *err, size_t err_len)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        return check ? -errno : 0; /* cannot tell: trust only a named one */
    }
    c->broker_pid = cred.pid;
    c->broker_uid = cred.uid;
    if (!check || cred.uid == 0 || cred.uid == getuid() || cred.uid == geteuid()) {
        return 0;
    }
    if (err != NULL && err_len > 0) {
        snprintf(err, err_len,
                 "refusing the broker at %s: its socket is served by uid %lu (pid %ld), not by "
                 "you (uid %lu) or root, so another user may be posing as your broker; if you "
                 "trust it, name it explicitly (SOCKBUS_SOCKET=%s, or the program's socket "
                 "option), otherwise start your own on a private socket (with XDG_RUNTIME_DIR "
                 "set)",
                 c->endpoint, (unsigned long)cred.uid, (long)cred.pid, (unsigned long)getuid(),
                 c->endpoint);
    }
    return SB_E_UNTRUSTED;
}

/* A socket to the endpoint, checked when `trust_check` (SB_E_UNTRUSTED
 * with a line in err: *described). */
static int client_open(sb_client *c, int64_t deadline, char *err, size_t err_len, bool *described)
{
    int r;
    if (sb_endpoint_is_tcp(c->endpoint)) {
        r = connect_tcp(c->endpoint, deadline, &c->fd);
    } else {
        r = connect_unix(c->endpoint, deadline, &c->fd);
        if (r == 0) {
            r = client_check_broker(c, c->trust_check, err, err_len);
            *described = r == SB_E_UNTRUSTED;
        }
    }
    return r;
}

/* ---- the handshake ------------------------------------------------------ */

/* HELLO, through wire/handshake.c. */
static int client_send_hello(sb_client *c)
{
    char *json;
    size_t len;
    int r = handshake_hello_encode(c->name, !c->no_echo, &json, &len);
    if (r < 0) {
        return r;
    }
    r = client_send_frame(c, FRAME_OP_HELLO, 0, 0, NULL, 0, NULL, 0, NULL, 0, json, len);
    free(json);
    return r;
}

int client_handle_welcome(sb_client *c, const struct frame *f)
{
    struct handshake_welcome w;
    int r = handshake_welcome_parse(f->payload, f->payload_len, &w);
    if (r < 0) {
        return r;
    }
    c->client_id = w.client_id;
    if (w.max_frame != 0) {
        c->max_frame = w.max_frame;
    }
    memcpy(c->inbox_prefix, w.inbox_prefix, sizeof(c->inbox_prefix));
    memcpy(c->server_version, w.version, sizeof(c->server_version));
    c->welcomed = true;
    return 0;
}

static bool have_welcome(const sb_client *c)
{
    return c->welcomed;
}

/* ---- connect and close -------------------------------------------------- */

/* A handshake that failed with `r`: a broker that refuses us (max_connections,
 * shutting down) sends ERR and closes, so read what is left and report its
 * reason rather than the broken pipe that follows it. */
static int client_refusal(sb_client *c, int r)
{
    client_read_some(c);
    client_scan(c);
    return c->refusal != 0 ? c->refusal : r;
}

/* What to try after a connect failed with `r` (see client_connect_error()). */
static const char *client_connect_hint(int r)
{
    switch (r) {
    case SB_E_LIMIT:
        return "try again later, or raise sockbusd's max_connections";
    case SB_E_SHUTDOWN:
        return "try again once it is back";
    case SB_E_VERSION:
    case SB_E_PROTOCOL:
    case SB_E_HELLO_REQUIRED:
        return "use libsockbus and sockbusd from the same release";
    case -EACCES:
    case -EPERM:
        return "the socket's owner can share it with 'sockbusd --mode 0660 --group NAME'";
    case -EPIPE:
    case -ECONNRESET:
    case SB_E_CLOSED:
        return "the broker closed the connection during the handshake; it may be at "
               "max_connections or shutting down, try again later";
    default:
        return NULL;
    }
}

/* The line sb_connect_ex() gives for a failure other than SB_E_UNTRUSTED:
 * what failed, where (the broker's own words when it refused us), and what
 * to try. */
static void client_connect_error(const sb_client *c, const sb_options *opts, int r, char *err,
                                 size_t err_len)
{
    bool named = opts->endpoint != NULL && opts->endpoint[0] != '\0';
    const char *where = c->endpoint[0] != '\0' ? c->endpoint
                        : named                ? opts->endpoint
                                               : "the default endpoint";
    const char *hint = client_connect_hint(r);
    if (c->refusal != 0 && c->last_err[0] != '\0') {
        char text[TEXT_ESCAPE_MAX(CLIENT_ERRTEXT_MAX)];
        text_escape(text, sizeof(text), c->last_err, strlen(c->last_err));
        snprintf(err, err_len, "the broker at %s refused the connection: %s (%s)%s%s", where, text,
                 sb_strerror(r), hint != NULL ? "; " : "", hint != NULL ? hint : "");
    } else if (r == -ETIMEDOUT) {
        snprintf(err, err_len,
                 "cannot connect to %s: no answer within %d ms; is the broker stuck or "
                 "overloaded? (a larger timeout_ms waits longer)",
                 where, c->connect_timeout_ms);
    } else if (hint != NULL) {
        snprintf(err, err_len, "cannot connect to %s: %s; %s", where, sb_strerror(r), hint);
    } else if (sb_endpoint_is_tcp(where)) {
        snprintf(err, err_len,
                 "cannot connect to %s: %s; is sockbusd listening there? start it with "
                 "'sockbusd --tcp %s'",
                 where, sb_strerror(r), where + strlen("tcp://"));
    } else if (c->endpoint[0] != '\0' && endpoint_explicit(opts)) {
        snprintf(err, err_len,
                 "cannot connect to %s: %s; is sockbusd running? start it with "
                 "'sockbusd --socket %s', or name another endpoint",
                 where, sb_strerror(r), where);
    } else {
        snprintf(err, err_len,
                 "cannot connect to %s: %s; is sockbusd running? start it with 'sockbusd', or "
                 "name another endpoint (SOCKBUS_SOCKET)",
                 where, sb_strerror(r));
    }
}

int client_connect(sb_client **out, const sb_options *opts, char *err, size_t err_len)
{
    static const sb_options defaults = {0};
    if (opts == NULL) {
        opts = &defaults;
    }
    int timeout = opts->timeout_ms == 0 ? CLIENT_CONNECT_TIMEOUT_MS : opts->timeout_ms;
    int64_t deadline = client_deadline_after(timeout);
    if (err_len == 0) {
        err = NULL;
    }

    sb_client *c;
    int r = client_new(&c);
    if (r < 0) {
        if (err != NULL) {
            snprintf(err, err_len, "cannot connect: %s", sb_strerror(r));
        }
        return r;
    }
    bool described = false;
    c->trust_check = !endpoint_explicit(opts);
    c->no_echo = opts->no_echo;
    c->connect_timeout_ms = timeout;
    c->reconnect = opts->reconnect;
    c->reconnect_max_ms = opts->reconnect_max_ms > 0 ? opts->reconnect_max_ms : 0;
    c->reconnect_buffer =
        opts->reconnect_buffer > 0 ? opts->reconnect_buffer : CLIENT_RECONNECT_BUFFER_DEF;
    if (opts->name != NULL && (c->name = strdup(opts->name)) == NULL) {
        r = -ENOMEM;
        goto fail;
    }
    r = sb_endpoint_resolve(opts->endpoint, c->endpoint, sizeof(c->endpoint));
    if (r < 0) {
        goto fail;
    }
    r = client_open(c, deadline, err, err_len, &described);
    if (r < 0) {
        goto fail;
    }
    r = client_send_hello(c);
    if (r == 0) {
        r = client_pump(c, have_welcome, deadline);
    }
    if (r < 0 && r != -ETIMEDOUT) {
        r = client_refusal(c, r);
    }
    if (r < 0) {
        goto fail;
    }
    *out = c;
    return 0;
fail:
    if (err != NULL && !described) {
        client_connect_error(c, opts, r, err, err_len);
    }
    sb_close(c);
    return r;
}

SB_EXPORT void sb_close(sb_client *c)
{
    if (c == NULL) {
        return;
    }
    if (c->fd >= 0) {
        if (c->closed_err == 0) {
            client_write_some(c); /* best effort: never block in close */
        }
        close(c->fd);
    }
    client_requests_deinit(c);
    client_fds_free(c);
    for (size_t i = 0; i < c->nsubs; i++) {
        free(c->subs[i].pattern);
    }
    free(c->subs);
    free(c->held.data);
    free(c->name);
    free(c->wbuf);
    free(c->rbuf);
    free(c);
}

/* ---- the live subscriptions --------------------------------------------- */

/* The tracked subscription with this sid, or NULL: sids only grow, so the
 * array is sorted by them and a MSG finds its own in O(log n). */
static struct client_sub *client_subs_find(sb_client *c, uint32_t sid)
{
    size_t lo = 0;
    size_t hi = c->nsubs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->subs[mid].sid < sid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < c->nsubs && c->subs[lo].sid == sid && c->subs[lo].live ? &c->subs[lo] : NULL;
}

int client_subs_add(sb_client *c, uint32_t sid, uint8_t flags, const char *pattern,
                    const char *queue)
{
    if (c->nsubs == c->subs_cap) {
        size_t cap = c->subs_cap ? c->subs_cap * 2 : 8;
        struct client_sub *p = realloc(c->subs, cap * sizeof(*p));
        if (p == NULL) {
            return -ENOMEM;
        }
        c->subs = p;
        c->subs_cap = cap;
    }
    size_t pl = strlen(pattern);
    size_t ql = queue != NULL ? strlen(queue) : 0;
    char *text = malloc(pl + 1 + ql + 1);
    if (text == NULL) {
        return -ENOMEM;
    }
    memcpy(text, pattern, pl + 1);
    if (queue != NULL) {
        memcpy(text + pl + 1, queue, ql + 1);
    }
    c->subs[c->nsubs++] = (struct client_sub){
        .sid = sid,
        .flags = flags,
        .live = true,
        .pattern = text,
        .queue = queue != NULL ? text + pl + 1 : NULL,
    };
    return 0;
}

/* Forget a subscription; the array is compacted (and the patterns of the
 * dead freed) once most of it is dead, so that unsubscribing many is not
 * quadratic. Not during the replay, which walks the array and sends from
 * the patterns while it may read (an auto-unsubscribe count running out). */
static void client_subs_end(sb_client *c, struct client_sub *s)
{
    if (s->remaining > 0) {
        c->subs_counted--;
        s->remaining = 0;
    }
    s->live = false;
    if (++c->subs_dead * 2 < c->nsubs || c->replaying) {
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < c->nsubs; i++) {
        if (c->subs[i].live) {
            c->subs[n++] = c->subs[i];
        } else {
            free(c->subs[i].pattern);
        }
    }
    c->nsubs = n;
    c->subs_dead = 0;
}

void client_subs_unsubscribe(sb_client *c, uint32_t sid, uint32_t max_msgs)
{
    struct client_sub *s = client_subs_find(c, sid);
    if (s == NULL) {
        return;
    }
    if (max_msgs == 0) {
        client_subs_end(c, s);
        return;
    }
    if (s->remaining == 0) {
        c->subs_counted++;
    }
    s->remaining = max_msgs;
}

void client_subs_count(sb_client *c, uint32_t sid)
{
    struct client_sub *s = client_subs_find(c, sid);
    if (s != NULL && s->remaining > 0 && --s->remaining == 0) {
        client_subs_end(c, s); /* the broker has ended it too */
    }
}

/* ---- the publishes held while disconnected ------------------------------ */

/* Room for `more` bytes after what is held: the buffer starts at 64 KiB
 * and doubles. */
static int client_held_reserve(sb_client *c, size_t more)
{
    if (c->held_len + more <= c->held.cap) {
        return 0;
    }
    size_t cap = c->held.cap ? c->held.cap : 64u * 1024u;
    while (cap < c->held_len + more) {
        cap *= 2;
    }
    uint8_t *p = realloc(c->held.data, cap);
    if (p == NULL) {
        return -ENOMEM;
    }
    c->held.data = p;
    c->held.cap = cap;
    return 0;
}

int client_hold_frame(sb_client *c, uint8_t op, uint8_t flags, uint32_t sid, const void *subject,
                      size_t subject_len, const void *reply, size_t reply_len, const void *headers,
                      size_t header_len, const void *payload, size_t payload_len)
{
    size_t size;
    int r = client_frame_size(c, subject_len, reply_len, header_len, payload_len, &size);
    if (r < 0) {
        return r;
    }
    if (size > c->reconnect_buffer - c->held_len || c->held_len > c->reconnect_buffer) {
        return SB_E_DISCONNECTED;
    }
    r = client_held_reserve(c, size);
    if (r < 0) {
        return r;
    }
    c->held_len += frame_encode(c->held.data + c->held_len, op, flags, sid, subject, subject_len,
                                reply, reply_len, headers, header_len, payload, payload_len);
    return 0;
}

/* Put `len` bytes of whole frames in front of what is held (the publishes
 * a lost connection had not written in full come before the later ones).
 * The reconnect buffer may be exceeded by them: they were accepted. */
static int client_hold_front(sb_client *c, const uint8_t *frames, size_t len)
{
    if (len == 0) {
        return 0;
    }
    int r = client_held_reserve(c, len);
    if (r < 0) {
        return r;
    }
    memmove(c->held.data + len, c->held.data, c->held_len);
    memcpy(c->held.data, frames, len);
    c->held_len += len;
    return 0;
}

/* ---- losing the broker ---------------------------------------------------- */

/* Can a new connection help? Not when the broker judged us (a protocol
 * violation, a frame too large, a version it does not speak), nor when we
 * ran out of memory or buffer. Nor after ERR 6: a lossless subscriber cut
 * for stalling has lost messages it was promised, and a reconnect would
 * hide that from an application that asked for no loss at all. */
static bool client_error_reconnectable(int err)
{
    switch (err) {
    case SB_E_PROTOCOL:
    case SB_E_TOO_LARGE:
    case SB_E_SLOW_CONSUMER:
    case SB_E_VERSION:
    case SB_E_UNTRUSTED:
    case -EPROTO:
    case -ENOBUFS:
    case -ENOMEM:
        return false;
    default:
        return true;
    }
}

/* The wait before the next attempt: the backoff, times 0.5 to 1 (so that
 * clients of a restarted broker do not all come back at once), and the
 * backoff doubled up to its bound. */
static int client_next_backoff(sb_client *c)
{
    uint64_t x = c->jitter;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->jitter = x;
    int wait = c->backoff_ms / 2 + (int)(x % (uint64_t)(c->backoff_ms / 2 + 1));
    c->backoff_ms =
        c->backoff_ms * 2 > CLIENT_BACKOFF_MAX_MS ? CLIENT_BACKOFF_MAX_MS : c->backoff_ms * 2;
    return wait;
}

static void client_report(sb_client *c, int state, int err, const struct timespec *back_at)
{
    if (c->state_cb == NULL) {
        return;
    }
    sb_state_change change = {
        .state = state,
        .err = err,
        .fd = state == SB_STATE_RECONNECTED ? c->fd : -1,
        .lost_at = c->lost_at,
    };
    if (back_at != NULL) {
        change.back_at = *back_at;
    }
    c->state_cb(c, &change, c->state_arg);
}

/* Keep the PUB frames of the write buffer that were not written in full:
 * the broker saw none of them (a frame cut short is discarded with the
 * connection). The other frames (SUB, UNSUB, PING) are redone by the
 * replay, or were for a flush that fails. */
static void client_keep_unsent(sb_client *c)
{
    size_t keep = 0;
    for (size_t at = 0; at + FRAME_HEADER_SIZE <= c->wlen;) {
        uint32_t size = frame_get_u32(c->wbuf + at);
        if (at + size > c->woff && c->wbuf[at + 4] == FRAME_OP_PUB) {
            memmove(c->wbuf + keep, c->wbuf + at, size);
            keep += size;
        }
        at += size;
    }
    if (client_hold_front(c, c->wbuf, keep) < 0) {
        c->pending_err = c->pending_err ? c->pending_err : -ENOMEM;
    }
    c->woff = 0;
    c->wlen = 0;
}

/* Is the connection lost with an error that a reconnect may mend? */
static bool client_lost_reconnectable(const sb_client *c)
{
    return c->closed_err != 0 && c->reconnect && c->state == SB_STATE_CONNECTED && c->welcomed &&
           client_error_reconnectable(c->closed_err);
}

bool client_lost_check(sb_client *c)
{
    int err = c->closed_err;
    if (!client_lost_reconnectable(c)) {
        return false;
    }
    client_keep_unsent(c);
    c->rtail = c->rscan; /* a frame cut by the loss; what was scanned stays */
    client_fds_lost(c);
    c->welcomed = false;
    c->pong_seen = c->ping_sent; /* the flush in flight is over: it failed */
    c->losses++;
    client_fail_requests(c, SB_E_DISCONNECTED);
    c->state = SB_STATE_DISCONNECTED;
    c->closed_err = 0;
    c->lost_err = err;
    int64_t now = client_now_ms();
    if (!c->replaying) {
        /* Lost again while replaying: the gap goes on from the first loss. */
        clock_gettime(CLOCK_REALTIME, &c->lost_at);
        c->lost_ms = now;
        c->backoff_ms = CLIENT_BACKOFF_MIN_MS;
        if (c->jitter == 0) {
            c->jitter = (uint64_t)now ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)c;
            c->jitter |= 1;
        }
    }
    c->next_attempt_ms = now + client_next_backoff(c);
    if (!c->replaying) {
        client_report(c, SB_STATE_DISCONNECTED, err, NULL); /* the old socket still open */
    }
    close(c->fd);
    c->fd = -1;
    return true;
}

/* Give up: from now on every call returns `err`, as without reconnect. */
static void client_give_up(sb_client *c, int err)
{
    c->state = SB_STATE_CLOSED;
    c->closed_err = err;
    c->held_len = 0;
    client_report(c, SB_STATE_CLOSED, err, NULL);
}

/* ---- getting it back --------------------------------------------------------- */

/* Replay what the new connection must know before anything else: every
 * live subscription with its count, the inbox under the new prefix, then
 * the held publishes in order. The held frames are taken out first; if
 * the connection is lost again meanwhile, those not yet queued go back
 * behind the ones the loss keeps. */
static int client_replay(sb_client *c)
{
    int r = 0;
    /* By index: a send may read, and a count running out ends an entry
     * (it stays in place, pattern and all, while replaying). */
    for (size_t i = 0; r == 0 && i < c->nsubs; i++) {
        if (!c->subs[i].live) {
            continue;
        }
        const char *pattern = c->subs[i].pattern;
        const char *queue = c->subs[i].queue;
        uint32_t sid = c->subs[i].sid;
        r = client_send_frame(c, FRAME_OP_SUB, c->subs[i].flags, sid, pattern, strlen(pattern),
                              queue, queue != NULL ? strlen(queue) : 0, NULL, 0, NULL, 0);
        uint32_t remaining = c->subs[i].remaining;
        if (r == 0 && remaining > 0) {
            uint8_t count[4];
            frame_put_u32(count, remaining);
            r = client_send_frame(c, FRAME_OP_UNSUB, 0, sid, NULL, 0, NULL, 0, NULL, 0, count,
                                  sizeof(count));
        }
    }
    if (r == 0 && c->inbox_sid != 0) {
        char pattern[sizeof(c->inbox_prefix) + 1];
        int n = snprintf(pattern, sizeof(pattern), "%s>", c->inbox_prefix);
        r = client_send_frame(c, FRAME_OP_SUB, 0, c->inbox_sid, pattern, (size_t)n, NULL, 0, NULL,
                              0, NULL, 0);
    }
    if (r < 0) {
        return r;
    }
    struct client_buf held = c->held;
    size_t held_len = c->held_len;
    c->held = (struct client_buf){0};
    c->held_len = 0;
    size_t at = 0;
    while (at < held_len) {
        uint32_t size = frame_get_u32(held.data + at);
        if (size > c->max_frame) {
            /* The broker came back with a smaller max_frame: sending it
             * would be fatal. The next flush says so. */
            if (c->pending_err == 0) {
                c->pending_err = SB_E_TOO_LARGE;
            }
        } else if ((r = client_send_encoded(c, held.data + at, size)) < 0) {
            break;
        }
        at += size;
    }
    if (at < held_len) {
        /* Lost again: what was not queued stays held, and the loss puts
         * what it keeps of the write buffer in front of it. */
        memmove(held.data, held.data + at, held_len - at);
        free(c->held.data);
        c->held = held;
        c->held_len = held_len - at;
        return r;
    }
    if (c->held.data == NULL && held.cap <= CLIENT_WBUF_SIZE) {
        c->held = held; /* reuse it, unless it grew large */
    } else {
        free(held.data);
    }
    return 0;
}

/* One attempt: connect, check, HELLO, WELCOME, replay. */
static void client_attempt(sb_client *c)
{
    c->dialing = true;
    c->refusal = 0;
    c->welcomed = false;
    bool described = false;
    int64_t deadline = client_deadline_after(c->connect_timeout_ms);
    int r = client_open(c, deadline, NULL, 0, &described);
    if (r == 0) {
        r = client_send_hello(c);
    }
    if (r == 0) {
        r = client_pump(c, have_welcome, deadline);
    }
    c->dialing = false;
    if (r < 0) {
        if (c->fd >= 0) {
            r = client_refusal(c, r);
            close(c->fd);
            c->fd = -1;
        }
        c->closed_err = 0;
        c->rtail = c->rscan;
        c->woff = 0;
        c->wlen = 0;
        int64_t now = client_now_ms();
        bool retry =
            r == SB_E_LIMIT || r == SB_E_SHUTDOWN || r == SB_E_HELLO_REQUIRED || c->refusal == 0;
        if (!retry || r == SB_E_UNTRUSTED) {
            client_give_up(c, r); /* it would refuse us again */
        } else if (c->reconnect_max_ms > 0 && now - c->lost_ms >= c->reconnect_max_ms) {
            client_give_up(c, c->lost_err);
        } else {
            c->next_attempt_ms = now + client_next_backoff(c);
        }
        return;
    }
    struct timespec back_at;
    clock_gettime(CLOCK_REALTIME, &back_at);
    c->state = SB_STATE_CONNECTED;
    c->replaying = true;
    r = client_replay(c);
    c->replaying = false;
    if (r < 0) {
        client_lost_check(c); /* lost again: the gap goes on */
        return;
    }
    client_report(c, SB_STATE_RECONNECTED, c->lost_err, &back_at);
}

int client_ready(sb_client *c)
{
    if (c->closed_err != 0) {
        client_lost_check(c);
    }
    if (c->state == SB_STATE_DISCONNECTED && !c->dialing && !c->dispatching &&
        client_now_ms() >= c->next_attempt_ms) {
        client_attempt(c);
    }
    return c->state == SB_STATE_CLOSED ? c->closed_err : 0;
}

int client_reconnect_wait(sb_client *c, int64_t deadline)
{
    if (c->state == SB_STATE_CLOSED) {
        return c->closed_err;
    }
    if (c->dispatching) {
        return SB_E_DISCONNECTED; /* no attempt from a message callback */
    }
    int64_t now = client_now_ms();
    if (now < c->next_attempt_ms) {
        int64_t wake = c->next_attempt_ms;
        if (deadline >= 0 && deadline < wake) {
            if (now >= deadline) {
                return -ETIMEDOUT;
            }
            wake = deadline;
        }
        poll(NULL, 0, (int)(wake - now)); /* the backoff, within the deadline */
        return 0;
    }
    client_attempt(c);
    return c->state == SB_STATE_CLOSED ? c->closed_err : 0;
}

static bool client_connected(const sb_client *c)
{
    return c->state != SB_STATE_DISCONNECTED;
}

int client_await(sb_client *c, int64_t deadline)
{
    if (c->closed_err != 0) {
        client_lost_check(c);
    }
    if (c->state == SB_STATE_DISCONNECTED) {
        int r = client_pump(c, client_connected, deadline);
        if (r < 0) {
            return r;
        }
    }
    return c->state == SB_STATE_CLOSED ? c->closed_err : 0;
}

/* ---- the API of staying connected ------------------------------------- */

SB_EXPORT void sb_set_state_cb(sb_client *c, sb_state_cb cb, void *arg)
{
    c->state_cb = cb;
    c->state_arg = arg;
}

SB_EXPORT int sb_state(const sb_client *c)
{
    if (c->state == SB_STATE_CONNECTED && c->closed_err != 0) {
        return client_lost_reconnectable(c) ? SB_STATE_DISCONNECTED : SB_STATE_CLOSED;
    }
    return c->state;
}

SB_EXPORT int sb_timeout_ms(const sb_client *c)
{
    if (c->state != SB_STATE_DISCONNECTED) {
        return client_lost_reconnectable(c) ? 0 : -1; /* a call now notices the loss */
    }
    int64_t left = c->next_attempt_ms - client_now_ms();
    return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}
