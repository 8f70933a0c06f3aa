/*
 * test_trust.c - whom a client reached. On a default socket path the
 * library reads the broker's credentials (SO_PEERCRED) and refuses a
 * broker run by another user, before it sends anything; an endpoint named
 * explicitly (sb_options.endpoint, $SOCKBUS_SOCKET, the command's -s) is
 * trusted as named.
 *
 * A broker of another user needs a process of another uid, so as root the
 * test starts sockbusd as uid 65534 ("nobody") on a default path: the
 * $XDG_RUNTIME_DIR/sockbus.sock of a private directory given to it (the
 * /tmp fallback is not used: /tmp/sockbus-0.sock may be a real broker's).
 * Root trusts itself and root, so the refusal is seen from root; a
 * non-root user who trusts its own broker and root's, and refuses another
 * user's, is a child that has given up root. Without root those tests are
 * skipped, saying why; the credential accessors are checked as any user.
 * The brokers started here run without $SOCKBUSD_WRAPPER.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOBODY ((uid_t)65534)
#define OTHER  ((uid_t)65533) /* a second unprivileged uid, no account needed */

static struct harness_broker owned;  /* run by another user */
static struct harness_broker rooted; /* run by root, open to everyone */

static void teardown(void)
{
    harness_cleanup(&owned);
    harness_cleanup(&rooted);
}

TestSuite(trust, .fini = teardown, .timeout = 60);

static void need_root(void)
{
    if (geteuid() != 0) {
        cr_skip_test("needs root, to run a broker and clients as other users (uid %u here)",
                     (unsigned)geteuid());
    }
}

/* Become `uid` for good (in a child). */
static bool become(uid_t uid)
{
    return uid == geteuid() ||
           (setgroups(0, NULL) == 0 && setgid((gid_t)uid) == 0 && setuid(uid) == 0);
}

/*
 * Start sockbusd as `uid` on DIR/sockbus.sock, which $XDG_RUNTIME_DIR=DIR
 * makes the default path. DIR belongs to `uid`; the socket has mode 0666,
 * so that any uid may connect and only the check tells them apart.
 */
static void start_as(struct harness_broker *b, uid_t uid)
{
    cr_assert_eq(harness_mkdir(b), 0);
    snprintf(b->socket, sizeof(b->socket), "%s/sockbus.sock", b->dir);
    cr_assert_eq(chown(b->dir, uid, (gid_t)uid), 0, "chown %s: %s", b->dir, strerror(errno));
    cr_assert_eq(chmod(b->dir, 0755), 0);
    const char *exe = getenv("SOCKBUSD");
    cr_assert(exe != NULL && *exe != '\0', "SOCKBUSD is not set: run the tests with meson test");
    int log = open(b->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    cr_assert_geq(log, 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(log, STDERR_FILENO);
        if (!become(uid)) {
            _exit(126);
        }
        execl(exe, exe, "--socket", b->socket, "--mode", "0666", "-v", (char *)NULL);
        _exit(127);
    }
    close(log);
    b->pid = pid;
    int64_t deadline = harness_now_ms() + harness_ready_ms();
    for (;;) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            b->pid = -1;
            char text[4096];
            harness_read_log(b, text, sizeof(text));
            if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
                cr_skip_test("uid %u cannot run %s (exit 127)", (unsigned)uid, exe);
            }
            cr_assert_fail("sockbusd as uid %u exited (status %d): %s", (unsigned)uid, status,
                           text);
        }
        char text[4096];
        harness_read_log(b, text, sizeof(text));
        if (strstr(text, "listening on") != NULL) {
            return;
        }
        cr_assert_lt(harness_now_ms(), deadline, "sockbusd as uid %u did not start: %s",
                     (unsigned)uid, text);
        poll(NULL, 0, 5); /* polling a condition, bounded above */
    }
}

