/*
 * main.c - sockbusd: command line, signals, and the loop.
 *
 * Signals. No signal a user may send leaves the socket or lock file
 * behind: SIGINT, SIGTERM, SIGQUIT and SIGXCPU (the soft CPU limit, before
 * the kernel kills at the hard one) stop the broker in order, like
 * broker_stop(); SIGHUP reloads the --config file (reload_config()), and
 * without one is logged and ignored, so a terminal hangup does not end a
 * broker started in the foreground; every other signal whose
 * default action ends the process is ignored (SIGPIPE, SIGUSR1, SIGUSR2,
 * SIGALRM, every real-time signal, ...). The faults (SIGSEGV, SIGBUS,
 * SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS) keep their default action: a
 * broker that hits one must not carry on.
 */
#include "acl.h"
#include "activation.h"
#include "broker.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "notify.h"
#include "version.h"
#include "sockbus.h"
#include "stdfds.h"
#include "units.h"

#include <dirent.h>
#include <errno.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SYSTEM_SOCKET_DIR  "/run/sockbus"
#define SYSTEM_SOCKET_PATH SYSTEM_SOCKET_DIR "/sockbus.sock"
/* The group whose members may use the system socket, when it exists
 * (packaging/sysusers.d). */
#define SYSTEM_GROUP "sockbus"
/* cfg.mode before a flag or the file set it: the default depends on
 * --system (apply_mode_default()). */
#define MODE_UNSET (~0u)

/* File descriptors the broker needs besides its connections: stdio, the
 * loop's own (epoll, eventfd, signal pipe), the listeners and their lock,
 * the acceptors' reserve descriptors, with room to spare. */
