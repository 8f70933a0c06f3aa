/*
 * jsonval.h - JSON values as the config file's error lines name them.
 *
 * The config file (config.c) and its "acl" section (acl_config.c) judge
 * json-c values and say what was wrong in one line: a value of the wrong
 * type is named by its type ("not an array"), a value out of range is
 * quoted ("not 70000"). Both say it the same way, from here.
 */
#ifndef SOCKBUS_JSONVAL_H
#define SOCKBUS_JSONVAL_H

struct json_object;

/* "a string", "an integer", "an array"...: a JSON value's type. */
const char *jsonval_type_name(const struct json_object *v);

/* The value as JSON text ("loud" with its quotes, 12); owned by v. */
const char *jsonval_text(struct json_object *v);

#endif /* SOCKBUS_JSONVAL_H */
