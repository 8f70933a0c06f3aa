/*
 * log.c - broker log lines on stderr, each prefixed "sockbusd: ".
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

enum log_level log_level = LOG_NORMAL;

static __attribute__((format(printf, 2, 0))) void log_line(enum log_level min, const char *fmt,
                                                           va_list ap)
{
    if (log_level < min) {
        return;
    }
    char line[1024];
    vsnprintf(line, sizeof(line), fmt, ap);
    /* One fprintf so that lines from different events never interleave. */
    fprintf(stderr, "sockbusd: %s\n", line);
}

void log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line(LOG_NORMAL, fmt, ap);
    va_end(ap);
}

void log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line(LOG_NORMAL, fmt, ap);
    va_end(ap);
}

void log_verbose(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line(LOG_VERBOSE, fmt, ap);
    va_end(ap);
}
