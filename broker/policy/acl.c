/*
 * acl.c - access control rules: parsed once from the config file, resolved
 * once per connection, checked on every PUB and SUB.
 *
 * An ACL is an array of rules in file order; each rule owns its two
 * pattern lists, every pattern validated at load time. Resolution walks the
 * array at most four times (uid, groups, tcp, default), at accept time
 * only. A check walks one rule's list with sb_pattern_match() (PUB) or
 * acl_pattern_covers() (SUB), without allocating: the lists are short, and
 * a trie would cost more than it saves at that size.
 *
 * The client's own inbox is always its own: it may subscribe to any
 * pattern under "_INBOX.<client_id>." and give a subject there as reply
 * subject, so request/reply works under any rule. Answering someone else's
 * request means publishing on their inbox, which takes a publish pattern
 * such as "_INBOX.>".
 */
#include "acl.h"

#include "config.h"
#include "errmsg.h"
#include "sockbus.h"

#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define INBOX_PREFIX "_INBOX."

/* SO_PEERGROUPS is read into a stack buffer of this many groups; a peer in
 * more groups gets a heap buffer of the size the kernel asks for. */
#define ACL_GROUPS_STACK 64

enum acl_kind {
    ACL_UID,
    ACL_GID,
    ACL_TCP,
    ACL_DEFAULT,
};

struct acl_pattern {
    char *text; /* NUL terminated, valid pattern */
    size_t len;
};

struct acl_list {
    struct acl_pattern *items;
    size_t len;
};

struct acl_rule {
    enum acl_kind kind;
    uint32_t id;  /* uid or gid */
    size_t index; /* position in the file, for messages */
    struct acl_list publish;
    struct acl_list subscribe;
};

struct acl {
    struct acl_rule *rules;
    size_t len;
    bool has_gid_rules;
};

/* ---- parsing ------------------------------------------------------------ */

static const char rule_keys[] = "uid, gid, user, group, tcp, default, publish, subscribe";

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

static void list_free(struct acl_list *l)
{
    for (size_t i = 0; i < l->len; i++) {
        free(l->items[i].text);
    }
    free(l->items);
    *l = (struct acl_list){0};
}

static int list_parse(json_object *v, const char *key, const char *path, size_t index,
                      struct acl_list *out, char *err, size_t err_len)
{
    if (!json_object_is_type(v, json_type_array)) {
        return fail(err, err_len, path, index,
                    "\"%s\" must be an array of patterns (e.g. [\"sensors.>\"]), not %s", key,
                    config_type_name(v));
    }
    size_t n = json_object_array_length(v);
    struct acl_list l = {.items = calloc(n ? n : 1, sizeof(*l.items))};
    if (l.items == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *p = json_object_array_get_idx(v, i);
        if (!json_object_is_type(p, json_type_string)) {
            list_free(&l);
            return fail(err, err_len, path, index, "%s[%zu] must be a string, not %s", key, i,
                        config_type_name(p));
        }
        const char *s = json_object_get_string(p);
        size_t len = (size_t)json_object_get_string_len(p);
        if (!sb_pattern_valid(s, len) || strlen(s) != len) {
            list_free(&l);
            return fail(err, err_len, path, index,
                        "%s[%zu]: invalid pattern \"%s\"; tokens are separated by '.', '*' "
                        "stands for one token and '>' (last) for the rest",
                        key, i, s);
        }
        l.items[i].text = strdup(s);
        if (l.items[i].text == NULL) {
            list_free(&l);
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
                    config_type_name(v));
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
                    config_type_name(v));
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

static int parse_true(json_object *v, const char *key, const char *path, size_t index, char *err,
                      size_t err_len)
{
    if (!json_object_is_type(v, json_type_boolean) || !json_object_get_boolean(v)) {
        return fail(err, err_len, path, index, "\"%s\" must be true", key);
    }
    return 0;
}

static void rule_free(struct acl_rule *r)
{
    list_free(&r->publish);
    list_free(&r->subscribe);
}

static int rule_parse(json_object *o, const char *path, size_t index, struct acl_rule *rule,
                      char *err, size_t err_len)
{
    if (!json_object_is_type(o, json_type_object)) {
        return fail(err, err_len, path, index,
                    "a rule must be an object like {\"uid\": 1000, \"publish\": [...], "
                    "\"subscribe\": [...]}, not %s",
                    config_type_name(o));
    }
    struct acl_rule r = {.index = index};
    const char *selector = NULL;
    int rc = 0;
    json_object_object_foreach(o, key, v)
    {
        bool is_selector = true;
        enum acl_kind kind = ACL_DEFAULT;
        if (strcmp(key, "uid") == 0) {
            kind = ACL_UID;
            rc = parse_id(v, key, path, index, &r.id, err, err_len);
        } else if (strcmp(key, "gid") == 0) {
            kind = ACL_GID;
            rc = parse_id(v, key, path, index, &r.id, err, err_len);
        } else if (strcmp(key, "user") == 0) {
            kind = ACL_UID;
            rc = parse_name(v, key, path, index, &r.id, err, err_len);
        } else if (strcmp(key, "group") == 0) {
            kind = ACL_GID;
            rc = parse_name(v, key, path, index, &r.id, err, err_len);
        } else if (strcmp(key, "tcp") == 0) {
            kind = ACL_TCP;
            rc = parse_true(v, key, path, index, err, err_len);
        } else if (strcmp(key, "default") == 0) {
            kind = ACL_DEFAULT;
            rc = parse_true(v, key, path, index, err, err_len);
        } else if (strcmp(key, "publish") == 0) {
            is_selector = false;
            rc = list_parse(v, key, path, index, &r.publish, err, err_len);
        } else if (strcmp(key, "subscribe") == 0) {
            is_selector = false;
            rc = list_parse(v, key, path, index, &r.subscribe, err, err_len);
        } else {
            rc = fail(err, err_len, path, index, "unknown key \"%s\"; known keys: %s", key,
                      rule_keys);
        }
        if (rc == 0 && is_selector) {
            if (selector != NULL) {
                rc = fail(err, err_len, path, index,
                          "\"%s\" and \"%s\" in one rule: a rule is for exactly one of "
                          "uid, gid, user, group, tcp, default",
                          selector, key);
            }
            selector = key;
            r.kind = kind;
        }
        if (rc < 0) {
            rule_free(&r);
            return rc;
        }
    }
    if (selector == NULL) {
        rule_free(&r);
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

static const char *kind_name(enum acl_kind kind)
{
    switch (kind) {
    case ACL_UID:
        return "uid";
    case ACL_GID:
        return "gid";
    case ACL_TCP:
        return "tcp";
    default:
        return "default";
    }
}

int acl_parse(json_object *section, const char *path, struct acl **out, char *err, size_t err_len)
{
    if (!json_object_is_type(section, json_type_array)) {
        return errmsg(err, err_len, -EINVAL,
                      "config %s: \"acl\" must be an array of rules (e.g. [{\"uid\": 1000, "
                      "\"publish\": [\"a.>\"], \"subscribe\": [\"a.>\"]}]), not %s",
                      path, config_type_name(section));
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
                         kind_name(r->kind), j);
                } else {
                    fail(err, err_len, path, i,
                         "%s %" PRIu32 " already has a rule (acl[%zu]); rules do not "
                         "combine: merge them",
                         kind_name(r->kind), r->id, j);
                }
                acl_free(acl); /* r is gone with it */
                return -EINVAL;
            }
        }
    }
    *out = acl;
    return 0;
}

