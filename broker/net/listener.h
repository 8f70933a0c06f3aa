/*
 * listener.h - the broker's Unix socket file.
 *
 * The socket file follows one lifecycle (docs/architecture.md, The socket
 * file; docs/security.md, The socket directory): an exclusive
 * flock on PATH.lock; a path that accepts a connection is a live broker and
 * is never displaced; a socket that refuses is stale and is replaced; a
 * path that is not a socket is never deleted. The socket is bound here, not
 * by libuv (whose uv_close() would unlink the path unconditionally), with a
 * restrictive umask so that it is never more open than asked, then given
 * its mode and group. listener_unix_close() removes the file only if it is
 * still the one we created (same device and inode).
 */
#ifndef SOCKBUS_LISTENER_H
#define SOCKBUS_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Connections the kernel holds for us before accept(), on every
 * listening socket (Unix and TCP). */
#define LISTENER_BACKLOG 1024

struct listener_unix {
    int fd;      /* listening socket, non-blocking, close-on-exec; -1 if none */
    int lock_fd; /* holds the flock on PATH.lock; -1 if none */
    dev_t dev;   /* identity of the socket file we created */
    ino_t ino;
    char path[108];
};

/*
 * Take the lock, check the path, bind and listen on `path` with file mode
 * `mode` (permission bits only, e.g. 0600) and group `group` (a name or a
 * numeric gid; NULL: keep the default). On success *l owns the listening fd
 * and the lock fd. On failure returns a negative errno and writes one line
 * into err (what failed, on which path, what to try; err may be NULL);
 * nothing is left behind (no lock, no socket) and *l is left closed, so
 * listener_unix_close() on it is harmless.
 * -EADDRINUSE: another broker holds the lock or answers on the path.
 * -EEXIST: the path exists and is not a socket (it is never deleted).
 * -ENAMETOOLONG: the path does not fit in a sockaddr_un.
 * -ENOENT: the directory of the path does not exist.
 * -EINVAL: empty path, bad mode or unknown group (nothing was touched).
 * -EPERM: the lock file or the file at the path belongs to another user:
 * it is neither connected to, locked nor removed.
 * Changes the process umask for the duration of bind(): call it before
 * starting threads.
 */
int listener_unix_open(struct listener_unix *l, const char *path, unsigned mode, const char *group,
                       char *err, size_t err_len);

/* Close the socket, unlink the path if it is still ours, remove and release
 * the lock. Safe to call on a listener that failed to open or was closed. */
void listener_unix_close(struct listener_unix *l);

/* Forget the listening fd without closing it: it was handed to the
 * broker's acceptor, which now owns and closes it. The lock and the file identity stay for
 * listener_unix_close(). */
void listener_unix_forget_fd(struct listener_unix *l);

/* Mode of the directory that --system creates for its socket. */
#define LISTENER_RUN_DIR_MODE 0755

/*
 * Make `dir` fit to hold a socket that other users reach (--system's
 * /run/sockbus): create it with mode LISTENER_RUN_DIR_MODE whatever the
 * umask if it does not exist, and refuse one that another user could use
 * to replace the socket. An existing directory keeps its mode (0750 with a
 * group is the administrator's choice) but is refused when it is owned by
 * a user other than root and us, is group- or world-writable without the
 * sticky bit, or is not a directory (a symbolic link included). Returns 0,
 * or a negative errno with one line in err (what, where, what to do):
 * -EPERM for the owner and the mode, -ENOTDIR, or mkdir()'s error.
 */
int listener_run_dir(const char *dir, char *err, size_t err_len);

#endif /* SOCKBUS_LISTENER_H */
