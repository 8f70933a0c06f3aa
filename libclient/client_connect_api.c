/*
 * client_connect_api.c - sb_connect() and sb_connect_ex() of the static
 * library (the tools and tests link it). The shared library exports them
 * from client_compat.c instead, with symbol versions, so that programs
 * linked against an older libsockbus.so.0 keep theirs; both call
 * client_connect() (client_connect.c).
 */
#include "client.h"

SB_EXPORT int sb_connect_ex(sb_client **out, const sb_options *opts, char *err, size_t err_len)
{
    return client_connect(out, opts, err, err_len);
}

SB_EXPORT int sb_connect(sb_client **out, const sb_options *opts)
{
    return client_connect(out, opts, NULL, 0);
}