void acl_free(struct acl *acl)
{
    if (acl == NULL) {
        return;
    }
    for (size_t i = 0; i < acl->len; i++) {
        rule_free(&acl->rules[i]);
    }
    free(acl->rules);
    free(acl);
}

size_t acl_rule_count(const struct acl *acl)
{
    return acl ? acl->len : 0;
}

/* ---- resolution --------------------------------------------------------- */

static const struct acl_rule *find_kind(const struct acl *acl, enum acl_kind kind, uint32_t id)
{
    for (size_t i = 0; i < acl->len; i++) {
        const struct acl_rule *r = &acl->rules[i];
        if (r->kind == kind && (kind == ACL_TCP || kind == ACL_DEFAULT || r->id == id)) {
            return r;
        }
    }
    return NULL;
}

/* The first gid rule (in file order) for the primary gid or any
 * supplementary group. */
static const struct acl_rule *find_group(const struct acl *acl, const struct acl_peer *peer)
{
    for (size_t i = 0; i < acl->len; i++) {
        const struct acl_rule *r = &acl->rules[i];
        if (r->kind != ACL_GID) {
            continue;
        }
        if (r->id == peer->gid) {
            return r;
        }
        for (size_t g = 0; g < peer->ngroups; g++) {
            if (r->id == peer->groups[g]) {
                return r;
            }
        }
    }
    return NULL;
}

const struct acl_rule *acl_find(const struct acl *acl, const struct acl_peer *peer)
{
    if (acl == NULL) {
        return NULL;
    }
    const struct acl_rule *r = NULL;
    if (peer->has_cred) {
        r = find_kind(acl, ACL_UID, peer->uid);
        if (r == NULL) {
            r = find_group(acl, peer);
        }
    }
    if (r == NULL && peer->tcp) {
        r = find_kind(acl, ACL_TCP, 0);
    }
    if (r == NULL) {
        r = find_kind(acl, ACL_DEFAULT, 0);
    }
    return r;
}

