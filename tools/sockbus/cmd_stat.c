/*
 * cmd_stat.c - `sockbus stat`: what the broker says about itself
 * ($SYS.STATS) and its clients ($SYS.CLIENTS), as a table or as JSON.
 *
 * $SYS.CLIENTS comes a page at a time; the first page goes out with the
 * $SYS.STATS request (sb_request_send) behind one sb_flush() barrier, so
 * a refusal is reported at once instead of as a timeout, and the others
 * follow until the broker says no more come. The answers are parsed with
 * json-c; the table is built from what they hold, so a key a newer broker
 * adds still shows, under its own name, and every string in it is escaped
 * (it is what the broker or a client chose). --json prints both answers
 * as one document, {"stats":{...},"clients":[...]}, all pages in one
 * array, with the broker's values unchanged (clients sorted by id).
 */
#include "cli.h"
#include "text.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <string.h>

#define CMD "stat"

#define STAT_SUBJECT_STATS   "$SYS.STATS"
#define STAT_SUBJECT_CLIENTS "$SYS.CLIENTS"

/* Longest client name shown in the table (in characters); --json has it
 * whole. */
#define STAT_NAME_MAX 40

/* Room for one table cell: a number, or a name of STAT_NAME_MAX UTF-8
 * characters and the "..." that says it was cut. */
#define STAT_CELL_MAX (STAT_NAME_MAX * 4 + 4)

/* Clients asked for in each request for a page of $SYS.CLIENTS: the
 * broker's largest page (it sends fewer if its own bound is lower). */
#define STAT_PAGE_LIMIT 250u

/* Between two table columns. */
#define STAT_GAP "  "

enum {
    OPT_JSON = 256,
};

/* GNU order: options may follow the operands, "--" ends them; ":":
 * report a missing argument as ':' rather than '?'. */
#define STAT_OPTSTRING ":s:t:vh"

static const struct option stat_options[] = {
    {"socket", required_argument, NULL, 's'}, {"timeout", required_argument, NULL, 't'},
    {"json", no_argument, NULL, OPT_JSON},    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
};

typedef struct stat_args {
    const char *endpoint; /* -s, or NULL for the default rule */
    int timeout_ms;
    bool json;
    bool verbose; /* -v: each client's subscriptions too */
} stat_args;

/* The stats block: a person's label for each key we know. */
static const struct {
    const char *key;
    const char *label;
} stat_labels[] = {
    {"uptime_s", "uptime"},
    {"connections", "connections"},
    {"subscriptions", "subscriptions"},
    {"msgs_in", "messages in"},
    {"msgs_out", "messages out"},
    {"bytes_in", "bytes in"},
    {"bytes_out", "bytes out"},
    {"dropped", "dropped"},
    {"denied", "denied"},
    {"stalls", "lossless stalls"},
    {"slow_consumers", "slow consumers"},
    {"retained", "retained"},
    {"retained_bytes", "retained bytes"},
};

#define STAT_LABEL_COUNT (sizeof(stat_labels) / sizeof(stat_labels[0]))

/* The clients table: one column per key of a $SYS.CLIENTS object. */
typedef struct stat_column {
    const char *header;
    const char *key;
    bool numeric; /* aligned right */
} stat_column;

static const stat_column stat_columns[] = {
    {"ID", "id", true},
    {"NAME", "name", false},
    {"TRANSPORT", "transport", false},
    {"PID", "pid", true},
    {"UID", "uid", true},
    {"SUBS", "subscriptions", true},
    {"PENDING", "pending_bytes", true},
    {"IN", "msgs_in", true},
    {"OUT", "msgs_out", true},
    {"DROPPED", "dropped", true},
};

#define STAT_COLUMN_COUNT (sizeof(stat_columns) / sizeof(stat_columns[0]))

static void stat_json_putp(json_object **o)
{
    json_object_put(*o); /* accepts NULL */
}

#define STAT_CLEANUP_JSON __attribute__((cleanup(stat_json_putp)))

