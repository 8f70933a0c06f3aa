/*
 * router.c - subscriptions and message routing.
 *
 * A subscription is allocated once at SUB time with its pattern and queue
 * group stored inline, indexed twice: by sid in its connection's sid map
 * (for UNSUB and disconnect) and by pattern in the broker's trie (for
 * routing), where it carries its own place (struct subtrie_sub), so that
 * ending it costs O(1) however many subscriptions share its pattern or
 * queue group. Each subscription is charged what it can cost in memory
 * (router_sub_cost()) against its connection's max_subscription_bytes, and
 * refunded exactly that when it ends. Publishing a small message
 * allocates nothing: the trie fills a result vector that the broker
 * reuses, and each MSG is copied into its subscriber's output buffer. A
 * large body going to several subscribers is copied once into a shared
 * buffer (conn_shared_new()) instead. Whether a MSG is queued or dropped
 * for a slow consumer is flow.c's call.
 *
 * Most of a steady stream is PUBs on the subject of the one before. The
 * last match is kept and reused for the next publish on the same subject
 * until something changes it (router_match(), router_forget_match()), and
 * PUBs that follow each other in one read, whose match has only plain
 * subscriptions each on a connection of its own, are noted as a run and
 * queued in one copy per subscriber (router_publish_deferred(),
 * router_flush()), with the outcome, message by message, of queueing them
 * one by one. PUBs on subjects that change, each matching one plain
 * subscription, all on one connection (a subscriber holding a subscription
 * per subject, and a publisher going through them), make a run too: each
 * frame is matched, and the run is queued to that connection in one copy,
 * each header given its own subscription's sid.
 *
 * Around that core: retained values (retain.c) are stored before the live
 * delivery and replayed to each new subscription; a request (a PUB with a
 * reply subject) that reaches nobody is answered at once with
 * NO_RESPONDERS; $SYS. subjects are checked here and answered by sys.c.
 */
#include "router.h"

#include "acl.h"
#include "array.h"
#include "bus.h"
#include "bytes.h"
#include "config.h"
#include "connbuf.h"
#include "fdpass.h"
#include "flow.h"
#include "frame.h"
#include "matchcache.h"
#include "mem.h"
#include "peer.h"
#include "retain.h"
#include "sockbus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t sub_size(size_t pattern_len, size_t queue_len)
{
    return sizeof(struct sub) + pattern_len + queue_len + 2u;
}

size_t router_sub_cost(const char *pattern, size_t pattern_len, size_t queue_len)
{
    return mem_footprint(sub_size(pattern_len, queue_len)) + sidmap_entry_bytes_max() +
           subtrie_cost(pattern, pattern_len, queue_len);
}

/* The trie, or who may be filtered out of a match, changed: the match
 * `b->match` holds may not be reused (router_route()). A run noted on it
 * is queued first, to the subscriptions it was published to. */
static void router_forget_match(struct bus *b)
{
    router_flush(b);
    b->repeat.len = 0;
}

static void sub_free(struct bus *b, struct sub *s)
{
    if (b->sub_event != NULL) {
        b->sub_event(b, s, false); /* may publish, and keep its match */
    }
    subtrie_remove(b->subs, &s->entry, sub_pattern(s), s->pattern_len);
    router_forget_match(b); /* s is still there for a run to reach */
    s->peer->sub_bytes -= s->cost;
    s->peer->lossless -= (s->flags & FRAME_SUB_LOSSLESS) != 0;
    b->freed_bytes += s->cost;
    b->nsubs--;
    free(s);
}

/* The meta block of a message from `origin`, or from the broker itself
 * when NULL (docs/protocol.md, "Sender credentials"): what the kernel said
 * when the publisher connected, never anything it sent. */
static void router_meta(const struct peer *origin, uint8_t *out)
{
    struct frame_meta m;
    if (origin == NULL) {
        m = (struct frame_meta){.client_id = 0,
                                .pid = (uint32_t)getpid(),
                                .uid = (uint32_t)getuid(),
                                .gid = (uint32_t)getgid(),
                                .transport = FRAME_META_BROKER};
    } else {
        const struct conn *c = &origin->conn;
        m = (struct frame_meta){
            .client_id = c->id,
            .pid = c->has_cred ? (uint32_t)c->cred.pid : FRAME_META_NONE,
            .uid = c->has_cred ? (uint32_t)c->cred.uid : FRAME_META_NONE,
            .gid = c->has_cred ? (uint32_t)c->cred.gid : FRAME_META_NONE,
            .transport = c->transport->meta_id,
        };
    }
    m.nfds = 0;
    frame_meta_encode(out, &m);
}

