/*
 * test_abi.c - a program linked against SOCKBUS_0.1 keeps its sb_connect()
 * after sb_options grew (libclient/client_compat.c). This file calls
 * sb_connect@SOCKBUS_0.1 of the shared library, as such a program does,
 * with the struct of that version followed by bytes that are not zero,
 * where the new fields (reconnect, ...) would be: the client must not
 * reconnect, so a broker that stops ends it, as it did.
 *
 * Linked against libsockbus.so, not the static library, so it starts its
 * broker itself (the harness links the static one).
 */
#include "sockbus.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* sb_options as SOCKBUS_0.1 declared it, with what follows it in memory. */
struct old_call {
    struct {
        const char *endpoint;
        const char *name;
        bool no_echo;
        int timeout_ms;
    } opts;
    unsigned char after[64];
};

int sb_connect_old(sb_client **out, const void *opts);
__asm__(".symver sb_connect_old, sb_connect@SOCKBUS_0.1");

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

Test(abi, sb_connect_of_0_1_reads_only_the_old_options, .timeout = 60)
{
    char dir[] = "/tmp/sockbus-abi-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    const char *exe = getenv("SOCKBUSD");
    cr_assert_not_null(exe, "SOCKBUSD is not set: run the tests with meson test");
    pid_t pid = fork();
    if (pid == 0) {
        execl(exe, exe, "--socket", path, "-q", (char *)NULL);
        _exit(127);
    }
    struct old_call call;
    memset(&call, 0xff, sizeof(call));
    call.opts.endpoint = path;
    call.opts.name = "abi";
    call.opts.no_echo = false;
    call.opts.timeout_ms = 1000;
    sb_client *c = NULL;
    int r = -ECONNREFUSED;
    for (int64_t deadline = now_ms() + 10000; r != 0 && now_ms() < deadline;) {
        r = sb_connect_old(&c, &call);
        if (r != 0) {
            poll(NULL, 0, 5); /* waiting for the broker's socket, bounded */
        }
    }
    cr_assert_eq(r, 0, "connect: %s", sb_strerror(r));
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    sb_msg m;
    r = sb_next_msg(c, &m, 5000);
    cr_assert_eq(r, SB_E_SHUTDOWN, "an old program's client reconnects: %s", sb_strerror(r));
    cr_assert_eq(sb_state(c), SB_STATE_CLOSED);
    sb_close(c);
    rmdir(dir);
}
