/*
 * listener.c - the Unix socket file and its lifecycle (docs/architecture.md,
 * The socket file), and --system's directory (docs/security.md, The socket
 * directory). The TCP listener is listener_tcp.c.
 *
 * The Unix socket file is shared ground: a second broker, a crashed broker's
 * leftovers and a user's unrelated file can all sit at the path. The lock
 * decides who may touch the path at all: an exclusive flock on PATH.lock,
 * held for the broker's whole life. Only the lock holder ever unlinks the
 * socket or the lock file, so once we hold it, what we find at the path is
 * either a live program that does not use the lock (we leave it alone), a
 * socket nobody answers on (stale: we replace it), or something that is not
 * a socket at all (never ours to delete).
 *
 * The socket is bound here rather than by libuv, because uv_close() on a
 * pipe that libuv bound unlinks the path unconditionally; the broker hands
 * the fd to uv_pipe_open() and this file alone decides when the path goes
 * away: at close, and only if it is still the inode we created.
 *
 * Every failure writes one line for the user (what failed, on what, what to
 * try) and undoes whatever this call did, so a failed open leaves nothing
 * on disk and no fd open.
 */
#include "listener.h"

#include "errmsg.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* listener_unix.path is sized by hand in the header; it must be exactly a
 * sun_path, so that every path we accept is one bind() can take. */
_Static_assert(sizeof(((struct listener_unix *)0)->path) ==
                   sizeof(((struct sockaddr_un *)0)->sun_path),
               "listener_unix.path must match sockaddr_un.sun_path");

#define LOCK_SUFFIX ".lock"

/* Room for a socket path and its ".lock" suffix. */
#define LOCK_PATH_MAX (sizeof(((struct listener_unix *)0)->path) + sizeof(LOCK_SUFFIX))

/* The lock can move under us only while another broker is shutting down
 * (see lock_acquire()); a few retries cover that, more means something is
 * fighting over the file and the user should look. */
#define LOCK_ATTEMPTS 8

/* umask around bind(): the socket file is born 0600, whatever the process
 * umask, and is opened up by chmod() only after its group is right. */
#define BIND_UMASK 0177

static void listener_unix_reset(struct listener_unix *l)
{
    l->fd = -1;
    l->lock_fd = -1;
    l->dev = 0;
    l->ino = 0;
    l->path[0] = '\0';
}

static void lock_path_of(const char *path, char *out, size_t len)
{
    snprintf(out, len, "%s" LOCK_SUFFIX, path);
}

/* The directory a path lives in, for messages: "." for a bare name. */
static void parent_dir_of(const char *path, char *out, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(out, len, ".");
    } else if (slash == path) {
        snprintf(out, len, "/");
    } else {
        snprintf(out, len, "%.*s", (int)(slash - path), path);
    }
}

/* What is at a path that is not our socket, for messages. */
static const char *file_kind(mode_t mode)
{
    static const struct {
        mode_t type;
        const char *name;
    } kinds[] = {
        {S_IFREG, "a regular file"}, {S_IFDIR, "a directory"},        {S_IFLNK, "a symbolic link"},
        {S_IFIFO, "a named pipe"},   {S_IFCHR, "a character device"}, {S_IFBLK, "a block device"},
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if ((mode & S_IFMT) == kinds[i].type) {
            return kinds[i].name;
        }
    }
    return "not a socket";
}

/*
 * A file at the path or at PATH.lock belongs to another user (`owner`):
 * in a directory anyone can write, such as /tmp, another user may have put
 * it there first, to keep our broker from starting or to pose as it. It is
 * not ours to connect to, lock or remove. `what` says which file.
 */
static int refuse_foreign(const char *path, const char *what, uid_t owner, char *err,
                          size_t err_len)
{
    return errmsg(err, err_len, -EPERM,
                  "cannot listen on %s: %s belongs to uid %lu, not to us (uid %lu), and is left "
                  "untouched: another user may be squatting the path; set XDG_RUNTIME_DIR or use "
                  "--socket PATH in a directory only you can write",
                  path, what, (unsigned long)owner, (unsigned long)geteuid());
}