/* Queue a MSG the broker sends `p` on its own subscription `sid` (with
 * that subscription's `sub_flags`): a retained value or NO_RESPONDERS.
 * With SENDER it carries `meta`. A lossless one loses nothing, and `p`,
 * whose own SUB or request asked for it, is the one held back while it
 * drains. */
static void router_queue_own(struct peer *p, uint32_t sid, uint8_t sub_flags, uint8_t msg_flags,
                             const struct frame *f, const uint8_t *meta)
{
    bool lossless = (sub_flags & FRAME_SUB_LOSSLESS) != 0;
    if (sub_flags & FRAME_SUB_SENDER) {
        flow_queue_msg_meta(p->bus, p, p, sid, msg_flags, lossless, f, meta, NULL);
    } else if (lossless) {
        flow_queue_lossless(p->bus, p, p, sid, msg_flags, f, NULL);
    } else {
        flow_queue_msg(p->bus, p, sid, msg_flags, f, NULL);
    }
}

/* Queue `value` (a retained message) to the subscription being replayed,
 * with the meta of the publish that stored it. */
static void replay_one(const struct frame *value, void *arg)
{
    struct sub *s = arg;
    router_queue_own(s->peer, s->sid, s->flags, FRAME_MSG_RETAINED, value,
                     retain_value_meta(value));
}

int router_subscribe(struct bus *b, struct peer *p, const struct frame *f)
{
    const char *pattern = (const char *)f->subject;
    const char *queue = (const char *)f->reply;
    if (f->sid == 0 || sidmap_find(&p->subs, f->sid) != NULL) {
        return ROUTER_E_SID_IN_USE;
    }
    if (!sb_pattern_valid(pattern, f->subject_len) ||
        (f->reply_len > 0 && !sb_subject_valid(queue, f->reply_len))) {
        return ROUTER_E_PATTERN_INVALID;
    }
    if (b->cfg->acl != NULL &&
        !acl_may_subscribe(p->acl_rule, p->conn.id, pattern, f->subject_len)) {
        return ROUTER_E_SUB_DENIED;
    }
    uint8_t flags = f->flags & (FRAME_SUB_SENDER | FRAME_SUB_LOSSLESS);
    if ((flags & FRAME_SUB_LOSSLESS) && b->cfg->acl != NULL && !acl_may_lossless(p->acl_rule)) {
        return ROUTER_E_LOSSLESS_DENIED;
    }
    if (p->subs.len >= b->cfg->max_subscriptions) {
        return ROUTER_E_SUB_LIMIT;
    }
    size_t cost = router_sub_cost(pattern, f->subject_len, f->reply_len);
    if (p->sub_bytes + cost > b->cfg->max_subscription_bytes) {
        return ROUTER_E_SUB_BYTES;
    }
    struct sub *s = malloc(sub_size(f->subject_len, f->reply_len));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->peer = p;
    s->sid = f->sid;
    s->remaining = 0;
    s->cost = (uint32_t)cost;
    s->pattern_len = f->subject_len;
    s->queue_len = f->reply_len;
    s->flags = flags;
    memcpy(s->strings, pattern, f->subject_len);
    s->strings[f->subject_len] = '\0';
    memcpy(s->strings + f->subject_len + 1, queue, f->reply_len);
    s->strings[f->subject_len + 1 + f->reply_len] = '\0';

    /* Both only fail for memory here: the sid is free and the pattern
     * valid. */
    int r = sidmap_insert(&p->subs, s->sid, s);
    if (r < 0) {
        free(s);
        return -ENOMEM;
    }
    r = subtrie_add(b->subs, &s->entry, sub_pattern(s), s->pattern_len, sub_queue(s), s->queue_len);
    if (r < 0) {
        sidmap_remove(&p->subs, s->sid);
        free(s);
        return -ENOMEM;
    }
    router_forget_match(b);
    p->sub_bytes += s->cost;
    p->lossless += (flags & FRAME_SUB_LOSSLESS) != 0;
    b->nsubs++;
    if (b->sub_event != NULL) {
        b->sub_event(b, s, true);
    }
    /* The new subscription first receives every retained value it matches,
     * queue group or not, ahead of anything published later. */
    retain_foreach_match(&b->retained, sub_pattern(s), s->pattern_len, replay_one, s);
    return 0;
}

int router_unsubscribe(struct bus *b, struct peer *p, uint32_t sid, uint32_t max_msgs)
{
    struct sub *s = sidmap_find(&p->subs, sid);
    if (s == NULL) {
        return ROUTER_E_SID_UNKNOWN;
    }
    if (max_msgs > 0) {
        router_forget_match(b); /* no longer a plain subscription */
        s->remaining = max_msgs;
        return 0;
    }
    sidmap_remove(&p->subs, sid);
    sub_free(b, s);
    return 0;
}