static void stat_usage(FILE *out)
{
    fprintf(out, "usage: sockbus stat [OPTIONS]\n"
                 "\n"
                 "Show the broker's counters ($SYS.STATS) and its clients ($SYS.CLIENTS):\n"
                 "for each client its id, name, transport, pid and uid (\"-\" over TCP),\n"
                 "subscriptions, bytes waiting to be sent to it, messages in and out, and\n"
                 "messages dropped because it read too slowly.\n"
                 "\n"
                 "Options:\n"
                 "  -s, --socket ENDPOINT  broker socket path or tcp://HOST:PORT (default:\n"
                 "                         $SOCKBUS_SOCKET, $XDG_RUNTIME_DIR/sockbus.sock,\n"
                 "                         /tmp/sockbus-UID.sock)\n"
                 "  -t, --timeout SECONDS  longest wait to connect, and for the answers\n"
                 "                         (default 5; 0.5, 250ms, 1m)\n"
                 "      --json             print one JSON document for programs:\n"
                 "                         {\"stats\":{...},\"clients\":[...]} with the broker's\n"
                 "                         keys and values\n"
                 "  -v, --verbose          also list each client's subscriptions: sid,\n"
                 "                         pattern and queue group (a client with many shows\n"
                 "                         its first ones and how many more it has)\n"
                 "  -h, --help             show this help and exit\n"
                 "\n"
                 "Exit status: 0 on success, 1 on failure, 2 on a bad command line.\n"
                 "\n"
                 "Examples:\n"
                 "  sockbus stat\n"
                 "  sockbus stat -v\n"
                 "  sockbus stat --json | jq '.clients[] | select(.dropped > 0)'\n");
}

static int stat_parse(int argc, char **argv, stat_args *args)
{
    int ch;
    int r = 0;

    while ((ch = getopt_long(argc, argv, STAT_OPTSTRING, stat_options, NULL)) != -1) {
        switch (ch) {
        case 's':
            args->endpoint = optarg;
            break;
        case 't':
            r = cli_parse_timeout(CMD, optarg, &args->timeout_ms);
            break;
        case OPT_JSON:
            args->json = true;
            break;
        case 'v':
            args->verbose = true;
            break;
        case 'h':
            stat_usage(stdout);
            return -1;
        default:
            return cli_option_error(CMD, argv, ch, stat_options);
        }
        if (r != 0) {
            return r;
        }
    }
    if (optind < argc) {
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    }
    return 0;
}

/* One line for a request that got no usable answer; returns the exit
 * code. */
static int stat_request_error(sb_client *client, const stat_args *args, const char *subject,
                              int err)
{
    if (err == -ETIMEDOUT) {
        fprintf(stderr,
                "sockbus stat: the broker at %s did not answer %s within %d.%03d s; is it "
                "overloaded? (-t SECONDS waits longer)\n",
                sb_endpoint(client), subject, args->timeout_ms / 1000, args->timeout_ms % 1000);
        return CLI_EXIT_FAILURE;
    }
    if (err == SB_E_NO_RESPONDERS) {
        fprintf(stderr,
                "sockbus stat: the broker at %s does not answer %s; use sockbus and sockbusd "
                "from the same release\n",
                sb_endpoint(client), subject);
        return CLI_EXIT_FAILURE;
    }
    if (cli_is_broker_refusal(err)) {
        return cli_refusal_error(CMD, client, err,
                                 err == SB_E_LIMIT ? "; the answer may exceed its max_frame "
                                                     "('sockbusd --max-frame' raises it)"
                                                   : "",
                                 "%s", subject);
    }
    return cli_connection_error(CMD, client, "asking for its statistics", err);
}

/* Wait for the answer to `token` and parse it as JSON of type `type`
 * (json_type_null: an object or an array). Returns 0 with *out owning the
 * value, or an exit code. */
