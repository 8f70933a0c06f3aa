/*
 * test_examples.c - what the project ships for users to start from: the
 * example programs of examples/ and the config files (the example config
 * of docs/ and the system service's of packaging/).
 *
 * The examples are run as a user would run them, with the broker named by
 * $SOCKBUS_SOCKET: pubsub prints what it published, loop answers requests
 * from its poll() loop, and both, without a broker, exit 1 with one line on
 * stderr (instead of crashing on a client that was never connected). The
 * programs are run through harness_cli()/harness_cli_spawn(), which run
 * $SOCKBUS: each test points it at the example first (criterion runs every
 * test in a process of its own, so this stays inside the test).
 *
 * The config files must start a broker as they are: harness_start() adds
 * --socket, and the tests add --group with the test's own group, since the
 * group sockbus that the files name exists only where the package made it
 * (a flag wins over the file).
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static struct harness_broker broker;
static pid_t loop_pid = -1;

static void teardown(void)
{
    if (loop_pid > 0) {
        kill(loop_pid, SIGKILL);
        waitpid(loop_pid, NULL, 0);
        loop_pid = -1;
    }
    harness_cleanup(&broker);
}

static void start_broker(void)
{
    int r = harness_start(&broker, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    cr_assert_eq(setenv("SOCKBUS_SOCKET", broker.socket, 1), 0);
}

/* Make harness_cli() run the example named by the environment variable
 * `var` (set by meson) instead of the sockbus command. */
static void use_example(const char *var)
{
    const char *path = getenv(var);
    cr_assert(path != NULL && *path != '\0', "%s is not set: run the tests with meson test", var);
    cr_assert_eq(setenv("SOCKBUS", path, 1), 0);
}

/* The example exits 1 with exactly one line on stderr, which names the
 * socket it tried, and prints nothing on stdout. */
static void expect_no_broker_failure(const char *var, const char *name)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    char path[160];
    snprintf(path, sizeof(path), "%s/nobody.sock", broker.dir);
    cr_assert_eq(setenv("SOCKBUS_SOCKET", path, 1), 0);
    use_example(var);

    const char *argv[] = {name, NULL};
    char *out = NULL;
    size_t out_len = 0;
    char err[2048];
    int status = harness_cli(argv, NULL, 0, &out, &out_len, err, sizeof(err), 10000);
    cr_expect_eq(status, 1, "%s without a broker: exit status %d (128+N: killed by signal N)", name,
                 status);
    cr_expect_eq(out_len, 0, "%s printed on stdout: %.*s", name, (int)out_len, out);
    size_t len = strlen(err);
    cr_expect(len > 0 && err[len - 1] == '\n' && memchr(err, '\n', len) == err + len - 1,
              "%s: expected one line on stderr, got: %s", name, err);
    cr_expect(strncmp(err, name, strlen(name)) == 0, "%s: the line should start with its name: %s",
              name, err);
    cr_expect(strstr(err, path) != NULL, "%s: the line should name %s: %s", name, path, err);
    free(out);
}

Test(examples, pubsub_prints_what_it_published, .fini = teardown)
{
    start_broker();
    use_example("SOCKBUS_EXAMPLE_PUBSUB");
    const char *argv[] = {"pubsub", NULL};
    char *out = NULL;
    size_t out_len = 0;
    char err[2048];
    int status = harness_cli(argv, NULL, 0, &out, &out_len, err, sizeof(err), 10000);
    cr_assert_eq(status, 0, "pubsub: exit status %d, stderr: %s", status, err);
    const char expected[] = "sensors.kitchen.temp: 21.5\n"
                            "sensors.kitchen.humidity: 40\n"
                            "sensors.garage.temp: 12.0\n";
    cr_expect(out_len == strlen(expected) && memcmp(out, expected, out_len) == 0,
              "pubsub printed:\n%.*s", (int)out_len, out);
    free(out);
    harness_stop(&broker);
}

Test(examples, pubsub_without_broker_exits_1_with_one_line, .fini = teardown)
{
    expect_no_broker_failure("SOCKBUS_EXAMPLE_PUBSUB", "pubsub");
}