void router_remove_peer(struct bus *b, struct peer *p)
{
    /* Its address may be the next peer's, whose echo filter differs. */
    router_forget_match(b);
    uint32_t sid;
    void *v;
    for (size_t i = 0; sidmap_next(&p->subs, &i, &sid, &v);) {
        sub_free(b, v);
    }
    sidmap_deinit(&p->subs);
    sidmap_init(&p->subs);
}

/* Subscriptions of a publisher that said "echo":false do not receive its
 * own messages (and do not take a queue group's turn). */
static bool sub_accepts(struct subtrie_sub *entry, void *origin)
{
    return sub_of(entry)->peer != origin;
}

/* Queue `f` to `s` with the meta block (built once per message, in
 * meta[], when *have is false) and `set`'s descriptors if any. Out of
 * line: only subscriptions with SENDER and messages with descriptors come
 * here. */
__attribute__((noinline)) static void router_queue_meta(struct bus *b, struct peer *origin,
                                                        struct sub *s, uint8_t msg_flags,
                                                        const struct frame *f, struct conn_fds *set,
                                                        uint8_t *meta, bool *have)
{
    if (!*have) {
        router_meta(origin, meta);
        *have = true;
    }
    flow_queue_msg_meta(b, origin, s->peer, s->sid, msg_flags, (s->flags & FRAME_SUB_LOSSLESS) != 0,
                        f, meta, set);
}

/* Is b->match the match of f's subject (for some filter)? */
static inline bool router_repeats(const struct bus *b, const struct frame *f)
{
    size_t len = f->subject_len;
    return b->repeat.len == len && len != 0 &&
           bytes_same(b->repeat.subject, (const char *)f->subject, len);
}

/*
 * Match `f`'s subject into b->match, with the publisher `filtered` left out
 * (NULL: nobody), and note what the match is for (b->repeat), so that
 * router_match() may reuse it. `hash`: the subject's, from the look-ahead
 * (0: not known). Returns 0, or -EINVAL for an invalid subject, or
 * -ENOMEM.
 */
__attribute__((always_inline)) static inline int
router_match_anew(struct bus *b, const struct frame *f, struct peer *filtered, uint64_t hash)
{
    const char *subject = (const char *)f->subject;
    size_t len = f->subject_len;
    int r = subtrie_match_hashed(b->subs, subject, len, hash, filtered != NULL ? sub_accepts : NULL,
                                 filtered, &b->match);
    if (r < 0) {
        b->repeat.len = 0;
        return r;
    }
    if (len <= sizeof(b->repeat.subject)) {
        bytes_copy_short(b->repeat.subject, subject, len);
        b->repeat.len = (uint16_t)len;
        b->repeat.origin = filtered;
        b->repeat.peers = BUS_PEERS_UNKNOWN;
    } else {
        b->repeat.len = 0;
    }
    return 0;
}

/*
 * router_match_anew(), unless b->match is already the match of f's subject
 * for this filter. A run of publishes on one subject is the common case,
 * so the match is kept for the next publish: it is reused when the subject
 * and the filter are the same and nothing has changed since that could
 * change it (router_forget_match(): a subscription added or ended, a peer
 * gone). A match that chose a queue group's member is not reused (the
 * group turns at every message): router_route() forgets it. A reused
 * match was made for a valid subject.
 */
__attribute__((always_inline)) static inline int router_match(struct bus *b, const struct frame *f,
                                                              struct peer *filtered)
{
    if (b->repeat.origin == filtered && router_repeats(b, f)) {
        return 0;
    }
    return router_match_anew(b, f, filtered, 0);
}

/*
 * Deliver the PUB frame `f` to every matching subscription, skipping the
 * origin's own when it asked for no echo (origin is NULL for the broker's
 * own messages), with the descriptors `set` (NULL: none). Returns how many
 * subscriptions it was delivered to (or dropped for, which is not the
 * publisher's business), -EINVAL for an invalid subject, or -ENOMEM.
 * Inlined into its callers: in router_publish() it is the hot path, one
 * call less per message, and `set` is NULL there.
 */
