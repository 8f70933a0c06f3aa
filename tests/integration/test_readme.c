/*
 * test_readme.c - the README's shell examples work as printed.
 *
 * The blocks are read from README.md itself ($SOCKBUS_README), not copied
 * here, so that the README cannot drift from what works: the
 * request/reply block and the queue-group block, each run by sh twenty
 * times in a row against one broker (a service started with `&` and used
 * on the next line is a race that `sockbus wait` closes: without it the
 * first request found no responders 4 times in 10), and the session of
 * "Debugging with nc", whose output must be the text block printed after
 * it.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUNS 20

static struct harness_broker broker;

static void setup(void)
{
    int r = harness_start(&broker, false, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    /* `sockbus` as the README writes it: on the PATH. */
    const char *sockbus = getenv("SOCKBUS");
    cr_assert_not_null(sockbus);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", sockbus);
    char path[4096];
    snprintf(path, sizeof(path), "%s:%s", dirname(dir), getenv("PATH") ? getenv("PATH") : "");
    setenv("PATH", path, 1);
    setenv("SOCKBUS_SOCKET", broker.socket, 1);
}

static void teardown(void)
{
    harness_cleanup(&broker);
}

TestSuite(readme, .init = setup, .fini = teardown, .timeout = 300);

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    static char buf[256 * 1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

/*
 * The fenced block (```lang) that comes first after the line that starts
 * with `after`, and, in *next, where the text after it begins. The caller
 * frees the block.
 */
static char *block_after(const char *readme, const char *after, const char *lang, const char **next)
{
    const char *at = strstr(readme, after);
    cr_assert_not_null(at, "README.md has no \"%s\"", after);
    char fence[32];
    snprintf(fence, sizeof(fence), "\n```%s\n", lang);
    const char *start = strstr(at, fence);
    cr_assert_not_null(start, "no ```%s block after \"%s\"", lang, after);
    start += strlen(fence);
    const char *end = strstr(start, "\n```");
    cr_assert_not_null(end);
    if (next != NULL) {
        *next = end + 4;
    }
    return strndup(start, (size_t)(end - start) + 1);
}

/* The broker has no client but `self`: what a run left behind is gone. */
static void wait_alone(sb_client *self)
{
    int64_t until = harness_now_ms() + HARNESS_IO_MS;
    for (;;) {
        sb_msg reply;
        cr_assert_eq(sb_request(self, "$SYS.STATS", NULL, 0, &reply, HARNESS_IO_MS), 0);
        if (memmem(reply.payload, reply.payload_len, "\"connections\":1,", 16) != NULL) {
            return;
        }
        cr_assert_lt(harness_now_ms(), until, "the services of a run are still connected");
        poll(NULL, 0, 10);
    }
}

/* Run `script` with sh, in a process group of its own; stdout and stderr
 * into out/err (NUL terminated). Returns the exit status. What it started
 * with `&` is ended with the group after it, and the next run waits until
 * the broker has seen them go. */
static int run_sh(const char *script, char *out, size_t out_len, char *err, size_t err_len)
{
    char full[8192];
    snprintf(full, sizeof(full), "%s\n", script);
    char opath[] = "/tmp/sbtest-readme-out-XXXXXX";
    char epath[] = "/tmp/sbtest-readme-err-XXXXXX";
    int ofd = mkstemp(opath);
    int efd = mkstemp(epath);
    cr_assert(ofd >= 0 && efd >= 0);
    unlink(opath);
    unlink(epath);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, STDIN_FILENO);
        dup2(ofd, STDOUT_FILENO);
        dup2(efd, STDERR_FILENO);
        execl("/bin/sh", "sh", "-c", full, (char *)NULL);
        _exit(127);
    }
    int status = harness_wait_pid(pid, 30000);
    kill(-pid, SIGTERM); /* the services it left running */
    sb_client *self = harness_client(&broker, "readme", true);
    wait_alone(self);
    sb_close(self);
    ssize_t n = pread(ofd, out, out_len - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    n = pread(efd, err, err_len - 1, 0);
    err[n > 0 ? n : 0] = '\0';
    close(ofd);
    close(efd);
    return status;
}

