/*
 * outbox_test.c — the LMDB outbox (alerter_outbox.h): idempotent create, cursor
 * and records surviving a reopen, cursor + records committed together or not at
 * all, due ordering, updates moving index entries, the sweep, a tiny map, the
 * format-2 fields (org, type, channel, last attempt), the delivery-state listing,
 * and endpoints disabled by a 410.
 *
 * Each test uses its own scratch directory under /tmp, so ctest -j is safe.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alerter_outbox.h"
#include "cg_test.h"

static char scratch[256];

static const char *new_dir(const char *name)
{
    snprintf(scratch, sizeof scratch, "/tmp/alerter_outbox_test.%d.%s", (int)getpid(), name);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (system(cmd) != 0) {
        return NULL;
    }
    return scratch;
}

static void rm_dir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (system(cmd) != 0) {
        fprintf(stderr, "  cannot remove %s\n", scratch);
    }
}

static alerter_record *rec_new(const char *event, const char *url, int64_t next_ms)
{
    alerter_record *r = calloc(1, sizeof *r);
    snprintf(r->event_id, sizeof r->event_id, "%s", event);
    snprintf(r->url, sizeof r->url, "%s", url);
    snprintf(r->secret, sizeof r->secret, "whsec_c2VjcmV0");
    r->state = ALERTER_PENDING;
    r->created_ms = 1000;
    r->next_ms = next_ms;
    r->body_len = (uint32_t)snprintf(r->body, sizeof r->body, "{\"id\":\"%s\"}", event);
    alerter_record_key(r->event_id, r->url, r->key);
    return r;
}

static cg_err put_one(alerter_outbox *ob, const alerter_record *r, int *created)
{
    alerter_txn t;
    cg_err err = alerter_outbox_begin(ob, &t);
    if (err != CG_ERR_OK) {
        return err;
    }
    if ((err = alerter_outbox_create(&t, r, created)) != CG_ERR_OK) {
        alerter_outbox_abort(&t);
        return err;
    }
    return alerter_outbox_commit(&t);
}

CG_TEST(create_if_absent_is_idempotent)
{
    alerter_outbox *ob = NULL;
    CG_CHECK_EQ_INT(alerter_outbox_open(new_dir("idem"), 1 << 24, &ob), CG_ERR_OK);
    alerter_record *r = rec_new("evt_a", "https://a.example/h", 100);
    alerter_record *r2 = rec_new("evt_a", "https://a.example/h", 999);
    alerter_record *other = rec_new("evt_a", "https://b.example/h", 100);
    alerter_record *got = calloc(1, sizeof *got);
    int created = -1;
    CG_CHECK_EQ_INT(put_one(ob, r, &created), CG_ERR_OK);
    CG_CHECK_EQ_INT(created, 1);
    /* Same (event, url): untouched, whatever the new copy says. */
    CG_CHECK_EQ_INT(put_one(ob, r2, &created), CG_ERR_OK);
    CG_CHECK_EQ_INT(created, 0);
    CG_CHECK_EQ_INT(alerter_outbox_get(ob, r->key, got), CG_ERR_OK);
    CG_CHECK_EQ_INT(got->next_ms, 100);
    CG_CHECK_EQ_STR(got->url, "https://a.example/h");
    CG_CHECK_EQ_STR(got->secret, "whsec_c2VjcmV0");
    CG_CHECK_EQ_STR(got->event_id, "evt_a");
    CG_CHECK_EQ_INT(got->body_len, r->body_len);
    CG_CHECK(memcmp(got->body, r->body, r->body_len) == 0);
    /* Another endpoint of the same event is another record. */
    CG_CHECK_EQ_INT(put_one(ob, other, &created), CG_ERR_OK);
    CG_CHECK_EQ_INT(created, 1);
    uint64_t counts[3];
    CG_CHECK_EQ_INT(alerter_outbox_count(ob, counts), CG_ERR_OK);
    CG_CHECK_EQ_INT(counts[ALERTER_PENDING], 2);
    alerter_outbox_close(ob);
    free(r);
    free(r2);
    free(other);
    free(got);
    rm_dir();
}