/* "--group NAME": a group name, or a numeric gid as chown(1) accepts.
 * getgrnam() reports "not found" with a NULL and an errno that varies by
 * NSS backend, so any NULL counts as unknown. */
static int group_lookup(const char *group, gid_t *gid_out)
{
    struct group *gr = getgrnam(group);
    if (gr != NULL) {
        *gid_out = gr->gr_gid;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    unsigned long n = strtoul(group, &end, 10);
    if (*group >= '0' && *group <= '9' && *end == '\0' && errno == 0 &&
        n < (unsigned long)(gid_t)-1) {
        *gid_out = (gid_t)n;
        return 0;
    }
    return -EINVAL;
}

/*
 * Open PATH.lock and take an exclusive, non-blocking flock on it. Returns
 * the locked fd, or a negative errno with err written.
 *
 * A broker removes its lock file at exit while still holding the lock. If
 * that happens between our open() and flock(), we hold a lock on an inode
 * that no longer has a name, and a third broker could create and lock a new
 * PATH.lock beside us. So after flock() we check that the path still names
 * the inode we locked, and start over if not.
 */
static int lock_acquire(const char *path, const char *lock_path, char *err, size_t err_len)
{
    for (int attempt = 0; attempt < LOCK_ATTEMPTS; attempt++) {
        /* O_NOFOLLOW: in a shared directory such as /tmp, a planted
         * symlink must not make us create or lock a file elsewhere. */
        int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        char what[LOCK_PATH_MAX + 16];
        snprintf(what, sizeof(what), "lock file %s", lock_path);
        if (fd < 0) {
            int e = errno;
            struct stat st;
            if ((e == EACCES || e == EPERM) && lstat(lock_path, &st) == 0 &&
                st.st_uid != geteuid()) {
                return refuse_foreign(path, what, st.st_uid, err, err_len);
            }
            if (e == ENOENT) {
                char dir[LOCK_PATH_MAX];
                parent_dir_of(path, dir, sizeof(dir));
                errmsg(err, err_len, -e,
                       "cannot listen on %s: directory %s does not exist; create it or use "
                       "--socket PATH",
                       path, dir);
            } else if (e == ELOOP) {
                errmsg(err, err_len, -e,
                       "cannot listen on %s: lock file %s is a symbolic link; remove it or "
                       "use --socket PATH",
                       path, lock_path);
            } else {
                errmsg(err, err_len, -e,
                       "cannot listen on %s: cannot open lock file %s: %s; check the "
                       "directory's permissions or use --socket PATH",
                       path, lock_path, strerror(e));
            }
            return -e;
        }

        struct stat locked;
        if (fstat(fd, &locked) < 0) {
            int e = errno;
            close(fd);
            return errmsg(err, err_len, -e, "cannot listen on %s: cannot stat lock file %s: %s",
                          path, lock_path, strerror(e));
        }
        /* Before flock(): a lock file someone else made is theirs to hold
         * and ours neither to lock nor, later, to remove. */
        if (locked.st_uid != geteuid()) {
            close(fd);
            return refuse_foreign(path, what, locked.st_uid, err, err_len);
        }
        if (!S_ISREG(locked.st_mode)) {
            close(fd);
            return errmsg(
                err, err_len, -EEXIST,
                "cannot listen on %s: lock file %s is %s, not a regular file; remove it or "
                "use --socket PATH",
                path, lock_path, file_kind(locked.st_mode));
        }

        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            int e = errno;
            close(fd);
            if (e == EWOULDBLOCK) {
                return errmsg(err, err_len, -EADDRINUSE,
                              "cannot listen on %s: another sockbusd is running (lock %s is held); "
                              "stop it or use --socket PATH",
                              path, lock_path);
            }
            return errmsg(err, err_len, -e,
                          "cannot listen on %s: cannot lock %s: %s; use --socket PATH", path,
                          lock_path, strerror(e));
        }

        struct stat named;
        if (lstat(lock_path, &named) == 0 && named.st_dev == locked.st_dev &&
            named.st_ino == locked.st_ino) {
            return fd;
        }
        close(fd);
    }
    return errmsg(
        err, err_len, -EAGAIN,
        "cannot listen on %s: lock file %s keeps being replaced; check what else uses it or "
        "use --socket PATH",
        path, lock_path);
}