const struct acl_rule *acl_find_for_socket(const struct acl *acl, int fd,
                                           const struct acl_peer *peer)
{
    if (acl == NULL) {
        return NULL;
    }
    struct acl_peer p = *peer;
    gid_t stack[ACL_GROUPS_STACK];
    gid_t *groups = NULL;
    /* Supplementary groups matter only when no uid rule decides. */
    if (p.has_cred && !p.tcp && acl->has_gid_rules && find_kind(acl, ACL_UID, p.uid) == NULL) {
        socklen_t len = sizeof(stack);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, stack, &len) == 0) {
            p.groups = stack;
            p.ngroups = len / sizeof(gid_t);
        } else if (errno == ERANGE && (groups = malloc(len)) != NULL &&
                   getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
            p.groups = groups;
            p.ngroups = len / sizeof(gid_t);
        }
        /* Otherwise (an old kernel): the primary gid alone. */
    }
    const struct acl_rule *r = acl_find(acl, &p);
    free(groups);
    return r;
}

const char *acl_rule_name(const struct acl_rule *rule, char *buf, size_t len)
{
    if (rule == NULL) {
        snprintf(buf, len, "no rule");
    } else if (rule->kind == ACL_UID || rule->kind == ACL_GID) {
        snprintf(buf, len, "acl[%zu] (%s %" PRIu32 ")", rule->index, kind_name(rule->kind),
                 rule->id);
    } else {
        snprintf(buf, len, "acl[%zu] (%s)", rule->index, kind_name(rule->kind));
    }
    return buf;
}

/* ---- checks ------------------------------------------------------------- */

/* The next token of s[0..len) from *pos: writes it and moves *pos past its
 * dot. Returns false when no token is left. */
static bool next_token(const char *s, size_t len, size_t *pos, const char **tok, size_t *tok_len)
{
    if (*pos >= len) {
        return false;
    }
    const char *start = s + *pos;
    const char *dot = memchr(start, '.', len - *pos);
    size_t n = dot ? (size_t)(dot - start) : len - *pos;
    *tok = start;
    *tok_len = n;
    *pos += n + 1; /* past the dot, or past the end */
    return true;
}

static bool is_token(const char *tok, size_t len, char c)
{
    return len == 1 && tok[0] == c;
}

bool acl_pattern_covers(const char *allowed, size_t allowed_len, const char *requested,
                        size_t requested_len)
{
    if (allowed_len == 0 || requested_len == 0) {
        return false;
    }
    /* The '$' rule: a leading wildcard never matches "$..." subjects, so it
     * cannot cover a pattern that names them. */
    if ((allowed[0] == '*' || allowed[0] == '>') && (allowed_len == 1 || allowed[1] == '.') &&
        requested[0] == '$') {
        return false;
    }
    size_t pa = 0;
    size_t pr = 0;
    for (;;) {
        const char *a;
        const char *r;
        size_t alen;
        size_t rlen;
        bool have_a = next_token(allowed, allowed_len, &pa, &a, &alen);
        bool have_r = next_token(requested, requested_len, &pr, &r, &rlen);
        if (!have_a) {
            return !have_r; /* equal length: covered; `requested` longer: not */
        }
        if (is_token(a, alen, '>')) {
            return have_r; /* one or more tokens of any kind */
        }
        if (!have_r || is_token(r, rlen, '>')) {
            return false; /* shorter, or open-ended where `allowed` is not */
        }
        if (is_token(a, alen, '*')) {
            continue; /* a literal or '*' */
        }
        if (alen != rlen || memcmp(a, r, alen) != 0) {
            return false; /* a literal covers only itself */
        }
    }
}

bool acl_in_inbox(uint64_t client_id, const char *s, size_t len)
{
    char prefix[48];
    int n = snprintf(prefix, sizeof(prefix), INBOX_PREFIX "%" PRIu64 ".", client_id);
    return n > 0 && len > (size_t)n && memcmp(s, prefix, (size_t)n) == 0;
}

bool acl_may_publish(const struct acl_rule *rule, const char *subject, size_t len)
{
    if (rule == NULL) {
        return false;
    }
    for (size_t i = 0; i < rule->publish.len; i++) {
        const struct acl_pattern *p = &rule->publish.items[i];
        if (sb_pattern_match(p->text, p->len, subject, len)) {
            return true;
        }
    }
    return false;
}

bool acl_may_reply(const struct acl_rule *rule, uint64_t client_id, const char *reply, size_t len)
{
    return acl_in_inbox(client_id, reply, len) || acl_may_publish(rule, reply, len);
}

bool acl_may_subscribe(const struct acl_rule *rule, uint64_t client_id, const char *pattern,
                       size_t len)
{
    if (acl_in_inbox(client_id, pattern, len)) {
        return true;
    }
    if (rule == NULL) {
        return false;
    }
    for (size_t i = 0; i < rule->subscribe.len; i++) {
        const struct acl_pattern *p = &rule->subscribe.items[i];
        if (acl_pattern_covers(p->text, p->len, pattern, len)) {
            return true;
        }
    }
    return false;
}
