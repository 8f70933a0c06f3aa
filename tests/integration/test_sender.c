/*
 * test_sender.c - sender credentials (docs/protocol.md, "Sender
 * credentials"): a subscription with SENDER learns who published each
 * message, as the kernel said when the publisher connected: over Unix and
 * over TCP, for the broker's own messages, and for retained replays; a
 * subscription without it gets the message as before.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct harness_broker broker;

static void setup(void)
{
    int r = harness_start(&broker, true, NULL);
    cr_assert_eq(r, 0, "sockbusd did not start: %s", strerror(-r));
}

static void teardown(void)
{
    harness_cleanup(&broker);
}

TestSuite(sender, .init = setup, .fini = teardown, .timeout = 60);

Test(sender, unix_publisher_is_named_by_the_kernel)
{
    sb_client *with = harness_client(&broker, "with", true);
    sb_client *without = harness_client(&broker, "without", true);
    sb_client *pub = harness_client(&broker, "pub", true);
    harness_subscribe(with, "who.x", SB_SUB_SENDER);
    harness_subscribe(without, "who.x", 0);
    sb_pub p = {.subject = "who.x",
                .headers = "h:1",
                .headers_len = 3,
                .payload = "hello",
                .payload_len = 5};
    cr_assert_eq(sb_publish_ex(pub, &p), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);

    sb_msg m = harness_expect_msg(with);
    cr_assert(m.flags & SB_MSG_META);
    cr_assert_eq(m.payload_len, 5);
    cr_assert_eq(memcmp(m.payload, "hello", 5), 0, "the payload comes after the block");
    cr_assert_eq(m.headers_len, 3);
    cr_assert_eq(memcmp(m.headers, "h:1", 3), 0);
    sb_sender s;
    cr_assert_eq(sb_msg_sender(&m, &s), 0);
    cr_assert_eq(s.client_id, sb_client_id(pub));
    cr_assert_eq(s.pid, getpid());
    cr_assert_eq(s.uid, getuid());
    cr_assert_eq(s.gid, getgid());
    cr_assert_eq(s.transport, 1);
    cr_assert_eq(s.nfds, 0);

    m = harness_expect_msg(without);
    cr_assert_eq(m.flags & SB_MSG_META, 0, "no block unless asked for");
    cr_assert_eq(m.payload_len, 5);
    cr_assert_eq(sb_msg_sender(&m, &s), -ENOENT);
    sb_close(pub);
    sb_close(with);
    sb_close(without);
    harness_stop(&broker);
}

Test(sender, tcp_publisher_has_no_credentials)
{
    sb_client *sub = harness_client(&broker, "sub", true);
    sb_client *pub = harness_tcp_client(&broker, "tcp-pub");
    harness_subscribe(sub, "who.tcp", SB_SUB_SENDER);
    cr_assert_eq(sb_publish(pub, "who.tcp", NULL, "t", 1), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    sb_msg m = harness_expect_msg(sub);
    sb_sender s;
    cr_assert_eq(sb_msg_sender(&m, &s), 0);
    cr_assert_eq(s.client_id, sb_client_id(pub));
    cr_assert_eq(s.pid, -1);
    cr_assert_eq(s.uid, (uid_t)-1);
    cr_assert_eq(s.gid, (gid_t)-1);
    cr_assert_eq(s.transport, 2);
    /* A TCP subscriber with SENDER learns the Unix publisher. */
    sb_client *tsub = harness_tcp_client(&broker, "tcp-sub");
    sb_client *upub = harness_client(&broker, "upub", true);
    harness_subscribe(tsub, "who.u", SB_SUB_SENDER);
    cr_assert_eq(sb_publish(upub, "who.u", NULL, "u", 1), 0);
    cr_assert_eq(sb_flush(upub, HARNESS_IO_MS), 0);
    m = harness_expect_msg(tsub);
    cr_assert_eq(sb_msg_sender(&m, &s), 0);
    cr_assert_eq(s.pid, getpid());
    cr_assert_eq(s.transport, 1);
    sb_close(tsub);
    sb_close(upub);
    sb_close(pub);
    sb_close(sub);
    harness_stop(&broker);
}