Test(examples, loop_without_broker_exits_1_with_one_line, .fini = teardown)
{
    expect_no_broker_failure("SOCKBUS_EXAMPLE_LOOP", "loop");
}

/* Read one line from fd within timeout_ms into buf; true if a whole line
 * came. */
static bool read_line(int fd, char *buf, size_t len, int timeout_ms)
{
    size_t n = 0;
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (n + 1 < len) {
        int left = (int)(deadline - harness_now_ms());
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, left) <= 0) {
            break;
        }
        ssize_t r = read(fd, buf + n, 1);
        if (r <= 0) {
            break;
        }
        if (buf[n++] == '\n') {
            buf[n] = '\0';
            return true;
        }
    }
    buf[n] = '\0';
    return false;
}

Test(examples, loop_answers_requests_from_its_callback, .fini = teardown)
{
    start_broker();
    use_example("SOCKBUS_EXAMPLE_LOOP");
    const char *argv[] = {"loop", "example.upper", "2", NULL};
    int out_fd;
    loop_pid = harness_cli_spawn(argv, &out_fd);

    /* It prints its line once its subscription is confirmed. */
    char line[256];
    cr_assert(read_line(out_fd, line, sizeof(line), 2 * harness_ready_ms()),
              "loop did not say it was ready: '%s'", line);
    cr_expect_str_eq(line, "loop: answering requests on example.upper\n");

    sb_client *c = harness_client(&broker, "requester", true);
    const char *asks[] = {"hello", "Loop 2"};
    const char *answers[] = {"HELLO", "LOOP 2"};
    for (int i = 0; i < 2; i++) {
        sb_msg reply;
        int r = sb_request(c, "example.upper", asks[i], strlen(asks[i]), &reply, HARNESS_IO_MS);
        cr_assert_eq(r, 0, "request %d: %s", i, sb_strerror(r));
        cr_expect(reply.payload_len == strlen(answers[i]) &&
                      memcmp(reply.payload, answers[i], reply.payload_len) == 0,
                  "reply %d: '%.*s'", i, (int)reply.payload_len, (const char *)reply.payload);
    }
    /* After its COUNT answers it flushes and exits 0. */
    int status = harness_wait_pid(loop_pid, HARNESS_IO_MS);
    loop_pid = -1;
    cr_expect_eq(status, 0, "loop exit status %d", status);
    close(out_fd);
    sb_close(c);
    harness_stop(&broker);
}