__attribute__((always_inline)) static inline int
router_route(struct bus *b, struct peer *origin, const struct frame *f, struct conn_fds *set)
{
    /* Validates the subject too, unless the match cache knows it. The
     * echo filter is asked only for a publisher that wants no echo: for
     * the others it would accept every subscription. */
    int r = router_match(b, f, origin != NULL && !origin->echo ? origin : NULL);
    if (r < 0) {
        return r;
    }
    int matched = 0;
    /* A large body going to several queues is copied once and shared. */
    struct conn_shared *body = NULL;
    if (b->match.len > 1 && f->size - FRAME_HEADER_SIZE >= CONN_SHARE_MIN) {
        body = conn_shared_new(f);
    }
    uint8_t meta[FRAME_META_SIZE];
    bool have_meta = false;
    /* A live MSG carries no flag, but one relaying "no responders". */
    uint8_t msg_flags = (f->flags & FRAME_PUB_NO_RESPONDERS) ? FRAME_MSG_NO_RESPONDERS : 0;
    uint16_t groups = 0;
    uint32_t special = 0; /* flags or an UNSUB count */
    b->routing = true;
    for (size_t i = 0; i < b->match.len; i++) {
        struct sub *s = sub_of(b->match.items[i]);
        matched++;
        groups |= s->queue_len;
        special |= s->flags | s->remaining;
        if (__builtin_expect(s->flags == 0 && set == NULL, 1)) {
            flow_queue_msg(b, s->peer, s->sid, msg_flags, f, body);
        } else if (!(s->flags & FRAME_SUB_SENDER) && set == NULL) {
            flow_queue_lossless(b, origin, s->peer, s->sid, msg_flags, f, body);
        } else {
            router_queue_meta(b, origin, s, msg_flags, f, set, meta, &have_meta);
        }
        if (s->remaining > 0 && --s->remaining == 0) {
            /* Auto-unsubscribe: each sub appears once in the result, so
             * freeing it here cannot leave a dangling entry behind. */
            sidmap_remove(&s->peer->subs, s->sid);
            sub_free(b, s);
        }
    }
    b->routing = false;
    if (groups != 0) {
        router_forget_match(b); /* the next message goes to the next member */
    }
    b->repeat.plain = special == 0;
    if (body != NULL && body->refs == 0) {
        conn_shared_release(body); /* every queue dropped it */
    }
    return matched;
}

/* Encode a PUB frame into the broker's scratch buffer and decode it back,
 * for messages the broker itself sends. */
static int router_scratch_frame(struct bus *b, const void *subject, size_t subject_len,
                                const void *payload, size_t payload_len, struct frame *f)
{
    size_t size = frame_encoded_size(subject_len, 0, 0, payload_len);
    if (subject_len > SB_SUBJECT_MAX || size > b->cfg->max_frame) {
        return -EMSGSIZE;
    }
    if (array_reserve(b->scratch, b->scratch_cap, 0, size, 4096) < 0) {
        return -ENOMEM;
    }
    frame_encode(b->scratch, FRAME_OP_PUB, 0, 0, subject, subject_len, NULL, 0, NULL, 0, payload,
                 payload_len);
    return frame_parse(b->scratch, size, b->cfg->max_frame, f);
}

/*
 * Nobody received a request: tell the requester at once with an empty MSG
 * flagged NO_RESPONDERS on its reply subject, under the sid of its own
 * subscription to that subject (0 if it has none).
 */
static void router_no_responders(struct bus *b, struct peer *p, const struct frame *f)
{
    struct frame msg;
    if (p->conn.text) {
        return; /* text mode says so in its answer to REQ (textmode.c) */
    }
    if (router_scratch_frame(b, f->reply, f->reply_len, NULL, 0, &msg) < 0) {
        return;
    }
    /* The requester's own subscriptions, not the trie: a match there would
     * take a turn from every queue group on the reply subject. A miss is
     * rare (nobody answered), and a requester has few subscriptions. */
    uint32_t sid = 0;
    uint8_t flags = 0;
    uint32_t key;
    void *v;
    for (size_t i = 0; sidmap_next(&p->subs, &i, &key, &v);) {
        const struct sub *s = v;
        if (sb_pattern_match(sub_pattern(s), s->pattern_len, (const char *)f->reply,
                             f->reply_len)) {
            sid = s->sid;
            flags = s->flags;
            break;
        }
    }
    uint8_t meta[FRAME_META_SIZE];
    if (flags & FRAME_SUB_SENDER) {
        router_meta(NULL, meta); /* the broker's own message */
    }
    router_queue_own(p, sid, flags, FRAME_MSG_NO_RESPONDERS, &msg, meta);
}

/*
 * Access control for a PUB (only when the broker has an ACL):
 * ROUTER_E_SUBJECT_INVALID for an invalid subject (`valid`: already
 * checked), ROUTER_E_PUB_DENIED when the subject may not be published on,
 * ROUTER_E_REPLY_DENIED when the reply subject may not be used. The $SYS.
 * subjects go through the same rule, so an admin rule grants $SYS.STATS
 * by naming it.
 */
