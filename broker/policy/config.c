/*
 * config.c - the broker's settings: their defaults, and the JSON config file.
 *
 * The file is read whole (it is small, CONFIG_FILE_MAX at most), parsed
 * with json-c in strict mode, and applied key by key to a copy of the
 * config, which replaces the caller's only when every key was good: a
 * config is taken entirely or not at all. Every key is checked like its
 * command-line flag (same ranges, same meaning) and every mistake is one
 * line that names the file and the key, since a broker that starts with a
 * setting silently ignored is worse than one that does not start.
 */
#include "config.h"

#include "acl.h"
#include "acl_config.h"
#include "errmsg.h"
#include "frame.h"
#include "jsonval.h"
#include "log.h"
#include "sockbus.h"
#include "units.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char known_keys[] = "socket, tcp, mode, group, max_frame, max_connections, "
                                 "max_unwelcomed, hello_timeout_ms, max_subscriptions, "
                                 "max_subscription_bytes, max_pending, max_retained_bytes, "
                                 "lossless_stall_ms, max_fds_per_msg, max_fds, "
                                 "unix_send_buffer, log, acl";

/* What is being built, and where errors go. */
struct config_ctx {
    const char *path;
    char *err;
    size_t err_len;
    struct broker_config cfg;
    enum log_level log_level;
    struct acl *acl; /* from "acl", not yet handed over */
};

