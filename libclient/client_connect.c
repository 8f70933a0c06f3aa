/*
 * client_connect.c - how a client comes to be and goes: finding the
 * endpoint, connecting over a Unix socket or TCP, checking whom it reached
 * (SO_PEERCRED, the trust check), the HELLO/WELCOME handshake through
 * wire/handshake.c, and closing. This is where reconnecting will live too,
 * as in a dialer: what a connection needs to start over is all here.
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

/* ---- the handshake ------------------------------------------------------ */

/* HELLO, through wire/handshake.c. */
static int client_send_hello(sb_client *c, const sb_options *opts)
{
    char *json;
    size_t len;
    int r = handshake_hello_encode(opts->name, !opts->no_echo, &json, &len);
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

/* The line sb_connect_ex() gives for a failure other than SB_E_UNTRUSTED:
 * the broker's own words when it refused us, else what went wrong. */
static void client_connect_error(const sb_client *c, const sb_options *opts, int r, char *err,
                                 size_t err_len)
{
    const char *where = c->endpoint[0] != '\0' ? c->endpoint
                        : opts->endpoint != NULL && opts->endpoint[0] != '\0'
                            ? opts->endpoint
                            : "the default endpoint";
    if (c->refusal != 0 && c->last_err[0] != '\0') {
        char text[TEXT_ESCAPE_MAX(CLIENT_ERRTEXT_MAX)];
        text_escape(text, sizeof(text), c->last_err, strlen(c->last_err));
        snprintf(err, err_len, "the broker at %s refused the connection: %s (%s)", where, text,
                 sb_strerror(r));
    } else {
        snprintf(err, err_len, "cannot connect to %s: %s", where, sb_strerror(r));
    }
}

SB_EXPORT int sb_connect_ex(sb_client **out, const sb_options *opts, char *err, size_t err_len)
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
    r = sb_endpoint_resolve(opts->endpoint, c->endpoint, sizeof(c->endpoint));
    if (r < 0) {
        goto fail;
    }
    if (sb_endpoint_is_tcp(c->endpoint)) {
        r = connect_tcp(c->endpoint, deadline, &c->fd);
    } else {
        r = connect_unix(c->endpoint, deadline, &c->fd);
        if (r == 0) {
            r = client_check_broker(c, !endpoint_explicit(opts), err, err_len);
            described = r == SB_E_UNTRUSTED;
        }
    }
    if (r < 0) {
        goto fail;
    }
    r = client_send_hello(c, opts);
    if (r == 0) {
        r = client_pump(c, have_welcome, deadline);
    }
    if (r < 0 && r != -ETIMEDOUT) {
        /* A broker that refuses us (max_connections, shutting down) sends
         * ERR and closes: report its reason, not the broken pipe. */
        client_read_some(c);
        client_scan(c);
        if (c->refusal != 0) {
            r = c->refusal;
        }
        goto fail;
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

SB_EXPORT int sb_connect(sb_client **out, const sb_options *opts)
{
    return sb_connect_ex(out, opts, NULL, 0);
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
    free(c->wbuf);
    free(c->rbuf);
    free(c);
}