#define NOFILE_MARGIN 64

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sockbusd [OPTIONS]\n"
            "\n"
            "The sockbus broker: routes messages between clients on a Unix socket\n"
            "(and on TCP loopback with --tcp).\n"
            "\n"
            "  -s, --socket PATH          Unix socket to listen on (default: $SOCKBUS_SOCKET,\n"
            "                             else $XDG_RUNTIME_DIR/sockbus.sock,\n"
            "                             else /tmp/sockbus-<uid>.sock)\n"
            "      --system               listen on " SYSTEM_SOCKET_PATH "\n"
            "      --tcp HOST:PORT        also listen on TCP (e.g. 127.0.0.1:7447)\n"
            "      --mode OCTAL           socket file mode (default 0600; with --system,\n"
            "                             0660 and group " SYSTEM_GROUP " when that group exists)\n"
            "      --group NAME           socket file group (with --mode 0660 to share)\n"
            "      --config FILE          read settings and access rules from a JSON file;\n"
            "                             flags given here override it; SIGHUP reloads it\n"
            "      --check-config FILE    check a config file, print what is wrong, and\n"
            "                             exit 0 (valid) or 1\n"
            "      --max-frame BYTES      largest frame accepted, and longest line of a\n"
            "                             text-mode client (default %u, at most 256 MiB)\n"
            "      --max-connections N    clients past HELLO (default %u)\n"
            "      --max-unwelcomed N     connections waiting for their HELLO (default\n"
            "                             max-connections/4, at least %u)\n"
            "      --hello-timeout-ms MS  time a connection has for its HELLO (default %u)\n"
            "      --max-subscriptions N  per connection (default %u)\n"
            "      --max-subscription-bytes BYTES  memory the subscriptions of one\n"
            "                             connection may cost (default %u)\n"
            "      --max-pending BYTES    outbound queue per connection (default %u;\n"
            "                             at least --max-frame)\n"
            "      --max-retained-bytes BYTES  memory the retained values may take\n"
            "                             (default %u)\n"
            "      --lossless-stall-ms MS how long a lossless subscriber's queue may stay\n"
            "                             over max-pending before ERR 6 cuts it (default %u)\n"
            "      --max-fds-per-msg N    file descriptors one message may carry (default\n"
            "                             %u, at most 253)\n"
            "      --max-fds N            file descriptors held for messages in flight\n"
            "                             (default %u)\n"
            "      --unix-send-buffer BYTES  kernel send buffer of each Unix connection\n"
            "                             (default %u, from 4096 to 64 MiB; the kernel\n"
            "                             caps it at net.core.wmem_max: the log says\n"
            "                             when it does)\n"
            "  -v, --verbose              log connects, disconnects and client errors\n"
            "  -q, --quiet                log nothing\n"
            "  -h, --help                 show this help\n"
            "  -V, --version              show the version\n"
            "\n"
            "BYTES is a number, or one with " UNITS_BYTES_HINT " (64k, 16m),\n"
            "on the command line and in the config file (\"max_pending\": \"16m\").\n"
            "\n",
            BROKER_MAX_FRAME_DEFAULT, BROKER_MAX_CONNECTIONS_DEFAULT,
            BROKER_MAX_UNWELCOMED_MIN_DEFAULT, BROKER_HELLO_TIMEOUT_MS_DEFAULT,
            BROKER_MAX_SUBSCRIPTIONS_DEFAULT, BROKER_MAX_SUBSCRIPTION_BYTES_DEFAULT,
            BROKER_MAX_PENDING_DEFAULT, BROKER_MAX_RETAINED_BYTES_DEFAULT,
            BROKER_LOSSLESS_STALL_MS_DEFAULT, BROKER_MAX_FDS_PER_MSG_DEFAULT,
            BROKER_MAX_FDS_DEFAULT, BROKER_UNIX_SEND_BUFFER_DEFAULT);
    fputs("A connection that starts with four printable bytes speaks text mode (nc -U\n"
          "SOCKET, then HELP), under the same limits and access rules.\n"
          "\n"
          "SIGINT, SIGTERM and SIGQUIT stop the broker (clients get ERR 9, the socket\n"
          "file is removed). SIGHUP reloads the --config file: access rules, limits and\n"
          "log level apply at once; socket, tcp, mode, group and max_frame take a\n"
          "restart. Started by systemd, the broker serves the sockets it is given\n"
          "(LISTEN_FDS) and reports readiness (NOTIFY_SOCKET).\n"
          "\n"
          "Config file keys: socket, tcp, mode, group, max_frame, max_connections,\n"
          "max_unwelcomed, hello_timeout_ms, max_subscriptions, max_subscription_bytes,\n"
          "max_pending, max_retained_bytes, lossless_stall_ms, max_fds_per_msg, max_fds,\n"
          "unix_send_buffer, log (quiet, normal or verbose) and acl, e.g.\n"
          "  {\"mode\": \"0660\", \"group\": \"sockbus\", \"max_connections\": 1024,\n"
          "   \"acl\": [{\"user\": \"alice\", \"publish\": [\"sensors.>\", \"_INBOX.>\"],\n"
          "             \"subscribe\": [\"cmd.*\"]},\n"
          "            {\"default\": true, \"publish\": [], \"subscribe\": [\"sensors.>\"]}]}\n"
          "An acl rule is for one uid, user, gid, group, tcp or default. The first rule\n"
          "for the client's uid decides, else the first for one of its groups, else\n"
          "tcp (TCP clients), else default; with no rule a client may do nothing. A\n"
          "client may always subscribe to its own inbox (_INBOX.<id>.>). A rule with\n"
          "\"lossless\": false refuses lossless subscriptions. Details: docs/security.md.\n",
          out);
}

/* Parse an unsigned number in [min, max]; 0x and 0 prefixes are allowed. */
static int parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
        fprintf(stderr,
                "sockbusd: invalid %s '%s': expected a number from %" PRIu64 " to %" PRIu64 "\n",
                opt, s, min, max);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* Parse a size in [min, max]: decimal, or with a unit (units.h). */
