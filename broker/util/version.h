/*
 * version.h - what the broker calls itself: in WELCOME, in $SYS answers
 * and for sockbusd --version.
 */
#ifndef SOCKBUS_VERSION_H
#define SOCKBUS_VERSION_H

#define BROKER_NAME    "sockbusd"
#define BROKER_VERSION "0.1.0"

#endif /* SOCKBUS_VERSION_H */
