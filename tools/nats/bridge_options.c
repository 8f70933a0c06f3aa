/*
 * bridge_options.c - sockbus-nats' command line and config file.
 *
 * Read in two passes, as sockbusd does: --config FILE first, then the
 * flags. The file's keys are the long options with '_' for '-'; a list
 * (nats, export, import) is a string or an array of strings. A flag wins
 * over the file's value for a single setting, and adds to the file's
 * entries for a list, so a file can hold many patterns and the command
 * line add one. Everything is checked here, before anything connects:
 * patterns by the library's grammar, the name as one subject token (it is
 * part of the subject $BRIDGE.<name>.STATS).
 */
#include "bridge.h"
#include "units.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SOCKBUS_VERSION
#define SOCKBUS_VERSION "unknown"
#endif

enum { OPT_RECONNECT_BUFFER = 256, OPT_MAX_REQUESTS, OPT_NO_RESPONDERS_DELAY };

static const struct option long_options[] = {
    {"socket", required_argument, NULL, 's'},
    {"nats", required_argument, NULL, 'N'},
    {"export", required_argument, NULL, 'e'},
    {"import", required_argument, NULL, 'i'},
    {"name", required_argument, NULL, 'n'},
    {"config", required_argument, NULL, 'c'},
    {"reconnect-buffer", required_argument, NULL, OPT_RECONNECT_BUFFER},
    {"max-requests", required_argument, NULL, OPT_MAX_REQUESTS},
    {"no-responders-delay", required_argument, NULL, OPT_NO_RESPONDERS_DELAY},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

#define OPTSTRING ":s:N:e:i:n:c:vqhV"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " BRIDGE_PROG " [-s ENDPOINT] --nats URL[,URL...] [--export PATTERN]...\n"
            "                    [--import PATTERN]... [--name NAME] [--config FILE] [-v|-q]\n"
            "\n"
            "Join subjects of the local sockbus bus to a NATS cluster: local messages on\n"
            "exported subjects are published to NATS, NATS messages on imported subjects\n"
            "are published on the local bus, on the same subjects; requests cross both ways.\n"
            "\n"
            "Options:\n"
            "  -s, --socket ENDPOINT     the local broker (default: $SOCKBUS_SOCKET,\n"
            "                            $XDG_RUNTIME_DIR/sockbus.sock, /tmp/sockbus-UID.sock)\n"
            "  -N, --nats URL[,URL...]   NATS server(s), e.g. nats://127.0.0.1:4222 (repeatable)\n"
            "  -e, --export PATTERN      publish local messages matching PATTERN to NATS\n"
            "                            (repeatable)\n"
            "  -i, --import PATTERN      publish NATS messages matching PATTERN locally\n"
            "                            (repeatable)\n"
            "  -n, --name NAME           this bridge's name, one subject token (default: the\n"
            "                            host name); it answers $BRIDGE.NAME.STATS\n"
            "  -c, --config FILE         read settings from a JSON file; flags win, and add\n"
            "                            to its lists\n"
            "      --reconnect-buffer BYTES\n"
            "                            what libnats keeps while NATS is away (default\n"
            "                            8m; k, m, g: KiB, MiB, GiB); beyond it messages are\n"
            "                            counted as dropped\n"
            "      --max-requests N      requests in flight remembered each way, for their\n"
            "                            replies (default 65536)\n"
            "      --no-responders-delay MS\n"
            "                            hold back \"no responders\" for a NATS request this\n"
            "                            long, so that an answer from elsewhere comes first\n"
            "                            (default 50; 0: at once)\n"
            "  -v, --verbose             log connections, reconnects and every drop\n"
            "  -q, --quiet               log nothing but fatal errors\n"
            "  -h, --help                show this help\n"
            "  -V, --version             show the version\n"
            "\n"
            "Counters: sockbus req '$BRIDGE.NAME.STATS'. Details: sockbus-nats(1).\n");
}

static int list_add(struct bridge_list *l, const char *s, size_t len)
{
    char **items = realloc(l->items, (l->len + 1) * sizeof(*items));
    if (items == NULL) {
        return -ENOMEM;
    }
    l->items = items;
    char *copy = strndup(s, len);
    if (copy == NULL) {
        return -ENOMEM;
    }
    l->items[l->len++] = copy;
    return 0;
}

