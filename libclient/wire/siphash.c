/*
 * siphash.c - a SipHash key from the kernel (see siphash.h; the hash
 * itself is all inline there).
 *
 * getrandom() without flags blocks only until the kernel's pool is first
 * seeded, at boot, and returns up to 256 bytes whole; the loop is for a
 * signal arriving meanwhile, and for the letter of its contract.
 */
#include "siphash.h"

#include <errno.h>
#include <sys/random.h>

int siphash_key_random(uint8_t key[SIPHASH_KEY_SIZE])
{
    size_t got = 0;
    while (got < SIPHASH_KEY_SIZE) {
        ssize_t n = getrandom(key + got, SIPHASH_KEY_SIZE - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        got += (size_t)n;
    }
    return 0;
}
