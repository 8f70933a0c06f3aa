/*
 * stdfds.h - make sure descriptors 0, 1 and 2 are open, for the programs
 * (sockbusd, sockbus) to call first thing in main().
 *
 * A program started with stdin, stdout or stderr closed (`sockbusd <&-
 * >&- 2>&-`, or by a careless service manager) hands those numbers to the
 * next descriptors it opens: libuv's internal pipes become "stderr" and
 * the log fills them until the broker blocks, libuv aborts at exit on a
 * descriptor it never expected below 3, and a client's socket becomes
 * "stdin" or "stdout", so that `sockbus pub` reads the broker's frames as
 * lines. As dbus-daemon does, every one of them that is closed is opened
 * on /dev/null before anything else is opened. Not part of libsockbus: a
 * library has no business with its application's standard descriptors.
 */
#ifndef SOCKBUS_STDFDS_H
#define SOCKBUS_STDFDS_H

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* Returns 0, or a negative errno if /dev/null cannot be opened (then some
 * of 0..2 may still be closed). */
static inline int stdfds_open(void)
{
    for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) {
            continue;
        }
        /* Not close-on-exec: these are what a child inherits as its own. */
        int null = open("/dev/null", O_RDWR);
        if (null < 0) {
            return -errno;
        }
        /* The lowest free number: `fd` itself, as those below are open. */
        if (null != fd) {
            int r = dup2(null, fd);
            int e = errno;
            close(null);
            if (r < 0) {
                return -e;
            }
        }
    }
    return 0;
}

#endif /* SOCKBUS_STDFDS_H */
