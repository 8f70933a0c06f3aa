/*
 * notify.h - telling the service manager how the broker is doing
 * (sd_notify(3)): READY=1 once it accepts, STATUS= lines, RELOADING=1 and
 * READY=1 around a reload, STOPPING=1 when it stops.
 *
 * Without $NOTIFY_SOCKET (not started by systemd with Type=notify)
 * nothing is sent and nothing fails: a notification is advice to the
 * manager, never a reason for the broker to stop.
 */
#ifndef SOCKBUS_NOTIFY_H
#define SOCKBUS_NOTIFY_H

#include <stddef.h>

/* Send `state` ("READY=1", "STATUS=...", several separated by '\n').
 * Returns 1 when sent, 0 when there is no manager to tell, or a negative
 * errno. Through libsystemd's sd_notify() when built with it, else
 * through notify_send_datagram(). */
int notify_send(const char *state);

/* printf-style notify_send() (STATUS= lines). */
int notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * The protocol itself, without libsystemd: one datagram holding `state`
 * sent to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an
 * abstract name written with a leading '@'). Same return values as
 * notify_send(). Used when the broker is built without libsystemd, and by
 * the tests in every build.
 */
int notify_send_datagram(const char *state);

#endif /* SOCKBUS_NOTIFY_H */
