/*
 * error.c - sb_strerror(): names for -errno values and SB_E_* codes.
 */
#include "sockbus.h"

#include <string.h>

SB_EXPORT const char *sb_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case SB_E_PROTOCOL:
        return "protocol violation";
    case SB_E_TOO_LARGE:
        return "frame too large";
    case SB_E_SUBJECT:
        return "invalid subject or pattern";
    case SB_E_PERMISSION:
        return "permission denied by the broker";
    case SB_E_LIMIT:
        return "broker limit reached";
    case SB_E_SLOW_CONSUMER:
        return "slow consumer";
    case SB_E_SID:
        return "unknown, reused or zero subscription id";
    case SB_E_HELLO_REQUIRED:
        return "HELLO required";
    case SB_E_SHUTDOWN:
        return "broker shutting down";
    case SB_E_VERSION:
        return "unsupported protocol version";
    case SB_E_REQUEST:
        return "invalid request to the broker";
    case SB_E_NO_RESPONDERS:
        return "no responders";
    case SB_E_CLOSED:
        return "connection closed";
    case SB_E_UNTRUSTED:
        return "the broker's socket is served by another user";
    case SB_E_DISCONNECTED:
        return "disconnected from the broker";
    default:
        break;
    }
    if (err < 0 && err > -4096) {
        /* strerror() of glibc returns static strings for known codes. */
        return strerror(-err);
    }
    return "unknown error";
}