static int parse_bytes(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;
    if (units_parse_bytes(s, strlen(s), &v) < 0 || v < min || v > max) {
        fprintf(stderr,
                "sockbusd: invalid %s '%s': expected a size from %" PRIu64 " to %" PRIu64
                " bytes, as a number or with " UNITS_BYTES_HINT " (8m)\n",
                opt, s, min, max);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

enum {
    OPT_SYSTEM = 256,
    OPT_TCP,
    OPT_MODE,
    OPT_GROUP,
    OPT_CONFIG,
    OPT_CHECK_CONFIG,
    /* A limit: OPT_LIMIT + its row in config_limits[] (config.h). */
    OPT_LIMIT,
};

static const struct option long_options[] = {
    {"socket", required_argument, NULL, 's'},
    {"system", no_argument, NULL, OPT_SYSTEM},
    {"tcp", required_argument, NULL, OPT_TCP},
    {"mode", required_argument, NULL, OPT_MODE},
    {"group", required_argument, NULL, OPT_GROUP},
    {"max-frame", required_argument, NULL, OPT_LIMIT + CONFIG_MAX_FRAME},
    {"max-connections", required_argument, NULL, OPT_LIMIT + CONFIG_MAX_CONNECTIONS},
    {"max-unwelcomed", required_argument, NULL, OPT_LIMIT + CONFIG_MAX_UNWELCOMED},
    {"hello-timeout-ms", required_argument, NULL, OPT_LIMIT + CONFIG_HELLO_TIMEOUT_MS},
    {"max-subscriptions", required_argument, NULL, OPT_LIMIT + CONFIG_MAX_SUBSCRIPTIONS},
    {"max-subscription-bytes", required_argument, NULL, OPT_LIMIT + CONFIG_MAX_SUBSCRIPTION_BYTES},
    {"max-pending", required_argument, NULL, OPT_LIMIT + CONFIG_MAX_PENDING},
    {"max-retained-bytes", required_argument, NULL, OPT_LIMIT + CONFIG_MAX_RETAINED_BYTES},
    {"lossless-stall-ms", required_argument, NULL, OPT_LIMIT + CONFIG_LOSSLESS_STALL_MS},
    {"max-fds-per-msg", required_argument, NULL, OPT_LIMIT + CONFIG_MAX_FDS_PER_MSG},
    {"max-fds", required_argument, NULL, OPT_LIMIT + CONFIG_MAX_FDS},
    {"unix-send-buffer", required_argument, NULL, OPT_LIMIT + CONFIG_UNIX_SEND_BUFFER},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"check-config", required_argument, NULL, OPT_CHECK_CONFIG},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static int copy_opt(char *dst, size_t len, const char *opt, const char *value)
{
    if (strlen(value) >= len) {
        fprintf(stderr, "sockbusd: %s '%s' is too long (at most %zu bytes)\n", opt, value, len - 1);
        return -ENAMETOOLONG;
    }
    strcpy(dst, value);
    return 0;
}

/* The --config file, kept for SIGHUP; NULL without one. */
static const char *config_path;
/* --system was given (the default mode and group: apply_mode_default()). */
static bool opt_system;

/* `sockbusd --check-config FILE`: the file read as the broker would read
 * it at start, and the settings checked together; exit 0 or 1. */
static int check_config(const char *path)
{
    struct broker_config cfg;
    config_init(&cfg);
    char err[512];
    int r = config_load(path, &cfg, err, sizeof(err));
    if (r == 0 && cfg.max_pending < cfg.max_frame) {
        snprintf(err, sizeof(err),
                 "config %s: max_pending (%llu) is smaller than max_frame (%u): a message of "
                 "max_frame could never be delivered",
                 path, (unsigned long long)cfg.max_pending, cfg.max_frame);
        r = -EINVAL;
    }
    acl_free(cfg.acl);
    if (r < 0) {
        fprintf(stderr, "sockbusd: %s\n", err);
        return 1;
    }
    printf("sockbusd: config %s: valid\n", path);
    return 0;
}

/*
 * First pass over the arguments: find --config FILE (the last one counts)
 * and load it, so that the flags, applied after it by parse_args(), win
 * over the file. Nothing is loaded for --help or --version;
 * --check-config FILE checks the file and exits. Errors in the other
 * arguments are left for parse_args() to report.
 */
static int load_config(int argc, char **argv, struct broker_config *cfg)
{
    const char *path = NULL;
    const char *check = NULL;
    bool info = false;
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "s:vqhV", long_options, NULL)) != -1) {
        if (opt == OPT_CONFIG) {
            path = optarg;
        } else if (opt == OPT_CHECK_CONFIG) {
            check = optarg;
        } else if (opt == 'h' || opt == 'V') {
            info = true;
        }
    }
    opterr = 1;
    optind = 0; /* glibc: scan again from the start */
    if (check != NULL && !info) {
        exit(check_config(check));
    }
    config_path = path;
    if (path == NULL || info) {
        return 0;
    }
    char err[512];
    int r = config_load(path, cfg, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "sockbusd: %s\n", err);
    }
    return r;
}

