/*
 * test_acl.c - access control through the config file's "acl" section, with
 * rules for the test's own uid and gid (every client of a test shares
 * them, so one rule governs them all).
 *
 * A denial is ERR 4, which the library returns from the next sb_flush() as
 * SB_E_PERMISSION; it is not fatal. "Not delivered" is made exact by flush
 * barriers on both ends: the publisher's flush means the broker handled the
 * PUB, the subscriber's flush means anything routed to it has arrived.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <json-c/json.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct harness_broker broker;
static char config_path[64];

static void teardown(void)
{
    harness_cleanup(&broker);
    if (config_path[0] != '\0') {
        unlink(config_path);
        config_path[0] = '\0';
    }
}

TestSuite(acl, .fini = teardown, .timeout = 60);

static void finish(void)
{
    harness_stop(&broker);
    teardown();
}

/* Start a broker whose config file is `json` (printf-style). */
__attribute__((format(printf, 2, 3))) static void start(bool tcp, const char *fmt, ...)
{
    char json[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(json, sizeof(json), fmt, ap);
    va_end(ap);
    snprintf(config_path, sizeof(config_path), "/tmp/sbtest-acl-XXXXXX");
    int fd = mkstemp(config_path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    const char *const args[] = {"--config", config_path, NULL};
    int r = harness_start(&broker, tcp, args);
    char log[4096];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert_eq(r, 0, "sockbusd did not start with %s: %s; log: %s", json, strerror(-r), log);
}

static unsigned uid(void)
{
    return (unsigned)getuid();
}

static unsigned gid(void)
{
    return (unsigned)getgid();
}

/* Publish and flush; returns what the flush returned. */
static int pub(sb_client *c, const char *subject)
{
    cr_assert_eq(sb_publish(c, subject, NULL, "m", 1), 0);
    return sb_flush(c, HARNESS_IO_MS);
}

/* Subscribe and flush; returns what the flush returned. */
static int sub(sb_client *c, const char *pattern)
{
    cr_assert_eq(sb_subscribe(c, pattern, NULL, NULL), 0);
    return sb_flush(c, HARNESS_IO_MS);
}

static void expect_denied(int r, const char *what)
{
    cr_assert_eq(r, SB_E_PERMISSION, "%s: %s, expected permission denied", what, sb_strerror(r));
}

/* Nothing (more) is waiting for `c`. */
static void expect_nothing(sb_client *c)
{
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    sb_msg m;
    int r = sb_next_msg(c, &m, 0);
    cr_assert_eq(r, -ETIMEDOUT, "unexpected message on %.*s", (int)m.subject_len, m.subject);
}

static void expect_msg(sb_client *c, const char *subject)
{
    sb_msg m;
    int r = sb_next_msg(c, &m, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "no message on %s: %s", subject, sb_strerror(r));
    cr_assert(m.subject_len == strlen(subject) && memcmp(m.subject, subject, m.subject_len) == 0,
              "got %.*s, expected %s", (int)m.subject_len, m.subject, subject);
}

/* $SYS.STATS "denied". */
static int64_t stats_denied(sb_client *c)
{
    sb_msg reply;
    int r = sb_request(c, "$SYS.STATS", NULL, 0, &reply, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "$SYS.STATS: %s", sb_strerror(r));
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, reply.payload, (int)reply.payload_len);
    json_tokener_free(tok);
    json_object *v;
    cr_assert(o != NULL && json_object_object_get_ex(o, "denied", &v), "no \"denied\"");
    int64_t n = json_object_get_int64(v);
    json_object_put(o);
    return n;
}

Test(acl, allowed_publish_and_subscribe_work)
{
    start(false, "{\"acl\": [{\"uid\": %u, \"publish\": [\"acl.>\"], \"subscribe\": [\"acl.>\"]}]}",
          uid());
    sb_client *s = harness_client(&broker, "s", true);
    sb_client *p = harness_client(&broker, "p", true);
    cr_assert_eq(sub(s, "acl.>"), 0);
    cr_assert_eq(sub(s, "acl.*.x"), 0);
    cr_assert_eq(pub(p, "acl.a"), 0);
    expect_msg(s, "acl.a");
    expect_nothing(s);
    sb_close(p);
    sb_close(s);
    finish();
}

Test(acl, denied_publish_is_err_4_and_not_delivered)
{
    start(false, "{\"acl\": [{\"uid\": %u, \"publish\": [\"acl.>\"], \"subscribe\": [\">\"]}]}",
          uid());
    sb_client *s = harness_client(&broker, "s", true);
    sb_client *p = harness_client(&broker, "p", true);
    cr_assert_eq(sub(s, ">"), 0);
    expect_denied(pub(p, "other.x"), "PUB other.x");
    cr_assert(strstr(sb_last_error(p), "permission denied: cannot publish on 'other.x'"),
              "ERR text: %s", sb_last_error(p));
    expect_nothing(s);
    /* Not fatal: the same connection goes on. */
    cr_assert_eq(pub(p, "acl.y"), 0);
    expect_msg(s, "acl.y");
    /* RETAIN is a publish too: refused, and nothing stored. */
    sb_pub r = {.subject = "other.kept", .payload = "v", .payload_len = 1, .flags = SB_PUB_RETAIN};
    cr_assert_eq(sb_publish_ex(p, &r), 0);
    expect_denied(sb_flush(p, HARNESS_IO_MS), "RETAIN other.kept");
    sb_client *late = harness_client(&broker, "late", true);
    cr_assert_eq(sub(late, "other.>"), 0);
    expect_nothing(late);
    sb_close(late);
    sb_close(p);
    sb_close(s);
    finish();
}

Test(acl, denied_subscribe_is_err_4)
{
    start(false,
          "{\"acl\": [{\"uid\": %u, \"publish\": [\">\"], \"subscribe\": [\"acl.>\", "
          "\"cmd.*\"]}]}",
          uid());
    sb_client *c = harness_client(&broker, "c", true);
    expect_denied(sub(c, ">"), "SUB >");
    cr_assert(strstr(sb_last_error(c), "permission denied: cannot subscribe to '>'"),
              "ERR text: %s", sb_last_error(c));
    expect_denied(sub(c, "secret.x"), "SUB secret.x");
    expect_denied(sub(c, "cmd.>"), "SUB cmd.> (wider than cmd.*)");
    expect_denied(sub(c, "*.x"), "SUB *.x");
    cr_assert_eq(sub(c, "cmd.reboot"), 0);
    cr_assert_eq(sub(c, "cmd.*"), 0);
    cr_assert_eq(sub(c, "acl.*.z"), 0);
    /* A refused subscription receives nothing. */
    cr_assert_eq(pub(c, "secret.x"), 0);
    cr_assert_eq(pub(c, "cmd.reboot"), 0);
    expect_msg(c, "cmd.reboot");
    expect_msg(c, "cmd.reboot");
    expect_nothing(c);
    sb_close(c);
    finish();
}

Test(acl, gid_rule_applies)
{
    start(false, "{\"acl\": [{\"gid\": %u, \"publish\": [\"g.>\"], \"subscribe\": [\"g.>\"]}]}",
          gid());
    sb_client *c = harness_client(&broker, "c", true);
    cr_assert_eq(sub(c, "g.>"), 0);
    cr_assert_eq(pub(c, "g.x"), 0);
    expect_msg(c, "g.x");
    expect_denied(pub(c, "u.x"), "PUB u.x");
    expect_denied(sub(c, "u.>"), "SUB u.>");
    sb_close(c);
    finish();
}

Test(acl, uid_rule_wins_over_gid_rule)
{
    start(false,
          "{\"acl\": [{\"gid\": %u, \"publish\": [\">\"], \"subscribe\": [\">\"]},"
          " {\"uid\": %u, \"publish\": [\"u.>\"], \"subscribe\": [\"u.>\"]}]}",
          gid(), uid());
    sb_client *c = harness_client(&broker, "c", true);
    cr_assert_eq(pub(c, "u.x"), 0);
    expect_denied(pub(c, "g.x"), "PUB g.x (only the uid rule applies)");
    expect_denied(sub(c, ">"), "SUB >");
    sb_close(c);
    finish();
}

Test(acl, user_rule_by_name)
{
    struct passwd *pw = getpwuid(getuid());
    cr_assert_not_null(pw);
    start(false, "{\"acl\": [{\"user\": \"%s\", \"publish\": [\"n.>\"], \"subscribe\": []}]}",
          pw->pw_name);
    sb_client *c = harness_client(&broker, "c", true);
    cr_assert_eq(pub(c, "n.x"), 0);
    expect_denied(pub(c, "m.x"), "PUB m.x");
    expect_denied(sub(c, "n.x"), "SUB n.x (empty subscribe list)");
    sb_close(c);
    finish();
}

Test(acl, default_rule_for_everyone_else)
{
    start(false,
          "{\"acl\": [{\"uid\": %u, \"publish\": [\">\"], \"subscribe\": [\">\"]},"
          " {\"default\": true, \"publish\": [\"d.>\"], \"subscribe\": [\"d.>\"]}]}",
          uid() + 1);
    sb_client *c = harness_client(&broker, "c", true);
    cr_assert_eq(sub(c, "d.>"), 0);
    cr_assert_eq(pub(c, "d.x"), 0);
    expect_msg(c, "d.x");
    expect_denied(pub(c, "x"), "PUB x");
    expect_denied(sub(c, "x"), "SUB x");
    sb_close(c);
    finish();
}

Test(acl, no_matching_rule_denies_everything)
{
    start(false, "{\"acl\": [{\"uid\": %u, \"publish\": [\">\"], \"subscribe\": [\">\"]}]}",
          uid() + 1);
    /* It may connect (the socket's mode decides that), and PING works. */
    sb_client *c = harness_client(&broker, "c", true);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    expect_denied(pub(c, "x"), "PUB x");
    expect_denied(sub(c, "x"), "SUB x");
    expect_denied(sub(c, ">"), "SUB >");
    sb_msg reply;
    int r = sb_request(c, "$SYS.STATS", NULL, 0, &reply, HARNESS_IO_MS);
    expect_denied(r, "$SYS.STATS");
    /* The same ERR is also the next flush's error, and the only one: the
     * inbox subscription the request made was not refused. */
    expect_denied(sb_flush(c, HARNESS_IO_MS), "the flush after a refused request");
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    char inbox[64];
    snprintf(inbox, sizeof(inbox), "_INBOX.%llu.>", (unsigned long long)sb_client_id(c));
    cr_assert_eq(sub(c, inbox), 0, "its own inbox: %s", sb_last_error(c));
    sb_close(c);
    finish();
}

Test(acl, request_reply_with_the_inbox_allowed_by_itself)
{
    start(false,
          "{\"acl\": [{\"uid\": %u, \"publish\": [\"svc.echo\", \"_INBOX.>\"],"
          " \"subscribe\": [\"svc.echo\"]}]}",
          uid());
    sb_client *responder = harness_client(&broker, "responder", true);
    sb_client *requester = harness_client(&broker, "requester", true);
    cr_assert_eq(sub(responder, "svc.echo"), 0);
    for (int i = 0; i < 3; i++) {
        sb_pub req = {.subject = "svc.echo", .payload = "ping", .payload_len = 4};
        uint32_t token;
        cr_assert_eq(sb_request_send(requester, &req, &token), 0);
        cr_assert_eq(sb_flush(requester, HARNESS_IO_MS), 0, "request: %s",
                     sb_last_error(requester));
        sb_msg m;
        cr_assert_eq(sb_next_msg(responder, &m, HARNESS_IO_MS), 0);
        cr_assert_gt(m.reply_len, 0);
        char reply_to[128];
        snprintf(reply_to, sizeof(reply_to), "%.*s", (int)m.reply_len, m.reply);
        cr_assert_eq(pub(responder, reply_to), 0, "reply: %s", sb_last_error(responder));
        sb_msg reply;
        int r = sb_request_wait(requester, token, &reply, HARNESS_IO_MS);
        cr_assert_eq(r, 0, "reply %d: %s", i, sb_strerror(r));
    }
    sb_close(requester);
    sb_close(responder);
    finish();
}

Test(acl, a_responder_needs_a_rule_for_inboxes)
{
    start(false,
          "{\"acl\": [{\"uid\": %u, \"publish\": [\"svc.echo\"],"
          " \"subscribe\": [\"svc.echo\"]}]}",
          uid());
    sb_client *responder = harness_client(&broker, "responder", true);
    sb_client *requester = harness_client(&broker, "requester", true);
    cr_assert_eq(sub(responder, "svc.echo"), 0);
    sb_pub req = {.subject = "svc.echo", .payload = "ping", .payload_len = 4};
    uint32_t token;
    cr_assert_eq(sb_request_send(requester, &req, &token), 0);
    cr_assert_eq(sb_flush(requester, HARNESS_IO_MS), 0);
    sb_msg m;
    cr_assert_eq(sb_next_msg(responder, &m, HARNESS_IO_MS), 0);
    char reply_to[128];
    snprintf(reply_to, sizeof(reply_to), "%.*s", (int)m.reply_len, m.reply);
    expect_denied(pub(responder, reply_to), "a reply to another client's inbox");
    sb_msg reply;
    cr_assert_eq(sb_request_wait(requester, token, &reply, 200), -ETIMEDOUT);
    sb_close(requester);
    sb_close(responder);
    finish();
}

Test(acl, reply_subject_must_be_own_inbox_or_publishable)
{
    start(false,
          "{\"acl\": [{\"uid\": %u, \"publish\": [\"svc.>\", \"mine.>\"],"
          " \"subscribe\": [\"svc.>\"]}]}",
          uid());
    sb_client *s = harness_client(&broker, "s", true);
    sb_client *c = harness_client(&broker, "c", true);
    cr_assert_eq(sub(s, "svc.>"), 0);
    /* A subject it may publish on is a fine reply subject. */
    cr_assert_eq(sb_publish(c, "svc.a", "mine.replies", "q", 1), 0);
    cr_assert_eq(sb_flush(c, HARNESS_IO_MS), 0);
    expect_msg(s, "svc.a");
    /* Another subject, or another client's inbox, is not. */
    cr_assert_eq(sb_publish(c, "svc.b", "other.replies", "q", 1), 0);
    expect_denied(sb_flush(c, HARNESS_IO_MS), "reply other.replies");
    cr_assert(strstr(sb_last_error(c), "as a reply subject"), "ERR text: %s", sb_last_error(c));
    char foreign[64];
    snprintf(foreign, sizeof(foreign), "_INBOX.%llu.1", (unsigned long long)sb_client_id(s));
    cr_assert_eq(sb_publish(c, "svc.c", foreign, "q", 1), 0);
    expect_denied(sb_flush(c, HARNESS_IO_MS), "reply to another client's inbox");
    expect_nothing(s);
    sb_close(c);
    sb_close(s);
    finish();
}

Test(acl, another_clients_inbox_cannot_be_subscribed)
{
    start(false, "{\"acl\": [{\"uid\": %u, \"publish\": [], \"subscribe\": [\"a.>\"]}]}", uid());
    sb_client *a = harness_client(&broker, "a", true);
    sb_client *b = harness_client(&broker, "b", true);
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "_INBOX.%llu.>", (unsigned long long)sb_client_id(b));
    expect_denied(sub(a, pattern), "SUB to b's inbox");
    expect_denied(sub(a, "_INBOX.>"), "SUB _INBOX.>");
    snprintf(pattern, sizeof(pattern), "_INBOX.%llu.>", (unsigned long long)sb_client_id(a));
    cr_assert_eq(sub(a, pattern), 0, "its own inbox: %s", sb_last_error(a));
    snprintf(pattern, sizeof(pattern), "_INBOX.%llu.7", (unsigned long long)sb_client_id(a));
    cr_assert_eq(sub(a, pattern), 0, "under its own inbox: %s", sb_last_error(a));
    sb_close(b);
    sb_close(a);
    finish();
}