/* Unlink PATH.lock if it is still the file we hold locked: only the holder
 * may remove it (see lock_acquire()), and a file someone put in its place
 * is not ours. */
static void lock_release(int lock_fd, const char *lock_path)
{
    struct stat locked;
    struct stat named;
    if (fstat(lock_fd, &locked) == 0 && lstat(lock_path, &named) == 0 &&
        named.st_dev == locked.st_dev && named.st_ino == locked.st_ino) {
        unlink(lock_path);
    }
    close(lock_fd);
}

/*
 * Something is at the path (we hold the lock). Decide whether we may take
 * the path: returns 0 if it is free now (absent, vanished, or a stale socket
 * we removed), else a negative errno with err written.
 */
static int path_claim(const char *path, const struct stat *st, char *err, size_t err_len)
{
    if (st->st_uid != geteuid()) {
        /* Whatever it is: never knocked on (it may be an impostor's
         * listener, which would learn who we are) and never removed. */
        char what[64];
        snprintf(what, sizeof(what), "%s there",
                 S_ISSOCK(st->st_mode) ? "the socket" : file_kind(st->st_mode));
        return refuse_foreign(path, what, st->st_uid, err, err_len);
    }
    if (!S_ISSOCK(st->st_mode)) {
        return errmsg(err, err_len, -EEXIST,
                      "cannot listen on %s: it is %s, not a socket, and is left untouched; move it "
                      "away or use --socket PATH",
                      path, file_kind(st->st_mode));
    }

    /* The only way to tell a live socket from a stale one is to knock.
     * Non-blocking, so a live broker with a full backlog answers EAGAIN
     * instead of stalling our start. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe < 0) {
        int e = errno;
        return errmsg(err, err_len, -e, "cannot listen on %s: socket: %s", path, strerror(e));
    }
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int r = connect(probe, (const struct sockaddr *)&sun, sizeof(sun));
    int e = r < 0 ? errno : 0;
    close(probe);

    switch (e) {
    case 0:
    case EAGAIN:
    case EINPROGRESS:
        return errmsg(err, err_len, -EADDRINUSE,
                      "cannot listen on %s: another broker is accepting connections there; stop it "
                      "or use --socket PATH",
                      path);
    case EPROTOTYPE:
        /* A datagram or seqpacket socket someone is bound to. */
        return errmsg(err, err_len, -EADDRINUSE,
                      "cannot listen on %s: another program has a different kind of socket there; "
                      "stop it or use --socket PATH",
                      path);
    case ENOENT:
        /* Removed since lstat(): the path is free. */
        return 0;
    case ECONNREFUSED:
        break;
    default:
        /* EACCES and the like: we cannot tell whether someone listens, so
         * the file is not ours to remove. */
        return errmsg(err, err_len, -e,
                      "cannot listen on %s: cannot check whether the socket there is in use (%s); "
                      "remove it if no program uses it or use --socket PATH",
                      path, strerror(e));
    }

    /* Refused: nobody listens, a broker died without cleaning up. */
    if (unlink(path) < 0 && errno != ENOENT) {
        e = errno;
        return errmsg(
            err, err_len, -e,
            "cannot listen on %s: cannot remove the stale socket there: %s; remove it or use "
            "--socket PATH",
            path, strerror(e));
    }
    return 0;
}

/* Create, bind and listen; record the new file's identity in l. On failure
 * l->fd and the identity may be set: the caller cleans up with
 * listener_unix_close(), which removes the file only if it is ours. */
