/*
 * errmsg.c - writing a failure's one line (see errmsg.h).
 */
#include "errmsg.h"

#include <stdio.h>

int errmsg_v(char *err, size_t err_len, int code, const char *prefix, const char *fmt, va_list ap)
{
    if (err == NULL || err_len == 0) {
        return code;
    }
    int n = snprintf(err, err_len, "%s", prefix != NULL ? prefix : "");
    size_t at = n < 0 ? 0 : (size_t)n;
    if (at < err_len) {
        vsnprintf(err + at, err_len - at, fmt, ap);
    }
    return code;
}

int errmsg(char *err, size_t err_len, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errmsg_v(err, err_len, code, NULL, fmt, ap);
    va_end(ap);
    return code;
}