/* One line naming the file: "config FILE: TEXT". */
__attribute__((format(printf, 2, 3))) static int fail(struct config_ctx *ctx, const char *fmt, ...)
{
    char prefix[PATH_MAX + 16];
    snprintf(prefix, sizeof(prefix), "config %s: ", ctx->path);
    va_list ap;
    va_start(ap, fmt);
    errmsg_v(ctx->err, ctx->err_len, -EINVAL, prefix, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* ---- defaults and limits ------------------------------------------------- */

/* A row of config_limits[]: the key is the field's name; BYTES_ROW() for
 * a size, which may be written with a unit. */
#define LIMIT_ROW(name, def, lo, hi)                                                               \
    {                                                                                              \
        .key = #name, .default_value = (def), .min = (lo), .max = (hi),                            \
        .offset = offsetof(struct broker_config, name),                                            \
        .size = sizeof(((struct broker_config *)0)->name),                                         \
    }
#define BYTES_ROW(name, def, lo, hi)                                                               \
    {                                                                                              \
        .key = #name, .default_value = (def), .min = (lo), .max = (hi),                            \
        .offset = offsetof(struct broker_config, name),                                            \
        .size = sizeof(((struct broker_config *)0)->name), .bytes = true,                          \
    }

const struct config_limit config_limits[CONFIG_LIMITS] = {
    [CONFIG_MAX_FRAME] =
        BYTES_ROW(max_frame, BROKER_MAX_FRAME_DEFAULT, BROKER_MAX_FRAME_MIN, FRAME_MAX_FRAME_CAP),
    [CONFIG_MAX_CONNECTIONS] =
        LIMIT_ROW(max_connections, BROKER_MAX_CONNECTIONS_DEFAULT, 1, UINT32_MAX),
    [CONFIG_MAX_UNWELCOMED] = LIMIT_ROW(max_unwelcomed, 0, 1, UINT32_MAX),
    [CONFIG_HELLO_TIMEOUT_MS] =
        LIMIT_ROW(hello_timeout_ms, BROKER_HELLO_TIMEOUT_MS_DEFAULT, 1, UINT32_MAX),
    [CONFIG_MAX_SUBSCRIPTIONS] =
        LIMIT_ROW(max_subscriptions, BROKER_MAX_SUBSCRIPTIONS_DEFAULT, 1, UINT32_MAX),
    [CONFIG_MAX_SUBSCRIPTION_BYTES] =
        BYTES_ROW(max_subscription_bytes, BROKER_MAX_SUBSCRIPTION_BYTES_DEFAULT, 0, UINT64_MAX),
    [CONFIG_MAX_PENDING] = BYTES_ROW(max_pending, BROKER_MAX_PENDING_DEFAULT, 1, UINT64_MAX),
    [CONFIG_MAX_RETAINED_BYTES] =
        BYTES_ROW(max_retained_bytes, BROKER_MAX_RETAINED_BYTES_DEFAULT, 0, UINT64_MAX),
    [CONFIG_LOSSLESS_STALL_MS] =
        LIMIT_ROW(lossless_stall_ms, BROKER_LOSSLESS_STALL_MS_DEFAULT, 1, UINT32_MAX),
    /* The kernel passes at most 253 (SCM_MAX_FD) with one sendmsg(). */
    [CONFIG_MAX_FDS_PER_MSG] =
        LIMIT_ROW(max_fds_per_msg, BROKER_MAX_FDS_PER_MSG_DEFAULT, 1, FRAME_FDS_MAX),
    [CONFIG_MAX_FDS] = LIMIT_ROW(max_fds, BROKER_MAX_FDS_DEFAULT, 1, UINT32_MAX),
    [CONFIG_UNIX_SEND_BUFFER] = BYTES_ROW(unix_send_buffer, BROKER_UNIX_SEND_BUFFER_DEFAULT, 4096,
                                          BROKER_UNIX_SEND_BUFFER_MAX),
};

const struct config_limit *config_limit_find(const char *key)
{
    for (size_t i = CONFIG_LIMIT_NONE + 1; i < CONFIG_LIMITS; i++) {
        if (strcmp(config_limits[i].key, key) == 0) {
            return &config_limits[i];
        }
    }
    return NULL;
}

uint64_t config_limit_get(const struct broker_config *cfg, enum config_limit_id id)
{
    const struct config_limit *l = &config_limits[id];
    const char *field = (const char *)cfg + l->offset;
    if (l->size == sizeof(uint32_t)) {
        uint32_t v;
        memcpy(&v, field, sizeof(v));
        return v;
    }
    uint64_t v;
    memcpy(&v, field, sizeof(v));
    return v;
}

void config_limit_set(struct broker_config *cfg, const struct config_limit *l, uint64_t v)
{
    char *field = (char *)cfg + l->offset;
    if (l->size == sizeof(uint32_t)) {
        uint32_t v32 = (uint32_t)v;
        memcpy(field, &v32, sizeof(v32));
    } else {
        memcpy(field, &v, sizeof(v));
    }
}

void config_init(struct broker_config *cfg)
{
    *cfg = (struct broker_config){.mode = 0600};
    for (size_t i = CONFIG_LIMIT_NONE + 1; i < CONFIG_LIMITS; i++) {
        config_limit_set(cfg, &config_limits[i], config_limits[i].default_value);
    }
}

void config_finish(struct broker_config *cfg)
{
    if (cfg->max_unwelcomed == 0) {
        uint32_t n = cfg->max_connections / 4;
        cfg->max_unwelcomed =
            n > BROKER_MAX_UNWELCOMED_MIN_DEFAULT ? n : BROKER_MAX_UNWELCOMED_MIN_DEFAULT;
    }
}

/* ---- one key at a time -------------------------------------------------- */

static int get_u64(struct config_ctx *ctx, const char *key, json_object *v, uint64_t min,
                   uint64_t max, uint64_t *out)
{
    if (!json_object_is_type(v, json_type_int)) {
        return fail(ctx, "\"%s\" must be an integer from %" PRIu64 " to %" PRIu64 ", not %s", key,
                    min, max, jsonval_type_name(v));
    }
    /* json-c keeps integers above INT64_MAX as unsigned; below 0 as signed. */
    bool negative = json_object_get_int64(v) < 0;
    uint64_t n = json_object_get_uint64(v);
    if (negative || n < min || n > max) {
        return fail(ctx, "\"%s\" must be an integer from %" PRIu64 " to %" PRIu64 ", not %s", key,
                    min, max, json_object_get_string(v));
    }
    *out = n;
    return 0;
}

/* A size: an integer as get_u64() takes it, or a string with a unit,
 * "64k" or "16m" (units.h), as on the command line. */
static int get_bytes(struct config_ctx *ctx, const char *key, json_object *v, uint64_t min,
                     uint64_t max, uint64_t *out)
{
    if (json_object_is_type(v, json_type_int)) {
        return get_u64(ctx, key, v, min, max, out);
    }
    uint64_t n;
    if (!json_object_is_type(v, json_type_string) ||
        units_parse_bytes(json_object_get_string(v), (size_t)json_object_get_string_len(v), &n) <
            0 ||
        n < min || n > max) {
        return fail(ctx,
                    "\"%s\" must be a size from %" PRIu64 " to %" PRIu64
                    " bytes, as a number or with " UNITS_BYTES_HINT " (\"8m\"), not %s",
                    key, min, max, jsonval_text(v));
    }
    *out = n;
    return 0;
}

static int get_string(struct config_ctx *ctx, const char *key, json_object *v, char *dst,
                      size_t dst_len)
{
    if (!json_object_is_type(v, json_type_string)) {
        return fail(ctx, "\"%s\" must be a string, not %s", key, jsonval_type_name(v));
    }
    size_t len = (size_t)json_object_get_string_len(v);
    if (len >= dst_len || strlen(json_object_get_string(v)) != len) {
        return fail(ctx, "\"%s\" is too long (at most %zu bytes)", key, dst_len - 1);
    }
    memcpy(dst, json_object_get_string(v), len + 1);
    return 0;
}

/* "mode": a string of octal digits ("0660"), or an integer whose decimal
 * digits are read as octal (660), as one would write it on the command
 * line; JSON has no octal numbers. */
static int get_mode(struct config_ctx *ctx, json_object *v, unsigned *out)
{
    char digits[32];
    if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0) {
        snprintf(digits, sizeof(digits), "%" PRId64, json_object_get_int64(v));
    } else if (json_object_is_type(v, json_type_string) &&
               (size_t)json_object_get_string_len(v) < sizeof(digits)) {
        snprintf(digits, sizeof(digits), "%s", json_object_get_string(v));
    } else {
        return fail(ctx, "\"mode\" must be octal permission bits like \"0660\", not %s",
                    jsonval_text(v));
    }
    char *end;
    errno = 0;
    unsigned long m = strtoul(digits, &end, 8);
    if (digits[0] == '\0' || digits[0] == '-' || *end != '\0' || errno != 0 || m > 0777) {
        return fail(ctx, "\"mode\" must be octal permission bits like \"0660\", not %s",
                    jsonval_text(v));
    }
    *out = (unsigned)m;
    return 0;
}

static int get_log(struct config_ctx *ctx, json_object *v)
{
    static const struct {
        const char *name;
        enum log_level level;
    } levels[] = {{"quiet", LOG_QUIET}, {"normal", LOG_NORMAL}, {"verbose", LOG_VERBOSE}};
    if (json_object_is_type(v, json_type_string)) {
        for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
            if (strcmp(json_object_get_string(v), levels[i].name) == 0) {
                ctx->log_level = levels[i].level;
                return 0;
            }
        }
    }
    return fail(ctx, "\"log\" must be \"quiet\", \"normal\" or \"verbose\", not %s",
                jsonval_text(v));
}