/* Make `dir`/sockbus.sock the default path of this process. */
static void default_path_in(const char *dir)
{
    cr_assert_eq(setenv("XDG_RUNTIME_DIR", dir, 1), 0);
    cr_assert_eq(unsetenv("SOCKBUS_SOCKET"), 0);
}

/* What connect_as() reports, as the child's exit status. */
enum {
    AS_OK = 0,
    AS_UNTRUSTED = 1,
    AS_FAILED = 2,
    AS_WRONG_UID = 3,
    AS_NO_SETUID = 4,
};

/*
 * In a child that has become `uid`, connect by the default rule with
 * $XDG_RUNTIME_DIR=dir, and check that the broker's uid is `broker_uid`.
 * Returns AS_*.
 */
static int connect_as(uid_t uid, const char *dir, uid_t broker_uid)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (!become(uid)) {
            _exit(AS_NO_SETUID);
        }
        setenv("XDG_RUNTIME_DIR", dir, 1);
        unsetenv("SOCKBUS_SOCKET");
        sb_client *c = NULL;
        char why[SB_CONNECT_ERR_MAX];
        sb_options o = {.name = "as-another-user"};
        int r = sb_connect_ex(&c, &o, why, sizeof(why));
        if (r == SB_E_UNTRUSTED) {
            _exit(AS_UNTRUSTED);
        }
        if (r < 0) {
            fprintf(stderr, "connect as uid %u: %s\n", (unsigned)uid, why);
            _exit(AS_FAILED);
        }
        bool right = sb_broker_uid(c) == broker_uid;
        sb_close(c);
        _exit(right ? AS_OK : AS_WRONG_UID);
    }
    return harness_wait_pid(pid, HARNESS_IO_MS);
}

Test(trust, default_path_served_by_another_user_is_refused)
{
    need_root();
    start_as(&owned, NOBODY);
    default_path_in(owned.dir);

    sb_client *sentinel = (sb_client *)&owned;
    sb_client *c = sentinel;
    char why[SB_CONNECT_ERR_MAX];
    memset(why, 'Z', sizeof(why));
    sb_options o = {.name = "victim"};
    int r = sb_connect_ex(&c, &o, why, sizeof(why));
    cr_assert_eq(r, SB_E_UNTRUSTED, "got %d (%s)", r, sb_strerror(r));
    cr_assert_eq(c, sentinel, "*out written on failure");
    /* One line that names the path and the uid, and says what to do. */
    cr_assert_not_null(memchr(why, '\0', sizeof(why)));
    cr_assert_null(strchr(why, '\n'), "[%s]", why);
    cr_assert_not_null(strstr(why, owned.socket), "[%s]", why);
    cr_assert_not_null(strstr(why, "uid 65534"), "[%s]", why);
    cr_assert_not_null(strstr(why, "SOCKBUS_SOCKET="), "[%s]", why);
    /* sb_connect() says the same without the text. */
    cr_assert_eq(sb_connect(&c, &o), SB_E_UNTRUSTED);

    /* It sent nothing: the broker welcomes the next client, named
     * explicitly, but never heard a HELLO from those two. */
    o.endpoint = owned.socket;
    o.name = "named";
    cr_assert_eq(sb_connect(&c, &o), 0);
    cr_assert_eq(sb_broker_uid(c), NOBODY);
    cr_assert_eq(sb_broker_pid(c), owned.pid);
    cr_assert(harness_wait_logged(&owned, "client 3 connected"));
    char log[8192];
    harness_read_log(&owned, log, sizeof(log));
    cr_assert_null(strstr(log, "client 1 connected"), "%s", log);
    cr_assert_null(strstr(log, "client 2 connected"), "%s", log);
    cr_assert_null(strstr(log, "victim'"), "the name reached the broker:\n%s", log);
    sb_close(c);
    harness_stop(&owned);
}

