/*
 * acl_config.c - the "acl" section of the config file, read into rules
 * (acl.h).
 *
 * The section is an array of rule objects, judged strictly: every key
 * known, every value of its type, every pattern valid (sb_pattern_valid()),
 * users and groups given by name resolved now (getpwnam(), getgrnam()),
 * and no two rules for the same peers, since rules do not combine and a
 * second one would silently never apply. Each mistake is one line naming
 * the file, the rule and the key, like every config error (config.c). The
 * rules are built in file order; acl.c never sees JSON.
 */
#include "acl_config.h"

#include "acl.h"
#include "errmsg.h"
#include "jsonval.h"
#include "sockbus.h"

#include <errno.h>
#include <grp.h>
#include <json-c/json.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char rule_keys[] = "uid, gid, user, group, tcp, default, publish, subscribe, lossless";

/* One line naming the file and the rule: "config FILE: acl[2]: TEXT". */
__attribute__((format(printf, 5, 6))) static int fail(char *err, size_t err_len, const char *path,
                                                      size_t index, const char *fmt, ...)
{
    char prefix[PATH_MAX + 32];
    snprintf(prefix, sizeof(prefix), "config %s: acl[%zu]: ", path, index);
    va_list ap;
    va_start(ap, fmt);
    errmsg_v(err, err_len, -EINVAL, prefix, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int list_parse(json_object *v, const char *key, const char *path, size_t index,
                      struct acl_list *out, char *err, size_t err_len)
{
    if (!json_object_is_type(v, json_type_array)) {
        return fail(err, err_len, path, index,
                    "\"%s\" must be an array of patterns (e.g. [\"sensors.>\"]), not %s", key,
                    jsonval_type_name(v));
    }
    size_t n = json_object_array_length(v);
    struct acl_list l = {.items = calloc(n ? n : 1, sizeof(*l.items))};
    if (l.items == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *p = json_object_array_get_idx(v, i);
        if (!json_object_is_type(p, json_type_string)) {
            acl_list_deinit(&l);
            return fail(err, err_len, path, index, "%s[%zu] must be a string, not %s", key, i,
                        jsonval_type_name(p));
        }
        const char *s = json_object_get_string(p);
        size_t len = (size_t)json_object_get_string_len(p);
        if (!sb_pattern_valid(s, len) || strlen(s) != len) {
            acl_list_deinit(&l);
            return fail(err, err_len, path, index,
                        "%s[%zu]: invalid pattern \"%s\"; tokens are separated by '.', '*' "
                        "stands for one token and '>' (last) for the rest",
                        key, i, s);
        }
        l.items[i].text = strdup(s);
        if (l.items[i].text == NULL) {
            acl_list_deinit(&l);
            return -ENOMEM;
        }
        l.items[i].len = len;
        l.len++;
    }
    *out = l;
    return 0;
}

/* A uid or gid given as a number. */
static int parse_id(json_object *v, const char *key, const char *path, size_t index, uint32_t *out,
                    char *err, size_t err_len)
{
    if (!json_object_is_type(v, json_type_int)) {
        return fail(err, err_len, path, index,
                    "\"%s\" must be a number from 0 to %" PRIu32 ", not %s", key, UINT32_MAX - 1,
                    jsonval_type_name(v));
    }
    if (json_object_get_int64(v) < 0 || json_object_get_uint64(v) >= UINT32_MAX) {
        return fail(err, err_len, path, index,
                    "\"%s\" must be a number from 0 to %" PRIu32 ", not %s", key, UINT32_MAX - 1,
                    json_object_get_string(v));
    }
    *out = (uint32_t)json_object_get_uint64(v);
    return 0;
}

/* A user or group given by name, resolved now. */
static int parse_name(json_object *v, const char *key, const char *path, size_t index,
                      uint32_t *out, char *err, size_t err_len)
{
    if (!json_object_is_type(v, json_type_string)) {
        return fail(err, err_len, path, index, "\"%s\" must be a string, not %s", key,
                    jsonval_type_name(v));
    }
    const char *name = json_object_get_string(v);
    if (strcmp(key, "user") == 0) {
        struct passwd *pw = getpwnam(name);
        if (pw == NULL) {
            return fail(err, err_len, path, index,
                        "unknown user \"%s\"; use \"uid\" for a numeric id", name);
        }
        *out = pw->pw_uid;
    } else {
        struct group *gr = getgrnam(name);
        if (gr == NULL) {
            return fail(err, err_len, path, index,
                        "unknown group \"%s\"; use \"gid\" for a numeric id", name);
        }
        *out = gr->gr_gid;
    }
    return 0;
}

static int parse_true(json_object *v, const char *key, const char *path, size_t index,
                      uint32_t *out, char *err, size_t err_len)
{
    (void)out;
    if (!json_object_is_type(v, json_type_boolean) || !json_object_get_boolean(v)) {
        return fail(err, err_len, path, index, "\"%s\" must be true", key);
    }
    return 0;
}

/* The keys that say whom a rule is for: the kind each gives the rule, and
 * how its value is read (into the rule's id, for uid and gid). */
typedef int selector_parse(json_object *v, const char *key, const char *path, size_t index,
                           uint32_t *id, char *err, size_t err_len);

static const struct selector {
    const char *key;
    enum acl_kind kind;
    selector_parse *parse;
} selectors[] = {
    {"uid", ACL_UID, parse_id},    {"gid", ACL_GID, parse_id},
    {"user", ACL_UID, parse_name}, {"group", ACL_GID, parse_name},
    {"tcp", ACL_TCP, parse_true},  {"default", ACL_DEFAULT, parse_true},
};

static const struct selector *selector_find(const char *key)
{
    for (size_t i = 0; i < sizeof(selectors) / sizeof(selectors[0]); i++) {
        if (strcmp(selectors[i].key, key) == 0) {
            return &selectors[i];
        }
    }
    return NULL;
}

static int rule_parse(json_object *o, const char *path, size_t index, struct acl_rule *rule,
                      char *err, size_t err_len)
{
    if (!json_object_is_type(o, json_type_object)) {
        return fail(err, err_len, path, index,
                    "a rule must be an object like {\"uid\": 1000, \"publish\": [...], "
                    "\"subscribe\": [...]}, not %s",
                    jsonval_type_name(o));
    }
    struct acl_rule r = {.index = index};
    const char *selector = NULL;
    int rc = 0;
    json_object_object_foreach(o, key, v)
    {
        const struct selector *sel = selector_find(key);
        if (sel != NULL) {
            rc = sel->parse(v, key, path, index, &r.id, err, err_len);
        } else if (strcmp(key, "publish") == 0) {
            rc = list_parse(v, key, path, index, &r.publish, err, err_len);
        } else if (strcmp(key, "subscribe") == 0) {
            rc = list_parse(v, key, path, index, &r.subscribe, err, err_len);
        } else if (strcmp(key, "lossless") == 0) {
            if (!json_object_is_type(v, json_type_boolean)) {
                rc = fail(err, err_len, path, index, "\"lossless\" must be true or false, not %s",
                          jsonval_type_name(v));
            }
            r.no_lossless = !json_object_get_boolean(v);
        } else {
            rc = fail(err, err_len, path, index, "unknown key \"%s\"; known keys: %s", key,
                      rule_keys);
        }
        if (rc == 0 && sel != NULL) {
            if (selector != NULL) {
                rc = fail(err, err_len, path, index,
                          "\"%s\" and \"%s\" in one rule: a rule is for exactly one of "
                          "uid, gid, user, group, tcp, default",
                          selector, key);
            }
            selector = key;
            r.kind = sel->kind;
        }
        if (rc < 0) {
            acl_rule_deinit(&r);
            return rc;
        }
    }
    if (selector == NULL) {
        acl_rule_deinit(&r);
        return fail(err, err_len, path, index,
                    "a rule needs one of uid, gid, user, group, tcp or default to say whom it "
                    "is for");
    }
    *rule = r;
    return 0;
}

static bool rule_same_subject(const struct acl_rule *a, const struct acl_rule *b)
{
    return a->kind == b->kind && (a->kind == ACL_TCP || a->kind == ACL_DEFAULT || a->id == b->id);
}

int acl_parse(json_object *section, const char *path, struct acl **out, char *err, size_t err_len)
{
    if (!json_object_is_type(section, json_type_array)) {
        return errmsg(err, err_len, -EINVAL,
                      "config %s: \"acl\" must be an array of rules (e.g. [{\"uid\": 1000, "
                      "\"publish\": [\"a.>\"], \"subscribe\": [\"a.>\"]}]), not %s",
                      path, jsonval_type_name(section));
    }
    size_t n = json_object_array_length(section);
    struct acl *acl = calloc(1, sizeof(*acl));
    if (acl == NULL || (acl->rules = calloc(n ? n : 1, sizeof(*acl->rules))) == NULL) {
        free(acl);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct acl_rule *r = &acl->rules[i];
        int rc = rule_parse(json_object_array_get_idx(section, i), path, i, r, err, err_len);
        if (rc < 0) {
            acl_free(acl);
            return rc;
        }
        acl->len++;
        if (r->kind == ACL_GID) {
            acl->has_gid_rules = true;
        }
        /* A second rule for the same peers would never be used: say so
         * rather than let a config look as if it granted something. */
        for (size_t j = 0; j < i; j++) {
            if (rule_same_subject(&acl->rules[j], r)) {
                if (r->kind == ACL_TCP || r->kind == ACL_DEFAULT) {
                    fail(err, err_len, path, i,
                         "a second \"%s\" rule (the first is acl[%zu]); rules do not "
                         "combine: merge them",
                         acl_kind_name(r->kind), j);
                } else {
                    fail(err, err_len, path, i,
                         "%s %" PRIu32 " already has a rule (acl[%zu]); rules do not "
                         "combine: merge them",
                         acl_kind_name(r->kind), r->id, j);
                }
                acl_free(acl); /* r is gone with it */
                return -EINVAL;
            }
        }
    }
    *out = acl;
    return 0;
}
