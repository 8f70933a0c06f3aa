/*
 * main.c - sockbusd: command line, signals, and the loop.
 */
#include "acl.h"
#include "broker.h"
#include "config.h"
#include "log.h"
#include "sockbus.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define SYSTEM_SOCKET_DIR  "/run/sockbus"
#define SYSTEM_SOCKET_PATH SYSTEM_SOCKET_DIR "/sockbus.sock"

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
            "      --mode OCTAL           socket file mode (default 0600)\n"
            "      --group NAME           socket file group (with --mode 0660 to share)\n"
            "      --config FILE          read settings and access rules from a JSON file;\n"
            "                             flags given here override it\n"
            "      --max-frame BYTES      largest frame accepted (default %u)\n"
            "      --max-connections N    (default %u)\n"
            "      --max-subscriptions N  per connection (default %u)\n"
            "      --max-subscription-bytes BYTES  memory the subscriptions of one\n"
            "                             connection may cost (default %u)\n"
            "      --max-pending BYTES    outbound queue per connection (default %u;\n"
            "                             at least --max-frame)\n"
            "      --max-retained-bytes BYTES  memory the retained values may take\n"
            "                             (default %u)\n"
            "  -v, --verbose              log connects, disconnects and client errors\n"
            "  -q, --quiet                log nothing\n"
            "  -h, --help                 show this help\n"
            "  -V, --version              show the version\n"
            "\n"
            "Config file keys: socket, tcp, mode, group, max_frame, max_connections,\n"
            "max_subscriptions, max_subscription_bytes, max_pending, max_retained_bytes,\n"
            "log (quiet, normal or verbose) and acl, e.g.\n"
            "  {\"mode\": \"0660\", \"group\": \"sockbus\", \"max_connections\": 1024,\n"
            "   \"acl\": [{\"user\": \"alice\", \"publish\": [\"sensors.>\", \"_INBOX.>\"],\n"
            "             \"subscribe\": [\"cmd.*\"]},\n"
            "            {\"default\": true, \"publish\": [], \"subscribe\": [\"sensors.>\"]}]}\n"
            "An acl rule is for one uid, user, gid, group, tcp or default. The first rule\n"
            "for the client's uid decides, else the first for one of its groups, else\n"
            "tcp (TCP clients), else default; with no rule a client may do nothing. A\n"
            "client may always subscribe to its own inbox (_INBOX.<id>.>). Details:\n"
            "docs/security.md.\n",
            BROKER_MAX_FRAME_DEFAULT, BROKER_MAX_CONNECTIONS_DEFAULT,
            BROKER_MAX_SUBSCRIPTIONS_DEFAULT, BROKER_MAX_SUBSCRIPTION_BYTES_DEFAULT,
            BROKER_MAX_PENDING_DEFAULT, BROKER_MAX_RETAINED_BYTES_DEFAULT);
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

enum {
    OPT_SYSTEM = 256,
    OPT_TCP,
    OPT_MODE,
    OPT_GROUP,
    OPT_MAX_FRAME,
    OPT_MAX_CONNECTIONS,
    OPT_MAX_SUBSCRIPTIONS,
    OPT_MAX_SUBSCRIPTION_BYTES,
    OPT_MAX_PENDING,
    OPT_MAX_RETAINED,
    OPT_CONFIG,
};

static const struct option long_options[] = {
    {"socket", required_argument, NULL, 's'},
    {"system", no_argument, NULL, OPT_SYSTEM},
    {"tcp", required_argument, NULL, OPT_TCP},
    {"mode", required_argument, NULL, OPT_MODE},
    {"group", required_argument, NULL, OPT_GROUP},
    {"max-frame", required_argument, NULL, OPT_MAX_FRAME},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"max-subscriptions", required_argument, NULL, OPT_MAX_SUBSCRIPTIONS},
    {"max-subscription-bytes", required_argument, NULL, OPT_MAX_SUBSCRIPTION_BYTES},
    {"max-pending", required_argument, NULL, OPT_MAX_PENDING},
    {"max-retained-bytes", required_argument, NULL, OPT_MAX_RETAINED},
    {"config", required_argument, NULL, OPT_CONFIG},
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

/*
 * First pass over the arguments: find --config FILE (the last one counts)
 * and load it, so that the flags, applied after it by parse_args(), win
 * over the file. Nothing is loaded for --help or --version. Errors in the
 * other arguments are left for parse_args() to report.
 */
static int load_config(int argc, char **argv, struct broker_config *cfg)
{
    const char *path = NULL;
    bool info = false;
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "s:vqhV", long_options, NULL)) != -1) {
        if (opt == OPT_CONFIG) {
            path = optarg;
        } else if (opt == 'h' || opt == 'V') {
            info = true;
        }
    }
    opterr = 1;
    optind = 0; /* glibc: scan again from the start */
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

