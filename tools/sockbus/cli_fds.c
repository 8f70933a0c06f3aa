/*
 * cli_fds.c - the sender and the descriptors of a message, as the commands
 * print them, and opening what `pub --attach` passes (see cli_fds.h).
 *
 * A received descriptor is described by what the kernel says of it: the
 * target of /proc/self/fd/N (a path, "pipe:[123]", "socket:[45]",
 * "/memfd:name (deleted)") and its type from fstat(); the path is chosen
 * by whoever opened the file, so it is escaped like every other text a
 * client chose.
 */
#include "cli_fds.h"

#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_attach_open(const char *cmd, const char *path, int *fds, size_t *nfds)
{
    if (*nfds >= CLI_ATTACH_MAX) {
        return cli_usage_error(cmd, "at most %d --attach per message", CLI_ATTACH_MAX);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fprintf(stderr, "sockbus %s: cannot open '%s' to attach it: %s\n", cmd, path,
                strerror(errno));
        return CLI_EXIT_FAILURE;
    }
    fds[(*nfds)++] = fd;
    return 0;
}

static const char *fd_type(mode_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG:
        return "file";
    case S_IFDIR:
        return "directory";
    case S_IFIFO:
        return "pipe";
    case S_IFSOCK:
        return "socket";
    case S_IFCHR:
        return "chardev";
    case S_IFBLK:
        return "blockdev";
    default:
        return "other";
    }
}

/* What fd refers to: its type, size (files) and the kernel's name of it. */
struct fd_info {
    const char *type;
    long long size; /* -1: not a regular file */
    char target[1024];
    size_t target_len;
};

static void fd_describe(int fd, struct fd_info *info)
{
    struct stat st;
    info->type = fstat(fd, &st) == 0 ? fd_type(st.st_mode) : "unknown";
    info->size = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? (long long)st.st_size : -1;
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, info->target, sizeof(info->target));
    info->target_len = n > 0 ? (size_t)n : 0;
}

static const char *transport_name(int t)
{
    return t == 0 ? "broker" : t == 1 ? "unix" : t == 2 ? "tcp" : "unknown";
}

void cli_print_meta_text(FILE *out, const sb_client *c, const sb_msg *msg, bool sender)
{
    sb_sender s;
    if (sb_msg_sender(msg, &s) < 0) {
        return;
    }
    if (sender) {
        if (s.transport == 2) {
            fprintf(out, " (tcp client %" PRIu64 ")", s.client_id);
        } else {
            fprintf(out, " (%spid %ld uid %lu gid %lu)", s.transport == 0 ? "broker " : "",
                    (long)s.pid, (unsigned long)s.uid, (unsigned long)s.gid);
        }
    }
    const int *fds;
    size_t n = sb_msg_fds(c, msg, &fds);
    for (size_t i = 0; i < n; i++) {
        struct fd_info info;
        fd_describe(fds[i], &info);
        char target[TEXT_ESCAPE_MAX(sizeof(info.target))];
        text_escape(target, sizeof(target), info.target, info.target_len);
        if (info.size >= 0) {
            fprintf(out, " <%s %s %lld bytes>", info.type, target, info.size);
        } else {
            fprintf(out, " <%s %s>", info.type, target);
        }
    }
}

void cli_print_meta_json(FILE *out, const sb_client *c, const sb_msg *msg, bool sender)
{
    sb_sender s;
    if (sb_msg_sender(msg, &s) < 0) {
        return;
    }
    if (sender) {
        fprintf(out, ",\"sender\":{\"client_id\":%" PRIu64 ",\"transport\":\"%s\"", s.client_id,
                transport_name(s.transport));
        if (s.transport != 2) {
            fprintf(out, ",\"pid\":%ld,\"uid\":%lu,\"gid\":%lu", (long)s.pid, (unsigned long)s.uid,
                    (unsigned long)s.gid);
        }
        fputc('}', out);
    }
    const int *fds;
    size_t n = sb_msg_fds(c, msg, &fds);
    if (n == 0) {
        return;
    }
    fputs(",\"fds\":[", out);
    for (size_t i = 0; i < n; i++) {
        struct fd_info info;
        fd_describe(fds[i], &info);
        fprintf(out, "%s{\"type\":\"%s\",\"target\":", i > 0 ? "," : "", info.type);
        cli_json_write_string(out, info.target, info.target_len);
        if (info.size >= 0) {
            fprintf(out, ",\"size\":%lld", info.size);
        }
        fputc('}', out);
    }
    fputc(']', out);
}
