/*
 * test_wait.c - the commands built on who listens: `sockbus wait` (exit 0
 * once a publish on SUBJECT would reach a subscriber, now or later; 124
 * on timeout) and `sockbus stat -v` (each client's subscriptions).
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct harness_broker broker;

static void setup(void)
{
    int r = harness_start(&broker, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
}

static void teardown(void)
{
    harness_cleanup(&broker);
}

TestSuite(wait, .init = setup, .fini = teardown, .timeout = 60);

static void subscribe(sb_client *c, const char *pattern, const char *queue)
{
    cr_assert_eq(sb_subscribe(c, pattern, queue, NULL), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
}

static int run_cli(const char *const *argv, char *err, size_t err_len, int timeout_ms)
{
    char *out = NULL;
    size_t out_len = 0;
    int status = harness_cli(argv, NULL, 0, &out, &out_len, err, err_len, timeout_ms);
    free(out);
    return status;
}

Test(wait, exits_124_when_nobody_comes)
{
    char err[512];
    const char *const argv[] = {"sockbus",     "wait", "-s",  broker.socket,
                                "nobody.here", "-t",   "0.3", NULL};
    int64_t t0 = harness_now_ms();
    cr_assert_eq(run_cli(argv, err, sizeof(err), HARNESS_IO_MS), 124, "stderr: %s", err);
    cr_assert_geq(harness_now_ms() - t0, 300, "it gave up before its time");
    harness_stop(&broker);
}

Test(wait, returns_at_once_when_someone_listens)
{
    sb_client *c = harness_client(&broker, "c", true);
    subscribe(c, "svc.>", NULL);
    char err[512];
    const char *const argv[] = {"sockbus", "wait",        "-t",       "5",
                                "-s",      broker.socket, "svc.time", NULL};
    cr_assert_eq(run_cli(argv, err, sizeof(err), HARNESS_IO_MS), 0, "stderr: %s", err);
    sb_close(c);
    harness_stop(&broker);
}

Test(wait, returns_when_a_subscriber_comes)
{
    const char *const argv[] = {"sockbus", "wait", "-s", broker.socket, "late.svc", NULL};
    int out_fd;
    pid_t pid = harness_cli_spawn(argv, &out_fd);
    /* Whatever wait has done by now (connected or not, asked or not), a
     * subscription made at any point ends it. Unrelated ones do not. */
    sb_client *c = harness_client(&broker, "c", true);
    subscribe(c, "other.svc", NULL);
    subscribe(c, "late.*", NULL);
    cr_assert_eq(harness_wait_pid(pid, HARNESS_IO_MS), 0);
    close(out_fd);
    sb_close(c);
    harness_stop(&broker);
}

Test(wait, refuses_a_pattern)
{
    char err[512];
    const char *const argv[] = {"sockbus", "wait", "-s", broker.socket, "a.*", NULL};
    cr_assert_eq(run_cli(argv, err, sizeof(err), HARNESS_IO_MS), 2, "stderr: %s", err);
    cr_assert(strstr(err, "invalid subject 'a.*'") != NULL, "%s", err);
    harness_stop(&broker);
}

Test(wait, stat_verbose_lists_subscriptions)
{
    sb_client *c = harness_client(&broker, "c", true);
    subscribe(c, "shown.>", "team");
    char err[512];
    char *out = NULL;
    size_t out_len = 0;
    const char *const argv[] = {"sockbus", "stat", "-v", "-s", broker.socket, NULL};
    int status = harness_cli(argv, NULL, 0, &out, &out_len, err, sizeof(err), HARNESS_IO_MS);
    cr_assert_eq(status, 0, "stderr: %s", err);
    char line[128];
    snprintf(line, sizeof(line), "%-8llu           1  shown.> [team]\n",
             (unsigned long long)sb_client_id(c));
    cr_assert(memmem(out, out_len, "PATTERN [QUEUE]", 15) != NULL, "%.*s", (int)out_len, out);
    cr_assert(memmem(out, out_len, line, strlen(line)) != NULL, "no [%s] in:\n%.*s", line,
              (int)out_len, out);
    free(out);
    sb_close(c);
    harness_stop(&broker);
}
