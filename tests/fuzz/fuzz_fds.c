/*
 * fuzz_fds.c - the broker's queue of descriptors received and not yet
 * claimed (broker/net/fdpass.c), driven through a real socket pair.
 *
 * The input is a program: each byte pair is an op and an argument. "send"
 * passes k descriptors (dups of /dev/null) with one byte over a Unix
 * socket pair, as a client does; "recv" reads with fdpass_recv() into the
 * queue, as the broker does; "take" claims n from the front as a message's
 * set, which is then released (now, or after a few more ops, as queues
 * that hold it drain). The invariants are the rules of docs/protocol.md,
 * "File descriptors": descriptors come out in the order they were sent;
 * fdq_take() of more than are queued is -ENOENT and changes nothing; every
 * descriptor received is closed exactly once, when its set's last
 * reference goes or the queue is freed, so that at the end the process
 * has exactly the descriptors it had at the start; and the count of those
 * held for messages (fdpass_held) goes back to 0.
 */
#include "fuzz.h"

#include "fdpass.h"
#include "frame.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        return -1;
    }
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n - 1;
}

/* Descriptors are told apart by the inode of what they refer to: each sent
 * batch is a fresh pipe end, so order is checkable. */
static ino_t inode_of(int fd)
{
    struct stat st;
    FUZZ_CHECK(fstat(fd, &st) == 0);
    return st.st_ino;
}

#define SENT_MAX 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int base = open_fds();
    int sv[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0);
    struct fdq q = {0};
    ino_t sent[SENT_MAX]; /* in the order sent, not yet taken */
    size_t nsent = 0;
    size_t taken = 0;     /* of sent[], by fdq_take() */
    size_t in_flight = 0; /* sent, not yet received */
    struct conn_fds *held[4] = {0};
    uint64_t held_before = fdpass_held;

    for (size_t i = 0; i + 1 < size; i += 2) {
        uint8_t op = data[i] % 4;
        uint8_t arg = data[i + 1];
        if (op == 0 && nsent < SENT_MAX - FRAME_FDS_MAX) {
            /* send k descriptors with one byte */
            uint32_t k = 1 + arg % 8;
            int p[2];
            FUZZ_CHECK(pipe2(p, O_CLOEXEC) == 0);
            int fds[8];
            for (uint32_t j = 0; j < k; j++) {
                fds[j] = j % 2 == 0 ? p[0] : p[1];
            }
            char byte = 'x';
            struct iovec iov = {.iov_base = &byte, .iov_len = 1};
            ssize_t n = fdpass_send(sv[0], &iov, 1, fds, k);
            if (n == 1) {
                for (uint32_t j = 0; j < k; j++) {
                    sent[nsent++] = inode_of(fds[j]);
                }
                in_flight++;
            }
            close(p[0]);
            close(p[1]);
        } else if (op == 1) {
            /* recv: at most one sendmsg()'s descriptors come per call */
            char buf[16];
            ssize_t n = fdpass_recv(sv[1], buf, 1 + arg % sizeof(buf), &q);
            FUZZ_CHECK(n > 0 || n == -EAGAIN);
            FUZZ_CHECK(!q.lost);
            if (n > 0) {
                in_flight -= (size_t)n;
            }
        } else if (op == 2) {
            /* take n from the front */
            uint32_t n = 1 + arg % 16;
            uint32_t len = q.len;
            struct conn_fds *set = NULL;
            int r = fdq_take(&q, n, &set);
            if (n > len) {
                FUZZ_CHECK(r == -ENOENT && q.len == len);
                continue;
            }
            FUZZ_CHECK(r == 0 && set->n == n && q.len == len - n);
            for (uint32_t j = 0; j < n; j++) {
                FUZZ_CHECK(taken < nsent && inode_of(set->fd[j]) == sent[taken]);
                FUZZ_CHECK(fcntl(set->fd[j], F_GETFD) & FD_CLOEXEC);
                taken++;
            }
            /* Held by a queue for a while, or by nobody. */
            struct conn_fds **slot = &held[arg % 4];
            fdpass_release(*slot);
            if (arg & 0x80) {
                set->refs = 1;
                *slot = set;
            } else {
                fdpass_release(set);
                *slot = NULL;
            }
        } else {
            /* a queue holding a set drains */
            struct conn_fds **slot = &held[arg % 4];
            fdpass_release(*slot);
            *slot = NULL;
        }
    }
    for (size_t k = 0; k < 4; k++) {
        fdpass_release(held[k]);
    }
    fdq_free(&q);
    close(sv[0]);
    close(sv[1]); /* what is still in flight is closed by the kernel */
    FUZZ_CHECK(fdpass_held == held_before);
    FUZZ_CHECK(open_fds() == base);
    (void)in_flight;
    return 0;
}