/* *run_dir: the socket is --system's, whose directory main() prepares. */
static int parse_args(int argc, char **argv, struct broker_config *cfg, bool *run_dir)
{
    const char *socket = NULL;
    bool system = false;
    uint64_t v;
    int opt;
    int r = 0;
    int index = 0;
    while (r == 0 && (opt = getopt_long(argc, argv, "s:vqhV", long_options, &index)) != -1) {
        if (opt >= OPT_LIMIT && opt < OPT_LIMIT + CONFIG_LIMITS) {
            const struct config_limit *l = &config_limits[opt - OPT_LIMIT];
            char flag[64];
            snprintf(flag, sizeof(flag), "--%s", long_options[index].name);
            r = l->bytes ? parse_bytes(flag, optarg, l->min, l->max, &v)
                         : parse_u64(flag, optarg, l->min, l->max, &v);
            if (r == 0) {
                config_limit_set(cfg, l, v);
            }
            continue;
        }
        switch (opt) {
        case 's':
            socket = optarg;
            break;
        case OPT_SYSTEM:
            system = true;
            opt_system = true;
            break;
        case OPT_TCP:
            r = copy_opt(cfg->tcp, sizeof(cfg->tcp), "--tcp", optarg);
            break;
        case OPT_MODE: {
            char *end;
            unsigned long m = strtoul(optarg, &end, 8);
            if (end == optarg || *end != '\0' || m > 0777) {
                fprintf(stderr, "sockbusd: invalid --mode '%s': expected octal, e.g. 0660\n",
                        optarg);
                r = -EINVAL;
            }
            cfg->mode = (unsigned)m;
            break;
        }
        case OPT_GROUP:
            r = copy_opt(cfg->group, sizeof(cfg->group), "--group", optarg);
            break;
        case OPT_CONFIG:
        case OPT_CHECK_CONFIG:
            break; /* loaded before: load_config() */
        case 'v':
            log_level = LOG_VERBOSE;
            break;
        case 'q':
            log_level = LOG_QUIET;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case 'V':
            printf("sockbusd %s\n", BROKER_VERSION);
            exit(0);
        default:
            fprintf(stderr, "sockbusd: try 'sockbusd --help'\n");
            return -EINVAL;
        }
    }
    if (r < 0) {
        return r;
    }
    if (optind < argc) {
        fprintf(stderr, "sockbusd: unexpected argument '%s'; try 'sockbusd --help'\n",
                argv[optind]);
        return -EINVAL;
    }
    /* --socket, else --system, else the config file's "socket", else the
     * environment and defaults (sb_endpoint_resolve()). */
    char from_config[sizeof(cfg->socket_path)];
    if (socket == NULL && !system && cfg->socket_path[0] != '\0') {
        memcpy(from_config, cfg->socket_path, sizeof(from_config));
        socket = from_config;
    }
    *run_dir = socket == NULL && system;
    if (*run_dir) {
        socket = SYSTEM_SOCKET_PATH;
    }
    if (sb_endpoint_resolve(socket, cfg->socket_path, sizeof(cfg->socket_path)) < 0) {
        fprintf(stderr, "sockbusd: socket path '%s' is too long (at most %zu bytes)\n",
                socket ? socket : "(default)", sizeof(cfg->socket_path) - 1);
        return -ENAMETOOLONG;
    }
    if (sb_endpoint_is_tcp(cfg->socket_path)) {
        fprintf(stderr,
                "sockbusd: --socket takes a file path, not '%s'; use --tcp HOST:PORT for TCP\n",
                cfg->socket_path);
        return -EINVAL;
    }
    return 0;
}

