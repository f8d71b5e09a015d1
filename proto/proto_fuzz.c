/*
 * proto_fuzz.c — libFuzzer harness: arbitrary bytes into every decoder of the
 * ledger protocol (requests, replies, records, PUB messages); see
 * proto_fuzz_check.h for the property. Built with -DCAPGATE_FUZZ=ON under clang:
 *   ./proto_fuzz -max_total_time=60 CORPUS_DIR
 * A seed corpus: PROTO_TEST_SEED_DIR=CORPUS_DIR ./proto_test
 */
#include <stdint.h>
#include <stdlib.h>

#include "proto_fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!proto_fuzz_check(data, size)) {
        abort();
    }
    return 0;
}