Test(examples, whoami_answers_by_the_kernels_uid, .fini = teardown)
{
    int r = harness_start(&broker, true, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    cr_assert_eq(setenv("SOCKBUS_SOCKET", broker.socket, 1), 0);
    use_example("SOCKBUS_EXAMPLE_WHOAMI");
    const char *argv[] = {"whoami", "example.whoami", "2", NULL};
    int out_fd;
    loop_pid = harness_cli_spawn(argv, &out_fd);
    char line[256];
    cr_assert(read_line(out_fd, line, sizeof(line), 2 * harness_ready_ms()),
              "whoami did not say it was ready: '%s'", line);
    char want[128];
    if (getuid() == 0) {
        snprintf(want, sizeof(want), "you are root (pid %ld): yes", (long)getpid());
    } else {
        snprintf(want, sizeof(want), "you are uid %lu, as I am: welcome", (unsigned long)getuid());
    }
    /* Over the Unix socket: by uid; over TCP: no credentials. */
    sb_client *u = harness_client(&broker, "requester", true);
    sb_client *t = NULL;
    sb_options o = {.endpoint = broker.tcp, .name = "tcp-requester"};
    cr_assert_eq(sb_connect(&t, &o), 0);
    sb_client *who[2] = {u, t};
    const char *answers[2] = {want, "I cannot tell who you are (no credentials over TCP): no"};
    for (int i = 0; i < 2; i++) {
        sb_msg reply;
        r = sb_request(who[i], "example.whoami", "?", 1, &reply, HARNESS_IO_MS);
        cr_assert_eq(r, 0, "request %d: %s", i, sb_strerror(r));
        cr_expect(reply.payload_len == strlen(answers[i]) &&
                      memcmp(reply.payload, answers[i], reply.payload_len) == 0,
                  "reply %d: '%.*s'", i, (int)reply.payload_len, (const char *)reply.payload);
    }
    int status = harness_wait_pid(loop_pid, HARNESS_IO_MS);
    loop_pid = -1;
    cr_expect_eq(status, 0, "whoami exit status %d", status);
    close(out_fd);
    sb_close(u);
    sb_close(t);
    harness_stop(&broker);
}

/* The loop follows the library across a broker restart: sb_fd() changes,
 * sb_timeout_ms() paces the attempts, the subscription is replayed. */
Test(examples, loop_survives_a_broker_restart, .fini = teardown)
{
    start_broker();
    use_example("SOCKBUS_EXAMPLE_LOOP");
    const char *argv[] = {"loop", "example.upper", "2", NULL};
    int out_fd;
    loop_pid = harness_cli_spawn(argv, &out_fd);
    char line[256];
    cr_assert(read_line(out_fd, line, sizeof(line), 2 * harness_ready_ms()),
              "loop did not say it was ready: '%s'", line);

    sb_client *c = harness_client(&broker, "requester", true);
    sb_msg reply;
    int r = sb_request(c, "example.upper", "one", 3, &reply, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "request before the restart: %s", sb_strerror(r));
    sb_close(c);
    cr_assert_eq(harness_kill(&broker, SIGKILL), 128 + SIGKILL);
    r = harness_restart(&broker, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start again: %s", strerror(-r));
    c = harness_client(&broker, "requester", true);
    /* No responders until the loop is back: within its backoff (1 s). */
    int64_t deadline = harness_now_ms() + HARNESS_IO_MS;
    do {
        r = sb_request(c, "example.upper", "two", 3, &reply, HARNESS_IO_MS);
    } while (r == SB_E_NO_RESPONDERS && harness_now_ms() < deadline && poll(NULL, 0, 10) == 0);
    cr_assert_eq(r, 0, "request after the restart: %s", sb_strerror(r));
    cr_expect(reply.payload_len == 3 && memcmp(reply.payload, "TWO", 3) == 0);
    int status = harness_wait_pid(loop_pid, HARNESS_IO_MS);
    loop_pid = -1;
    cr_expect_eq(status, 0, "loop exit status %d", status);
    close(out_fd);
    sb_close(c);
    harness_stop(&broker);
}

/* Start a broker with the config file named by `var`, plus --group with
 * our own group, and check that it serves: a message goes round, and the
 * socket has the file's mode. */
static void serve_with_config(const char *var)
{
    const char *config = getenv(var);
    cr_assert(config != NULL && *config != '\0', "%s is not set: run the tests with meson test",
              var);
    struct group *gr = getgrgid(getgid());
    cr_assert(gr != NULL, "no name for our group %u", (unsigned)getgid());
    char group[64];
    snprintf(group, sizeof(group), "%s", gr->gr_name);

    const char *extra[] = {"--config", config, "--group", group, NULL};
    int r = harness_start(&broker, false, extra);
    char log[4096];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert_eq(r, 0, "sockbusd --config %s did not start: %s; its log: %s", config, strerror(-r),
                 log);

    struct stat st;
    cr_assert_eq(stat(broker.socket, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0660, "socket mode %o, the file says 0660",
                 (unsigned)(st.st_mode & 07777));
    cr_expect_eq(st.st_gid, getgid());

    sb_client *c = harness_client(&broker, "config-check", true);
    uint32_t sid;
    cr_assert_eq(sb_subscribe(c, "sensors.>", NULL, &sid), 0);
    cr_assert_eq(sb_publish(c, "sensors.check", NULL, "ok", 2), 0);
    r = sb_flush(c, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "flush: %s (%s)", sb_strerror(r), sb_last_error(c));
    sb_msg m = harness_expect_msg(c);
    cr_expect_str_eq(m.subject, "sensors.check");
    sb_close(c);
    harness_stop(&broker);
}

Test(configs, example_config_starts_a_broker, .fini = teardown)
{
    serve_with_config("SOCKBUS_EXAMPLE_CONFIG");
}

Test(configs, system_config_starts_a_broker, .fini = teardown)
{
    serve_with_config("SOCKBUS_SYSTEM_CONFIG");
}
