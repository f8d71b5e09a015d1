/*
 * ledger_test_call.h — one request/reply round trip to a ledger's REQ socket,
 * shared by the ledger unit tests that talk NNG (ledger_server_test.c,
 * ledger_main_test.c): encode a batch, send it, wait for the reply, decode it.
 * Header-only (static inline); kept apart from ledger_test_fx.h, whose store
 * fixture needs no NNG.
 */
#ifndef LEDGER_TEST_CALL_H
#define LEDGER_TEST_CALL_H
#include <stdint.h>

#include <msgpack.h>
#include <nng/nng.h>

#include "proto.h"

/* Send a batch with nng_send flags send_flags (0 blocks; NNG_FLAG_NONBLOCK never
 * blocks, e.g. a REQ with no peer), then wait for the reply and decode it (free with
 * proto_rep_free). Returns 0, or -1 on any failure. */
static inline int ledger_test_call(nng_socket s, int send_flags, const proto_req *reqs, uint32_t n,
                                   proto_rep **reps, uint32_t *rn)
{
    msgpack_sbuffer sb;
    void *buf = NULL;
    size_t len = 0;
    msgpack_sbuffer_init(&sb);
    int rc = proto_req_encode(reqs, n, &sb) == CG_ERR_OK ? 0 : -1;
    if (rc == 0) {
        rc = nng_send(s, sb.data, sb.size, send_flags);
    }
    msgpack_sbuffer_destroy(&sb);
    if (rc == 0) {
        rc = nng_recv(s, &buf, &len, NNG_FLAG_ALLOC);
    }
    if (rc != 0) {
        return -1;
    }
    rc = proto_rep_decode(buf, len, reps, rn) == CG_ERR_OK ? 0 : -1;
    nng_free(buf, len);
    return rc;
}

#endif