static int router_check_publish(const struct peer *p, const struct frame *f, bool valid)
{
    const char *subject = (const char *)f->subject;
    if (!valid && !sb_subject_valid(subject, f->subject_len)) {
        return ROUTER_E_SUBJECT_INVALID;
    }
    if (!acl_may_publish(p->acl_rule, subject, f->subject_len)) {
        return ROUTER_E_PUB_DENIED;
    }
    if (f->reply_len > 0 &&
        !acl_may_reply(p->acl_rule, p->conn.id, (const char *)f->reply, f->reply_len)) {
        return ROUTER_E_REPLY_DENIED;
    }
    return 0;
}

/*
 * May `p` publish `f`? ROUTER_E_* when not, ROUTER_SYS for a $SYS. subject
 * (`sys`), which the broker answers, else 0. `check`: the subject is
 * validated here (else the match does it, once per distinct subject).
 * Inlined: router_publish() is the hot path.
 */
__attribute__((always_inline)) static inline int
router_admit(const struct bus *b, const struct peer *p, const struct frame *f, bool sys, bool check)
{
    if (f->reply_len > 0 && !sb_subject_valid((const char *)f->reply, f->reply_len)) {
        return ROUTER_E_SUBJECT_INVALID;
    }
    /* Whoever answers a request publishes on its reply subject, and the
     * broker answers $SYS requests itself: a $SYS. reply subject would make
     * it (or a responder) publish where no client may, a forged
     * $SYS.EVENT.DISCONNECT say. Refused whatever the subject, ACL or not. */
    if (f->reply_len > 0 && router_subject_is_sys(f->reply, f->reply_len)) {
        return ROUTER_E_REPLY_SYS;
    }
    if (check && !sb_subject_valid((const char *)f->subject, f->subject_len)) {
        return ROUTER_E_SUBJECT_INVALID;
    }
    if (b->cfg->acl != NULL) {
        int denied = router_check_publish(p, f, check);
        if (denied != 0) {
            return denied;
        }
    }
    return sys ? ROUTER_SYS : 0;
}

/*
 * A PUB with FDS (docs/protocol.md, "File descriptors"): the descriptors
 * it claims come off the front of its connection's queue, as one set that
 * every Unix subscriber's MSG carries, closed once the last of them is
 * written or dropped. Refusals of the frame itself are fatal; a refusal of
 * the publish (subject, ACL) closes the descriptors and goes on. Out of
 * line: the ordinary publish never comes here.
 */
__attribute__((noinline)) static int router_publish_fds(struct bus *b, struct peer *p,
                                                        const struct frame *f)
{
    struct conn *c = &p->conn;
    if (!c->transport->fds) {
        return ROUTER_E_FDS_TCP;
    }
    if (f->flags & FRAME_PUB_RETAIN) {
        return ROUTER_E_FDS_RETAIN;
    }
    if (f->sid == 0 || f->sid > b->cfg->max_fds_per_msg) {
        return ROUTER_E_FDS_COUNT;
    }
    struct conn_fds *set;
    int r = fdq_take(&c->fdq, f->sid, &set);
    if (r < 0) {
        return r == -ENOENT ? ROUTER_E_FDS_MISSING : r;
    }
    p->msgs_in++;
    b->stats.msgs_in++;
    if (fdpass_held > b->cfg->max_fds) {
        fdpass_release(set);
        return ROUTER_E_FDS_LIMIT;
    }
    /* A $SYS. subject: the broker answers, and takes no descriptors. */
    r = router_admit(b, p, f, router_subject_is_sys(f->subject, f->subject_len), true);
    if (r == 0) {
        r = router_route(b, p, f, set);
        if (r == 0 && f->reply_len > 0) {
            router_no_responders(b, p, f);
        }
        r = r < 0 ? (r == -EINVAL ? ROUTER_E_SUBJECT_INVALID : r) : 0;
    }
    if (set->refs == 0) {
        fdpass_release(set); /* no queue took them */
    }
    return r;
}

int router_publish(struct bus *b, struct peer *p, const struct frame *f)
{
    const char *subject = (const char *)f->subject;
    router_flush(b); /* what came before goes first */
    if (f->flags & FRAME_PUB_FDS) {
        return router_publish_fds(b, p, f);
    }
    p->msgs_in++;
    b->stats.msgs_in++;
    /* The subject itself is validated by the match (router_route()), once
     * per distinct subject; the rarer paths check it first. */
    bool sys = router_subject_is_sys(subject, f->subject_len);
    int r = router_admit(b, p, f, sys, sys || (f->flags & FRAME_PUB_RETAIN));
    if (r != 0) {
        return r;
    }
    int retained = 0;
    if (f->flags & FRAME_PUB_RETAIN) {
        uint8_t meta[FRAME_META_SIZE];
        router_meta(p, meta); /* a replay says who stored the value */
        retained = retain_apply_meta(&b->retained, f, meta, b->cfg->max_retained_bytes);
        if (retained == RETAIN_E_FULL) {
            retained = ROUTER_E_RETAIN_FULL;
        }
    }
    int matched = router_route(b, p, f, NULL);
    if (matched < 0) {
        return matched == -EINVAL ? ROUTER_E_SUBJECT_INVALID : matched;
    }
    if (matched == 0 && f->reply_len > 0) {
        router_no_responders(b, p, f);
    }
    /* A value that could not be retained was still delivered live. */
    return retained;
}