static int apply_key(struct config_ctx *ctx, const char *key, json_object *v)
{
    struct broker_config *cfg = &ctx->cfg;
    uint64_t n;
    int r;
    if (strcmp(key, "socket") == 0) {
        r = get_string(ctx, key, v, cfg->socket_path, sizeof(cfg->socket_path));
        if (r == 0 && (cfg->socket_path[0] == '\0' || sb_endpoint_is_tcp(cfg->socket_path))) {
            r = fail(ctx, "\"socket\" must be a file path, not \"%s\"; use \"tcp\" for TCP",
                     cfg->socket_path);
        }
        return r;
    }
    if (strcmp(key, "tcp") == 0) {
        return get_string(ctx, key, v, cfg->tcp, sizeof(cfg->tcp));
    }
    if (strcmp(key, "mode") == 0) {
        return get_mode(ctx, v, &cfg->mode);
    }
    if (strcmp(key, "group") == 0) {
        if (json_object_is_type(v, json_type_int)) {
            r = get_u64(ctx, key, v, 0, UINT32_MAX - 1, &n);
            if (r == 0) {
                snprintf(cfg->group, sizeof(cfg->group), "%" PRIu64, n);
            }
            return r;
        }
        if (!json_object_is_type(v, json_type_string)) {
            return fail(ctx, "\"group\" must be a group name or a numeric gid, not %s",
                        jsonval_type_name(v));
        }
        return get_string(ctx, key, v, cfg->group, sizeof(cfg->group));
    }
    const struct config_limit *l = config_limit_find(key);
    if (l != NULL) {
        r = l->bytes ? get_bytes(ctx, key, v, l->min, l->max, &n)
                     : get_u64(ctx, key, v, l->min, l->max, &n);
        if (r == 0) {
            config_limit_set(cfg, l, n);
        }
        return r;
    }
    if (strcmp(key, "log") == 0) {
        return get_log(ctx, v);
    }
    if (strcmp(key, "acl") == 0) {
        return acl_parse(v, ctx->path, &ctx->acl, ctx->err, ctx->err_len);
    }
    return fail(ctx, "unknown key \"%s\"; known keys: %s", key, known_keys);
}