static void list_free(struct bridge_list *l)
{
    for (size_t i = 0; i < l->len; i++) {
        free(l->items[i]);
    }
    free(l->items);
    l->items = NULL;
    l->len = 0;
}

/* NATS URLs: each comma-separated item is one. */
static int add_urls(struct bridge_list *l, const char *arg)
{
    for (const char *p = arg; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (n > 0 && list_add(l, p, n) < 0) {
            return -ENOMEM;
        }
        p += n;
        if (*p == ',') {
            p++;
        }
    }
    return 0;
}

static int add_pattern(struct bridge_list *l, const char *what, const char *p)
{
    if (!sb_pattern_valid(p, strlen(p))) {
        fprintf(stderr,
                BRIDGE_PROG ": invalid %s pattern '%s': tokens separated by '.', '*' for one "
                            "token, '>' last for the rest\n",
                what, p);
        return -EINVAL;
    }
    return list_add(l, p, strlen(p));
}

static int set_string(char **dst, const char *s)
{
    char *copy = strdup(s);
    if (copy == NULL) {
        return -ENOMEM;
    }
    free(*dst);
    *dst = copy;
    return 0;
}

static int parse_u64(const char *what, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
        fprintf(stderr,
                BRIDGE_PROG ": %s must be a number from %" PRIu64 " to %" PRIu64 ", not '%s'\n",
                what, min, max, s);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* A size in [min, max]: decimal, or with a unit (units.h). */
static bool bytes_in(const char *s, size_t len, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;
    if (units_parse_bytes(s, len, &v) < 0 || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

static int parse_bytes(const char *what, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!bytes_in(s, strlen(s), min, max, out)) {
        fprintf(stderr,
                BRIDGE_PROG ": %s must be a size from %" PRIu64 " to %" PRIu64
                            " bytes, as a number or with " UNITS_BYTES_HINT " (8m), not '%s'\n",
                what, min, max, s);
        return -EINVAL;
    }
    return 0;
}

/* A config key holding a string or an array of strings, each through add. */
static int config_list(json_object *v, const char *what,
                       int (*add)(struct bridge_options *, const char *), struct bridge_options *o)
{
    if (json_object_is_type(v, json_type_string)) {
        return add(o, json_object_get_string(v));
    }
    if (!json_object_is_type(v, json_type_array)) {
        fprintf(stderr, BRIDGE_PROG ": %s must be a string or an array of strings\n", what);
        return -EINVAL;
    }
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        json_object *item = json_object_array_get_idx(v, i);
        if (!json_object_is_type(item, json_type_string)) {
            fprintf(stderr, BRIDGE_PROG ": %s must hold strings only\n", what);
            return -EINVAL;
        }
        int r = add(o, json_object_get_string(item));
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

static int add_nats(struct bridge_options *o, const char *s)
{
    return add_urls(&o->nats, s);
}

static int add_export(struct bridge_options *o, const char *s)
{
    return add_pattern(&o->exports, "export", s);
}

static int add_import(struct bridge_options *o, const char *s)
{
    return add_pattern(&o->imports, "import", s);
}

static int config_string(json_object *v, const char *what, char **dst)
{
    if (!json_object_is_type(v, json_type_string)) {
        fprintf(stderr, BRIDGE_PROG ": %s must be a string\n", what);
        return -EINVAL;
    }
    return set_string(dst, json_object_get_string(v));
}

static int config_number(json_object *v, const char *what, uint64_t min, uint64_t max,
                         uint64_t *out)
{
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
        (uint64_t)json_object_get_int64(v) < min || (uint64_t)json_object_get_int64(v) > max) {
        fprintf(stderr, BRIDGE_PROG ": %s must be a number from %" PRIu64 " to %" PRIu64 "\n", what,
                min, max);
        return -EINVAL;
    }
    *out = (uint64_t)json_object_get_int64(v);
    return 0;
}

/* A size: a number, or a string with a unit ("8m"), as on the command
 * line. */
static int config_bytes(json_object *v, const char *what, uint64_t min, uint64_t max, uint64_t *out)
{
    if (json_object_is_type(v, json_type_int)) {
        return config_number(v, what, min, max, out);
    }
    if (!json_object_is_type(v, json_type_string) ||
        !bytes_in(json_object_get_string(v), (size_t)json_object_get_string_len(v), min, max,
                  out)) {
        fprintf(stderr,
                BRIDGE_PROG ": %s must be a size from %" PRIu64 " to %" PRIu64
                            " bytes, as a number or with " UNITS_BYTES_HINT " (\"8m\")\n",
                what, min, max);
        return -EINVAL;
    }
    return 0;
}

static int load_config(struct bridge_options *o, const char *path)
{
    json_object *root = json_object_from_file(path);
    if (root == NULL || !json_object_is_type(root, json_type_object)) {
        fprintf(stderr,
                BRIDGE_PROG ": cannot read config file '%s': %s; it must hold one JSON object\n",
                path, root == NULL ? json_util_get_last_err() : "not an object");
        json_object_put(root);
        return -EINVAL;
    }
    int r = 0;
    json_object_object_foreach(root, key, v)
    {
        uint64_t n;
        /* What an error line names: the key, and the file it is in. */
        char what[PATH_MAX + 64];
        snprintf(what, sizeof(what), "config key '%s' in '%s'", key, path);
        if (strcmp(key, "socket") == 0) {
            r = config_string(v, what, &o->endpoint);
        } else if (strcmp(key, "nats") == 0) {
            r = config_list(v, what, add_nats, o);
        } else if (strcmp(key, "export") == 0) {
            r = config_list(v, what, add_export, o);
        } else if (strcmp(key, "import") == 0) {
            r = config_list(v, what, add_import, o);
        } else if (strcmp(key, "name") == 0) {
            r = config_string(v, what, &o->name);
        } else if (strcmp(key, "reconnect_buffer") == 0) {
            r = config_bytes(v, what, 0, INT32_MAX, &n);
            if (r == 0) {
                o->reconnect_buffer = (int64_t)n;
            }
        } else if (strcmp(key, "max_requests") == 0) {
            r = config_number(v, what, 1, 1u << 24, &n);
            if (r == 0) {
                o->max_requests = (uint32_t)n;
            }
        } else if (strcmp(key, "no_responders_delay") == 0) {
            r = config_number(v, what, 0, 60000, &n);
            if (r == 0) {
                o->no_responders_delay_ms = (int)n;
            }
        } else if (strcmp(key, "log") == 0) {
            const char *s = json_object_get_string(v);
            if (strcmp(s, "quiet") == 0) {
                o->log = BRIDGE_LOG_QUIET;
            } else if (strcmp(s, "normal") == 0) {
                o->log = BRIDGE_LOG_NORMAL;
            } else if (strcmp(s, "verbose") == 0) {
                o->log = BRIDGE_LOG_VERBOSE;
            } else {
                fprintf(stderr, BRIDGE_PROG ": %s must be quiet, normal or verbose\n", what);
                r = -EINVAL;
            }
        } else {
            fprintf(stderr,
                    BRIDGE_PROG
                    ": unknown config key '%s' in '%s' (keys: socket, nats, export, "
                    "import, name, reconnect_buffer, max_requests, no_responders_delay, log)\n",
                    key, path);
            r = -EINVAL;
        }
        if (r < 0) {
            break;
        }
    }
    json_object_put(root);
    return r;
}

/* The default name: the host name, its dots made dashes (one token). */
static int default_name(struct bridge_options *o)
{
    char host[256];
    if (gethostname(host, sizeof(host)) != 0) {
        strcpy(host, "bridge");
    }
    host[sizeof(host) - 1] = '\0';
    for (char *p = host; *p != '\0'; p++) {
        if (*p == '.') {
            *p = '-';
        }
    }
    if (!sb_subject_valid(host, strlen(host))) {
        strcpy(host, "bridge");
    }
    return set_string(&o->name, host);
}

int bridge_options_parse(struct bridge_options *o, int argc, char **argv)
{
    memset(o, 0, sizeof(*o));
    o->log = BRIDGE_LOG_NORMAL;
    o->reconnect_buffer = BRIDGE_RECONNECT_BUFFER_DEFAULT;
    o->max_requests = BRIDGE_MAX_REQUESTS_DEFAULT;
    o->no_responders_delay_ms = BRIDGE_NO_RESPONDERS_DELAY_MS;

    /* Pass 1: --config, --help and --version, and the usage errors. */
    const char *config = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, OPTSTRING, long_options, NULL)) != -1) {
        if (c == 'c') {
            config = optarg;
        } else if (c == 'h') {
            usage(stdout);
            return 1;
        } else if (c == 'V') {
            printf(BRIDGE_PROG " %s (libnats %s)\n", SOCKBUS_VERSION, nats_GetVersion());
            return 1;
        } else if (c == ':') {
            fprintf(stderr, BRIDGE_PROG ": option '%s' needs an argument; try --help\n",
                    argv[optind - 1]);
            return -1;
        } else if (c == '?') {
            fprintf(stderr, BRIDGE_PROG ": unknown option '%s'; try --help\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, BRIDGE_PROG ": unexpected argument '%s'; try --help\n", argv[optind]);
        return -1;
    }
    if (config != NULL && load_config(o, config) < 0) {
        return -1;
    }

    /* Pass 2: the flags, over the file. */
    optind = 0;
    while ((c = getopt_long(argc, argv, OPTSTRING, long_options, NULL)) != -1) {
        int r = 0;
        uint64_t n;
        switch (c) {
        case 's':
            r = set_string(&o->endpoint, optarg);
            break;
        case 'N':
            r = add_urls(&o->nats, optarg);
            break;
        case 'e':
            r = add_pattern(&o->exports, "export", optarg);
            break;
        case 'i':
            r = add_pattern(&o->imports, "import", optarg);
            break;
        case 'n':
            r = set_string(&o->name, optarg);
            break;
        case OPT_RECONNECT_BUFFER:
            r = parse_bytes("--reconnect-buffer", optarg, 0, INT32_MAX, &n);
            if (r == 0) {
                o->reconnect_buffer = (int64_t)n;
            }
            break;
        case OPT_MAX_REQUESTS:
            r = parse_u64("--max-requests", optarg, 1, 1u << 24, &n);
            if (r == 0) {
                o->max_requests = (uint32_t)n;
            }
            break;
        case OPT_NO_RESPONDERS_DELAY:
            r = parse_u64("--no-responders-delay", optarg, 0, 60000, &n);
            if (r == 0) {
                o->no_responders_delay_ms = (int)n;
            }
            break;
        case 'v':
            o->log = BRIDGE_LOG_VERBOSE;
            break;
        case 'q':
            o->log = BRIDGE_LOG_QUIET;
            break;
        default:
            break;
        }
        if (r < 0) {
            return -1;
        }
    }
    if (o->name == NULL && default_name(o) < 0) {
        return -1;
    }
    char stats[SB_SUBJECT_MAX + 2];
    int n = snprintf(stats, sizeof(stats), "$BRIDGE.%s.STATS", o->name);
    if (strchr(o->name, '.') != NULL || n < 0 || (size_t)n >= sizeof(stats) ||
        !sb_subject_valid(stats, (size_t)n) || strlen(o->name) > 64) {
        fprintf(stderr,
                BRIDGE_PROG ": invalid name '%s': one subject token of at most 64 bytes (no '.', "
                            "'*', '>' or spaces)\n",
                o->name);
        return -1;
    }
    if (o->nats.len == 0) {
        fprintf(stderr, BRIDGE_PROG ": no NATS server: give --nats URL (e.g. "
                                    "nats://127.0.0.1:4222)\n");
        return -1;
    }
    if (o->exports.len == 0 && o->imports.len == 0) {
        fprintf(stderr, BRIDGE_PROG ": nothing to bridge: give --export PATTERN or --import "
                                    "PATTERN (or both)\n");
        return -1;
    }
    return 0;
}

void bridge_options_deinit(struct bridge_options *o)
{
    free(o->endpoint);
    free(o->name);
    list_free(&o->nats);
    list_free(&o->exports);
    list_free(&o->imports);
    memset(o, 0, sizeof(*o));
}