Test(trust, explicit_endpoints_are_trusted_as_named)
{
    need_root();
    start_as(&owned, NOBODY);
    default_path_in(owned.dir);

    sb_client *c;
    sb_options o = {.endpoint = owned.socket};
    cr_assert_eq(sb_connect(&c, &o), 0, "sb_options.endpoint");
    cr_assert_eq(sb_broker_uid(c), NOBODY);
    sb_close(c);

    cr_assert_eq(setenv("SOCKBUS_SOCKET", owned.socket, 1), 0);
    o.endpoint = NULL;
    cr_assert_eq(sb_connect(&c, &o), 0, "SOCKBUS_SOCKET");
    cr_assert_eq(sb_broker_uid(c), NOBODY);
    sb_close(c);
    harness_stop(&owned);
}

Test(trust, the_command_says_who_serves_the_socket)
{
    need_root();
    start_as(&owned, NOBODY);
    default_path_in(owned.dir);

    char *out;
    size_t out_len;
    char err[4096];
    const char *const plain[] = {"sockbus", "pub", "secrets.db", "password=hunter2", NULL};
    int status = harness_cli(plain, NULL, 0, &out, &out_len, err, sizeof(err), HARNESS_IO_MS);
    free(out);
    cr_assert_eq(status, 1, "exit %d, stderr [%s]", status, err);
    size_t n = strlen(err);
    cr_assert(n > 1 && err[n - 1] == '\n' && memchr(err, '\n', n - 1) == NULL,
              "one line expected: [%s]", err);
    cr_assert(strncmp(err, "sockbus: refusing the broker at ", 32) == 0, "[%s]", err);
    cr_assert_not_null(strstr(err, owned.socket), "[%s]", err);
    cr_assert_not_null(strstr(err, "uid 65534"), "[%s]", err);

    /* The message never reached it: nobody published anything. */
    char log[8192];
    harness_read_log(&owned, log, sizeof(log));
    cr_assert_null(strstr(log, "connected"), "%s", log);

    const char *const named[] = {"sockbus", "pub", "-s", owned.socket, "x", "hi", NULL};
    status = harness_cli(named, NULL, 0, &out, &out_len, err, sizeof(err), HARNESS_IO_MS);
    free(out);
    cr_assert_eq(status, 0, "with -s: exit %d, stderr [%s]", status, err);

    cr_assert_eq(setenv("SOCKBUS_SOCKET", owned.socket, 1), 0);
    status = harness_cli(plain, NULL, 0, &out, &out_len, err, sizeof(err), HARNESS_IO_MS);
    free(out);
    cr_assert_eq(status, 0, "with SOCKBUS_SOCKET: exit %d, stderr [%s]", status, err);
    harness_stop(&owned);
}

Test(trust, a_user_trusts_its_own_broker_and_roots_only)
{
    need_root();
    start_as(&owned, NOBODY);
    int r = connect_as(NOBODY, owned.dir, NOBODY);
    cr_assert_eq(r, AS_OK, "uid 65534 to its own broker: %d", r);
    r = connect_as(OTHER, owned.dir, NOBODY);
    cr_assert_eq(r, AS_UNTRUSTED, "uid 65533 to the broker of uid 65534: %d", r);

    start_as(&rooted, 0);
    r = connect_as(NOBODY, rooted.dir, 0);
    cr_assert_eq(r, AS_OK, "uid 65534 to root's broker: %d", r);
    harness_stop(&rooted);
    harness_stop(&owned);
}

Test(trust, broker_credentials_are_exposed)
{
    struct harness_broker *b = &rooted;
    int r = harness_start(b, true, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
    sb_client *c = harness_client(b, "creds", true);
    cr_assert_eq(sb_broker_pid(c), b->pid);
    cr_assert_eq(sb_broker_uid(c), getuid());
    sb_close(c);

    sb_options o = {.endpoint = b->tcp};
    cr_assert_eq(sb_connect(&c, &o), 0);
    cr_assert_eq(sb_broker_pid(c), -1, "TCP carries no credentials");
    cr_assert_eq(sb_broker_uid(c), (uid_t)-1);
    sb_close(c);
    harness_stop(b);
}