/* ---- the file ----------------------------------------------------------- */

/* Read the whole file into a malloc'd, NUL-terminated buffer. */
static int read_file(struct config_ctx *ctx, char **out, size_t *out_len)
{
    int fd = open(ctx->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        fail(ctx, "cannot open it: %s; check the path given to --config", strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(ctx, "not a regular file");
    }
    if ((uint64_t)st.st_size > CONFIG_FILE_MAX) {
        close(fd);
        return fail(ctx, "the file is %lld bytes, more than a config may be (%u)",
                    (long long)st.st_size, CONFIG_FILE_MAX);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return fail(ctx, "out of memory");
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int e = errno;
            close(fd);
            free(buf);
            fail(ctx, "cannot read it: %s", strerror(e));
            return -e;
        }
        if (n == 0 || (len += (size_t)n) == (size_t)st.st_size) {
            break;
        }
    }
    close(fd);
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}

/* Line and column (from 1) of byte `off` in buf. */
static void position(const char *buf, size_t off, unsigned *line, unsigned *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (buf[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int parse_json(struct config_ctx *ctx, const char *buf, size_t len, json_object **out)
{
    json_tokener *tok = json_tokener_new();
    if (tok == NULL) {
        return fail(ctx, "out of memory");
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = json_tokener_parse_ex(tok, buf, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    unsigned line;
    unsigned col;
    if (o == NULL) {
        position(buf, end, &line, &col);
        return fail(ctx, "invalid JSON at line %u, column %u: %s", line, col,
                    jerr == json_tokener_continue ? "unexpected end of file"
                                                  : json_tokener_error_desc(jerr));
    }
    /* Only white space may follow the object. */
    for (size_t i = end; i < len; i++) {
        if (buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\n' && buf[i] != '\r') {
            json_object_put(o);
            position(buf, i, &line, &col);
            return fail(ctx, "invalid JSON at line %u, column %u: text after the object", line,
                        col);
        }
    }
    *out = o;
    return 0;
}

int config_load(const char *path, struct broker_config *cfg, char *err, size_t err_len)
{
    struct config_ctx ctx = {
        .path = path,
        .err = err,
        .err_len = err_len,
        .cfg = *cfg,
        .log_level = log_level,
    };
    char *buf = NULL;
    size_t len = 0;
    int r = read_file(&ctx, &buf, &len);
    if (r < 0) {
        return r;
    }
    json_object *root = NULL;
    r = parse_json(&ctx, buf, len, &root);
    free(buf);
    if (r < 0) {
        return r;
    }
    if (!json_object_is_type(root, json_type_object)) {
        r = fail(&ctx, "expected a JSON object ({\"key\": value, ...}) at the top, not %s",
                 jsonval_type_name(root));
    } else {
        json_object_object_foreach(root, key, v)
        {
            r = apply_key(&ctx, key, v);
            if (r < 0) {
                break;
            }
        }
    }
    json_object_put(root);
    if (r < 0) {
        acl_free(ctx.acl);
        return r;
    }
    if (ctx.acl != NULL) {
        acl_free(cfg->acl); /* a second --config replaces the first's */
        ctx.cfg.acl = ctx.acl;
    }
    *cfg = ctx.cfg;
    log_level = ctx.log_level;
    return 0;
}
