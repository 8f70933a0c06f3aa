/*
 * errmsg.h - the one line a failure leaves for a person.
 *
 * A function that can fail for a reason a person must act on (a config
 * key, a socket path, an ACL rule) takes a buffer `err` of `err_len` bytes
 * and writes one line into it: what failed, on what, what to try. Callers
 * may pass NULL when they do not want it. errmsg() is that write, once:
 * an optional prefix naming the thing ("config FILE: acl[2]: "), then the
 * text, cut to the buffer; it returns the error code it is given, so that
 * a failure is one statement: `return errmsg(err, err_len, -EINVAL, ...)`.
 */
#ifndef SOCKBUS_ERRMSG_H
#define SOCKBUS_ERRMSG_H

#include <stdarg.h>
#include <stddef.h>

/* Write `prefix` (NULL: none) and the formatted text into err[err_len],
 * when err is not NULL and err_len > 0. Returns `code`. */
int errmsg_v(char *err, size_t err_len, int code, const char *prefix, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

/* errmsg_v() without a prefix. */
int errmsg(char *err, size_t err_len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif /* SOCKBUS_ERRMSG_H */