/* The socket file's mode when neither a flag nor the file set it: 0600,
 * or for --system 0660 with the group sockbus when that group exists (or
 * with the group given). */
static void apply_mode_default(struct broker_config *cfg)
{
    if (cfg->mode != MODE_UNSET) {
        return;
    }
    cfg->mode = 0600;
    if (!opt_system) {
        return;
    }
    if (cfg->group[0] == '\0' && getgrnam(SYSTEM_GROUP) != NULL) {
        snprintf(cfg->group, sizeof(cfg->group), "%s", SYSTEM_GROUP);
    }
    if (cfg->group[0] != '\0') {
        cfg->mode = 0660;
    }
}

/* Is the host of "HOST:PORT" a loopback address (or localhost)? */
static bool tcp_is_loopback(const char *hostport)
{
    const char *hp = strncmp(hostport, "tcp://", 6) == 0 ? hostport + 6 : hostport;
    const char *colon = strrchr(hp, ':');
    size_t len = colon != NULL ? (size_t)(colon - hp) : strlen(hp);
    char host[256];
    if (len >= 2 && hp[0] == '[' && hp[len - 1] == ']') {
        hp++;
        len -= 2;
    }
    if (len >= sizeof(host)) {
        return false;
    }
    memcpy(host, hp, len);
    host[len] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    }
    return strcmp(host, "localhost") == 0;
}

/* Settings that work but probably do not do what was meant: one line
 * each, and the broker starts anyway. */
static void warn_settings(const struct broker_config *cfg, const struct activation *act)
{
    bool activated = act->active;
    if (act->tcp_fd >= 0 && !act->tcp_loopback) {
        log_error("warning: the TCP socket passed by the service manager (port %u) is not on a "
                  "loopback address: TCP clients have no credentials, and %s",
                  act->tcp_port,
                  cfg->acl != NULL ? "may do what the acl's \"tcp\" rule (else its \"default\" "
                                     "rule) allows"
                                   : "with no acl in --config, anyone who reaches the port may "
                                     "do everything; add an acl with a \"tcp\" rule");
    }
    if (!activated && cfg->group[0] != '\0' && (cfg->mode & 0060) != 0060) {
        log_error("warning: group %s was given, but the socket mode %04o does not let the "
                  "group connect; use --mode 0660",
                  cfg->group, cfg->mode);
    }
    if (act->tcp_fd < 0 && cfg->tcp[0] != '\0' && !tcp_is_loopback(cfg->tcp)) {
        log_error("warning: --tcp %s is not a loopback address: TCP clients have no "
                  "credentials, and %s",
                  cfg->tcp,
                  cfg->acl != NULL ? "may do what the acl's \"tcp\" rule (else its \"default\" "
                                     "rule) allows"
                                   : "with no acl in --config, anyone who reaches the port may "
                                     "do everything; add an acl with a \"tcp\" rule");
    }
}

/* Descriptors for clients: the welcomed ones and those waiting for HELLO. */
static uint64_t client_fds(const struct broker_config *cfg)
{
    return (uint64_t)cfg->max_connections + cfg->max_unwelcomed;
}

/* Raise the soft RLIMIT_NOFILE to what max_connections and max_unwelcomed
 * need, within the hard limit (which only a privileged process could raise;
 * the broker does not try). check_nofile_limit() says so if that is not
 * enough. */