static int socket_bind(struct listener_unix *l, const char *path, char *err, size_t err_len)
{
    l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0) {
        int e = errno;
        return errmsg(err, err_len, -e, "cannot listen on %s: socket: %s", path, strerror(e));
    }

    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, path, strlen(path) + 1);
    /* umask is per process: the broker calls this before it starts any
     * thread, so nobody else creates files under our umask meanwhile. */
    mode_t old_umask = umask(BIND_UMASK);
    int r = bind(l->fd, (const struct sockaddr *)&sun, sizeof(sun));
    int e = errno;
    umask(old_umask);
    if (r < 0) {
        if (e == EADDRINUSE) {
            errmsg(err, err_len, -e,
                   "cannot listen on %s: something was created there while we started; "
                   "retry, or use --socket PATH",
                   path);
        } else {
            errmsg(err, err_len, -e,
                   "cannot listen on %s: bind: %s; check the directory's permissions or use "
                   "--socket PATH",
                   path, strerror(e));
        }
        return -e;
    }

    /* fstat() on a socket fd describes the socket, not the file; the file's
     * identity is only visible through the path. */
    struct stat st;
    if (lstat(path, &st) < 0) {
        e = errno;
        return errmsg(err, err_len, -e, "cannot listen on %s: the new socket file vanished: %s",
                      path, strerror(e));
    }
    l->dev = st.st_dev;
    l->ino = st.st_ino;

    if (listen(l->fd, LISTENER_BACKLOG) < 0) {
        e = errno;
        return errmsg(err, err_len, -e, "cannot listen on %s: listen: %s", path, strerror(e));
    }
    return 0;
}

int listener_unix_open(struct listener_unix *l, const char *path, unsigned mode, const char *group,
                       char *err, size_t err_len)
{
    struct listener_unix n;
    char lock_path[LOCK_PATH_MAX];
    gid_t gid = (gid_t)-1;
    int r;

    listener_unix_reset(&n);
    listener_unix_reset(l);

    /* Arguments first, so that a typo touches nothing on disk. */
    if (path == NULL || *path == '\0') {
        return errmsg(err, err_len, -EINVAL, "cannot listen: empty socket path; use --socket PATH");
    }
    size_t path_len = strlen(path);
    if (path_len >= sizeof(n.path)) {
        return errmsg(
            err, err_len, -ENAMETOOLONG,
            "cannot listen on %s: the path is %zu bytes, a Unix socket path holds at most "
            "%zu; use a shorter --socket PATH",
            path, path_len, sizeof(n.path) - 1);
    }
    if ((mode & ~0777u) != 0) {
        return errmsg(err, err_len, -EINVAL,
                      "cannot listen on %s: mode %o is not a file mode; use --mode with permission "
                      "bits only, such as 0600 or 0660",
                      path, mode);
    }
    if (group != NULL) {
        r = group_lookup(group, &gid);
        if (r < 0) {
            return errmsg(err, err_len, r,
                          "cannot listen on %s: unknown group %s; check --group (see getent group)",
                          path, group);
        }
    }
    memcpy(n.path, path, path_len + 1);
    lock_path_of(path, lock_path, sizeof(lock_path));

    r = lock_acquire(path, lock_path, err, err_len);
    if (r < 0) {
        return r;
    }
    n.lock_fd = r;

    struct stat st;
    if (lstat(path, &st) == 0) {
        r = path_claim(path, &st, err, err_len);
    } else if (errno == ENOENT) {
        r = 0;
    } else {
        r = -errno;
        errmsg(err, err_len, r, "cannot listen on %s: %s; use --socket PATH", path, strerror(-r));
    }
    if (r < 0) {
        goto fail;
    }

    r = socket_bind(&n, path, err, err_len);
    if (r < 0) {
        goto fail;
    }

    /* Group before mode: a 0660 socket must never be open to the group it
     * was born with (ours, or the directory's) rather than the one asked for. */
    if (group != NULL && lchown(path, (uid_t)-1, gid) < 0) {
        r = -errno;
        errmsg(err, err_len, r,
               "cannot listen on %s: cannot give it to group %s: %s; you must be root or a "
               "member of %s",
               path, group, strerror(-r), group);
        goto fail;
    }
    /* Linux has no lchmod(); the path is the socket we just created and
     * identified, in a directory only the lock holder rewrites. */
    if (chmod(path, mode) < 0) {
        r = -errno;
        errmsg(err, err_len, r, "cannot listen on %s: cannot set mode %o: %s", path, mode,
               strerror(-r));
        goto fail;
    }

    *l = n;
    return 0;

fail:
    listener_unix_close(&n);
    return r;
}

