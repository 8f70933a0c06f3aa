/*
 * log.c - broker log lines on stderr, each prefixed "sockbusd: ".
 *
 * A line starts with its time (UTC, ISO 8601 to the millisecond), unless
 * stderr is the journal: systemd sets JOURNAL_STREAM to the device and
 * inode of the stream it connected to the service's stderr, and the
 * journal stamps every line itself. The check compares them with stderr's
 * own (not only that the variable is set), because a broker started from
 * a shell that runs under systemd inherits the variable while its stderr
 * goes elsewhere. It is made once, at the first line.
 */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum log_level log_level = LOG_NORMAL;

/* Is stderr the stream JOURNAL_STREAM ("DEVICE:INODE") names? */
static bool stderr_is_journal(void)
{
    const char *v = getenv("JOURNAL_STREAM");
    unsigned long long dev;
    unsigned long long ino;
    struct stat st;
    if (v == NULL || sscanf(v, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0) {
        return false;
    }
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static __attribute__((format(printf, 2, 0))) void log_line(enum log_level min, const char *fmt,
                                                           va_list ap)
{
    static int stamp = -1; /* decided at the first line */
    if (log_level < min) {
        return;
    }
    if (stamp < 0) {
        stamp = !stderr_is_journal();
    }
    char line[1024];
    vsnprintf(line, sizeof(line), fmt, ap);
    char when[40] = "";
    if (stamp) {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(when + n, sizeof(when) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
    }
    /* One fprintf so that lines from different events never interleave. */
    fprintf(stderr, "%ssockbusd: %s\n", when, line);
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