int router_publish_local(struct bus *b, const char *subject, size_t subject_len,
                         const void *payload, size_t payload_len)
{
    if (b->routing) {
        return -EBUSY; /* never re-entered while a match is being walked */
    }
    router_flush(b);
    struct frame f;
    int r = router_scratch_frame(b, subject, subject_len, payload, payload_len, &f);
    if (r < 0) {
        return r;
    }
    r = router_route(b, NULL, &f, NULL);
    return r < 0 ? r : 0;
}

/* ---- runs: consecutive PUBs queued in one copy per subscriber ----------- */

/*
 * Does each subscription b->match holds belong to a connection of its
 * own? A run is queued subscription after subscription (router_flush()):
 * into a connection with two of them it would queue all of one's MSGs
 * before the other's, where one by one each message's MSGs are back to
 * back and its budget keeps or drops them in that order (docs/protocol.md,
 * "One MSG per matching subscription"). Walked once per match.
 */
static bool router_match_once_each(struct bus *b)
{
    if (b->repeat.peers == BUS_PEERS_UNKNOWN) {
        uint64_t mark = ++b->peer_mark;
        b->repeat.peers = BUS_PEERS_DISTINCT;
        for (size_t i = 0; i < b->match.len; i++) {
            struct peer *p = sub_of(b->match.items[i])->peer;
            if (p->mark == mark) {
                b->repeat.peers = BUS_PEERS_SHARED;
                break;
            }
            p->mark = mark;
        }
    }
    return b->repeat.peers == BUS_PEERS_DISTINCT;
}

/*
 * Would router_publish() let `p` publish the plain message `f` (no flag,
 * no reply subject) in the ordinary way: not on a $SYS. subject, and the
 * ACL allowing it? Its own check, so that a run admits what a publish
 * would (a refused frame is left to router_publish(), to say why).
 */
static inline bool router_run_admits(const struct bus *b, const struct peer *p,
                                     const struct frame *f)
{
    return router_admit(b, p, f, router_subject_is_sys(f->subject, f->subject_len), false) == 0;
}

/*
 * May `f` from `p`, a plain message on the subject whose match b->match
 * holds, start a run? When that match has only plain subscriptions, each
 * on a connection of its own (router_match_once_each()), was made for p's
 * echo filter, and p may publish on the subject: then it is the match a
 * router_publish() of f would make.
 */
static bool router_run_starts(struct bus *b, struct peer *p, const struct frame *f)
{
    /* The match may have been made for another publisher (or by the
     * broker, on a $SYS. subject): p's own right is asked. */
    return b->repeat.plain && b->repeat.origin == (p->echo ? NULL : p) &&
           router_run_admits(b, p, f) && router_match_once_each(b);
}

/*
 * A plain message from `p` on a subject other than the last one (or on
 * the same, when the run to one subscriber it follows is full): may it
 * join, or start, a run to one subscriber? When it passes the checks
 * router_publish() would make (not $SYS., the ACL) and its match, made
 * here, is one plain subscription: on the connection of the run it
 * follows (`goes_on`), or on any for a new one. Returns that subscription,
 * or NULL: then router_publish() takes the frame, and reuses the match.
 */
static struct sub *router_run_target(struct bus *b, struct peer *p, const struct frame *f,
                                     bool goes_on, bool repeats, uint64_t hash)
{
    struct peer *filtered = p->echo ? NULL : p;
    if (!router_run_admits(b, p, f)) {
        return NULL;
    }
    /* The index may know that the subject matches one subscription and
     * nothing else: that is the whole match, without building it in
     * b->match. b->match then no longer follows the last subject, and is
     * not reused for the next. */
    struct subtrie_sub *one =
        hash != 0 ? subtrie_match_one(b->subs, (const char *)f->subject, f->subject_len, hash)
                  : NULL;
    struct sub *s;
    if (one != NULL) {
        b->repeat.len = 0;
        s = sub_of(one);
        if (s->peer == filtered) {
            return NULL; /* its own, without echo: nobody */
        }
    } else {
        if ((repeats ? router_match(b, f, filtered) : router_match_anew(b, f, filtered, hash)) <
                0 ||
            b->match.len != 1) {
            return NULL;
        }
        s = sub_of(b->match.items[0]);
    }
    /* Read only while b->repeat.len says b->match is this subject's. */
    b->repeat.plain = (s->flags | s->remaining | s->queue_len) == 0;
    if (!b->repeat.plain || (goes_on && s->peer != b->run.to)) {
        return NULL;
    }
    return s;
}

