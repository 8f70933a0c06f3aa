/*
 * log.h - the broker's log: one line per event on stderr.
 * Each line carries its time unless stderr is the journal (log.c).
 *
 * -q logs nothing, the default logs errors and start/stop, -v adds
 * connects, disconnects and client errors.
 */
#ifndef SOCKBUS_LOG_H
#define SOCKBUS_LOG_H

enum log_level {
    LOG_QUIET = 0,
    LOG_NORMAL = 1,
    LOG_VERBOSE = 2,
};

extern enum log_level log_level;

/* Always shown unless -q. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Shown with -v. */
void log_verbose(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* SOCKBUS_LOG_H */
