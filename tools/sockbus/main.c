/*
 * main.c - the `sockbus` command: finds the subcommand in a table and
 * hands it the rest of the command line.
 *
 * Each subcommand lives in cmd_<name>.c and parses its own options; this
 * file only knows the table, the top-level --help and --version, and how to
 * say that a command does not exist. A row appears in --help as soon as it
 * is in the table, so only implemented commands are ever listed.
 */
#include "bench.h"
#include "cli.h"
#include "stdfds.h"

#include <string.h>

#ifndef SOCKBUS_VERSION
#define SOCKBUS_VERSION "unknown" /* meson passes the project version */
#endif

static const cli_command commands[] = {
    {"pub", cmd_pub, "publish a message, or one message per line of stdin"},
    {"sub", cmd_sub, "print the messages whose subjects match patterns"},
    {"req", cmd_req, "send a request and print the reply"},
    {"reply", cmd_reply, "answer requests with a message or a command's output"},
    {"stat", cmd_stat, "show the broker's counters and clients"},
    {"wait", cmd_wait, "wait until a subject has a subscriber"},
    {"bench", cmd_bench, "measure throughput and latency: unix vs tcp vs no broker"},
    /* --help lists the rows in this order. A new subcommand is a cmd_<name>.c,
     * its prototype in cli.h (bench keeps its own in bench.h) and a row here. */
};

#define COMMAND_COUNT (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
    fprintf(out, "usage: sockbus COMMAND [OPTIONS] [ARGUMENTS]\n"
                 "       sockbus --help | --version\n"
                 "\n"
                 "Talk to a sockbusd message broker from the shell.\n"
                 "\n"
                 "Commands:\n");
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(out, "\n"
                 "Options:\n"
                 "  -h, --help     show this help and exit\n"
                 "  -V, --version  show the version and exit\n"
                 "      --system   connect to the system broker (" SB_ENDPOINT_SYSTEM ")\n"
                 "\n"
                 "'sockbus COMMAND --help' (or 'sockbus help COMMAND') shows a command's options.\n"
                 "\n"
                 "Endpoint: every command takes -s/--socket ENDPOINT, a socket path (also\n"
                 "written unix://PATH) or tcp://HOST:PORT, and --system for the system\n"
                 "broker's socket, " SB_ENDPOINT_SYSTEM ". Without them:\n"
                 "$SOCKBUS_SOCKET, else $XDG_RUNTIME_DIR/sockbus.sock, else\n"
                 "/tmp/sockbus-UID.sock.\n"
                 "\n"
                 "Exit status: 0 success, 1 failure (one line on stderr says why),\n"
                 "2 bad command line, 124 time limit (-t) reached.\n");
}

/*
 * --system, before the command or among its options (up to "--"): taken
 * out of the arguments here, so that every command accepts it the same
 * way; without -s, the command then connects to the system broker
 * (SB_ENDPOINT_SYSTEM). Returns the new argc.
 */
static int take_system_option(int argc, char **argv)
{
    int out = 1;
    bool ended = false;
    for (int i = 1; i < argc; i++) {
        if (!ended && strcmp(argv[i], "--") == 0) {
            ended = true;
        } else if (!ended && strcmp(argv[i], "--system") == 0) {
            cli_system = true;
            continue;
        }
        argv[out++] = argv[i];
    }
    argv[out] = NULL;
    return out;
}

static const cli_command *command_find(const char *name)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

static int unknown_command(const char *name)
{
    fprintf(stderr, "sockbus: unknown command '%s'; try 'sockbus --help'\n", name);
    return CLI_EXIT_USAGE;
}

/* `sockbus help [COMMAND]`: the same as --help, for people who type it. */
static int help(int argc, char **argv)
{
    if (argc < 3) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    const cli_command *cmd = command_find(argv[2]);
    if (cmd == NULL) {
        return unknown_command(argv[2]);
    }
    char *help_argv[] = {(char *)cmd->name, (char *)"--help", NULL};
    return cmd->run(2, help_argv);
}

int main(int argc, char **argv)
{
    /* Before the client's socket or anything else takes fd 0, 1 or 2. */
    stdfds_open();
    argc = take_system_option(argc, argv);
    if (argc < 2) {
        fprintf(stderr, "sockbus: missing command; try 'sockbus --help'\n");
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];

    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(name, "-V") == 0 || strcmp(name, "--version") == 0) {
        printf("sockbus %s\n", SOCKBUS_VERSION);
        return CLI_EXIT_OK;
    }
    if (strcmp(name, "help") == 0) {
        return help(argc, argv);
    }
    if (name[0] == '-') {
        fprintf(stderr,
                "sockbus: unknown option '%s' (options go after the command); try "
                "'sockbus --help'\n",
                name);
        return CLI_EXIT_USAGE;
    }

    const cli_command *cmd = command_find(name);
    if (cmd == NULL) {
        return unknown_command(name);
    }
    /* The subcommand sees argv[0] == its own name, as if it were its own
     * program; getopt_long() starts at argv[1]. */
    return cmd->run(argc - 1, argv + 1);
}
