/*
 * acl.c - access control rules: resolved once per connection, checked on
 * every PUB and SUB (the config file's side of them is acl_config.c).
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

#include "sockbus.h"
#include "subject.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define INBOX_PREFIX "_INBOX."

/* SO_PEERGROUPS is read into a stack buffer of this many groups; a peer in
 * more groups gets a heap buffer of the size the kernel asks for. */
#define ACL_GROUPS_STACK 64

/* ---- the rules ---------------------------------------------------------- */

void acl_list_deinit(struct acl_list *l)
{
    for (size_t i = 0; i < l->len; i++) {
        free(l->items[i].text);
    }
    free(l->items);
    *l = (struct acl_list){0};
}

void acl_rule_deinit(struct acl_rule *r)
{
    acl_list_deinit(&r->publish);
    acl_list_deinit(&r->subscribe);
}

const char *acl_kind_name(enum acl_kind kind)
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

void acl_free(struct acl *acl)
{
    if (acl == NULL) {
        return;
    }
    for (size_t i = 0; i < acl->len; i++) {
        acl_rule_deinit(&acl->rules[i]);
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
        snprintf(buf, len, "acl[%zu] (%s %" PRIu32 ")", rule->index, acl_kind_name(rule->kind),
                 rule->id);
    } else {
        snprintf(buf, len, "acl[%zu] (%s)", rule->index, acl_kind_name(rule->kind));
    }
    return buf;
}

/* ---- checks ------------------------------------------------------------- */

bool acl_pattern_covers(const char *allowed, size_t allowed_len, const char *requested,
                        size_t requested_len)
{
    /* The grammar's own answer, `$` rule included (wire/subject.h). */
    return subject_pattern_covers(allowed, allowed_len, requested, requested_len);
}

bool acl_in_inbox(uint64_t client_id, const char *s, size_t len)
{
    char prefix[48];
    int n = snprintf(prefix, sizeof(prefix), INBOX_PREFIX "%" PRIu64 ".", client_id);
    return n > 0 && len > (size_t)n && memcmp(s, prefix, (size_t)n) == 0;
}

/* Does a pattern of `list` take s[0..len), as `takes(pattern, s)` judges
 * (sb_pattern_match() for a subject, acl_pattern_covers() for a pattern)?
 * Inline, so that each caller gets its test without a call through a
 * pointer. */
static inline bool list_takes(const struct acl_list *list,
                              bool (*takes)(const char *, size_t, const char *, size_t),
                              const char *s, size_t len)
{
    for (size_t i = 0; i < list->len; i++) {
        if (takes(list->items[i].text, list->items[i].len, s, len)) {
            return true;
        }
    }
    return false;
}

bool acl_may_publish(const struct acl_rule *rule, const char *subject, size_t len)
{
    return rule != NULL && list_takes(&rule->publish, sb_pattern_match, subject, len);
}

bool acl_may_reply(const struct acl_rule *rule, uint64_t client_id, const char *reply, size_t len)
{
    return acl_in_inbox(client_id, reply, len) || acl_may_publish(rule, reply, len);
}

bool acl_may_subscribe(const struct acl_rule *rule, uint64_t client_id, const char *pattern,
                       size_t len)
{
    return acl_in_inbox(client_id, pattern, len) ||
           (rule != NULL && list_takes(&rule->subscribe, acl_pattern_covers, pattern, len));
}

bool acl_may_lossless(const struct acl_rule *rule)
{
    return rule != NULL && !rule->no_lossless;
}