Test(acl, sys_requests_need_a_rule_and_denials_are_counted_exactly)
{
    start(false,
          "{\"acl\": [{\"uid\": %u, \"publish\": [\"a.>\", \"$SYS.STATS\"],"
          " \"subscribe\": [\"a.>\"]}]}",
          uid());
    sb_client *c = harness_client(&broker, "c", true);
    int64_t before = stats_denied(c);
    expect_denied(pub(c, "b.x"), "PUB b.x");
    expect_denied(pub(c, "c"), "PUB c");
    expect_denied(sub(c, "b.>"), "SUB b.>");
    expect_denied(sub(c, ">"), "SUB >");
    cr_assert_eq(sb_publish(c, "a.x", "b.reply", "q", 1), 0);
    expect_denied(sb_flush(c, HARNESS_IO_MS), "reply b.reply");
    sb_msg reply;
    expect_denied(sb_request(c, "$SYS.CLIENTS", NULL, 0, &reply, HARNESS_IO_MS),
                  "$SYS.CLIENTS (not in the rule)");
    expect_denied(sb_flush(c, HARNESS_IO_MS), "the flush after a refused request");
    /* Allowed traffic is not counted. */
    cr_assert_eq(pub(c, "a.x"), 0);
    cr_assert_eq(sub(c, "a.>"), 0);
    int64_t after = stats_denied(c);
    cr_assert_eq(after - before, 6, "denied moved by %lld, expected 6",
                 (long long)(after - before));
    sb_close(c);
    finish();
}

