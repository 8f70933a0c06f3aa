/*
 * test_units.c - unit tests of sizes in bytes as people write them
 * (libclient/wire/units.c): every spelling the broker's flags and config
 * file, the bridge and the bench accept, and the ones they must refuse,
 * overflow first.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "units.h"

#define SENTINEL 0x5a5a5a5a5a5a5a5aull

static int parse(const char *text, uint64_t *out)
{
    *out = SENTINEL;
    return units_parse_bytes(text, strlen(text), out);
}

Test(units, plain_numbers_are_bytes)
{
    uint64_t v;
    cr_assert_eq(parse("0", &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(parse("4096", &v), 0);
    cr_assert_eq(v, 4096);
    cr_assert_eq(parse("0010", &v), 0);
    cr_assert_eq(v, 10, "decimal, never octal");
    cr_assert_eq(parse("18446744073709551615", &v), 0);
    cr_assert_eq(v, UINT64_MAX);
}

Test(units, units_are_powers_of_1024_in_any_case_and_spelling)
{
    static const struct {
        const char *text;
        uint64_t bytes;
    } ok[] = {
        {"1k", 1024},
        {"64K", 65536},
        {"64kb", 65536},
        {"64KiB", 65536},
        {"64kib", 65536},
        {"64ki", 65536},
        {"16m", 16u << 20},
        {"16MiB", 16u << 20},
        {"16MB", 16u << 20},
        {"1g", 1u << 30},
        {"4GiB", 4ull << 30},
        {"0k", 0},
        {"512b", 512},
        {"512B", 512},
        {"17179869183g", 17179869183ull << 30}, /* the largest number of GiB */
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v;
        cr_assert_eq(parse(ok[i].text, &v), 0, "'%s' refused", ok[i].text);
        cr_assert_eq(v, ok[i].bytes, "'%s' read as %llu", ok[i].text, (unsigned long long)v);
    }
}

Test(units, anything_else_is_refused_and_out_is_left_alone)
{
    static const char *const bad[] = {
        "",     "k",   "-1",  "+1",  " 1", "1 ",  "1.5k",  "0x10", "1kk", "1kbb",
        "1ibk", "1bb", "1ib", "1bi", "1t", "1e3", "1kiB ", "12a",  "m16",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v;
        cr_assert_eq(parse(bad[i], &v), -EINVAL, "'%s' accepted", bad[i]);
        cr_assert_eq(v, SENTINEL, "'%s' wrote its output", bad[i]);
    }
    uint64_t v = SENTINEL;
    cr_assert_eq(units_parse_bytes(NULL, 3, &v), -EINVAL);
    cr_assert_eq(units_parse_bytes("64k", 0, &v), -EINVAL);
    cr_assert_eq(v, SENTINEL);
}

Test(units, only_the_given_length_is_read)
{
    uint64_t v;
    cr_assert_eq(units_parse_bytes("16m,64k", 3, &v), 0);
    cr_assert_eq(v, 16u << 20);
    cr_assert_eq(units_parse_bytes("16m,64k", 4, &v), -EINVAL);
}

Test(units, no_spelling_wraps_round_to_a_small_size)
{
    static const char *const big[] = {
        "18446744073709551616",       /* UINT64_MAX + 1 */
        "99999999999999999999999999", /* far past it */
        "18014398509481984k",         /* 2^54 KiB = 2^64 bytes */
        "17179869184g",               /* 2^34 GiB = 2^64 bytes */
        "18446744073709551615k",
    };
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        uint64_t v;
        cr_assert_eq(parse(big[i], &v), -ERANGE, "'%s'", big[i]);
        cr_assert_eq(v, SENTINEL, "'%s' wrote its output", big[i]);
    }
}