static void expect_broker(const sb_msg *m)
{
    sb_sender s;
    cr_assert_eq(sb_msg_sender(m, &s), 0, "on %s", m->subject);
    cr_assert_eq(s.client_id, 0);
    cr_assert_eq(s.pid, broker.pid, "the broker's pid, not the test's");
    cr_assert_eq(s.uid, getuid());
    cr_assert_eq(s.transport, 0);
}

Test(sender, the_brokers_own_messages_carry_the_broker)
{
    sb_client *sub = harness_client(&broker, "sub", true);
    harness_subscribe(sub, "$SYS.EVENT.CONNECT", SB_SUB_SENDER);
    harness_subscribe(sub, "answer.>", SB_SUB_SENDER);
    sb_client *other = harness_client(&broker, "other", true);
    sb_msg m = harness_expect_msg(sub);
    cr_assert_str_eq(m.subject, "$SYS.EVENT.CONNECT");
    cr_assert(m.payload_len > 0 && ((const char *)m.payload)[0] == '{',
              "the JSON follows the block");
    expect_broker(&m);
    /* An answer to $SYS.STATS. */
    cr_assert_eq(sb_publish(sub, "$SYS.STATS", "answer.stats", NULL, 0), 0);
    m = harness_expect_msg(sub);
    cr_assert_str_eq(m.subject, "answer.stats");
    expect_broker(&m);
    /* NO_RESPONDERS, to a subscription with SENDER on the reply subject. */
    cr_assert_eq(sb_publish(sub, "nobody.here", "answer.nr", "?", 1), 0);
    m = harness_expect_msg(sub);
    cr_assert_str_eq(m.subject, "answer.nr");
    cr_assert(m.flags & SB_MSG_NO_RESPONDERS);
    cr_assert_eq(m.payload_len, 0);
    expect_broker(&m);
    sb_close(other);
    sb_close(sub);
    harness_stop(&broker);
}

Test(sender, a_retained_replay_carries_who_stored_it)
{
    sb_client *pub = harness_client(&broker, "pub", true);
    uint64_t pub_id = sb_client_id(pub);
    sb_pub p = {.subject = "state.x", .payload = "on", .payload_len = 2, .flags = SB_PUB_RETAIN};
    cr_assert_eq(sb_publish_ex(pub, &p), 0);
    cr_assert_eq(sb_flush(pub, HARNESS_IO_MS), 0);
    sb_close(pub);
    /* Another client connects later (a TCP one, whose own meta would say
     * so): the replay says who stored the value. */
    sb_client *sub = harness_tcp_client(&broker, "late");
    harness_subscribe(sub, "state.*", SB_SUB_SENDER);
    sb_msg m = harness_expect_msg(sub);
    cr_assert(m.flags & SB_MSG_RETAINED);
    cr_assert_eq(m.payload_len, 2);
    cr_assert_eq(memcmp(m.payload, "on", 2), 0);
    sb_sender s;
    cr_assert_eq(sb_msg_sender(&m, &s), 0);
    cr_assert_eq(s.client_id, pub_id);
    cr_assert_eq(s.pid, getpid());
    cr_assert_eq(s.transport, 1);
    /* Without SENDER the replay is as before. */
    sb_client *plain = harness_client(&broker, "plain", true);
    harness_subscribe(plain, "state.x", 0);
    m = harness_expect_msg(plain);
    cr_assert_eq(m.flags & SB_MSG_META, 0);
    cr_assert_eq(m.payload_len, 2);
    sb_close(plain);
    sb_close(sub);
    harness_stop(&broker);
}

