/*
 * acl_config.h - the config file's "acl" section, read into rules
 * (acl.h; the syntax is in docs/security.md, Access control).
 */
#ifndef SOCKBUS_ACL_CONFIG_H
#define SOCKBUS_ACL_CONFIG_H

#include <stddef.h>

struct acl;
struct json_object;

/*
 * Build an ACL from the config file's "acl" value (`section`, an array of
 * rule objects). `path` names the file in error messages. Users and groups
 * given by name are resolved now (getpwnam/getgrnam). On success *out owns
 * a new ACL (free it with acl_free()). On failure returns -EINVAL (or
 * -ENOMEM) and writes one line to err, naming the file and the offending
 * key, e.g. `config /etc/sockbus.json: acl[1]: unknown key "publsh"; ...`;
 * *out is untouched.
 */
int acl_parse(struct json_object *section, const char *path, struct acl **out, char *err,
              size_t err_len);

#endif /* SOCKBUS_ACL_CONFIG_H */