/* Note the plain PUB frame `f` from `p` at the end of b->run, to be
 * queued when the run is flushed. */
static inline void router_run_add(struct bus *b, struct peer *p, const struct frame *f)
{
    b->run.end = f->subject - FRAME_HEADER_SIZE + f->size;
    b->run.count++;
    p->msgs_in++;
    b->stats.msgs_in++;
    /* Charged now, as router_route() would, so that the publisher's slice
     * ends where it would have: to each subscription of b->match, or to
     * the one of a run to one subscriber. */
    schedule_charge(&b->net->schedule,
                    (size_t)f->size * (b->run.to != NULL ? 1u : (size_t)b->match.len));
}

/* Queue the run there is, and start an empty one from `p` at `frame`: to
 * `to`, or (NULL) to each subscription of b->match. */
static inline void router_run_begin(struct bus *b, struct peer *p, struct peer *to,
                                    const uint8_t *frame)
{
    router_flush(b);
    b->run.origin = p;
    b->run.to = to;
    b->run.start = frame;
}

/* b->ahead.seq runs free and wraps: (seq - k) % BUS_AHEAD stays the slot
 * k frames back only when BUS_AHEAD divides 2^32. */
_Static_assert(BUS_AHEAD >= 2 && (BUS_AHEAD & (BUS_AHEAD - 1)) == 0,
               "BUS_AHEAD must be a power of two");

/*
 * A publisher cycling over more subjects than the match cache holds makes
 * each match wait for memory: the index slot, then the subscription it
 * leads to. The frames after `next` are already in the read being handled,
 * so those loads are started early, in two steps: a frame's slot when it
 * is BUS_AHEAD frames ahead, and, once the slot has come, half as many
 * frames later, its subscription (b->ahead: the next frame to start, and
 * the hashes of the last BUS_AHEAD started). The frames ahead are not
 * checked yet: only their sizes are trusted, within the read, and nothing
 * is kept of them but a hash. Returns the hash of `frame` itself when it
 * was started so (0: not), for its match to take.
 */
static uint64_t router_look_ahead(struct bus *b, const struct peer *p, const uint8_t *frame,
                                  const uint8_t *next)
{
    const uint8_t *end = p->conn.frames_end;
    const struct matchcache *cache = subtrie_cache(b->subs);
    if (end == NULL || !matchcache_indexed(cache)) {
        return 0;
    }
    uint64_t known = 0;
    const uint8_t *at = b->ahead.next;
    int todo = 1;
    /* As addresses: b->ahead.next may be NULL, or point into an earlier
     * read's buffer. */
    if ((uintptr_t)at < (uintptr_t)next || (uintptr_t)at > (uintptr_t)end) {
        /* A new read, whose frames may lie where the ring's did, with
         * other subjects; or a new start in this one, behind `frame`,
         * which was not started then: the ring has no hash for it. */
        at = next;
        todo = BUS_AHEAD;
        memset(b->ahead.frame, 0, sizeof(b->ahead.frame));
        memset(b->ahead.hash, 0, sizeof(b->ahead.hash));
    } else {
        /* `frame`'s own hash, when it was started: in the slot of the
         * ring the next frame started takes over, unless frames that were
         * not matched here (a repeat, a frame published on its own) came
         * in between. */
        for (uint32_t i = 0; i < BUS_AHEAD; i++) {
            uint32_t k = (b->ahead.seq + i) % BUS_AHEAD;
            if (b->ahead.frame[k] == frame) {
                known = b->ahead.hash[k];
                break;
            }
        }
    }
    for (; todo > 0 && (size_t)(end - at) >= FRAME_HEADER_SIZE; todo--) {
        uint32_t size = frame_get_u32(at);
        uint16_t subject_len = frame_get_u16(at + 6);
        if (size < FRAME_HEADER_SIZE || size > (size_t)(end - at)) {
            at = end; /* not a frame: the read's handling will say so */
            break;
        }
        uint64_t hash = 0;
        if (at[4] == FRAME_OP_PUB && subject_len <= size - FRAME_HEADER_SIZE) {
            hash = matchcache_prefetch(cache, (const char *)at + FRAME_HEADER_SIZE, subject_len);
        }
        b->ahead.frame[b->ahead.seq % BUS_AHEAD] = at;
        b->ahead.hash[b->ahead.seq++ % BUS_AHEAD] = hash;
        /* seq - 1 is the frame BUS_AHEAD ahead: this is the one half as far. */
        uint64_t half = b->ahead.hash[(b->ahead.seq - 1 - BUS_AHEAD / 2) % BUS_AHEAD];
        if (half != 0) {
            matchcache_prefetch_next(cache, half);
        }
        at += size;
    }
    b->ahead.next = at;
    return known;
}