CG_TEST(cursor_and_records_survive_reopen)
{
    const char *dir = new_dir("reopen");
    alerter_outbox *ob = NULL;
    uint64_t seq = 99;
    CG_CHECK_EQ_INT(alerter_outbox_open(dir, 1 << 24, &ob), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_cursor_get(ob, "s0", &seq), CG_ERR_OK);
    CG_CHECK_EQ_INT(seq, 0);
    alerter_record *r = rec_new("evt_b", "https://a.example/h", 5);
    alerter_txn t;
    int created = 0;
    CG_CHECK_EQ_INT(alerter_outbox_begin(ob, &t), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_create(&t, r, &created), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_cursor_set(&t, "s0", 41), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_cursor_set(&t, "s1", 7), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_commit(&t), CG_ERR_OK);
    /* An aborted transaction changes neither the cursor nor the records. */
    alerter_record *lost = rec_new("evt_c", "https://a.example/h", 5);
    CG_CHECK_EQ_INT(alerter_outbox_begin(ob, &t), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_create(&t, lost, &created), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_cursor_set(&t, "s0", 42), CG_ERR_OK);
    alerter_outbox_abort(&t);
    alerter_outbox_close(ob);

    CG_CHECK_EQ_INT(alerter_outbox_open(dir, 1 << 24, &ob), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_cursor_get(ob, "s0", &seq), CG_ERR_OK);
    CG_CHECK_EQ_INT(seq, 41);
    CG_CHECK_EQ_INT(alerter_outbox_cursor_get(ob, "s1", &seq), CG_ERR_OK);
    CG_CHECK_EQ_INT(seq, 7);
    alerter_record *got = calloc(1, sizeof *got);
    CG_CHECK_EQ_INT(alerter_outbox_get(ob, r->key, got), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_get(ob, lost->key, got), CG_ERR_NOTFOUND);
    alerter_outbox_close(ob);
    free(r);
    free(lost);
    free(got);
    rm_dir();
}

static int skip_b(const uint8_t key[ALERTER_KEY_BYTES], void *arg)
{
    return memcmp(key, arg, ALERTER_KEY_BYTES) == 0;
}

