/*
 * activation.h - socket activation: listening sockets inherited from
 * systemd (or anything that follows its protocol: LISTEN_PID, LISTEN_FDS,
 * the sockets from fd 3 on; sd_listen_fds(3)).
 *
 * An activated broker binds nothing: it serves the Unix and TCP sockets
 * it was given, told apart by their type, takes no lock and never
 * unlinks the socket file, which belongs to whoever created it
 * (docs/architecture.md, The socket file).
 */
#ifndef SOCKBUS_ACTIVATION_H
#define SOCKBUS_ACTIVATION_H

#include <stdbool.h>
#include <stddef.h>

/* The first inherited descriptor (SD_LISTEN_FDS_START). */
#define ACTIVATION_FDS_START 3
/* More inherited sockets than this is a unit that does not fit us. */
#define ACTIVATION_FDS_MAX 16

struct activation {
    bool active;         /* LISTEN_PID named us and LISTEN_FDS gave sockets */
    int unix_fd;         /* the listening Unix stream socket, or -1 */
    int tcp_fd;          /* the listening TCP socket, or -1 */
    char unix_path[108]; /* its bound path ("" if abstract or unnamed) */
    unsigned tcp_port;   /* its bound port */
    bool tcp_loopback;   /* bound to a loopback address */
};

/* What an inherited descriptor is. */
enum activation_kind {
    ACTIVATION_OTHER,
    ACTIVATION_UNIX,
    ACTIVATION_TCP,
};

/*
 * Take the sockets passed to this process, if any, and unset LISTEN_PID,
 * LISTEN_FDS and LISTEN_FDNAMES (a child must not take them too). Not
 * activated (no variables, or LISTEN_PID is another process's): returns 0
 * with a->active false and both fds -1. Activated: each inherited socket
 * is made close-on-exec and non-blocking and sorted by type; returns 0, or
 * -EINVAL with one line in err when one is neither a listening Unix
 * stream socket nor a listening TCP socket, or when there are two of a
 * kind (the broker serves one of each). Through libsystemd's
 * sd_listen_fds() when built with it, else by reading the variables here.
 */
int activation_take(struct activation *a, char *err, size_t err_len);

/* What `fd` is: a listening stream socket of AF_UNIX (ACTIVATION_UNIX) or
 * AF_INET/AF_INET6 (ACTIVATION_TCP), or something else. */
enum activation_kind activation_classify(int fd);

/* Close the sockets not handed on (set to -1 by whoever took them). */
void activation_close(struct activation *a);

/*
 * The part of activation_take() that reads the environment, without
 * libsystemd: the number of inherited descriptors (0 when not activated),
 * or -EINVAL for a malformed LISTEN_FDS. Unsets the variables. Used when
 * the broker is built without libsystemd, and by the tests in every build.
 */
int activation_listen_fds_env(void);

#endif /* SOCKBUS_ACTIVATION_H */
