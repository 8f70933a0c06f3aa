/*
 * acl.h - access control: which subjects a connection may publish to and
 * which patterns it may subscribe to.
 *
 * The "acl" section of the config file is a list of rules. Each rule names
 * who it is for (a uid, a user, a gid, a group, TCP clients, or everyone
 * else) and two lists of patterns: "publish" and "subscribe". Exactly one
 * rule decides for a connection, resolved once when it is accepted:
 *
 *   1. the first rule for the peer's uid (SO_PEERCRED), else
 *   2. the first rule for its gid or one of its supplementary groups
 *      (SO_PEERGROUPS), else
 *   3. for a TCP connection, the first "tcp" rule, else
 *   4. the first "default" rule, else
 *   5. no rule: the connection may neither publish nor subscribe.
 *
 * Rules do not combine. Without an "acl" section there is no struct acl and
 * nothing is checked (the socket file's mode is the only gate). The
 * section is read by acl_config.c; this module knows no JSON.
 *
 * Checks are cheap: a connection keeps a pointer to its rule, and a PUB is
 * matched against that rule's short list of patterns, allocating nothing.
 */
#ifndef SOCKBUS_ACL_H
#define SOCKBUS_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Whom a rule is for. */
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
    bool no_lossless; /* "lossless": false: no lossless subscriptions */
};

/* The rules, in file order. Built by acl_parse() (acl_config.h), freed by
 * acl_free(); read by the functions below. */
struct acl {
    struct acl_rule *rules;
    size_t len;
    bool has_gid_rules;
};

/* Who is asking: what the broker knows of a connection's peer. */
struct acl_peer {
    bool tcp;      /* a TCP client: no credentials */
    bool has_cred; /* uid and gid are valid */
    uid_t uid;
    gid_t gid;
    const gid_t *groups; /* supplementary groups; may be NULL */
    size_t ngroups;
};

/* Free an ACL. Accepts NULL. Rules handed out by acl_find() die with it. */
void acl_free(struct acl *acl);

/* Free what a rule (or one of its lists) holds, not the rule itself; the
 * rule or list is left empty. */
void acl_rule_deinit(struct acl_rule *rule);
void acl_list_deinit(struct acl_list *list);

/* "uid", "gid", "tcp" or "default". */
const char *acl_kind_name(enum acl_kind kind);

/* Number of rules (for logs and tests). */
size_t acl_rule_count(const struct acl *acl);

/* The rule that decides for `peer` (see the order above), or NULL when
 * none applies. The rule belongs to the ACL. */
const struct acl_rule *acl_find(const struct acl *acl, const struct acl_peer *peer);

/*
 * acl_find() for a connected Unix or TCP socket `fd`: reads the peer's
 * supplementary groups (SO_PEERGROUPS) when a gid rule could apply. Returns
 * NULL when acl is NULL.
 */
const struct acl_rule *acl_find_for_socket(const struct acl *acl, int fd,
                                           const struct acl_peer *peer);

/* A short description of a rule for logs: "uid 1000", "gid 100", "tcp",
 * "default", or "no rule" for NULL. */
const char *acl_rule_name(const struct acl_rule *rule, char *buf, size_t len);

/*
 * The checks. `rule` may be NULL (no rule applies: everything is denied).
 * Call them only when an ACL exists. Subjects and patterns must be valid
 * (sb_subject_valid() / sb_pattern_valid()); they need no terminator.
 *
 * acl_may_publish(): `subject` matches one of the rule's publish patterns.
 * acl_may_reply(): a PUB may carry `reply` as its reply subject: it is in
 *   the client's own inbox ("_INBOX.<client_id>." and at least one more
 *   token), or the client may publish on it itself.
 * acl_may_subscribe(): `pattern` is in the client's own inbox, or every
 *   subject it can match is matched by one of the rule's subscribe
 *   patterns (acl_pattern_covers()).
 */
bool acl_may_publish(const struct acl_rule *rule, const char *subject, size_t len);
bool acl_may_reply(const struct acl_rule *rule, uint64_t client_id, const char *reply, size_t len);
bool acl_may_subscribe(const struct acl_rule *rule, uint64_t client_id, const char *pattern,
                       size_t len);

/* acl_may_lossless(): may a SUB be lossless (docs/protocol.md, Lossless
 * subscriptions)? Unless the rule says "lossless": false. */
bool acl_may_lossless(const struct acl_rule *rule);

/*
 * Does pattern `allowed` cover pattern `requested`: is every subject that
 * `requested` matches also matched by `allowed`? Token by token: '>' covers
 * one or more remaining tokens of any kind, '*' covers one token that is a
 * literal or '*', a literal covers only the same literal. A pattern whose
 * first token is a wildcard does not cover one whose first token starts
 * with '$' (it does not match such subjects: docs/protocol.md, Subjects and
 * patterns). Both must be valid
 * patterns. The ACL's name for subject_pattern_covers() (wire/subject.h).
 */
bool acl_pattern_covers(const char *allowed, size_t allowed_len, const char *requested,
                        size_t requested_len);

/* Is `s` (a subject or pattern) inside the inbox of client `client_id`:
 * "_INBOX.<client_id>." followed by at least one more token? */
bool acl_in_inbox(uint64_t client_id, const char *s, size_t len);

#endif /* SOCKBUS_ACL_H */