static int stat_answer(sb_client *client, const stat_args *args, const char *subject,
                       uint32_t token, int64_t deadline, json_type type, json_object **out)
{
    sb_msg reply;
    int r = sb_request_wait(client, token, &reply, cli_remaining_ms(deadline));
    if (r < 0) {
        return stat_request_error(client, args, subject, r);
    }

    json_object *o = NULL;
    json_tokener *tok = json_tokener_new();
    if (tok != NULL && reply.payload_len <= INT_MAX) {
        o = json_tokener_parse_ex(tok, reply.payload, (int)reply.payload_len);
        if (json_tokener_get_error(tok) != json_tokener_success) {
            json_object_put(o);
            o = NULL;
        }
    }
    json_tokener_free(tok);
    bool ok = o != NULL && (type == json_type_null ? json_object_is_type(o, json_type_object) ||
                                                         json_object_is_type(o, json_type_array)
                                                   : json_object_is_type(o, type));
    if (!ok) {
        json_object_put(o);
        fprintf(stderr,
                "sockbus stat: the broker at %s answered %s with something other than a JSON "
                "%s; use sockbus and sockbusd from the same release\n",
                sb_endpoint(client), subject, type == json_type_object ? "object" : "page");
        return CLI_EXIT_FAILURE;
    }
    *out = o;
    return 0;
}

/* Ask for the page of $SYS.CLIENTS that starts at `offset`. */
static int stat_send_page(sb_client *client, uint64_t offset, uint32_t *token)
{
    char payload[64];
    int n = snprintf(payload, sizeof(payload), "{\"offset\":%llu,\"limit\":%u}",
                     (unsigned long long)offset, STAT_PAGE_LIMIT);
    sb_pub req = {.subject = STAT_SUBJECT_CLIENTS, .payload = payload, .payload_len = (size_t)n};
    return sb_request_send(client, &req, token);
}

/*
 * Add the clients of one $SYS.CLIENTS answer (`page`, consumed) to `all`.
 * A page is {"clients":[...],"offset":N,"total":T,"more":B}; a broker from
 * before paging answers with the array of all its clients. Sets *more
 * when another page follows. Returns 0 or an exit code.
 */
static int stat_take_page(sb_client *client, json_object *page, json_object *all, size_t *taken,
                          bool *more)
{
    json_object *list = page;
    json_object *more_v = NULL;
    *more = false;
    if (json_object_is_type(page, json_type_object)) {
        list = NULL;
        json_object_object_get_ex(page, "clients", &list);
        json_object_object_get_ex(page, "more", &more_v);
    }
    if (list == NULL || !json_object_is_type(list, json_type_array) ||
        (json_object_is_type(page, json_type_object) &&
         (more_v == NULL || !json_object_is_type(more_v, json_type_boolean)))) {
        json_object_put(page);
        fprintf(stderr,
                "sockbus stat: the broker at %s answered %s with something other than a page "
                "of clients; use sockbus and sockbusd from the same release\n",
                sb_endpoint(client), STAT_SUBJECT_CLIENTS);
        return CLI_EXIT_FAILURE;
    }
    size_t n = json_object_array_length(list);
    for (size_t i = 0; i < n; i++) {
        json_object_array_add(all, json_object_get(json_object_array_get_idx(list, i)));
    }
    *taken = n;
    *more = more_v != NULL && json_object_get_boolean(more_v);
    json_object_put(page);
    if (*more && n == 0) {
        /* Each page must bring someone, or we would ask for ever. */
        fprintf(stderr,
                "sockbus stat: the broker at %s answered %s with an empty page and more to "
                "come; use sockbus and sockbusd from the same release\n",
                sb_endpoint(client), STAT_SUBJECT_CLIENTS);
        return CLI_EXIT_FAILURE;
    }
    return 0;
}

/*
 * Ask for the counters and every page of clients. The first page goes out
 * with the counters behind one sb_flush(), so a refusal shows at once; the
 * next pages one at a time, all within -t counted from the start.
 */