CG_TEST(due_ordering_and_update)
{
    alerter_outbox *ob = NULL;
    CG_CHECK_EQ_INT(alerter_outbox_open(new_dir("due"), 1 << 24, &ob), CG_ERR_OK);
    const char *ids[] = {"evt_late", "evt_first", "evt_mid", "evt_future"};
    const int64_t at[] = {300, 100, 200, 5000};
    alerter_record *rs[4];
    int created = 0;
    for (int i = 0; i < 4; i++) {
        rs[i] = rec_new(ids[i], "https://a.example/h", at[i]);
        CG_CHECK_EQ_INT(put_one(ob, rs[i], &created), CG_ERR_OK);
    }
    alerter_record *out = calloc(4, sizeof *out);
    uint32_t n = 0;
    int64_t next = 0;
    CG_CHECK_EQ_INT(alerter_outbox_due(ob, 1000, NULL, NULL, out, 4, &n, &next), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 3);
    CG_CHECK_EQ_STR(out[0].event_id, "evt_first");
    CG_CHECK_EQ_STR(out[1].event_id, "evt_mid");
    CG_CHECK_EQ_STR(out[2].event_id, "evt_late");
    CG_CHECK_EQ_INT(next, 5000);
    /* Bounded by cap: the rest is due now. */
    CG_CHECK_EQ_INT(alerter_outbox_due(ob, 1000, NULL, NULL, out, 2, &n, &next), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 2);
    CG_CHECK_EQ_INT(next, 1000);
    /* Skipped records (in flight) are passed over. */
    CG_CHECK_EQ_INT(alerter_outbox_due(ob, 1000, skip_b, rs[1]->key, out, 4, &n, &next), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 2);
    CG_CHECK_EQ_STR(out[0].event_id, "evt_mid");

    /* A failed attempt moves the record later; a delivered one leaves the due index. */
    alerter_txn t;
    CG_CHECK_EQ_INT(alerter_outbox_begin(ob, &t), CG_ERR_OK);
    rs[1]->attempts = 1;
    rs[1]->next_ms = 400;
    snprintf(rs[1]->last_error, sizeof rs[1]->last_error, "http 500");
    CG_CHECK_EQ_INT(alerter_outbox_update(&t, rs[1]), CG_ERR_OK);
    rs[2]->state = ALERTER_DELIVERED;
    rs[2]->next_ms = 900;
    CG_CHECK_EQ_INT(alerter_outbox_update(&t, rs[2]), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_commit(&t), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_due(ob, 1000, NULL, NULL, out, 4, &n, &next), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 2);
    CG_CHECK_EQ_STR(out[0].event_id, "evt_late");
    CG_CHECK_EQ_STR(out[1].event_id, "evt_first");
    CG_CHECK_EQ_INT(out[1].attempts, 1);
    CG_CHECK_EQ_STR(out[1].last_error, "http 500");
    int64_t first = 0;
    CG_CHECK_EQ_INT(alerter_outbox_next_due(ob, &first), CG_ERR_OK);
    CG_CHECK_EQ_INT(first, 300);
    uint64_t counts[3];
    CG_CHECK_EQ_INT(alerter_outbox_count(ob, counts), CG_ERR_OK);
    CG_CHECK_EQ_INT(counts[ALERTER_PENDING], 3);
    CG_CHECK_EQ_INT(counts[ALERTER_DELIVERED], 1);

    /* Update of a record that does not exist. */
    alerter_record *ghost = rec_new("evt_ghost", "https://a.example/h", 1);
    CG_CHECK_EQ_INT(alerter_outbox_begin(ob, &t), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_update(&t, ghost), CG_ERR_NOTFOUND);
    alerter_outbox_abort(&t);

    alerter_outbox_close(ob);
    for (int i = 0; i < 4; i++) {
        free(rs[i]);
    }
    free(ghost);
    free(out);
    rm_dir();
}

CG_TEST(sweep_removes_old_finished_only)
{
    alerter_outbox *ob = NULL;
    CG_CHECK_EQ_INT(alerter_outbox_open(new_dir("sweep"), 1 << 24, &ob), CG_ERR_OK);
    alerter_record *old = rec_new("evt_old", "https://a.example/h", 1);
    alerter_record *recent = rec_new("evt_recent", "https://a.example/h", 1);
    alerter_record *pending = rec_new("evt_pending", "https://a.example/h", 1);
    int created = 0;
    CG_CHECK_EQ_INT(put_one(ob, old, &created), CG_ERR_OK);
    CG_CHECK_EQ_INT(put_one(ob, recent, &created), CG_ERR_OK);
    CG_CHECK_EQ_INT(put_one(ob, pending, &created), CG_ERR_OK);
    alerter_txn t;
    CG_CHECK_EQ_INT(alerter_outbox_begin(ob, &t), CG_ERR_OK);
    old->state = ALERTER_FAILED;
    old->next_ms = 100;
    recent->state = ALERTER_DELIVERED;
    recent->next_ms = 10000;
    CG_CHECK_EQ_INT(alerter_outbox_update(&t, old), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_update(&t, recent), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_commit(&t), CG_ERR_OK);
    uint32_t removed = 0;
    CG_CHECK_EQ_INT(alerter_outbox_sweep(ob, 5000, 100, &removed), CG_ERR_OK);
    CG_CHECK_EQ_INT(removed, 1);
    alerter_record *got = calloc(1, sizeof *got);
    CG_CHECK_EQ_INT(alerter_outbox_get(ob, old->key, got), CG_ERR_NOTFOUND);
    CG_CHECK_EQ_INT(alerter_outbox_get(ob, recent->key, got), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_get(ob, pending->key, got), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_sweep(ob, 5000, 100, &removed), CG_ERR_OK);
    CG_CHECK_EQ_INT(removed, 0);
    alerter_outbox_close(ob);
    free(old);
    free(recent);
    free(pending);
    free(got);
    rm_dir();
}

