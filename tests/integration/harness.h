/*
 * harness.h - integration test support: a real sockbusd on a private
 * socket in a temporary directory, and helpers to talk to it.
 *
 * The broker binary comes from $SOCKBUSD (set by meson), the sockbus
 * command from $SOCKBUS. Readiness is a bounded wait: the socket is polled
 * until it accepts a connection, for at most HARNESS_READY_MS.
 * With $SOCKBUSD_WRAPPER set (e.g. "valgrind --error-exitcode=99 ..."),
 * harness_start() and harness_run_broker() run the broker under that
 * command, and harness_stop() asserts its verdict.
 */
#ifndef SOCKBUS_TEST_HARNESS_H
#define SOCKBUS_TEST_HARNESS_H

#include "sockbus.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HARNESS_READY_MS 5000
#define HARNESS_IO_MS    5000

struct harness_broker {
    pid_t pid;
    char dir[64];
    char socket[96];
    char tcp[64];  /* "tcp://127.0.0.1:PORT" when started with tcp */
    char log[128]; /* the broker's stderr */
};

/*
 * Start sockbusd on DIR/s.sock with extra arguments (NULL-terminated list,
 * may be NULL). With `tcp`, it also listens on a free loopback port.
 * Returns 0 once the socket accepts connections, or a negative errno (the
 * broker exited or did not become ready in time).
 */
int harness_start(struct harness_broker *b, bool tcp, const char *const *extra);

/* Start sockbusd with exactly `args` (after argv[0]) and wait for it to
 * exit; returns its exit status, or -1. Its stderr goes to b->log. Used for
 * start-up failures. The directory must exist (harness_mkdir). */
int harness_run_broker(struct harness_broker *b, const char *const *args, int timeout_ms);

/* Make b->dir (a fresh temp dir) and b->socket inside it, without starting. */
int harness_mkdir(struct harness_broker *b);

/*
 * SIGTERM, wait (bounded), SIGKILL if needed; returns the exit status.
 * Asserts that the broker exited 0 and that its log holds no sanitizer
 * report, so call it at the end of a test body (criterion does not count
 * assertions in .fini). Removes the directory.
 */
int harness_stop(struct harness_broker *b);

/* For .fini: stop the broker if it still runs and remove the directory,
 * asserting nothing. */
void harness_cleanup(struct harness_broker *b);

/* Send SIGTERM and wait for exit; returns the exit status or -1. Keeps the
 * directory. */
int harness_terminate(struct harness_broker *b, int timeout_ms);

/* Send `sig` (SIGTERM, SIGKILL) and wait, bounded, for the broker to exit;
 * keeps the directory, so that harness_restart() can start another on
 * the same socket path. Returns the exit status or -1. */
int harness_kill(struct harness_broker *b, int sig);

/* Start a new broker on b->socket (after harness_kill()), with the same
 * rule for readiness as harness_start(): 0 once the socket accepts
 * connections, or a negative errno. */
int harness_restart(struct harness_broker *b, const char *const *extra);

/* Wait (bounded by HARNESS_READY_MS) until the broker's log contains
 * `needle`; true if it did. The socket accepts connections from listen()
 * on, before the broker has logged the rest of its start-up. */
bool harness_wait_logged(const struct harness_broker *b, const char *needle);

/* Read the broker's log into buf (NUL terminated). */
void harness_read_log(const struct harness_broker *b, char *buf, size_t len);

/* Connect a library client; asserts on failure. */
sb_client *harness_client(const struct harness_broker *b, const char *name, bool echo);

/* A raw connected Unix socket to the broker (blocking), for sending
 * malformed frames. Optionally performs the HELLO/WELCOME handshake. */
int harness_raw(const struct harness_broker *b, bool hello);

/* A raw connected Unix socket that has said HELLO with the name `name`,
 * spliced into the JSON byte for byte (so it may hold JSON escapes, or
 * bytes no encoder would write), and received WELCOME. */
int harness_raw_named(const struct harness_broker *b, const char *name);

/* Write all of buf to fd. */
void harness_write(int fd, const void *buf, size_t len);

/* A library client of the broker's TCP endpoint (the broker was started
 * with tcp), named `name`; fails the test if it cannot connect. */
sb_client *harness_tcp_client(const struct harness_broker *b, const char *name);

/* Subscribe `c` to `pattern` with SUB flags `flags` and wait until the
 * broker has it; fails the test otherwise. */
void harness_subscribe(sb_client *c, const char *pattern, uint32_t flags);

/* One sendmsg() of buf[0..len) with the descriptors fds[0..nfds) (none for
 * 0) on its first byte, with `flags` besides MSG_NOSIGNAL: sendmsg()'s
 * answer. For the tests that pass descriptors on a raw socket. */
ssize_t harness_sendmsg_fds(int fd, const void *buf, size_t len, const int *fds, size_t nfds,
                            int flags);

/* Read exactly len bytes with a timeout; returns 0, or -1 on EOF/timeout. */
int harness_read(int fd, void *buf, size_t len, int timeout_ms);

/* Read one frame (header into hdr[16], body into body up to body_cap);
 * returns the frame size, 0 on EOF, -1 on timeout or error. */
long harness_read_frame(int fd, uint8_t *hdr, uint8_t *body, size_t body_cap, int timeout_ms);

/* Wait for EOF on fd (the broker closed it); true if it came in time. */
bool harness_wait_eof(int fd, int timeout_ms);

/*
 * Run the sockbus command with `argv` (argv[0] is ignored; NULL-terminated),
 * feeding `in` (in_len bytes) on stdin and capturing stdout into a malloc'd
 * buffer (*out, *out_len) and stderr into err (NUL terminated, truncated to
 * err_len). Kills it after timeout_ms. Returns the exit status (128+signal
 * if killed by one), or -1.
 */
int harness_cli(const char *const *argv, const void *in, size_t in_len, char **out, size_t *out_len,
                char *err, size_t err_len, int timeout_ms);

/* Start the sockbus command in the background with stdout to a pipe;
 * returns its pid and the read end in *out_fd. */
pid_t harness_cli_spawn(const char *const *argv, int *out_fd);

/* Wait for pid with a timeout; returns the exit status, or -1 (then it is
 * killed). */
int harness_wait_pid(pid_t pid, int timeout_ms);

/* The next message on c within HARNESS_IO_MS, or the test fails. */
sb_msg harness_expect_msg(sb_client *c);

/* No message is waiting on c. A flush barrier first makes this exact, not
 * a guess: whatever was routed to c before it is in its buffer by then. */
void harness_expect_none(sb_client *c);

/* A numeric field of the broker's /proc/PID/status in kB ("VmRSS"), or -1. */
long harness_status_kib(const struct harness_broker *b, const char *field);

/* Stop the broker (SIGSTOP) and wait, bounded, until the kernel says it
 * is stopped; harness_thaw() lets it go on. What clients send meanwhile is
 * all there when it wakes: a test can make things happen in one loop
 * iteration. */
void harness_freeze(const struct harness_broker *b);
void harness_thaw(const struct harness_broker *b);

/* Monotonic milliseconds. */
int64_t harness_now_ms(void);

/* Does the broker run under $SOCKBUSD_WRAPPER (e.g. valgrind)? Tests whose
 * bounds only hold for the bare broker (start-up or stop time, memory use)
 * skip those checks then, saying why. */
bool harness_wrapped(void);

/* How long harness_start() waits for the socket: $HARNESS_READY_MS if set,
 * else HARNESS_READY_MS, six times that under a wrapper. */
int harness_ready_ms(void);

#endif /* SOCKBUS_TEST_HARNESS_H */
