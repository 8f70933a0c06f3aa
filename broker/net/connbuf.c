/*
 * connbuf.c - buffers and shared bodies (see connbuf.h).
 *
 * A shared body is not copied into a buffer: the buffer records where in
 * its own bytes it goes (a `struct conn_seg`) and holds a reference.
 * connbuf_iov() then interleaves the own bytes and the bodies into iovecs,
 * so a queue of small messages with one large body in the middle is still
 * written with one writev().
 */
#include "connbuf.h"

#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct conn_shared *conn_shared_new(const struct frame *pub)
{
    uint32_t len = pub->size - FRAME_HEADER_SIZE;
    struct conn_shared *body = malloc(sizeof(*body) + len);
    if (body != NULL) {
        body->refs = 0;
        body->len = len;
        memcpy(body->data, pub->subject, len);
    }
    return body;
}

void conn_shared_release(struct conn_shared *body)
{
    if (body != NULL && (body->refs == 0 || --body->refs == 0)) {
        free(body);
    }
}

/* Drop the buffer's references to shared bodies. */
static void connbuf_release_shared(struct conn_buf *b)
{
    for (size_t i = 0; i < b->nsegs; i++) {
        conn_shared_release(b->segs[i].body);
    }
    b->nsegs = 0;
    b->seg_bytes = 0;
    for (size_t i = 0; i < b->nmarks; i++) {
        fdpass_release(b->marks[i].set);
    }
    b->nmarks = 0;
    b->marks_sent = 0;
}

void connbuf_clear(struct conn_buf *b)
{
    connbuf_release_shared(b);
    b->len = 0;
}

void connbuf_free(struct conn_buf *b)
{
    connbuf_release_shared(b);
    free(b->segs);
    free(b->marks);
    free(b->data);
    *b = (struct conn_buf){0};
}

void connbuf_trim(struct conn_buf *b)
{
    if (b->len == 0 && b->cap > CONNBUF_KEEP) {
        connbuf_free(b);
    }
}

int connbuf_add_shared(struct conn_buf *b, struct conn_shared *body)
{
    if (array_reserve(b->segs, b->segs_cap, b->nsegs, 1, 8) < 0) {
        return -ENOMEM;
    }
    body->refs++;
    b->segs[b->nsegs++] = (struct conn_seg){.at = b->len, .body = body};
    b->seg_bytes += body->len;
    return 0;
}

int connbuf_iov(const struct conn_buf *b, size_t skip, struct connbuf_iov *iov)
{
    if (array_reserve(iov->v, iov->cap, 0, 2 * b->nsegs + 1, 16) < 0) {
        return -ENOMEM;
    }
    int n = 0;
    size_t pos = 0;
    for (size_t i = 0; i <= b->nsegs; i++) {
        size_t end = i < b->nsegs ? b->segs[i].at : b->len;
        const uint8_t *parts[2] = {b->data + pos, i < b->nsegs ? b->segs[i].body->data : NULL};
        size_t lens[2] = {end - pos, i < b->nsegs ? b->segs[i].body->len : 0};
        for (int k = 0; k < 2; k++) {
            size_t len = lens[k];
            const uint8_t *p = parts[k];
            if (skip >= len) {
                skip -= len;
                continue;
            }
            iov->v[n++] = uv_buf_init((char *)p + skip, (unsigned)(len - skip));
            skip = 0;
        }
        pos = end;
    }
    return n;
}

int connbuf_add_fds(struct conn_buf *b, struct conn_fds *set)
{
    if (array_reserve(b->marks, b->marks_cap, b->nmarks, 1, 4) < 0) {
        return -ENOMEM;
    }
    set->refs++;
    b->marks[b->nmarks++] = (struct conn_fdmark){.at = b->len + b->seg_bytes, .set = set};
    return 0;
}

int connbuf_iov_cut(const struct conn_buf *b, size_t skip, struct connbuf_iov *iov, int n,
                    const int **fds, uint32_t *nfds)
{
    const struct conn_fdmark *m = &b->marks[b->marks_sent];
    size_t limit;
    if (m->at <= skip) {
        /* This write starts the message: its descriptors ride along, and
         * it stops before the next message that has some. */
        *fds = m->set->fd;
        *nfds = m->set->n;
        limit = b->marks_sent + 1 < b->nmarks ? b->marks[b->marks_sent + 1].at : SIZE_MAX;
    } else {
        limit = m->at;
    }
    if (limit == SIZE_MAX) {
        return n;
    }
    size_t room = limit - skip;
    int k = 0;
    while (k < n && room > 0) {
        if (iov->v[k].len >= room) {
            iov->v[k].len = room;
            room = 0;
        } else {
            room -= iov->v[k].len;
        }
        k++;
    }
    return k;
}