CG_TEST(tiny_map_fills_with_an_error)
{
    alerter_outbox *ob = NULL;
    /* 64 KiB: a handful of pages. Filling it must be an error, never a crash. */
    CG_CHECK_EQ_INT(alerter_outbox_open(new_dir("tiny"), 64 << 10, &ob), CG_ERR_OK);
    cg_err err = CG_ERR_OK;
    int i = 0;
    for (; i < 10000 && err == CG_ERR_OK; i++) {
        char id[32];
        snprintf(id, sizeof id, "evt_%05d", i);
        alerter_record *r = rec_new(id, "https://a.example/h", i);
        r->body_len = ALERTER_BODY_MAX;
        memset(r->body, 'x', r->body_len);
        int created = 0;
        err = put_one(ob, r, &created);
        free(r);
    }
    CG_CHECK_EQ_INT(err, CG_ERR_MAP_FULL);
    CG_CHECK(i > 1);
    /* What was committed before is intact and readable. */
    uint64_t counts[3];
    CG_CHECK_EQ_INT(alerter_outbox_count(ob, counts), CG_ERR_OK);
    CG_CHECK_EQ_INT(counts[ALERTER_PENDING], (uint64_t)(i - 1));
    alerter_outbox_close(ob);
    rm_dir();
}

CG_TEST(record_key_layout)
{
    uint8_t a[ALERTER_KEY_BYTES], b[ALERTER_KEY_BYTES], c[ALERTER_KEY_BYTES];
    alerter_record_key("evt_x", "https://a.example/h", a);
    alerter_record_key("evt_x", "https://a.example/h", b);
    alerter_record_key("evt_x", "https://a.example/i", c);
    CG_CHECK(memcmp(a, b, sizeof a) == 0);
    CG_CHECK(memcmp(a, c, sizeof a) != 0);
    CG_CHECK(memcmp(a, "evt_x\0\0", 7) == 0);
}

static int count_visit(const alerter_record *r, void *arg)
{
    int *n = arg;
    (*n)++;
    return r->state == ALERTER_FAILED; /* stop at the first failed one */
}