Test(sender, a_client_cannot_say_who_it_is)
{
    /* A raw PUB that sets every flag bit the client does not own and
     * carries a forged block in its payload: the subscriber's block is
     * still the kernel's, and the forged bytes are payload. */
    sb_client *sub = harness_client(&broker, "sub", true);
    harness_subscribe(sub, "forge", SB_SUB_SENDER);
    int fd = harness_raw(&broker, true);
    uint8_t frame[16 + 5 + 32];
    memset(frame, 0, sizeof(frame));
    uint32_t size = sizeof(frame);
    memcpy(frame, &size, 4);
    frame[4] = 0x10;        /* PUB */
    frame[5] = 0x04 | 0x80; /* not FDS, not RETAIN */
    frame[6] = 5;
    memcpy(frame + 16, "forge", 5);
    memset(frame + 21, 0, 32); /* "client 0, pid 0, uid 0 (root)" */
    harness_write(fd, frame, sizeof(frame));
    sb_msg m = harness_expect_msg(sub);
    cr_assert_eq(m.payload_len, 32, "the forged block is payload");
    sb_sender s;
    cr_assert_eq(sb_msg_sender(&m, &s), 0);
    cr_assert_neq(s.client_id, 0);
    cr_assert_eq(s.uid, getuid());
    cr_assert_eq(s.pid, getpid());
    close(fd);
    sb_close(sub);
    harness_stop(&broker);
}

Test(sender, reply_sender_tells_the_command_who_asked)
{
    const char *const argv[] = {"sockbus",
                                "reply",
                                "-s",
                                broker.socket,
                                "--sender",
                                "-n",
                                "2",
                                "svc.who",
                                "--",
                                "sh",
                                "-c",
                                "echo \"uid=$SOCKBUS_SENDER_UID pid=$SOCKBUS_SENDER_PID "
                                "client=$SOCKBUS_SENDER_CLIENT_ID\"",
                                NULL};
    int out_fd;
    /* A value in the responder's own environment never reaches COMMAND. */
    setenv("SOCKBUS_SENDER_UID", "4242", 1);
    pid_t pid = harness_cli_spawn(argv, &out_fd);
    unsetenv("SOCKBUS_SENDER_UID");
    cr_assert(pid > 0);
    sb_client *c = harness_client(&broker, "asker", true);
    /* No responder until it has subscribed: ask again (bounded). */
    sb_msg reply;
    int r = SB_E_NO_RESPONDERS;
    for (int i = 0; i < 200 && r == SB_E_NO_RESPONDERS; i++) {
        r = sb_request(c, "svc.who", "?", 1, &reply, HARNESS_IO_MS);
        if (r == SB_E_NO_RESPONDERS) {
            usleep(20000);
        }
    }
    cr_assert_eq(r, 0, "%s", sb_strerror(r));
    char want[128];
    snprintf(want, sizeof(want), "uid=%lu pid=%ld client=%llu\n", (unsigned long)getuid(),
             (long)getpid(), (unsigned long long)sb_client_id(c));
    cr_assert(reply.payload_len == strlen(want) && memcmp(reply.payload, want, strlen(want)) == 0,
              "'%.*s'", (int)reply.payload_len, (const char *)reply.payload);
    /* Over TCP: nothing to tell. */
    sb_client *t = harness_tcp_client(&broker, "tcp-asker");
    r = sb_request(t, "svc.who", "?", 1, &reply, HARNESS_IO_MS);
    cr_assert_eq(r, 0, "%s", sb_strerror(r));
    const char *none = "uid= pid= client=\n";
    cr_assert(reply.payload_len == strlen(none) && memcmp(reply.payload, none, strlen(none)) == 0,
              "'%.*s'", (int)reply.payload_len, (const char *)reply.payload);
    cr_assert_eq(harness_wait_pid(pid, HARNESS_IO_MS), 0);
    close(out_fd);
    sb_close(t);
    sb_close(c);
    harness_stop(&broker);
}