static void raise_nofile_limit(const struct broker_config *cfg)
{
    struct rlimit rl;
    /* And the descriptors held for messages in flight (max_fds). */
    rlim_t need = (rlim_t)client_fds(cfg) + cfg->max_fds + NOFILE_MARGIN;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need) {
        return;
    }
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need ? rl.rlim_max : need;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* Descriptors open now, or -1 if /proc cannot tell. */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        return -1;
    }
    long n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n - 1; /* the directory's own */
}

/*
 * Once everything but the clients is open: if the descriptors left cannot
 * hold max_connections clients and max_unwelcomed connections waiting for
 * HELLO, say so once and say how many fit. The limits stay as asked: past
 * the descriptors, accept() fails with EMFILE and the acceptor refuses
 * clients with ERR 5 (acceptor.h), as the limits would.
 */
static void check_nofile_limit(const struct broker_config *cfg)
{
    struct rlimit rl;
    long used = open_fds();
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) {
        return;
    }
    if (used < 0) {
        used = NOFILE_MARGIN;
    } else {
        used++; /* libuv's own EMFILE reserve, opened with the first client */
    }
    if ((uint64_t)rl.rlim_cur >= client_fds(cfg) + (uint64_t)used) {
        return;
    }
    unsigned long long fit = rl.rlim_cur > (rlim_t)used ? rl.rlim_cur - (rlim_t)used : 0;
    log_error("max_connections is %u and max_unwelcomed %u but RLIMIT_NOFILE allows %llu "
              "descriptors (hard limit %llu, %ld in use): about %llu connections fit, the next "
              "are refused with ERR 5; raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) "
              "or lower --max-connections and --max-unwelcomed to add up to %llu",
              cfg->max_connections, cfg->max_unwelcomed, (unsigned long long)rl.rlim_cur,
              (unsigned long long)rl.rlim_max, used, fit, fit);
}

/* The signals the loop handles (see the top of this file). */
enum signal_action {
    SIGNAL_STOP, /* stop in order */
    SIGNAL_NOTE, /* log and ignore */
};

static const struct {
    int signum;
    const char *name;
    enum signal_action action;
} handled_signals[] = {
    {SIGINT, "SIGINT", SIGNAL_STOP},   {SIGTERM, "SIGTERM", SIGNAL_STOP},
    {SIGQUIT, "SIGQUIT", SIGNAL_STOP}, {SIGXCPU, "SIGXCPU", SIGNAL_STOP},
    {SIGHUP, "SIGHUP", SIGNAL_NOTE},
};

#define HANDLED_SIGNALS (sizeof(handled_signals) / sizeof(handled_signals[0]))

static uv_signal_t signal_handles[HANDLED_SIGNALS];

/* The command line, read again at each reload: flags win over the file. */
static int saved_argc;
static char **saved_argv;

/*
 * SIGHUP: read the --config file again, then the flags over it, as at
 * start, and apply the result (broker_reload()). A file that cannot be
 * read or parsed, or a setting that is wrong, keeps every setting in use
 * and says why in one line. The service manager hears RELOADING=1 and
 * READY=1 around it.
 */