CG_TEST(format2_fields_list_and_pending)
{
    alerter_outbox *ob = NULL;
    CG_CHECK_EQ_INT(alerter_outbox_open(new_dir("fmt2"), 1 << 24, &ob), CG_ERR_OK);
    alerter_record *a = rec_new("evt_a", "mailto:ops@x.test", 10);
    alerter_record *b = rec_new("evt_b", "https://h.example/x", 20);
    alerter_record *got = calloc(1, sizeof *got);
    snprintf(a->org, sizeof a->org, "acme");
    a->type = PROTO_EVT_TOKEN_REACHED;
    a->channel = ALERTER_CH_EMAIL;
    int created = 0;
    CG_CHECK_EQ_INT(put_one(ob, a, &created), CG_ERR_OK);
    CG_CHECK_EQ_INT(put_one(ob, b, &created), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_get(ob, a->key, got), CG_ERR_OK);
    CG_CHECK_EQ_STR(got->org, "acme");
    CG_CHECK_EQ_INT(got->type, PROTO_EVT_TOKEN_REACHED);
    CG_CHECK_EQ_INT(got->channel, ALERTER_CH_EMAIL);
    uint64_t pending = 0;
    CG_CHECK_EQ_INT(alerter_outbox_pending(ob, &pending), CG_ERR_OK);
    CG_CHECK_EQ_INT(pending, 2);
    /* b fails: listing walks pending (a) then finished (b), and stops when told. */
    alerter_txn t;
    b->state = ALERTER_FAILED;
    b->last_ms = 30;
    b->next_ms = 30;
    CG_CHECK_EQ_INT(alerter_outbox_begin(ob, &t), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_update(&t, b), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_commit(&t), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_pending(ob, &pending), CG_ERR_OK);
    CG_CHECK_EQ_INT(pending, 1);
    int n = 0;
    CG_CHECK_EQ_INT(alerter_outbox_list(ob, -1, 100, count_visit, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 2);
    n = 0;
    CG_CHECK_EQ_INT(alerter_outbox_list(ob, ALERTER_PENDING, 100, count_visit, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 1);
    n = 0;
    CG_CHECK_EQ_INT(alerter_outbox_list(ob, -1, 1, count_visit, &n), CG_ERR_OK);
    CG_CHECK_EQ_INT(n, 1); /* bounded by max */
    CG_CHECK_EQ_INT(alerter_outbox_get(ob, b->key, got), CG_ERR_OK);
    CG_CHECK_EQ_INT(got->last_ms, 30);
    free(a);
    free(b);
    free(got);
    alerter_outbox_close(ob);
    rm_dir();
}

static int ep_visit(const alerter_endpoint *e, void *arg)
{
    *(alerter_endpoint *)arg = *e;
    return 0;
}

CG_TEST(endpoint_disable_persists_and_enables)
{
    alerter_outbox *ob = NULL;
    const char *dir = new_dir("ep");
    const char *url = "https://h.example/gone";
    CG_CHECK_EQ_INT(alerter_outbox_open(dir, 1 << 24, &ob), CG_ERR_OK);
    alerter_txn t;
    CG_CHECK_EQ_INT(alerter_outbox_begin(ob, &t), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_endpoint_seen(&t, "acme", url), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_commit(&t), CG_ERR_OK);
    int64_t dis = -1;
    CG_CHECK_EQ_INT(alerter_outbox_endpoint_state(ob, url, &dis), CG_ERR_OK);
    CG_CHECK_EQ_INT(dis, 0);
    CG_CHECK_EQ_INT(alerter_outbox_begin(ob, &t), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_endpoint_disable(&t, "acme", url, 5000), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_endpoint_disable(&t, "acme", url, 9000), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_endpoint_seen(&t, "acme", url), CG_ERR_OK); /* keeps it */
    CG_CHECK_EQ_INT(alerter_outbox_commit(&t), CG_ERR_OK);
    alerter_outbox_close(ob);
    CG_CHECK_EQ_INT(alerter_outbox_open(dir, 1 << 24, &ob), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_endpoint_state(ob, url, &dis), CG_ERR_OK);
    CG_CHECK_EQ_INT(dis, 5000); /* the first 410's time, after a reopen */
    alerter_endpoint e;
    memset(&e, 0, sizeof e);
    CG_CHECK_EQ_INT(alerter_outbox_endpoints(ob, ep_visit, &e), CG_ERR_OK);
    CG_CHECK_EQ_STR(e.url, url);
    CG_CHECK_EQ_STR(e.org, "acme");
    CG_CHECK_EQ_INT(alerter_outbox_endpoint_enable(ob, e.id), CG_ERR_OK);
    CG_CHECK_EQ_INT(alerter_outbox_endpoint_state(ob, url, &dis), CG_ERR_OK);
    CG_CHECK_EQ_INT(dis, 0);
    CG_CHECK_EQ_INT(alerter_outbox_endpoint_enable(ob, e.id ^ 1), CG_ERR_NOTFOUND);
    alerter_outbox_close(ob);
    rm_dir();
}

int main(void)
{
    return CG_TEST_RUN(format2_fields_list_and_pending, endpoint_disable_persists_and_enables,
                       create_if_absent_is_idempotent, cursor_and_records_survive_reopen,
                       due_ordering_and_update, sweep_removes_old_finished_only,
                       tiny_map_fills_with_an_error, record_key_layout);
}