static int stat_fetch(sb_client *client, const stat_args *args, json_object **stats,
                      json_object **clients)
{
    sb_pub stats_req = {.subject = STAT_SUBJECT_STATS};
    uint32_t stats_token;
    uint32_t clients_token;
    int r;

    r = sb_request_send(client, &stats_req, &stats_token);
    if (r == 0) {
        r = stat_send_page(client, 0, &clients_token);
    }
    if (r < 0) {
        return cli_connection_error(CMD, client, "asking for its statistics", r);
    }

    int64_t deadline = cli_now_ms() + args->timeout_ms;
    r = sb_flush(client, args->timeout_ms);
    if (r < 0) {
        /* Both were sent together; a refusal says which in its text. */
        return stat_request_error(client, args, STAT_SUBJECT_STATS " and " STAT_SUBJECT_CLIENTS, r);
    }
    STAT_CLEANUP_JSON json_object *got_stats = NULL;
    r = stat_answer(client, args, STAT_SUBJECT_STATS, stats_token, deadline, json_type_object,
                    &got_stats);
    if (r != 0) {
        return r;
    }
    STAT_CLEANUP_JSON json_object *all = json_object_new_array();
    uint64_t offset = 0;
    for (;;) {
        json_object *page = NULL;
        r = stat_answer(client, args, STAT_SUBJECT_CLIENTS, clients_token, deadline, json_type_null,
                        &page);
        size_t taken = 0;
        bool more = false;
        if (r == 0) {
            r = stat_take_page(client, page, all, &taken, &more);
        }
        if (r != 0) {
            return r;
        }
        if (!more) {
            break;
        }
        offset += taken;
        r = stat_send_page(client, offset, &clients_token);
        if (r < 0) {
            return cli_connection_error(CMD, client, "asking for its clients", r);
        }
    }
    *stats = got_stats;
    *clients = all;
    got_stats = NULL;
    all = NULL;
    return 0;
}

static int stat_by_id(const void *a, const void *b)
{
    json_object *const *x = a;
    json_object *const *y = b;
    json_object *xv = NULL;
    json_object *yv = NULL;

    json_object_object_get_ex(*x, "id", &xv);
    json_object_object_get_ex(*y, "id", &yv);
    uint64_t xi = json_object_get_uint64(xv);
    uint64_t yi = json_object_get_uint64(yv);
    return xi < yi ? -1 : xi > yi;
}

/* Characters (not bytes) in a UTF-8 string: what a terminal lines up. */
static size_t stat_text_width(const char *s)
{
    size_t width = 0;

    for (; *s != '\0'; s++) {
        width += ((unsigned char)*s & 0xC0u) != 0x80u;
    }
    return width;
}

/* A string as a cell: escaped like everything a client or the broker chose
 * (cli_escape(): control characters, ill-formed UTF-8 and backslashes as
 * \xNN), at most STAT_NAME_MAX characters wide, cut between two characters
 * or escapes with "...". */
static void stat_name_cell(const char *name, char *buf, size_t len)
{
    size_t o = 0;
    size_t chars = 0;
    size_t n = strlen(name);

    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        int k = text_utf8_next(name + i, n - i, &cp);
        size_t take = (size_t)(k < 0 ? -k : k);
        char unit[CLI_ESCAPE_MAX(4)];
        size_t unit_len = text_escape(unit, sizeof(unit), name + i, take);
        size_t width = stat_text_width(unit);
        if (chars + width > STAT_NAME_MAX || o + unit_len + 4 > len) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(buf + o, unit, unit_len);
        o += unit_len;
        chars += width;
        i += take;
    }
    buf[o] = '\0';
}

/* The text of one cell: a missing or null value (pid and uid over TCP)
 * is "-". Returns buf or a constant. */
static const char *stat_cell(json_object *client, const stat_column *col, char *buf, size_t len)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(client, col->key, &v) || v == NULL) {
        return "-";
    }
    if (json_object_is_type(v, json_type_string)) {
        stat_name_cell(json_object_get_string(v), buf, len);
        return buf;
    }
    /* Numbers exactly as the broker wrote them (json-c keeps u64). */
    snprintf(buf, len, "%s", json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
    return buf;
}

static void stat_print_padded(const char *text, size_t width, bool right, bool last)
{
    size_t pad = width - stat_text_width(text);

    if (right) {
        printf("%*s%s", (int)pad, "", text);
    } else if (last) {
        fputs(text, stdout);
    } else {
        printf("%s%*s", text, (int)pad, "");
    }
}

