/*
 * bench_shared.c - the memory a bench job's processes share, and the credit
 * window that keeps a sender from running away from its receivers.
 *
 * The broker drops messages for a subscriber whose queue is full
 * (docs/protocol.md, "Slow consumers and DROPPED"), so a publisher that
 * sends as fast as it can measures the drop policy, not the throughput.
 * Instead each receiver publishes how many messages it has received in an
 * atomic counter in shared memory (MAP_SHARED | MAP_ANONYMOUS, mapped
 * before fork), and the sender stays at most a window of messages ahead of
 * the slowest receiver. The window is far below the broker's max_pending,
 * so nothing is lost unless something is wrong, and far above a socket
 * buffer, so the pipeline never runs dry.
 *
 * Nothing here runs per message. A receiver stores its count every few
 * hundred messages and before it blocks. The sender looks at the counters
 * only when its window is used up; it then waits until the slowest receiver
 * is half a window behind, so it stalls once per half window. It waits on a
 * futex, not in a spin: on a two-core machine publisher, broker and
 * subscriber already compete for the CPUs, and a spinning publisher would
 * take a third of them from the two that do the work. The handshake is the
 * classic one: the sender states what it waits for (wake_at, waiting),
 * re-reads the counter, and sleeps only if the futex word is unchanged; a
 * receiver that stores a count at or past wake_at while the sender waits
 * bumps the word and wakes it. The sleep is bounded, so even a lost wake-up
 * would only cost milliseconds, never a hang.
 */
#include "bench.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Longest futex sleep: the bound on a missed wake-up, and how often a
 * waiting sender notices an abort. */
#define CREDIT_SLEEP_NS (10 * 1000 * 1000)

/* Checks of the counters before the sender sleeps: a receiver that is
 * about to catch up costs less than a futex round trip. */
#define CREDIT_SPIN_CHECKS 64

uint64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int bench_shared_new(bench_shared **out, uint64_t **samples, uint64_t sample_cap)
{
    void *p =
        mmap(NULL, sizeof(bench_shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return -errno;
    }
    uint64_t *s = NULL;
    if (sample_cap > 0) {
        /* Untouched pages cost nothing: the cap can be generous. */
        void *q = mmap(NULL, sample_cap * sizeof(uint64_t), PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (q == MAP_FAILED) {
            int err = -errno;
            munmap(p, sizeof(bench_shared));
            return err;
        }
        s = q;
    }
    *out = p; /* anonymous mappings start zeroed */
    if (samples != NULL) {
        *samples = s;
    }
    return 0;
}

void bench_shared_free(bench_shared *sh, uint64_t *samples, uint64_t sample_cap)
{
    if (samples != NULL) {
        munmap(samples, sample_cap * sizeof(uint64_t));
    }
    if (sh != NULL) {
        munmap(sh, sizeof(bench_shared));
    }
}

int bench_fail(bench_shared *sh, const char *fmt, ...)
{
    uint32_t expected = 0;

    /* Only the first failure is worth a line: the rest follow from it. */
    if (atomic_compare_exchange_strong(&sh->error_set, &expected, 1)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sh->error, sizeof(sh->error), fmt, ap);
        va_end(ap);
    }
    atomic_store(&sh->abort, 1);
    return -1;
}

static void futex_wait(_Atomic uint32_t *word, uint32_t value, long ns)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = ns};

    /* Shared (not FUTEX_PRIVATE): the word lives in memory of several
     * processes. EAGAIN (the word changed), EINTR and ETIMEDOUT all mean
     * "look again", which the caller does. */
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, value, &ts, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* The slowest receiver's count, and which one it is. */
static uint64_t credit_slowest(bench_shared *sh, unsigned receivers, unsigned *slowest)
{
    uint64_t min = UINT64_MAX;

    for (unsigned i = 0; i < receivers; i++) {
        uint64_t n = atomic_load_explicit(&sh->receivers[i].received, memory_order_acquire);
        if (n < min) {
            min = n;
            *slowest = i;
        }
    }
    return min;
}

int64_t bench_credit_wait(bench_shared *sh, unsigned receivers, uint64_t target, bench_pump_fn pump,
                          void *arg)
{
    unsigned spins = 0;

    for (;;) {
        unsigned slowest = 0;
        uint64_t min = credit_slowest(sh, receivers, &slowest);
        if (min >= target) {
            return (int64_t)min;
        }
        if (bench_aborted(sh)) {
            return -1;
        }
        if (pump != NULL && pump(arg) < 0) {
            return -1;
        }
        if (spins++ < CREDIT_SPIN_CHECKS) {
            continue;
        }

        bench_receiver *rc = &sh->receivers[slowest];
        atomic_store(&rc->wake_at, target);
        atomic_store(&rc->waiting, 1);
        uint32_t word = atomic_load(&rc->wake);
        /* Re-check after announcing: a report that came before `waiting`
         * was visible did not wake us, so it must be seen here. */
        if (atomic_load(&rc->received) < target) {
            futex_wait(&rc->wake, word, CREDIT_SLEEP_NS);
        }
        atomic_store(&rc->waiting, 0);
    }
}

void bench_credit_report(bench_receiver *rc, uint64_t received)
{
    /* seq_cst store, then load of `waiting`: the other half of the
     * handshake in bench_credit_wait(). */
    atomic_store(&rc->received, received);
    if (atomic_load(&rc->waiting) != 0 && received >= atomic_load(&rc->wake_at)) {
        atomic_fetch_add(&rc->wake, 1);
        futex_wake(&rc->wake);
    }
}

int bench_wait_ready(bench_shared *sh, unsigned count, const char *who, int timeout_ms)
{
    uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;

    while (atomic_load(&sh->ready) < count) {
        if (bench_aborted(sh)) {
            return -1;
        }
        if (bench_now_ns() >= deadline) {
            return bench_fail(sh, "the %s did not get ready within %d s; is the broker overloaded?",
                              who, timeout_ms / 1000);
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}