/*
 * The plain PUB frame `f` from `p` that does not simply go on with the run
 * (router_publish_deferred()): it starts a run, joins a run to one
 * subscriber on a subject of its own, or is published at once. Out of
 * line, so that the common case stays short.
 */
__attribute__((noinline)) static int
router_run_join(struct bus *b, struct peer *p, const struct frame *f, bool goes_on, bool repeats)
{
    const uint8_t *frame = f->subject - FRAME_HEADER_SIZE;
    struct run *run = &b->run;
    if (repeats && !goes_on) {
        /* b->match is its match: a run on it, or (not one a run may
         * take) no run at all. */
        if (!router_run_starts(b, p, f)) {
            return router_publish(b, p, f);
        }
        router_run_begin(b, p, NULL, frame);
        router_run_add(b, p, f);
        return 0;
    }
    if (run->count > 0 && run->to == NULL) {
        router_flush(b); /* its subscriptions are b->match's, matched anew here */
        goes_on = false;
    }
    uint64_t hash = repeats ? 0 : router_look_ahead(b, p, frame, frame + f->size);
    struct sub *s = router_run_target(b, p, f, goes_on, repeats, hash);
    if (s == NULL) {
        return router_publish(b, p, f);
    }
    if (!goes_on || run->count == BUS_RUN_SIDS_MAX) {
        router_run_begin(b, p, s->peer, frame);
    }
    run->sids[run->count] = s->sid;
    router_run_add(b, p, f);
    return 0;
}

int router_publish_deferred(struct bus *b, struct peer *p, const struct frame *f)
{
    struct run *run = &b->run;
    /* A plain message: no flag, no reply subject; small (a large body is
     * shared instead, in router_route()). */
    if ((f->flags | f->reply_len) != 0 || f->size - FRAME_HEADER_SIZE >= CONN_SHARE_MIN) {
        return router_publish(b, p, f);
    }
    /* A run goes on with the next frame of its publisher in the read: its
     * match was made for this publisher and passed the checks. On the same
     * subject, it goes to the same subscriptions. */
    bool goes_on = run->count > 0 && f->subject - FRAME_HEADER_SIZE == run->end && p == run->origin;
    bool repeats = router_repeats(b, f);
    if (goes_on && repeats && run->to == NULL) {
        /* to every subscription of b->match */
    } else if (goes_on && repeats && run->count < BUS_RUN_SIDS_MAX) {
        run->sids[run->count] = run->sids[run->count - 1]; /* to one */
    } else {
        return router_run_join(b, p, f, goes_on, repeats);
    }
    router_run_add(b, p, f);
    return 0;
}

/* The run's frames, as MSGs to `p`, frame k for sids[k * stride]: in one
 * copy when they all fit, else one by one, each queued or dropped as
 * router_route() would. */
static void router_flush_to(struct bus *b, const struct run *run, struct peer *p,
                            const uint32_t *sids, size_t stride)
{
    size_t bytes = (size_t)(run->end - run->start);
    if (flow_queue_run(b, p, sids, stride, run->start, bytes, run->count)) {
        return;
    }
    /* Their work was charged when they arrived (router_run_add()), and
     * flow_queue_msg() charges each again: taken back first, so that the
     * slice of whoever is being handled now pays nothing for them. */
    if (conn_takes_output(&p->conn)) {
        b->net->schedule.work -= bytes;
    }
    for (const uint8_t *m = run->start; m < run->end; m += frame_get_u32(m), sids += stride) {
        struct frame f;
        if (frame_parse(m, (size_t)(run->end - m), UINT32_MAX, &f) == 0) { /* it was, once */
            flow_queue_msg(b, p, *sids, 0, &f, NULL);
        }
    }
}

void router_flush(struct bus *b)
{
    struct run *run = &b->run;
    if (run->count == 0) {
        return;
    }
    if (run->to != NULL) {
        router_flush_to(b, run, run->to, run->sids, 1);
    } else {
        for (size_t i = 0; i < b->match.len; i++) {
            struct sub *s = sub_of(b->match.items[i]);
            router_flush_to(b, run, s->peer, &s->sid, 0);
        }
    }
    run->count = 0;
}

void router_read_done(struct bus *b)
{
    router_flush(b);
    b->ahead.next = NULL;
}