void listener_unix_close(struct listener_unix *l)
{
    if (l->fd >= 0) {
        close(l->fd);
    }
    if (l->path[0] != '\0' && l->ino != 0) {
        /* Someone may have removed our file and put theirs at the path
         * (another broker started by hand with the lock file deleted, a
         * user's file): only the inode we created is ours to remove. */
        struct stat st;
        if (lstat(l->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == l->dev &&
            st.st_ino == l->ino) {
            unlink(l->path);
        }
    }
    if (l->lock_fd >= 0) {
        /* Unlinked before the lock is dropped: see lock_acquire(). */
        char lock_path[LOCK_PATH_MAX];
        lock_path_of(l->path, lock_path, sizeof(lock_path));
        lock_release(l->lock_fd, lock_path);
    }
    listener_unix_reset(l);
}

void listener_unix_forget_fd(struct listener_unix *l)
{
    l->fd = -1;
}

int listener_run_dir(const char *dir, char *err, size_t err_len)
{
    /* mkdir() applies the umask (0700 under umask 077, which would shut
     * out every client of another user); fchmod() below does not. */
    bool created = mkdir(dir, LISTENER_RUN_DIR_MODE) == 0;
    if (!created && errno != EEXIST) {
        int e = errno;
        return errmsg(
            err, err_len, -e,
            "cannot create the socket directory %s: %s; run --system as root, or create it "
            "with mode 0755 and use --socket PATH",
            dir, strerror(e));
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        struct stat st;
        if ((e == ENOTDIR || e == ELOOP) && lstat(dir, &st) == 0) {
            return errmsg(
                err, err_len, -ENOTDIR,
                "cannot use %s as the socket directory: it is %s, not a directory; remove "
                "it or use --socket PATH",
                dir, file_kind(st.st_mode));
        }
        return errmsg(err, err_len, -e,
                      "cannot open the socket directory %s: %s; use --socket PATH", dir,
                      strerror(e));
    }
    struct stat st;
    int r = 0;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        errmsg(err, err_len, r, "cannot stat the socket directory %s: %s", dir, strerror(-r));
    } else if (st.st_uid != 0 && st.st_uid != geteuid()) {
        /* Its owner could replace our socket with theirs at any time. */
        r = -EPERM;
        errmsg(err, err_len, r,
               "cannot use %s as the socket directory: it belongs to uid %lu, neither root nor "
               "us (uid %lu), who could replace the socket; remove it or give it to root "
               "(chown root: %s)",
               dir, (unsigned long)st.st_uid, (unsigned long)geteuid(), dir);
    } else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0) {
        /* Anyone who may write it may remove our socket and put theirs
         * there; the sticky bit (as on /tmp) forbids removing another
         * user's file. */
        r = -EPERM;
        errmsg(err, err_len, r,
               "cannot use %s as the socket directory: mode %04o lets %s replace the socket; "
               "chmod 0755 %s (or add the sticky bit)",
               dir, (unsigned)(st.st_mode & 07777),
               (st.st_mode & S_IWOTH) != 0 ? "every user" : "its group", dir);
    } else if (created && fchmod(fd, LISTENER_RUN_DIR_MODE) < 0) {
        r = -errno;
        errmsg(err, err_len, r, "cannot set mode %04o on the socket directory %s: %s",
               LISTENER_RUN_DIR_MODE, dir, strerror(-r));
    }
    close(fd);
    return r;
}