Test(acl, a_wildcard_rule_does_not_grant_sys)
{
    start(false, "{\"acl\": [{\"uid\": %u, \"publish\": [\">\"], \"subscribe\": [\">\"]}]}", uid());
    sb_client *c = harness_client(&broker, "c", true);
    sb_msg reply;
    expect_denied(sb_request(c, "$SYS.STATS", NULL, 0, &reply, HARNESS_IO_MS), "$SYS.STATS");
    expect_denied(sb_flush(c, HARNESS_IO_MS), "the flush after a refused request");
    expect_denied(sub(c, "$SYS.EVENT.>"), "SUB $SYS.EVENT.>");
    sb_close(c);
    finish();
}

Test(acl, tcp_clients_get_the_tcp_rule)
{
    start(true,
          "{\"acl\": [{\"uid\": %u, \"publish\": [\"u.>\"], \"subscribe\": [\"u.>\", \"t.>\"]},"
          " {\"tcp\": true, \"publish\": [\"t.>\"], \"subscribe\": [\"t.>\"]}]}",
          uid());
    sb_client *u = harness_client(&broker, "unix", true);
    sb_client *t = NULL;
    sb_options o = {.endpoint = broker.tcp, .name = "tcp"};
    cr_assert_eq(sb_connect(&t, &o), 0);
    cr_assert_eq(sub(u, "t.>"), 0);
    cr_assert_eq(pub(t, "t.x"), 0);
    expect_msg(u, "t.x");
    expect_denied(pub(t, "u.x"), "TCP PUB u.x");
    expect_denied(sub(t, "u.>"), "TCP SUB u.>");
    cr_assert_eq(pub(u, "u.x"), 0);
    expect_denied(pub(u, "t.y"), "Unix PUB t.y");
    sb_close(t);
    sb_close(u);
    finish();
}

