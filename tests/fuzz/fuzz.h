/*
 * fuzz.h - what the fuzz targets share.
 *
 * Each fuzz_<name>.c defines LLVMFuzzerTestOneInput(). Built with clang and
 * -fsanitize=fuzzer (tests/fuzz/meson.build) it is a libFuzzer target; built
 * with any compiler and replay.c it is a plain program that runs every file
 * of a corpus directory through the same function, so the committed corpus
 * is a regression test of the normal `meson test` run.
 *
 * Invariants are checked with FUZZ_CHECK, not assert(): they must hold in
 * every build type, and a broken one must abort so that libFuzzer keeps the
 * input and the replay fails.
 */
#ifndef SOCKBUS_FUZZ_H
#define SOCKBUS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif /* SOCKBUS_FUZZ_H */