static void reload_config(struct broker *b)
{
    if (config_path == NULL) {
        log_info("SIGHUP: no --config file to reload; ignored");
        return;
    }
    notify_send("RELOADING=1");
    struct broker_config next;
    config_init(&next);
    next.mode = MODE_UNSET;
    enum log_level old_level = log_level;
    char err[512];
    bool run_dir;
    /* From the default, as at start: a "log" key taken out of the file
     * goes back to it (the flags, read again below, still win). */
    log_level = LOG_NORMAL;
    int r = config_load(config_path, &next, err, sizeof(err));
    if (r < 0) {
        log_level = old_level; /* the line below is logged as before */
    }
    if (r < 0) {
        log_error("SIGHUP: %s; keeping the settings in use", err);
    } else {
        optind = 0;
        r = parse_args(saved_argc, saved_argv, &next, &run_dir);
        if (r < 0) {
            log_error("SIGHUP: the command line no longer applies; keeping the settings in use");
        }
    }
    if (r < 0) {
        acl_free(next.acl);
        log_level = old_level;
        notify_send("READY=1");
        return;
    }
    config_finish(&next);
    apply_mode_default(&next);
    size_t rules = acl_rule_count(next.acl);
    bool has_acl = next.acl != NULL;
    int64_t ended = broker_reload(b, &next);
    if (ended < 0) {
        log_error("SIGHUP: config %s applied, but out of memory while checking subscriptions: "
                  "their clients were disconnected",
                  config_path);
    } else if (has_acl) {
        log_info("SIGHUP: config %s reloaded: %zu acl rule%s, %lld subscription%s ended",
                 config_path, rules, rules == 1 ? "" : "s", (long long)ended,
                 ended == 1 ? "" : "s");
    } else {
        log_info("SIGHUP: config %s reloaded: no acl", config_path);
    }
    notify_send("READY=1");
}

/* Signals that end the process by default and mean nothing to the broker:
 * ignored from the start (the real-time ones too, see ignore_signals()).
 * SIGPIPE first of all: a peer that closes while we write must not kill
 * the broker. */
static const int ignored_signals[] = {
    SIGPIPE,   SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGXFSZ,
#ifdef SIGSTKFLT
    SIGSTKFLT,
#endif
};

/*
 * The first real-time signals, from the kernel's first (32) up to
 * SIGRTMIN, are the C library's own (thread cancellation, set*id() across
 * threads), and its sigaction() refuses to change them; yet any user may
 * send them, and their default action ends the process. The broker uses
 * neither facility, so they are ignored through the system call. Only the
 * handler is set, and it is the first field of the kernel's struct on the
 * architectures listed; the others (flags, restorer, mask) are zero
 * whichever of them the kernel expects at each offset.
 */
static void ignore_reserved_signals(void)
{
#if defined(__linux__) && defined(SYS_rt_sigaction) &&                                             \
    (defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__arm__) ||       \
     defined(__riscv) || defined(__powerpc__) || defined(__s390__))
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        uint64_t mask;
    } ignore = {.handler = SIG_IGN};
    for (int s = __SIGRTMIN; s < SIGRTMIN; s++) {
        syscall(SYS_rt_sigaction, s, &ignore, NULL, sizeof(ignore.mask));
    }
#endif
}

static void ignore_signals(void)
{
    for (size_t i = 0; i < sizeof(ignored_signals) / sizeof(ignored_signals[0]); i++) {
        signal(ignored_signals[i], SIG_IGN);
    }
    for (int s = SIGRTMIN; s <= SIGRTMAX; s++) {
        signal(s, SIG_IGN);
    }
    ignore_reserved_signals();
}

static void handled_signal_set(sigset_t *set)
{
    sigemptyset(set);
    for (size_t i = 0; i < HANDLED_SIGNALS; i++) {
        sigaddset(set, handled_signals[i].signum);
    }
}

/*
 * The handlers stay installed for the whole run: a second stop signal
 * during the orderly stop (up to CONN_DRAIN_MS) must not fall back to the
 * default action, which would leave the socket file behind. They are
 * unreferenced once stopping, so they do not keep the loop alive.
 */
static void on_signal(uv_signal_t *h, int signum)
{
    struct broker *b = h->data;
    size_t i = (size_t)(h - signal_handles);
    const char *name = handled_signals[i].name;
    (void)signum;
    if (handled_signals[i].action == SIGNAL_NOTE) {
        if (!b->stopping) {
            reload_config(b);
        }
        return;
    }
    if (b->stopping) {
        log_info("%s: already shutting down", name);
        return;
    }
    log_info("%s: shutting down", name);
    broker_stop(b);
    for (size_t k = 0; k < HANDLED_SIGNALS; k++) {
        uv_unref((uv_handle_t *)&signal_handles[k]);
    }
}