Test(acl, without_an_acl_section_everything_is_allowed)
{
    start(false, "{\"max_subscriptions\": 100}");
    sb_client *c = harness_client(&broker, "c", true);
    cr_assert_eq(sub(c, ">"), 0);
    cr_assert_eq(sub(c, "$SYS.EVENT.>"), 0);
    expect_msg(c, "$SYS.EVENT.SUBSCRIBE"); /* its own subscription, announced */
    cr_assert_eq(pub(c, "any.thing"), 0);
    expect_msg(c, "any.thing");
    cr_assert_eq(stats_denied(c), 0);
    sb_close(c);
    finish();
}

Test(acl, an_acl_mistake_stops_the_start_with_one_line)
{
    cr_assert_eq(harness_mkdir(&broker), 0);
    char path[160];
    snprintf(path, sizeof(path), "%s/acl.json", broker.dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "{\"acl\": [{\"uid\": %u, \"publish\": [\"a\"], \"subscribe\": [\"a..b\"]}]}",
            uid());
    fclose(f);
    const char *const args[] = {"--socket", broker.socket, "--config", path, NULL};
    int status = harness_run_broker(&broker, args, HARNESS_IO_MS);
    char log[2048];
    harness_read_log(&broker, log, sizeof(log));
    cr_assert_eq(status, 2, "exit %d; log: %s", status, log);
    cr_assert(strstr(log, path) && strstr(log, "acl[0]: subscribe[0]: invalid pattern \"a..b\""),
              "log: %s", log);
    char *nl = strchr(log, '\n');
    cr_assert(nl != NULL && nl[1] == '\0', "one line expected: %s", log);
    harness_cleanup(&broker);
}
