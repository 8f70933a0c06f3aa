/*
 * client_compat.c - sb_connect() and sb_connect_ex() of the shared library,
 * in two versions each (symbol versioning, libsockbus.map).
 *
 * sb_options grew at its end in SOCKBUS_0.2 (reconnect, reconnect_max_ms,
 * reconnect_buffer). A program linked against SOCKBUS_0.1 passes the
 * smaller struct it knew, and the new fields would be read from beyond it:
 * whatever lies there on its stack. So its calls are bound to
 * sb_connect@SOCKBUS_0.1 and sb_connect_ex@SOCKBUS_0.1, which copy the old
 * fields into a zeroed sb_options; a program linked now gets
 * sb_connect@@SOCKBUS_0.2, which takes the struct as it is. The static
 * library has the plain functions instead (client_connect_api.c).
 */
#include "client.h"

/* sb_options as SOCKBUS_0.1 declared it. */
struct sb_options_0_1 {
    const char *endpoint;
    const char *name;
    bool no_echo;
    int timeout_ms;
};

static void options_from_0_1(sb_options *opts, const struct sb_options_0_1 *old)
{
    *opts = (sb_options){0};
    if (old != NULL) {
        opts->endpoint = old->endpoint;
        opts->name = old->name;
        opts->no_echo = old->no_echo;
        opts->timeout_ms = old->timeout_ms;
    }
}

SB_EXPORT int sb_connect_ex_0_1(sb_client **out, const struct sb_options_0_1 *old, char *err,
                                size_t err_len);
SB_EXPORT int sb_connect_0_1(sb_client **out, const struct sb_options_0_1 *old);
SB_EXPORT int sb_connect_ex_0_2(sb_client **out, const sb_options *opts, char *err, size_t err_len);
SB_EXPORT int sb_connect_0_2(sb_client **out, const sb_options *opts);

__asm__(".symver sb_connect_ex_0_1, sb_connect_ex@SOCKBUS_0.1");
__asm__(".symver sb_connect_0_1, sb_connect@SOCKBUS_0.1");
__asm__(".symver sb_connect_ex_0_2, sb_connect_ex@@SOCKBUS_0.2");
__asm__(".symver sb_connect_0_2, sb_connect@@SOCKBUS_0.2");

SB_EXPORT int sb_connect_ex_0_1(sb_client **out, const struct sb_options_0_1 *old, char *err,
                                size_t err_len)
{
    sb_options opts;
    options_from_0_1(&opts, old);
    return client_connect(out, &opts, err, err_len);
}

SB_EXPORT int sb_connect_0_1(sb_client **out, const struct sb_options_0_1 *old)
{
    sb_options opts;
    options_from_0_1(&opts, old);
    return client_connect(out, &opts, NULL, 0);
}

SB_EXPORT int sb_connect_ex_0_2(sb_client **out, const sb_options *opts, char *err, size_t err_len)
{
    return client_connect(out, opts, err, err_len);
}

SB_EXPORT int sb_connect_0_2(sb_client **out, const sb_options *opts)
{
    return client_connect(out, opts, NULL, 0);
}