static bool matches(const char *text, const char *pattern)
{
    regex_t re;
    cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB | REG_NEWLINE), 0);
    bool m = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    return m;
}

Test(readme, request_reply_block_works_as_printed_twenty_times)
{
    char *readme = read_file(getenv("SOCKBUS_README"));
    char *script = block_after(readme, "Request/reply:", "sh", NULL);
    cr_assert(strstr(script, "sockbus wait") != NULL, "the block lost its wait:\n%s", script);
    for (int i = 0; i < RUNS; i++) {
        char out[4096];
        char err[4096];
        run_sh(script, out, sizeof(out), err, sizeof(err));
        /* The date, "hi there"; on stderr one line for nobody.home, and for
         * svc.fail one from the responder and one from the requester (the
         * two processes write in either order). */
        cr_assert(matches(out, "^[^\n]+\nhi there\n$"), "run %d: stdout:\n%s\nstderr:\n%s", i + 1,
                  out, err);
        cr_assert(matches(err, "^sockbus req: no responders for nobody\\.home[^\n]*\n"),
                  "run %d: stderr:\n%s", i + 1, err);
        cr_assert(
            matches(err, "^sockbus reply: 'false' exited with status 1[^\n]*svc\\.fail[^\n]*$"),
            "run %d: stderr:\n%s", i + 1, err);
        cr_assert(matches(err, "^sockbus req: the responder on svc\\.fail failed[^\n]*$"),
                  "run %d: stderr:\n%s", i + 1, err);
        size_t lines = 0;
        for (const char *c = err; *c != '\0'; c++) {
            lines += *c == '\n';
        }
        cr_assert_eq(lines, 3, "run %d: stderr:\n%s", i + 1, err);
    }
    free(script);
    free(readme);
    harness_stop(&broker);
}

Test(readme, queue_group_block_works_as_printed_twenty_times)
{
    char *readme = read_file(getenv("SOCKBUS_README"));
    char *script = block_after(readme, "Queue groups share the work", "sh", NULL);
    for (int i = 0; i < RUNS; i++) {
        char out[4096];
        char err[4096];
        int status = run_sh(script, out, sizeof(out), err, sizeof(err));
        cr_assert_eq(status, 0, "run %d: exit %d; stderr:\n%s", i + 1, status, err);
        cr_assert(matches(out, "^worker [AB]: photo1\\.png\nworker [AB]: photo2\\.png\n"
                               "worker [AB]: photo3\\.png\nworker [AB]: photo4\\.png\n$"),
                  "run %d: stdout:\n%s\nstderr:\n%s", i + 1, out, err);
        cr_assert_eq(err[0], '\0', "run %d: stderr:\n%s", i + 1, err);
    }
    free(script);
    free(readme);
    harness_stop(&broker);
}

/* The lines of `s` without their "\r". */
static void drop_cr(char *s)
{
    char *w = s;
    for (const char *r = s; *r != '\0'; r++) {
        if (*r != '\r') {
            *w++ = *r;
        }
    }
    *w = '\0';
}

Test(readme, the_nc_session_prints_what_the_readme_shows)
{
    char *readme = read_file(getenv("SOCKBUS_README"));
    const char *next;
    char *setup_block = block_after(readme, "## Debugging with nc", "sh", &next);
    char *session = block_after(next, "", "sh", &next);
    char *want = block_after(next, "", "text", NULL);
    cr_assert(strstr(session, "nc -U") != NULL, "%s", session);
    /* The socket lines of the first block (not its interactive nc), then
     * the session. */
    char script[4096] = "";
    for (char *line = strtok(setup_block, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strncmp(line, "sock=", 5) == 0) {
            strncat(script, line, sizeof(script) - strlen(script) - 2);
            strcat(script, "\n");
        }
    }
    strncat(script, session, sizeof(script) - strlen(script) - 1);
    for (int i = 0; i < 3; i++) {
        char out[4096];
        char err[4096];
        int status = run_sh(script, out, sizeof(out), err, sizeof(err));
        cr_assert_eq(status, 0, "exit %d; stderr:\n%s", status, err);
        drop_cr(out);
        cr_assert_str_eq(out, want);
    }
    free(want);
    free(session);
    free(setup_block);
    free(readme);
    harness_stop(&broker);
}