static int parse_args(int argc, char **argv, struct broker_config *cfg)
{
    const char *socket = NULL;
    bool system = false;
    uint64_t v;
    int opt;
    int r = 0;
    while (r == 0 && (opt = getopt_long(argc, argv, "s:vqhV", long_options, NULL)) != -1) {
        switch (opt) {
        case 's':
            socket = optarg;
            break;
        case OPT_SYSTEM:
            system = true;
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
        case OPT_MAX_FRAME:
            r = parse_u64("--max-frame", optarg, BROKER_MAX_FRAME_MIN, UINT32_MAX, &v);
            cfg->max_frame = (uint32_t)v;
            break;
        case OPT_MAX_CONNECTIONS:
            r = parse_u64("--max-connections", optarg, 1, UINT32_MAX, &v);
            cfg->max_connections = (uint32_t)v;
            break;
        case OPT_MAX_SUBSCRIPTIONS:
            r = parse_u64("--max-subscriptions", optarg, 1, UINT32_MAX, &v);
            cfg->max_subscriptions = (uint32_t)v;
            break;
        case OPT_MAX_SUBSCRIPTION_BYTES:
            r = parse_u64("--max-subscription-bytes", optarg, 0, UINT64_MAX, &v);
            cfg->max_subscription_bytes = v;
            break;
        case OPT_MAX_PENDING:
            r = parse_u64("--max-pending", optarg, 1, UINT64_MAX, &v);
            cfg->max_pending = v;
            break;
        case OPT_MAX_RETAINED:
            r = parse_u64("--max-retained-bytes", optarg, 0, UINT64_MAX, &v);
            cfg->max_retained_bytes = v;
            break;
        case OPT_CONFIG:
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
    if (socket == NULL && system) {
        /* The directory may not exist on a fresh boot; /run is a tmpfs. */
        if (mkdir(SYSTEM_SOCKET_DIR, 0755) < 0 && errno != EEXIST) {
            fprintf(stderr, "sockbusd: cannot create %s: %s; run --system as root\n",
                    SYSTEM_SOCKET_DIR, strerror(errno));
            return -errno;
        }
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

/* Raise the soft RLIMIT_NOFILE to what max_connections needs, within the
 * hard limit (which only a privileged process could raise; the broker does
 * not try). check_nofile_limit() says so if that is not enough. */
static void raise_nofile_limit(uint32_t max_connections)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)max_connections + NOFILE_MARGIN;
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
 * hold max_connections clients, say so once and say how many fit.
 * max_connections stays as asked: past the descriptors, accept() fails with
 * EMFILE and the acceptor refuses clients with ERR 5 (acceptor.h), as
 * max_connections would.
 */
static void check_nofile_limit(uint32_t max_connections)
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
    if ((uint64_t)rl.rlim_cur >= (uint64_t)max_connections + (uint64_t)used) {
        return;
    }
    unsigned long long fit = rl.rlim_cur > (rlim_t)used ? rl.rlim_cur - (rlim_t)used : 0;
    log_error("max_connections is %u but RLIMIT_NOFILE allows %llu descriptors (hard limit "
              "%llu, %ld in use): about %llu clients fit, the next are refused with ERR 5; "
              "raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) or set "
              "--max-connections %llu",
              max_connections, (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
              used, fit, fit);
}

static uv_signal_t stop_signals[2];

/*
 * The handlers stay installed for the whole run: a second SIGINT or SIGTERM
 * during the orderly stop (up to CONN_DRAIN_MS) must not fall back to the
 * default action, which would leave the socket file behind. They are
 * unreferenced once stopping, so they do not keep the loop alive.
 */
static void on_signal(uv_signal_t *h, int signum)
{
    struct broker *b = h->data;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    if (b->stopping) {
        log_info("%s: already shutting down", name);
        return;
    }
    log_info("%s: shutting down", name);
    broker_stop(b);
    for (size_t i = 0; i < 2; i++) {
        uv_unref((uv_handle_t *)&stop_signals[i]);
    }
}

int main(int argc, char **argv)
{
    struct broker_config cfg;
    broker_config_init(&cfg);
    if (load_config(argc, argv, &cfg) < 0 || parse_args(argc, argv, &cfg) < 0) {
        acl_free(cfg.acl);
        return 2;
    }
    raise_nofile_limit(cfg.max_connections);
    /* A peer that closes while we write must not kill the broker. */
    signal(SIGPIPE, SIG_IGN);

    static struct broker broker; /* large (its read chunk): not on the stack */
    uv_loop_t *loop = uv_default_loop();
    /* Hold SIGINT/SIGTERM from before the socket exists until their
     * handlers are in place: a client (or a test) may signal as soon as it
     * can connect, and the default action would kill us and leave the
     * socket file behind. A signal sent meanwhile waits, then stops us. */
    sigset_t stop_set;
    sigset_t old_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop_set, &old_set);
    char err[512];
    if (broker_init(&broker, loop, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "sockbusd: %s\n", err);
        acl_free(cfg.acl);
        return 1;
    }
    static const int signums[2] = {SIGINT, SIGTERM};
    for (size_t i = 0; i < 2; i++) {
        uv_signal_init(loop, &stop_signals[i]);
        stop_signals[i].data = &broker;
        uv_signal_start(&stop_signals[i], on_signal, signums[i]);
    }
    sigprocmask(SIG_SETMASK, &old_set, NULL);
    check_nofile_limit(cfg.max_connections);

    if (cfg.tcp[0] != '\0') {
        log_info("listening on %s and tcp port %u", cfg.socket_path, broker.tcp_port);
    } else {
        log_info("listening on %s", cfg.socket_path);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < 2; i++) {
        uv_close((uv_handle_t *)&stop_signals[i], NULL);
    }
    uv_run(loop, UV_RUN_DEFAULT); /* their close callbacks */
    broker_deinit(&broker);
    acl_free(cfg.acl);
    uv_loop_close(loop);
    log_info("stopped");
    return 0;
}
