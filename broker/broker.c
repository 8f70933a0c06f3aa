/*
 * broker.c - wiring the broker to its loop: listeners, the per-iteration
 * flush, and the orderly stop.
 *
 * The listening sockets are created by listener.c and accepted on by
 * acceptor.c (not uv_listen(), whose EMFILE handling is silent), so libuv
 * never unlinks the socket file: the broker alone decides when it is
 * removed. Output of all connections is written from one check
 * handle, which libuv runs right after it has handled the I/O of an
 * iteration: every frame read in that iteration has been routed by then,
 * so each connection gets at most one write per iteration, however many
 * messages it received.
 */
#include "broker.h"

#include "conn.h"
#include "frame.h"
#include "hash.h"
#include "log.h"
#include "mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void broker_mark_dirty(struct broker *b, struct conn *c)
{
    if (!c->closing && !list_linked(&c->dirty)) {
        list_append(&b->dirty, &c->dirty);
    }
}

/* Resume the connections that left input for this iteration. The list is
 * taken whole: a connection that uses up its slice again goes back on the
 * (new) list, for the next iteration. */
static void broker_resume_ready(struct broker *b)
{
    struct list_link batch;
    list_move_all(&b->ready, &batch);
    struct list_link *l;
    while ((l = list_first(&batch)) != NULL) {
        list_unlink(l);
        conn_resume(list_entry(l, struct conn, ready));
    }
}

/*
 * The end of each loop iteration, after its I/O: first the connections
 * that hold input from earlier iterations get their next slice (after
 * everyone who sent something new has had theirs), then the output of
 * every connection that has some is written. The flush list is taken whole
 * too: a flush may close its connection, which takes it off whatever list
 * it is on, and nothing a flush does marks its own connection again
 * (conn_flush() writes its DROPPED notice in the same write), so the walk
 * ends.
 */
static void on_flush_check(uv_check_t *h)
{
    struct broker *b = h->data;
    b->iteration++; /* a fresh slice for everyone from here on */
    broker_resume_ready(b);
    if (list_empty(&b->ready)) {
        uv_idle_stop(&b->ready_idle);
    }
    struct list_link batch;
    list_move_all(&b->dirty, &batch);
    struct list_link *l;
    while ((l = list_first(&batch)) != NULL) {
        list_unlink(l);
        conn_flush(list_entry(l, struct conn, dirty));
    }
}

/* An active idle handle makes the loop poll without blocking: while input
 * waits on the ready list, the next iteration comes at once. */
static void on_ready_idle(uv_idle_t *h)
{
    (void)h;
}

void broker_mark_ready(struct broker *b, struct conn *c)
{
    if (c->closing || list_linked(&c->ready)) {
        return;
    }
    list_append(&b->ready, &c->ready);
    uv_idle_start(&b->ready_idle, on_ready_idle);
}

static int broker_listen_unix(struct broker *b, char *err, size_t err_len)
{
    int r = listener_unix_open(&b->unix_listener, b->cfg.socket_path, b->cfg.mode,
                               b->cfg.group[0] ? b->cfg.group : NULL, err, err_len);
    if (r < 0) {
        return r;
    }
    /* The acceptor owns the fd from here on, also on failure; the
     * listener keeps the lock and the file identity for its close. */
    int fd = b->unix_listener.fd;
    listener_unix_forget_fd(&b->unix_listener);
    r = acceptor_start(&b->unix_acceptor, b, fd, CONN_UNIX, b->cfg.socket_path);
    if (r < 0) {
        snprintf(err, err_len, "cannot listen on %s: %s", b->cfg.socket_path, uv_strerror(r));
        return r;
    }
    return 0;
}

static int broker_listen_tcp(struct broker *b, char *err, size_t err_len)
{
    int fd;
    int r = listener_tcp_open(b->cfg.tcp, &fd, &b->tcp_port, err, err_len);
    if (r < 0) {
        return r;
    }
    char name[sizeof(b->cfg.tcp) + 8];
    snprintf(name, sizeof(name), "tcp %s", b->cfg.tcp);
    r = acceptor_start(&b->tcp_acceptor, b, fd, CONN_TCP, name);
    if (r < 0) {
        snprintf(err, err_len, "cannot listen on tcp %s: %s", b->cfg.tcp, uv_strerror(r));
        return r;
    }
    return 0;
}

