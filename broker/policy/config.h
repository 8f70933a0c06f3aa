/*
 * config.h - the broker's JSON config file (sockbusd --config FILE).
 *
 * The file is one JSON object. Its keys are the long command-line flags
 * with '_' for '-': "socket", "tcp", "mode", "group", "max_frame",
 * "max_connections", "max_unwelcomed", "hello_timeout_ms",
 * "max_subscriptions", "max_subscription_bytes", "max_pending",
 * "max_retained_bytes", "log", and "acl" (acl.h). A flag given on the
 * command line wins over the same setting in the file.
 */
#ifndef SOCKBUS_CONFIG_H
#define SOCKBUS_CONFIG_H

#include <stddef.h>

struct broker_config;
struct json_object;

/* Files larger than this are refused: a config is a few KiB. */
#define CONFIG_FILE_MAX (1024u * 1024u)

/*
 * Read the config file at `path` and apply its keys to *cfg (keys absent
 * from the file leave their field alone). "socket" is stored unresolved in
 * cfg->socket_path for the caller to resolve; "acl" puts a new ACL in
 * cfg->acl, which the caller then owns (acl_free()); "log" ("quiet",
 * "normal" or "verbose") sets log_level.
 *
 * Returns 0, or a negative errno with one line in err naming the file and
 * what is wrong with it: the key for an unknown key (with the list of known
 * ones), a wrong type or an out-of-range value; json-c's message with the
 * line and column for invalid JSON; the system's message for a file that
 * cannot be read. On failure neither *cfg nor log_level is changed.
 */
int config_load(const char *path, struct broker_config *cfg, char *err, size_t err_len);

/* "a string", "an integer", "an array"...: a JSON value's type, for
 * messages. */
const char *config_type_name(const struct json_object *v);

#endif /* SOCKBUS_CONFIG_H */