static void stat_print_clients(json_object *clients)
{
    size_t n = json_object_array_length(clients);
    size_t width[STAT_COLUMN_COUNT];
    char buf[STAT_CELL_MAX];

    for (size_t c = 0; c < STAT_COLUMN_COUNT; c++) {
        width[c] = strlen(stat_columns[c].header);
        for (size_t i = 0; i < n; i++) {
            json_object *client = json_object_array_get_idx(clients, i);
            size_t w = stat_text_width(stat_cell(client, &stat_columns[c], buf, sizeof(buf)));
            width[c] = w > width[c] ? w : width[c];
        }
    }
    for (size_t c = 0; c < STAT_COLUMN_COUNT; c++) {
        fputs(c > 0 ? STAT_GAP : "", stdout);
        stat_print_padded(stat_columns[c].header, width[c], stat_columns[c].numeric,
                          c + 1 == STAT_COLUMN_COUNT);
    }
    putchar('\n');
    for (size_t i = 0; i < n; i++) {
        json_object *client = json_object_array_get_idx(clients, i);
        for (size_t c = 0; c < STAT_COLUMN_COUNT; c++) {
            fputs(c > 0 ? STAT_GAP : "", stdout);
            stat_print_padded(stat_cell(client, &stat_columns[c], buf, sizeof(buf)), width[c],
                              stat_columns[c].numeric, c + 1 == STAT_COLUMN_COUNT);
        }
        putchar('\n');
    }
}

/* -v: every client's subscriptions ("subs" of its object), one line
 * each: the client's id, the sid, the pattern and the queue group, all
 * escaped (a client chose them). A broker lists at most a few dozen per
 * client ("subs_more"); the line after them says how many it left out. */
static void stat_print_subs(json_object *clients)
{
    size_t n = json_object_array_length(clients);
    char pattern[CLI_ESCAPE_MAX(1024)];
    char queue[CLI_ESCAPE_MAX(1024)];

    printf("\n%-8s" STAT_GAP "%10s" STAT_GAP "%s\n", "CLIENT", "SID", "PATTERN [QUEUE]");
    for (size_t i = 0; i < n; i++) {
        json_object *client = json_object_array_get_idx(clients, i);
        json_object *id = NULL;
        json_object *subs = NULL;
        json_object *more = NULL;
        json_object *count = NULL;
        json_object_object_get_ex(client, "id", &id);
        json_object_object_get_ex(client, "subscriptions", &count);
        if (!json_object_object_get_ex(client, "subs", &subs) ||
            !json_object_is_type(subs, json_type_array)) {
            continue; /* a broker that does not list them */
        }
        size_t k = json_object_array_length(subs);
        for (size_t j = 0; j < k; j++) {
            json_object *sub = json_object_array_get_idx(subs, j);
            json_object *sid = NULL;
            json_object *pat = NULL;
            json_object *q = NULL;
            json_object_object_get_ex(sub, "sid", &sid);
            json_object_object_get_ex(sub, "pattern", &pat);
            json_object_object_get_ex(sub, "queue", &q);
            const char *ps = json_object_get_string(pat);
            printf("%-8llu" STAT_GAP "%10llu" STAT_GAP "%s",
                   (unsigned long long)json_object_get_uint64(id),
                   (unsigned long long)json_object_get_uint64(sid),
                   cli_escape(ps != NULL ? ps : "", pattern, sizeof(pattern)));
            if (q != NULL && json_object_is_type(q, json_type_string)) {
                printf(" [%s]", cli_escape(json_object_get_string(q), queue, sizeof(queue)));
            }
            putchar('\n');
        }
        if (json_object_object_get_ex(client, "subs_more", &more) &&
            json_object_get_boolean(more)) {
            uint64_t all = json_object_get_uint64(count);
            printf("%-8llu" STAT_GAP "%10s" STAT_GAP "(%llu more)\n",
                   (unsigned long long)json_object_get_uint64(id), "...",
                   (unsigned long long)(all > k ? all - k : 0));
        }
    }
}

static const char *stat_label(const char *key)
{
    for (size_t i = 0; i < STAT_LABEL_COUNT; i++) {
        if (strcmp(stat_labels[i].key, key) == 0) {
            return stat_labels[i].label;
        }
    }
    return key; /* a key this version does not know: shown as it is */
}

