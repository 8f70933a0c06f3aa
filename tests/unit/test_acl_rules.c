/*
 * test_acl_rules.c - the ACL without a broker: pattern containment, the
 * inbox rule, rule resolution and the parser's errors.
 */
#include "acl.h"
#include "acl_config.h"
#include "sockbus.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <json-c/json.h>
#include <string.h>

TestSuite(acl_rules);

static bool covers(const char *allowed, const char *requested)
{
    return acl_pattern_covers(allowed, strlen(allowed), requested, strlen(requested));
}

Test(acl_rules, containment_token_by_token)
{
    static const struct {
        const char *allowed;
        const char *requested;
        bool covered;
    } cases[] = {
        /* literal covers only itself */
        {"a.b", "a.b", true},
        {"a.b", "a.c", false},
        {"a.b", "a", false},
        {"a", "a.b", false},
        {"a.b", "a.*", false},
        {"a.b", "a.>", false},
        {"ab", "a", false},
        {"a", "ab", false},
        /* '*' covers one literal or '*' */
        {"a.*", "a.b", true},
        {"a.*", "a.*", true},
        {"a.*", "a.>", false},
        {"a.*", "a.b.c", false},
        {"a.*", "a", false},
        {"*", "x", true},
        {"*.*", "a.*", true},
        {"*.b", "a.c", false},
        {"a.*.c", "a.*.c", true},
        {"a.*.c", "a.b.c", true},
        {"a.*.c", "a.b.d", false},
        /* '>' covers one or more remaining tokens of any kind */
        {">", "a", true},
        {">", "a.b.c", true},
        {">", "*", true},
        {">", ">", true},
        {">", "*.>", true},
        {"a.>", "a.b", true},
        {"a.>", "a.*", true},
        {"a.>", "a.>", true},
        {"a.>", "a.b.>", true},
        {"a.>", "a.*.c", true},
        {"a.>", "a", false},
        {"a.>", "b.>", false},
        {"a.>", ">", false},
        {"a.>", "*.b", false},
        {"a.b.>", "a.>", false},
        {"a.*.>", "a.b.c", true},
        {"a.*.>", "a.b", false},
        {"*.>", "a.b", true},
        {"*.>", "a", false},
        /* the '$' rule: a leading wildcard matches no "$..." subject */
        {">", "$SYS.STATS", false},
        {">", "$SYS.>", false},
        {"*.STATS", "$SYS.STATS", false},
        {"$SYS.>", "$SYS.STATS", true},
        {"$SYS.>", "$SYS.EVENT.>", true},
        {"$SYS.EVENT.*", "$SYS.EVENT.CONNECT", true},
        {"$SYS.EVENT.*", "$SYS.>", false},
        {"a.>", "a.$b", true}, /* '$' matters only in the first token */
        {"*", "$x", false},
        {">", "*", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_expect_eq(covers(cases[i].allowed, cases[i].requested), cases[i].covered,
                     "covers(\"%s\", \"%s\") should be %s", cases[i].allowed, cases[i].requested,
                     cases[i].covered ? "true" : "false");
    }
}

/* Containment agrees with matching: if `allowed` covers `requested`,
 * every subject `requested` matches is matched by `allowed`. */
Test(acl_rules, containment_agrees_with_matching)
{
    static const char *patterns[] = {"a",   "b",    "a.b",  "a.c",   "*",     ">",
                                     "a.*", "a.>",  "*.b",  "*.>",   "a.*.c", "a.b.>",
                                     "*.*", "$S.x", "$S.>", "a.b.c", "*.*.*", "a.*.>"};
    static const char *subjects[] = {"a",     "b",     "a.b",   "a.c",     "b.b",  "a.b.c",
                                     "a.x.c", "a.b.d", "x.y.z", "a.b.c.d", "$S.x", "$S.y.z",
                                     "$S",    "c",     "a.a",   "b.c.d"};
    size_t np = sizeof(patterns) / sizeof(patterns[0]);
    size_t ns = sizeof(subjects) / sizeof(subjects[0]);
    for (size_t i = 0; i < np; i++) {
        for (size_t j = 0; j < np; j++) {
            const char *a = patterns[i];
            const char *r = patterns[j];
            if (!covers(a, r)) {
                continue;
            }
            for (size_t k = 0; k < ns; k++) {
                const char *s = subjects[k];
                bool rm = sb_pattern_match(r, strlen(r), s, strlen(s));
                bool am = sb_pattern_match(a, strlen(a), s, strlen(s));
                cr_expect(!rm || am, "\"%s\" covers \"%s\" but misses \"%s\"", a, r, s);
            }
        }
    }
}

Test(acl_rules, inbox_is_the_clients_own)
{
    cr_expect(acl_in_inbox(42, "_INBOX.42.7", 11));
    cr_expect(acl_in_inbox(42, "_INBOX.42.>", 11));
    cr_expect(acl_in_inbox(42, "_INBOX.42.a.b", 13));
    cr_expect_not(acl_in_inbox(42, "_INBOX.42", 9));
    cr_expect_not(acl_in_inbox(42, "_INBOX.42.", 10));
    cr_expect_not(acl_in_inbox(42, "_INBOX.420.1", 12));
    cr_expect_not(acl_in_inbox(42, "_INBOX.4.1", 10));
    cr_expect_not(acl_in_inbox(42, "_INBOX.>", 8));
    cr_expect_not(acl_in_inbox(42, "_INBOX.*.x", 10));
}

/* Parse `json` (an array of rules); asserts success. */
static struct acl *parse_ok(const char *json)
{
    json_object *o = json_tokener_parse(json);
    cr_assert_not_null(o, "bad test JSON: %s", json);
    struct acl *acl = NULL;
    char err[512] = "";
    int r = acl_parse(o, "test.json", &acl, err, sizeof(err));
    json_object_put(o);
    cr_assert_eq(r, 0, "acl_parse(%s): %s", json, err);
    cr_assert_not_null(acl);
    return acl;
}

/* Parse `json`, expecting a failure whose message contains `want`. */
static void parse_fails(const char *json, const char *want)
{
    json_object *o = json_tokener_parse(json);
    cr_assert_not_null(o, "bad test JSON: %s", json);
    struct acl *acl = NULL;
    char err[512] = "";
    int r = acl_parse(o, "test.json", &acl, err, sizeof(err));
    json_object_put(o);
    cr_expect_eq(r, -EINVAL, "acl_parse(%s) should fail", json);
    cr_expect_null(acl);
    cr_expect(strstr(err, "config test.json: ") == err, "no file in: %s", err);
    cr_expect(strstr(err, want) != NULL, "for %s: expected \"%s\" in: %s", json, want, err);
    cr_expect(strchr(err, '\n') == NULL, "not one line: %s", err);
}

Test(acl_rules, parse_errors_name_the_rule_and_key)
{
    parse_fails("{}", "\"acl\" must be an array");
    parse_fails("[1]", "acl[0]: a rule must be an object");
    parse_fails("[{\"uid\": 1, \"publsh\": []}]", "acl[0]: unknown key \"publsh\"; known keys:");
    parse_fails("[{\"publish\": [\">\"]}]", "acl[0]: a rule needs one of uid");
    parse_fails("[{\"uid\": 1, \"gid\": 2}]", "acl[0]: \"uid\" and \"gid\" in one rule");
    parse_fails("[{\"uid\": \"1\"}]", "acl[0]: \"uid\" must be a number");
    parse_fails("[{\"uid\": -1}]", "acl[0]: \"uid\" must be a number");
    parse_fails("[{\"gid\": 4294967295}]", "acl[0]: \"gid\" must be a number");
    parse_fails("[{\"tcp\": false}]", "acl[0]: \"tcp\" must be true");
    parse_fails("[{\"default\": 1}]", "acl[0]: \"default\" must be true");
    parse_fails("[{\"uid\": 1}, {\"uid\": 2, \"publish\": \"a\"}]",
                "acl[1]: \"publish\" must be an array");
    parse_fails("[{\"uid\": 1, \"subscribe\": [\"a\", 2]}]",
                "acl[0]: subscribe[1] must be a string");
    parse_fails("[{\"uid\": 1, \"subscribe\": [\"a..b\"]}]",
                "acl[0]: subscribe[0]: invalid pattern \"a..b\"");
    parse_fails("[{\"uid\": 1, \"publish\": [\"a.>.b\"]}]", "invalid pattern \"a.>.b\"");
    parse_fails("[{\"user\": \"no-such-user-sockbus\"}]",
                "acl[0]: unknown user \"no-such-user-sockbus\"");
    parse_fails("[{\"group\": \"no-such-group-sockbus\"}]",
                "acl[0]: unknown group \"no-such-group-sockbus\"");
    parse_fails("[{\"uid\": 7}, {\"gid\": 7}, {\"uid\": 7}]",
                "acl[2]: uid 7 already has a rule (acl[0])");
    parse_fails("[{\"default\": true}, {\"default\": true}]", "acl[1]: a second \"default\" rule");
    parse_fails("[{\"tcp\": true}, {\"tcp\": true}]", "acl[1]: a second \"tcp\" rule");
}

Test(acl_rules, resolution_order_uid_groups_tcp_default)
{
    struct acl *acl = parse_ok("["
                               "{\"default\": true, \"publish\": [\"d\"]},"
                               "{\"tcp\": true, \"publish\": [\"t\"]},"
                               "{\"gid\": 100, \"publish\": [\"g100\"]},"
                               "{\"gid\": 200, \"publish\": [\"g200\"]},"
                               "{\"uid\": 1000, \"publish\": [\"u1000\"]}"
                               "]");
    cr_assert_eq(acl_rule_count(acl), 5);
    struct {
        struct acl_peer peer;
        const char *allowed; /* the one subject its rule grants, or NULL */
    } cases[] = {
        /* the uid rule wins over the gid rule, even though it comes later */
        {{.has_cred = true, .uid = 1000, .gid = 100}, "u1000"},
        {{.has_cred = true, .uid = 1001, .gid = 100}, "g100"},
        {{.has_cred = true, .uid = 1001, .gid = 200}, "g200"},
        /* a supplementary group counts; the first gid rule in the file wins */
        {{.has_cred = true,
          .uid = 1001,
          .gid = 5,
          .groups = (const gid_t[]){300, 200, 100},
          .ngroups = 3},
         "g100"},
        {{.has_cred = true, .uid = 1001, .gid = 5}, "d"},
        /* TCP clients have no credentials: tcp, else default */
        {{.tcp = true}, "t"},
        /* a Unix client without credentials gets only the default */
        {{.has_cred = false}, "d"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct acl_rule *r = acl_find(acl, &cases[i].peer);
        cr_assert_not_null(r, "case %zu: no rule", i);
        static const char *all[] = {"d", "t", "g100", "g200", "u1000"};
        for (size_t j = 0; j < 5; j++) {
            bool want = strcmp(all[j], cases[i].allowed) == 0;
            cr_expect_eq(acl_may_publish(r, all[j], strlen(all[j])), want,
                         "case %zu: publish %s should be %s", i, all[j],
                         want ? "allowed" : "denied");
        }
    }
    acl_free(acl);
}

Test(acl_rules, no_rule_denies_everything_but_the_inbox)
{
    struct acl *acl = parse_ok("[{\"uid\": 1000, \"publish\": [\">\"], \"subscribe\": [\">\"]}]");
    struct acl_peer other = {.has_cred = true, .uid = 1001, .gid = 1001};
    const struct acl_rule *r = acl_find(acl, &other);
    cr_assert_null(r);
    struct acl_peer tcp = {.tcp = true};
    cr_assert_null(acl_find(acl, &tcp));
    cr_expect_not(acl_may_publish(NULL, "a", 1));
    cr_expect_not(acl_may_subscribe(NULL, 9, "a", 1));
    cr_expect(acl_may_subscribe(NULL, 9, "_INBOX.9.>", 10));
    cr_expect(acl_may_reply(NULL, 9, "_INBOX.9.1", 10));
    cr_expect_not(acl_may_reply(NULL, 9, "_INBOX.8.1", 10));
    acl_free(acl);
    cr_assert_null(acl_find(NULL, &other));
}

Test(acl_rules, publish_subscribe_and_reply_checks)
{
    struct acl *acl = parse_ok("[{\"uid\": 5, \"publish\": [\"sensors.>\", \"$SYS.STATS\"],"
                               " \"subscribe\": [\"sensors.>\", \"cmd.*\"]}]");
    struct acl_peer peer = {.has_cred = true, .uid = 5, .gid = 5};
    const struct acl_rule *r = acl_find(acl, &peer);
    cr_assert_not_null(r);
#define PUB(s)   acl_may_publish(r, s, strlen(s))
#define SUB(p)   acl_may_subscribe(r, 3, p, strlen(p))
#define REPLY(s) acl_may_reply(r, 3, s, strlen(s))
    cr_expect(PUB("sensors.temp"));
    cr_expect(PUB("sensors.a.b"));
    cr_expect_not(PUB("sensors"));
    cr_expect_not(PUB("cmd.x"));
    cr_expect(PUB("$SYS.STATS"));
    cr_expect_not(PUB("$SYS.CLIENTS"));
    cr_expect(SUB("sensors.>"));
    cr_expect(SUB("sensors.*.temp"));
    cr_expect(SUB("cmd.reboot"));
    cr_expect(SUB("cmd.*"));
    cr_expect_not(SUB("cmd.>"));
    cr_expect_not(SUB(">"));
    cr_expect_not(SUB("_INBOX.>"));
    cr_expect_not(SUB("_INBOX.4.>"));
    cr_expect(SUB("_INBOX.3.>"));
    cr_expect(REPLY("_INBOX.3.17"));
    cr_expect(REPLY("sensors.reply"));
    cr_expect_not(REPLY("cmd.x"));
    cr_expect_not(REPLY("_INBOX.4.17"));
#undef PUB
#undef SUB
#undef REPLY
    char name[64];
    cr_expect_str_eq(acl_rule_name(r, name, sizeof(name)), "acl[0] (uid 5)");
    cr_expect_str_eq(acl_rule_name(NULL, name, sizeof(name)), "no rule");
    acl_free(acl);
}

Test(acl_rules, empty_lists_and_empty_acl)
{
    struct acl *acl = parse_ok("[{\"default\": true}]");
    struct acl_peer peer = {.has_cred = true, .uid = 1, .gid = 1};
    const struct acl_rule *r = acl_find(acl, &peer);
    cr_assert_not_null(r);
    cr_expect_not(acl_may_publish(r, "a", 1));
    cr_expect_not(acl_may_subscribe(r, 1, "a", 1));
    acl_free(acl);

    acl = parse_ok("[]");
    cr_expect_eq(acl_rule_count(acl), 0);
    cr_expect_null(acl_find(acl, &peer));
    acl_free(acl);
    acl_free(NULL);
}

Test(acl_rules, lossless_allowed_unless_a_rule_says_false)
{
    struct acl *acl =
        parse_ok("[{\"uid\": 1, \"lossless\": false}, {\"uid\": 2, \"lossless\": true},"
                 " {\"uid\": 3}]");
    struct acl_peer who = {.has_cred = true, .uid = 1, .gid = 99};
    cr_assert_not(acl_may_lossless(acl_find(acl, &who)));
    who.uid = 2;
    cr_assert(acl_may_lossless(acl_find(acl, &who)));
    who.uid = 3;
    cr_assert(acl_may_lossless(acl_find(acl, &who)));
    who.uid = 4; /* no rule: nothing is allowed */
    cr_assert_not(acl_may_lossless(acl_find(acl, &who)));
    acl_free(acl);
    parse_fails("[{\"uid\": 1, \"lossless\": \"no\"}]",
                "acl[0]: \"lossless\" must be true or false, not a string");
}