static void on_trim_timer(uv_timer_t *h)
{
    struct broker *b = h->data;
    for (struct conn *c = b->conns; c != NULL; c = c->next) {
        conn_trim(c);
    }
    /* After a client dropped many subscriptions or values, the allocator
     * holds their pages as free chunks scattered through the heap, where
     * free() alone never returns them. Once a lot was freed, hand the free
     * pages back: a walk of the free lists, at most once per tick. */
    if (b->freed_bytes + b->retained.freed >= BROKER_GIVE_BACK_MIN) {
        mem_give_back();
        b->freed_bytes = 0;
        b->retained.freed = 0;
    }
}

int broker_init(struct broker *b, uv_loop_t *loop, const struct broker_config *cfg, char *err,
                size_t err_len)
{
    memset(b, 0, sizeof(*b));
    b->loop = loop;
    b->cfg = *cfg;
    config_finish(&b->cfg);
    b->unix_listener.fd = -1;
    b->unix_listener.lock_fd = -1;
    b->start_ms = uv_now(loop);
    list_init(&b->dirty);
    list_init(&b->ready);

    if (cfg->max_pending < cfg->max_frame) {
        snprintf(err, err_len,
                 "max_pending (%llu) is smaller than max_frame (%u): a message of max_frame "
                 "could never be delivered; raise --max-pending or lower --max-frame",
                 (unsigned long long)cfg->max_pending, cfg->max_frame);
        return -EINVAL;
    }
    /* Before any table exists: every keyed table of the broker hashes with
     * keys from this seed (hash.h). */
    int r = hash_seed_random();
    if (r < 0) {
        snprintf(err, err_len, "cannot read random bytes for the hash keys: %s", strerror(-r));
        return r;
    }
    r = subtrie_new(&b->subs);
    if (r < 0) {
        snprintf(err, err_len, "cannot start: out of memory");
        return r;
    }
    uv_check_init(loop, &b->flush_check);
    b->flush_check.data = b;
    uv_check_start(&b->flush_check, on_flush_check);
    uv_idle_init(loop, &b->ready_idle);
    b->ready_idle.data = b;
    deadline_list_init(&b->unwelcomed, loop, b->cfg.hello_timeout_ms, conn_hello_expired, NULL);
    deadline_list_init(&b->draining, loop, CONN_DRAIN_MS, conn_drain_expired, NULL);
    uv_timer_init(loop, &b->trim_timer);
    b->trim_timer.data = b;
    uv_timer_start(&b->trim_timer, on_trim_timer, BROKER_TRIM_MS, BROKER_TRIM_MS);

    r = broker_listen_unix(b, err, err_len);
    if (r == 0 && cfg->tcp[0] != '\0') {
        r = broker_listen_tcp(b, err, err_len);
    }
    if (r < 0) {
        broker_stop(b);
        uv_run(loop, UV_RUN_DEFAULT); /* let the close callbacks run */
        broker_deinit(b);
        return r;
    }
    return 0;
}

/* Once stopping and every connection is gone, close the loop's own handles
 * so that uv_run() returns. */
static void broker_close_handles(struct broker *b)
{
    if (!uv_is_closing((uv_handle_t *)&b->flush_check)) {
        uv_close((uv_handle_t *)&b->flush_check, NULL);
        uv_close((uv_handle_t *)&b->ready_idle, NULL);
        deadline_list_close(&b->unwelcomed);
        deadline_list_close(&b->draining);
        uv_close((uv_handle_t *)&b->trim_timer, NULL);
    }
}

void broker_conn_closed(struct broker *b)
{
    if (b->stopping && b->nconns == 0) {
        broker_close_handles(b);
    }
}

void broker_stop(struct broker *b)
{
    if (b->stopping) {
        return;
    }
    b->stopping = true;
    acceptor_close(&b->unix_acceptor);
    acceptor_close(&b->tcp_acceptor);
    /* Every client gets ERR 9: one attempt to write it, after any write
     * still in flight, then it is closed. A write in flight is waited for at
     * most CONN_DRAIN_MS: a peer that does not read cannot hold the
     * broker. */
    for (struct conn *c = b->conns; c != NULL; c = c->next) {
        conn_end(c, FRAME_ERR_SHUTDOWN, "broker shutting down");
    }
    if (b->nconns == 0) {
        broker_close_handles(b);
    }
}

void broker_deinit(struct broker *b)
{
    listener_unix_close(&b->unix_listener);
    retain_deinit(&b->retained);
    free(b->scratch);
    b->scratch = NULL;
    free(b->iov);
    b->iov = NULL;
    subtrie_result_deinit(&b->match);
    subtrie_free(b->subs);
    b->subs = NULL;
    free(b->listed); /* the $SYS.CLIENTS list (sys.c) */
    b->listed = NULL;
}