/* "3d 4h 5m 6s", leaving out leading zero units. */
static void stat_format_uptime(uint64_t s, char *buf, size_t len)
{
    uint64_t d = s / 86400;
    uint64_t h = s / 3600 % 24;
    uint64_t m = s / 60 % 60;
    unsigned long long sec = s % 60;

    if (d > 0) {
        snprintf(buf, len, "%llud %lluh %llum %llus", (unsigned long long)d, (unsigned long long)h,
                 (unsigned long long)m, sec);
    } else if (h > 0) {
        snprintf(buf, len, "%lluh %llum %llus", (unsigned long long)h, (unsigned long long)m, sec);
    } else if (m > 0) {
        snprintf(buf, len, "%llum %llus", (unsigned long long)m, sec);
    } else {
        snprintf(buf, len, "%llus", sec);
    }
}

/* The label of a stats key as a cell (a key this version does not know is
 * the broker's text, so it is escaped). */
static const char *stat_label_cell(const char *key, char *buf, size_t len)
{
    stat_name_cell(stat_label(key), buf, len);
    return buf;
}

static void stat_print_stats(sb_client *client, json_object *stats)
{
    size_t width = strlen("broker");
    char label[STAT_CELL_MAX];
    char version[CLI_ESCAPE_MAX(64)];

    json_object_object_foreach(stats, key, val)
    {
        (void)val;
        size_t w = stat_text_width(stat_label_cell(key, label, sizeof(label)));
        width = w > width ? w : width;
    }
    printf("%-*s  %s (sockbusd %s)\n", (int)width, "broker", sb_endpoint(client),
           cli_escape(sb_server_version(client), version, sizeof(version)));
    json_object_object_foreach(stats, k, v)
    {
        char text[STAT_CELL_MAX];
        if (strcmp(k, "uptime_s") == 0 && json_object_is_type(v, json_type_int)) {
            stat_format_uptime(json_object_get_uint64(v), text, sizeof(text));
        } else if (json_object_is_type(v, json_type_string)) {
            stat_name_cell(json_object_get_string(v), text, sizeof(text));
        } else {
            /* Numbers as the broker wrote them (escaped all the same: an
             * object or array may hold any text). */
            stat_name_cell(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), text,
                           sizeof(text));
        }
        stat_label_cell(k, label, sizeof(label));
        stat_print_padded(label, width, false, false);
        printf("  %s\n", text);
    }
}

static void stat_print_json(json_object *stats, json_object *clients)
{
    STAT_CLEANUP_JSON json_object *doc = json_object_new_object();

    json_object_object_add(doc, "stats", json_object_get(stats));
    json_object_object_add(doc, "clients", json_object_get(clients));
    puts(json_object_to_json_string_ext(doc,
                                        JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

int cmd_stat(int argc, char **argv)
{
    stat_args args = {.timeout_ms = CLI_TIMEOUT_DEFAULT_MS};
    CLI_CLEANUP_CLIENT sb_client *client = NULL;
    STAT_CLEANUP_JSON json_object *stats = NULL;
    STAT_CLEANUP_JSON json_object *clients = NULL;
    int r;

    r = stat_parse(argc, argv, &args);
    if (r != 0) {
        return r < 0 ? CLI_EXIT_OK : r; /* -1: --help was printed */
    }

    /* A closed stdout (`sockbus stat | head -1`) must be an EPIPE we
     * handle, as must a broker that goes away mid-write. */
    signal(SIGPIPE, SIG_IGN);

    if (cli_connect(CMD, args.endpoint, args.timeout_ms, &client) < 0) {
        return CLI_EXIT_FAILURE;
    }
    r = stat_fetch(client, &args, &stats, &clients);
    if (r != 0) {
        return r;
    }
    json_object_array_sort(clients, stat_by_id);

    if (args.json) {
        stat_print_json(stats, clients);
    } else {
        stat_print_stats(client, stats);
        putchar('\n');
        stat_print_clients(clients);
        if (args.verbose) {
            stat_print_subs(clients);
        }
    }
    return cli_flush_stdout(CMD);
}