int main(int argc, char **argv)
{
    /* First of all, before libuv or the listener opens a descriptor that
     * could land on 0, 1 or 2 (stdfds.h). */
    if (stdfds_open() < 0) {
        return 1; /* no /dev/null, and nowhere to say so */
    }
    ignore_signals();
    struct broker_config cfg;
    config_init(&cfg);
    cfg.mode = MODE_UNSET;
    bool run_dir = false;
    saved_argc = argc;
    saved_argv = argv;
    if (load_config(argc, argv, &cfg) < 0 || parse_args(argc, argv, &cfg, &run_dir) < 0) {
        acl_free(cfg.acl);
        return 2;
    }
    config_finish(&cfg);
    apply_mode_default(&cfg);
    char err[512];
    /* Sockets inherited from systemd replace the socket file: no
     * directory to prepare, no lock, nothing to remove (activation.h). */
    struct activation act;
    if (activation_take(&act, err, sizeof(err)) < 0) {
        fprintf(stderr, "sockbusd: %s\n", err);
        acl_free(cfg.acl);
        return 1;
    }
    warn_settings(&cfg, &act);
    if (!act.active && run_dir && listener_run_dir(SYSTEM_SOCKET_DIR, err, sizeof(err)) < 0) {
        fprintf(stderr, "sockbusd: %s\n", err);
        acl_free(cfg.acl);
        return 1;
    }
    raise_nofile_limit(&cfg);

    static struct broker broker; /* large (its read chunk): not on the stack */
    uv_loop_t *loop = uv_default_loop();
    /* Hold the handled signals from before the socket exists until their
     * handlers are in place: a client (or a test) may signal as soon as it
     * can connect, and the default action would kill us and leave the
     * socket file behind. A signal sent meanwhile waits, then acts. */
    sigset_t handled_set;
    sigset_t old_set;
    handled_signal_set(&handled_set);
    sigprocmask(SIG_BLOCK, &handled_set, &old_set);
    if (broker_init(&broker, loop, &cfg, &act, err, sizeof(err)) < 0) {
        fprintf(stderr, "sockbusd: %s\n", err);
        activation_close(&act);
        acl_free(cfg.acl);
        return 1;
    }
    activation_close(&act); /* none left: broker_init() took what it serves */
    for (size_t i = 0; i < HANDLED_SIGNALS; i++) {
        uv_signal_init(loop, &signal_handles[i]);
        signal_handles[i].data = &broker;
        uv_signal_start(&signal_handles[i], on_signal, handled_signals[i].signum);
    }
    sigprocmask(SIG_SETMASK, &old_set, NULL);
    check_nofile_limit(&cfg);

    if (act.active) {
        char tcp[32] = "";
        if (broker.tcp_acceptor.open) {
            snprintf(tcp, sizeof(tcp), " and tcp port %u", broker.tcp_port);
        }
        log_info("listening on %s%s, passed by the service manager",
                 act.unix_path[0] != '\0'    ? act.unix_path
                 : broker.unix_acceptor.open ? "an unnamed Unix socket"
                                             : "no Unix socket",
                 tcp);
    } else if (cfg.tcp[0] != '\0') {
        log_info("listening on %s and tcp port %u", cfg.socket_path, broker.tcp_port);
    } else {
        log_info("listening on %s", cfg.socket_path);
    }
    broker_ready(&broker);
    uv_run(loop, UV_RUN_DEFAULT);
    /* Closing a uv_signal_t puts back the default action; blocked, a late
     * signal waits and dies with the process instead of killing it before
     * the socket file is removed. */
    sigprocmask(SIG_BLOCK, &handled_set, NULL);
    for (size_t i = 0; i < HANDLED_SIGNALS; i++) {
        uv_close((uv_handle_t *)&signal_handles[i], NULL);
    }
    uv_run(loop, UV_RUN_DEFAULT); /* their close callbacks */
    broker_deinit(&broker);
    acl_free(broker.cfg.acl); /* cfg's, or the last reload's */
    uv_loop_close(loop);
    log_info("stopped");
    return 0;
}
