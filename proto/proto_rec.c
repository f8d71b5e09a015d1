/*
 * proto_rec.c — the record codecs of the ledger protocol (limits, IP networks,
 * orgs, keys, groups, customer overrides, usage, events, limit states,
 * refusals, usage totals) and the SPEC names of its enums.
 *
 * The same codecs serve network messages and LMDB values, so a record read
 * back from disk is checked exactly like one from a peer. Layouts are listed
 * in proto.c's header comment.
 *
 * Invariant: each record has one validity predicate (*_ok below) covering the
 * bounds documented in proto.h. Writers assert it (a programmer error to
 * encode an invalid record); readers apply it after decoding and answer
 * CG_ERR_PROTO. So whatever an encoder accepts, its decoder accepts, and a
 * decoded record always satisfies its documented bounds.
 */
#include "proto_wire.h"

#include <assert.h>
#include <string.h>

#define ORG_ARITY 8
#define KEY_ARITY 18
#define KEY_ARITY_V1 15 /* before rotation (issue 5): read as never rotated */
#define GROUP_ARITY 7
#define CUSTOMER_ARITY 4
/* Org, key, group and customer records carry one more element, their revision, only when
 * it is non-zero; without it (records written before revisions) they read as revision 0. */
#define REV_ELEMS(rev) ((rev) != 0 ? 1u : 0u)
#define LIMIT_ARITY 7
#define WEBHOOK_ARITY 2
#define CIDR_ARITY 3
#define USAGE_ARITY 14
#define EVENT_ARITY 16
#define STATE_ARITY 10
#define REFUSAL_ARITY 9
#define AMOUNTS_ARITY 3
#define TOTALS_ARITY 4
#define HASH_BYTES 32
#define CIDR_ADDR_BYTES 16 /* sizeof(cg_cidr.addr): IPv4 in the first 4, the rest zero */
#define CIDR_V4_BYTES 4
#define CIDR_V4_BITS 32
#define CIDR_V6_BITS 128
#define CIDR_MAPPED_BITS 96 /* ::ffff:0:0/96, stored as IPv4 instead (cg_cidr.c) */
/* proto_limit_natural_id: field positions and the sliding length's cap. */
#define NATURAL_METRIC_SHIFT 28
#define NATURAL_KIND_SHIFT 25
#define NATURAL_SLIDING_MAX ((UINT32_C(1) << NATURAL_KIND_SHIFT) - 1)

/* ---- validity ---- */

bool proto_window_ok(cg_window w)
{
    if (w.kind == CG_WIN_SLIDING) {
        return w.sliding_s >= 1 && w.sliding_s <= CG_WINDOW_SLIDING_MAX_S;
    }
    return w.kind < CG_WIN_SLIDING && w.sliding_s == 0;
}

/* Only a sliding window carries its length; others are written (and must be read) as 0. */
static uint32_t window_len_s(cg_window w)
{
    return w.kind == CG_WIN_SLIDING ? w.sliding_s : 0;
}

static bool limit_ok(const proto_limit *l)
{
    cg_window w = {l->window.kind, window_len_s(l->window)};
    if (l->id == 0 || l->metric >= PROTO_METRIC_COUNT_ || l->action > PROTO_ACTION_WARN ||
        !proto_window_ok(w) || l->warn_n > PROTO_WARN_MAX) {
        return false;
    }
    for (uint32_t i = 0; i < l->warn_n; i++) {
        uint32_t prev = i == 0 ? 0 : l->warn_bp[i - 1];
        if (l->warn_bp[i] <= prev || l->warn_bp[i] > PROTO_BP_MAX) {
            return false;
        }
    }
    return true;
}

/* n limits, each valid, with distinct ids (ids name the counters of their scope). */
static bool limits_ok(const proto_limit *l, uint32_t n)
{
    if (n > PROTO_LIMITS_MAX) {
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!limit_ok(&l[i])) {
            return false;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (l[j].id == l[i].id) {
                return false;
            }
        }
    }
    return true;
}

static bool anchor_ok(uint8_t day)
{
    return day >= PROTO_ANCHOR_MIN && day <= PROTO_ANCHOR_MAX;
}

/* Customer limits (org defaults, overrides, inline defaults): ids are the natural ids. */
static bool natural_limits_ok(const proto_limit *l, uint32_t n)
{
    if (!limits_ok(l, n)) {
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (l[i].id != proto_limit_natural_id(l[i].metric, l[i].window)) {
            return false;
        }
    }
    return true;
}

static bool low_budget_ok(uint8_t v)
{
    return v <= PROTO_LOW_BUDGET_CLAMP;
}

/* allowed_models: at most PROTO_MODELS_MAX non-empty names. */
static bool models_ok(const char (*models)[PROTO_MODEL_MAX + 1], uint32_t n)
{
    if (n > PROTO_MODELS_MAX) {
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (models[i][0] == '\0') {
            return false;
        }
    }
    return true;
}

/* The cg_cidr invariant: family 4 or 6, prefix within its width, bits past it zero, and an
 * IPv4-mapped IPv6 network stored as IPv4 (so it can match a normalised address). */
static bool cidr_ok(const cg_cidr *c)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    unsigned bits = c->family == 4 ? CIDR_V4_BITS : CIDR_V6_BITS;
    if ((c->family != 4 && c->family != 6) || c->prefix > bits) {
        return false;
    }
    if (c->family == 6 && c->prefix >= CIDR_MAPPED_BITS &&
        memcmp(c->addr, mapped, sizeof(mapped)) == 0) {
        return false;
    }
    for (unsigned i = c->prefix / 8; i < CIDR_ADDR_BYTES; i++) {
        unsigned keep = i == c->prefix / 8 ? (0xff00u >> (c->prefix % 8)) & 0xffu : 0;
        if ((c->addr[i] & ~keep & 0xffu) != 0) {
            return false;
        }
    }
    return true;
}

static bool cidrs_ok(const cg_cidr *c, uint32_t n)
{
    if (n > PROTO_CIDRS_MAX) {
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!cidr_ok(&c[i])) {
            return false;
        }
    }
    return true;
}

bool proto_email_ok(const char *addr)
{
    size_t n = strnlen(addr, PROTO_EMAIL_MAX + 1);
    const char *at = strchr(addr, '@');
    if (n < 3 || n > PROTO_EMAIL_MAX || at == NULL || at == addr || at[1] == '\0' ||
        strchr(at + 1, '@') != NULL) {
        return false;
    }
    for (const char *c = addr; *c != '\0'; c++) {
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f ||
            strchr("\"(),:;<>[]\\", *c) != NULL) {
            return false;
        }
    }
    return true;
}

static bool emails_ok(const char (*e)[PROTO_EMAIL_MAX + 1], uint8_t n)
{
    if (n > PROTO_EMAILS_MAX) {
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!proto_email_ok(e[i])) {
            return false;
        }
    }
    return true;
}

static bool org_ok(const proto_org *o)
{
    return anchor_ok(o->billing_anchor_day) && limits_ok(o->limits, o->limit_n) &&
           o->webhook_n <= PROTO_WEBHOOKS_MAX &&
           natural_limits_ok(o->customer_limits, o->customer_limit_n) &&
           low_budget_ok(o->on_low_budget) && emails_ok(o->emails, o->email_n);
}

static bool key_ok(const proto_key *k)
{
    return anchor_ok(k->billing_anchor_day) && limits_ok(k->limits, k->limit_n) &&
           models_ok(k->models, k->model_n) && cidrs_ok(k->ip_allow, k->ip_allow_n) &&
           cidrs_ok(k->ip_deny, k->ip_deny_n) && k->max_tokens_per_request >= 0 &&
           low_budget_ok(k->on_low_budget) && k->rotated_ms >= 0 && k->prev_expires_ms >= 0;
}

static bool group_ok(const proto_group *g)
{
    return anchor_ok(g->billing_anchor_day) && models_ok(g->models, g->model_n) &&
           limits_ok(g->limits, g->limit_n);
}

static bool state_ok(const proto_limit_state *s)
{
    cg_window w = {s->window.kind, window_len_s(s->window)};
    return s->metric < PROTO_METRIC_COUNT_ && proto_window_ok(w) && s->action <= PROTO_ACTION_WARN;
}

static bool refusal_ok(const proto_refusal *r)
{
    cg_window w = {r->window.kind, window_len_s(r->window)};
    return r->metric < PROTO_METRIC_COUNT_ && proto_window_ok(w) && r->retry_after_ms >= 0;
}

static bool event_ok(const proto_event *e)
{
    cg_window w = {e->window.kind, window_len_s(e->window)};
    return e->metric < PROTO_METRIC_COUNT_ && e->scope <= PROTO_SCOPE_ORG &&
           e->type >= PROTO_EVT_SPEND_WARNING && e->type <= PROTO_EVT_REQUEST_REACHED &&
           (e->type - 1) / 2 == e->metric && proto_window_ok(w) && e->threshold_bp >= 1 &&
           e->threshold_bp <= PROTO_BP_MAX;
}

/* ---- limits and windows ---- */

static void wr_window(proto_wr *w, cg_window win)
{
    proto_wr_u64(w, win.kind);
    proto_wr_u64(w, window_len_s(win));
}

static cg_err rd_window(proto_rd *rd, cg_window *win)
{
    PROTO_TRY(proto_rd_u8(rd, CG_WIN_SLIDING, &win->kind));
    PROTO_TRY(proto_rd_u32(rd, CG_WINDOW_SLIDING_MAX_S, &win->sliding_s));
    return proto_window_ok(*win) ? CG_ERR_OK : CG_ERR_PROTO;
}

static void wr_limits(proto_wr *w, const proto_limit *ls, uint8_t n)
{
    assert(limits_ok(ls, n));
    proto_wr_array(w, n);
    for (uint32_t i = 0; i < n; i++) {
        const proto_limit *l = &ls[i];
        proto_wr_array(w, LIMIT_ARITY);
        proto_wr_u64(w, l->id);
        proto_wr_u64(w, l->metric);
        wr_window(w, l->window);
        proto_wr_i64(w, l->max);
        proto_wr_u64(w, l->action);
        proto_wr_array(w, l->warn_n);
        for (uint32_t j = 0; j < l->warn_n; j++) {
            proto_wr_u64(w, l->warn_bp[j]);
        }
    }
}

static cg_err rd_limit(proto_rd *rd, proto_limit *l)
{
    uint32_t n;
    PROTO_TRY(proto_rd_array_n(rd, LIMIT_ARITY));
    PROTO_TRY(proto_rd_u32(rd, UINT32_MAX, &l->id));
    PROTO_TRY(proto_rd_u8(rd, PROTO_METRIC_COUNT_ - 1, &l->metric));
    PROTO_TRY(rd_window(rd, &l->window));
    PROTO_TRY(proto_rd_i64(rd, &l->max));
    PROTO_TRY(proto_rd_u8(rd, PROTO_ACTION_WARN, &l->action));
    PROTO_TRY(proto_rd_array(rd, PROTO_WARN_MAX, &n));
    l->warn_n = (uint8_t)n;
    for (uint32_t j = 0; j < n; j++) {
        PROTO_TRY(proto_rd_u16(rd, PROTO_BP_MAX, &l->warn_bp[j]));
    }
    return CG_ERR_OK;
}

static cg_err rd_limits(proto_rd *rd, proto_limit *ls, uint8_t *n_out)
{
    uint32_t n;
    PROTO_TRY(proto_rd_array(rd, PROTO_LIMITS_MAX, &n));
    for (uint32_t i = 0; i < n; i++) {
        PROTO_TRY(rd_limit(rd, &ls[i]));
    }
    if (!limits_ok(ls, n)) {
        return CG_ERR_PROTO;
    }
    *n_out = (uint8_t)n;
    return CG_ERR_OK;
}

/* ---- lists inside records: models, networks ---- */

static void wr_models(proto_wr *w, const char (*models)[PROTO_MODEL_MAX + 1], uint8_t n)
{
    proto_wr_array(w, n);
    for (uint32_t i = 0; i < n; i++) {
        proto_wr_str(w, models[i], PROTO_MODEL_MAX);
    }
}

static cg_err rd_models(proto_rd *rd, char (*models)[PROTO_MODEL_MAX + 1], uint8_t *n_out)
{
    uint32_t n;
    PROTO_TRY(proto_rd_array(rd, PROTO_MODELS_MAX, &n));
    for (uint32_t i = 0; i < n; i++) {
        PROTO_TRY(proto_rd_str(rd, models[i], PROTO_MODEL_MAX));
    }
    *n_out = (uint8_t)n;
    return CG_ERR_OK;
}

static void wr_cidrs(proto_wr *w, const cg_cidr *c, uint8_t n)
{
    proto_wr_array(w, n);
    for (uint32_t i = 0; i < n; i++) {
        proto_wr_array(w, CIDR_ARITY);
        proto_wr_u64(w, c[i].family);
        proto_wr_u64(w, c[i].prefix);
        proto_wr_bin(w, c[i].addr, CIDR_ADDR_BYTES);
    }
}

static cg_err rd_cidrs(proto_rd *rd, cg_cidr *c, uint8_t *n_out)
{
    uint32_t n;
    PROTO_TRY(proto_rd_array(rd, PROTO_CIDRS_MAX, &n));
    for (uint32_t i = 0; i < n; i++) {
        PROTO_TRY(proto_rd_array_n(rd, CIDR_ARITY));
        PROTO_TRY(proto_rd_u8(rd, 6, &c[i].family));
        PROTO_TRY(proto_rd_u8(rd, CIDR_V6_BITS, &c[i].prefix));
        PROTO_TRY(proto_rd_bin(rd, c[i].addr, CIDR_ADDR_BYTES));
    }
    *n_out = (uint8_t)n;
    return CG_ERR_OK;
}

/* ---- orgs, keys, groups, customers ---- */

/* The trailing revision element (REV_ELEMS): written only when non-zero. */
static void wr_revision(proto_wr *w, uint64_t rev)
{
    if (rev != 0) {
        proto_wr_u64(w, rev);
    }
}

/* A record array of base elements, or base + 1 with a revision; *arity says which. */
static cg_err rd_arity_rev(proto_rd *rd, uint32_t base, uint32_t *arity)
{
    PROTO_TRY(proto_rd_array(rd, base + 1, arity));
    return *arity == base || *arity == base + 1 ? CG_ERR_OK : CG_ERR_PROTO;
}

/* The revision when present (never 0 on the wire: 0 is written by leaving it out). */
static cg_err rd_revision(proto_rd *rd, int present, uint64_t *rev)
{
    *rev = 0;
    if (!present) {
        return CG_ERR_OK;
    }
    PROTO_TRY(proto_rd_u64(rd, UINT64_MAX, rev));
    return *rev != 0 ? CG_ERR_OK : CG_ERR_PROTO;
}

/*
 * An org is ORG_ARITY elements, + 1 with a revision (REV_ELEMS), + 2 with emails: the
 * email list comes after the revision element, which is then always written (0 allowed
 * there, since it cannot be left out). The list is written only when non-empty, so an
 * org without emails is byte for byte what it was before.
 */
void proto_wr_org(proto_wr *w, const proto_org *o)
{
    assert(org_ok(o));
    proto_wr_array(w, o->email_n > 0 ? ORG_ARITY + 2 : ORG_ARITY + REV_ELEMS(o->revision));
    proto_wr_str(w, o->id, PROTO_ID_MAX);
    proto_wr_str(w, o->name, PROTO_NAME_MAX);
    proto_wr_u64(w, o->billing_anchor_day);
    proto_wr_i64(w, o->created_ms);
    wr_limits(w, o->limits, o->limit_n);
    proto_wr_array(w, o->webhook_n);
    for (uint32_t i = 0; i < o->webhook_n; i++) {
        proto_wr_array(w, WEBHOOK_ARITY);
        proto_wr_str(w, o->webhooks[i].url, PROTO_URL_MAX);
        proto_wr_str(w, o->webhooks[i].secret, PROTO_SECRET_MAX);
    }
    wr_limits(w, o->customer_limits, o->customer_limit_n);
    proto_wr_u64(w, o->on_low_budget);
    if (o->email_n == 0) {
        wr_revision(w, o->revision);
        return;
    }
    proto_wr_u64(w, o->revision);
    proto_wr_array(w, o->email_n);
    for (uint32_t i = 0; i < o->email_n; i++) {
        proto_wr_str(w, o->emails[i], PROTO_EMAIL_MAX);
    }
}

cg_err proto_rd_org(proto_rd *rd, proto_org *o)
{
    uint32_t n, arity;
    PROTO_TRY(proto_rd_array(rd, ORG_ARITY + 2, &arity));
    if (arity < ORG_ARITY) {
        return CG_ERR_PROTO;
    }
    PROTO_TRY(proto_rd_str(rd, o->id, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, o->name, PROTO_NAME_MAX));
    PROTO_TRY(proto_rd_u8(rd, PROTO_ANCHOR_MAX, &o->billing_anchor_day));
    PROTO_TRY(proto_rd_i64(rd, &o->created_ms));
    PROTO_TRY(rd_limits(rd, o->limits, &o->limit_n));
    PROTO_TRY(proto_rd_array(rd, PROTO_WEBHOOKS_MAX, &n));
    o->webhook_n = (uint8_t)n;
    for (uint32_t i = 0; i < n; i++) {
        PROTO_TRY(proto_rd_array_n(rd, WEBHOOK_ARITY));
        PROTO_TRY(proto_rd_str(rd, o->webhooks[i].url, PROTO_URL_MAX));
        PROTO_TRY(proto_rd_str(rd, o->webhooks[i].secret, PROTO_SECRET_MAX));
    }
    PROTO_TRY(rd_limits(rd, o->customer_limits, &o->customer_limit_n));
    PROTO_TRY(proto_rd_u8(rd, PROTO_LOW_BUDGET_CLAMP, &o->on_low_budget));
    o->email_n = 0;
    if (arity < ORG_ARITY + 2) {
        PROTO_TRY(rd_revision(rd, arity > ORG_ARITY, &o->revision));
        return org_ok(o) ? CG_ERR_OK : CG_ERR_PROTO;
    }
    PROTO_TRY(proto_rd_u64(rd, UINT64_MAX, &o->revision));
    PROTO_TRY(proto_rd_array(rd, PROTO_EMAILS_MAX, &n));
    if (n == 0) {
        return CG_ERR_PROTO; /* no emails: written without the list */
    }
    o->email_n = (uint8_t)n;
    for (uint32_t i = 0; i < n; i++) {
        PROTO_TRY(proto_rd_str(rd, o->emails[i], PROTO_EMAIL_MAX));
    }
    return org_ok(o) ? CG_ERR_OK : CG_ERR_PROTO;
}

void proto_wr_key(proto_wr *w, const proto_key *k)
{
    assert(key_ok(k));
    proto_wr_array(w, KEY_ARITY + REV_ELEMS(k->revision));
    proto_wr_str(w, k->id, PROTO_ID_MAX);
    proto_wr_str(w, k->org, PROTO_ID_MAX);
    proto_wr_str(w, k->name, PROTO_NAME_MAX);
    proto_wr_bin(w, k->hash, HASH_BYTES);
    proto_wr_i64(w, k->created_ms);
    proto_wr_i64(w, k->expires_ms);
    proto_wr_bool(w, k->revoked != 0);
    proto_wr_u64(w, k->billing_anchor_day);
    wr_limits(w, k->limits, k->limit_n);
    proto_wr_str(w, k->group, PROTO_ID_MAX);
    proto_wr_str(w, k->customer, PROTO_ID_MAX);
    wr_models(w, k->models, k->model_n);
    wr_cidrs(w, k->ip_allow, k->ip_allow_n);
    wr_cidrs(w, k->ip_deny, k->ip_deny_n);
    proto_wr_i64(w, k->max_tokens_per_request);
    proto_wr_u64(w, k->on_low_budget);
    proto_wr_i64(w, k->rotated_ms);
    proto_wr_bin(w, k->prev_hash, HASH_BYTES);
    proto_wr_i64(w, k->prev_expires_ms);
    wr_revision(w, k->revision);
}

cg_err proto_rd_key(proto_rd *rd, proto_key *k)
{
    uint32_t arity;
    PROTO_TRY(proto_rd_array(rd, KEY_ARITY + 1, &arity));
    if (arity != KEY_ARITY + 1 && arity != KEY_ARITY && arity != KEY_ARITY_V1) {
        return CG_ERR_PROTO;
    }
    PROTO_TRY(proto_rd_str(rd, k->id, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, k->org, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, k->name, PROTO_NAME_MAX));
    PROTO_TRY(proto_rd_bin(rd, k->hash, HASH_BYTES));
    PROTO_TRY(proto_rd_i64(rd, &k->created_ms));
    PROTO_TRY(proto_rd_i64(rd, &k->expires_ms));
    PROTO_TRY(proto_rd_bool(rd, &k->revoked));
    PROTO_TRY(proto_rd_u8(rd, PROTO_ANCHOR_MAX, &k->billing_anchor_day));
    PROTO_TRY(rd_limits(rd, k->limits, &k->limit_n));
    PROTO_TRY(proto_rd_str(rd, k->group, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, k->customer, PROTO_ID_MAX));
    PROTO_TRY(rd_models(rd, k->models, &k->model_n));
    PROTO_TRY(rd_cidrs(rd, k->ip_allow, &k->ip_allow_n));
    PROTO_TRY(rd_cidrs(rd, k->ip_deny, &k->ip_deny_n));
    PROTO_TRY(proto_rd_i64(rd, &k->max_tokens_per_request));
    PROTO_TRY(proto_rd_u8(rd, PROTO_LOW_BUDGET_CLAMP, &k->on_low_budget));
    if (arity == KEY_ARITY_V1) {
        k->rotated_ms = 0;
        memset(k->prev_hash, 0, HASH_BYTES);
        k->prev_expires_ms = 0;
    } else {
        PROTO_TRY(proto_rd_i64(rd, &k->rotated_ms));
        PROTO_TRY(proto_rd_bin(rd, k->prev_hash, HASH_BYTES));
        PROTO_TRY(proto_rd_i64(rd, &k->prev_expires_ms));
    }
    PROTO_TRY(rd_revision(rd, arity > KEY_ARITY, &k->revision));
    return key_ok(k) ? CG_ERR_OK : CG_ERR_PROTO;
}

void proto_wr_group(proto_wr *w, const proto_group *g)
{
    assert(group_ok(g));
    proto_wr_array(w, GROUP_ARITY + REV_ELEMS(g->revision));
    proto_wr_str(w, g->id, PROTO_ID_MAX);
    proto_wr_str(w, g->org, PROTO_ID_MAX);
    proto_wr_str(w, g->name, PROTO_NAME_MAX);
    proto_wr_i64(w, g->created_ms);
    proto_wr_u64(w, g->billing_anchor_day);
    wr_models(w, g->models, g->model_n);
    wr_limits(w, g->limits, g->limit_n);
    wr_revision(w, g->revision);
}

cg_err proto_rd_group(proto_rd *rd, proto_group *g)
{
    uint32_t arity;
    PROTO_TRY(rd_arity_rev(rd, GROUP_ARITY, &arity));
    PROTO_TRY(proto_rd_str(rd, g->id, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, g->org, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, g->name, PROTO_NAME_MAX));
    PROTO_TRY(proto_rd_i64(rd, &g->created_ms));
    PROTO_TRY(proto_rd_u8(rd, PROTO_ANCHOR_MAX, &g->billing_anchor_day));
    PROTO_TRY(rd_models(rd, g->models, &g->model_n));
    PROTO_TRY(rd_limits(rd, g->limits, &g->limit_n));
    PROTO_TRY(rd_revision(rd, arity > GROUP_ARITY, &g->revision));
    return group_ok(g) ? CG_ERR_OK : CG_ERR_PROTO;
}

void proto_wr_customer(proto_wr *w, const proto_customer *c)
{
    assert(natural_limits_ok(c->limits, c->limit_n));
    proto_wr_array(w, CUSTOMER_ARITY + REV_ELEMS(c->revision));
    proto_wr_str(w, c->id, PROTO_ID_MAX);
    proto_wr_str(w, c->org, PROTO_ID_MAX);
    proto_wr_i64(w, c->created_ms);
    wr_limits(w, c->limits, c->limit_n);
    wr_revision(w, c->revision);
}

cg_err proto_rd_customer(proto_rd *rd, proto_customer *c)
{
    uint32_t arity;
    PROTO_TRY(rd_arity_rev(rd, CUSTOMER_ARITY, &arity));
    PROTO_TRY(proto_rd_str(rd, c->id, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, c->org, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_i64(rd, &c->created_ms));
    PROTO_TRY(rd_limits(rd, c->limits, &c->limit_n));
    PROTO_TRY(rd_revision(rd, arity > CUSTOMER_ARITY, &c->revision));
    return natural_limits_ok(c->limits, c->limit_n) ? CG_ERR_OK : CG_ERR_PROTO;
}

void proto_wr_inline(proto_wr *w, uint8_t anchor_day, const proto_limit *ls, uint8_t n)
{
    assert(anchor_day == 0 ? n == 0 : anchor_ok(anchor_day));
    assert(natural_limits_ok(ls, n));
    proto_wr_u64(w, anchor_day);
    wr_limits(w, ls, n);
}

cg_err proto_rd_inline(proto_rd *rd, uint8_t *anchor_day, proto_limit *ls, uint8_t *n)
{
    PROTO_TRY(proto_rd_u8(rd, PROTO_ANCHOR_MAX, anchor_day));
    PROTO_TRY(rd_limits(rd, ls, n));
    if (*anchor_day == 0 ? *n != 0 : !anchor_ok(*anchor_day)) {
        return CG_ERR_PROTO;
    }
    return natural_limits_ok(ls, *n) ? CG_ERR_OK : CG_ERR_PROTO;
}

/* ---- usage, events ---- */

void proto_wr_usage(proto_wr *w, const proto_usage *u)
{
    proto_wr_array(w, USAGE_ARITY);
    proto_wr_i64(w, u->ts_ms);
    proto_wr_str(w, u->org, PROTO_ID_MAX);
    proto_wr_str(w, u->key_id, PROTO_ID_MAX);
    proto_wr_str(w, u->model, PROTO_MODEL_MAX);
    proto_wr_i64(w, u->prompt_tokens);
    proto_wr_i64(w, u->completion_tokens);
    proto_wr_i64(w, u->cost_nusd);
    proto_wr_i64(w, u->status);
    proto_wr_i64(w, u->latency_ms);
    proto_wr_bool(w, u->estimated != 0);
    proto_wr_str(w, u->group, PROTO_ID_MAX);
    proto_wr_str(w, u->customer, PROTO_ID_MAX);
    proto_wr_str(w, u->provider, PROTO_PROVIDER_MAX);
    proto_wr_str(w, u->request_id, PROTO_REQID_MAX);
}

cg_err proto_rd_usage(proto_rd *rd, proto_usage *u)
{
    PROTO_TRY(proto_rd_array_n(rd, USAGE_ARITY));
    PROTO_TRY(proto_rd_i64(rd, &u->ts_ms));
    PROTO_TRY(proto_rd_str(rd, u->org, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, u->key_id, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, u->model, PROTO_MODEL_MAX));
    PROTO_TRY(proto_rd_i64(rd, &u->prompt_tokens));
    PROTO_TRY(proto_rd_i64(rd, &u->completion_tokens));
    PROTO_TRY(proto_rd_i64(rd, &u->cost_nusd));
    PROTO_TRY(proto_rd_i32(rd, &u->status));
    PROTO_TRY(proto_rd_i32(rd, &u->latency_ms));
    PROTO_TRY(proto_rd_bool(rd, &u->estimated));
    PROTO_TRY(proto_rd_str(rd, u->group, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, u->customer, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_str(rd, u->provider, PROTO_PROVIDER_MAX));
    return proto_rd_str(rd, u->request_id, PROTO_REQID_MAX);
}

void proto_wr_event(proto_wr *w, const proto_event *e)
{
    assert(event_ok(e));
    proto_wr_array(w, EVENT_ARITY);
    proto_wr_u64(w, e->seq);
    proto_wr_str(w, e->id, PROTO_EVENT_ID_MAX);
    proto_wr_u64(w, e->type);
    proto_wr_i64(w, e->created_ms);
    proto_wr_str(w, e->org, PROTO_ID_MAX);
    proto_wr_u64(w, e->scope);
    proto_wr_str(w, e->scope_id, PROTO_ID_MAX);
    proto_wr_u64(w, e->limit_id);
    proto_wr_u64(w, e->metric);
    wr_window(w, e->window);
    proto_wr_i64(w, e->period_start_ms);
    proto_wr_i64(w, e->period_end_ms);
    proto_wr_u64(w, e->threshold_bp);
    proto_wr_i64(w, e->max);
    proto_wr_i64(w, e->used);
}

cg_err proto_rd_event(proto_rd *rd, proto_event *e)
{
    PROTO_TRY(proto_rd_array_n(rd, EVENT_ARITY));
    PROTO_TRY(proto_rd_u64(rd, UINT64_MAX, &e->seq));
    PROTO_TRY(proto_rd_str(rd, e->id, PROTO_EVENT_ID_MAX));
    PROTO_TRY(proto_rd_u8(rd, PROTO_EVT_REQUEST_REACHED, &e->type));
    PROTO_TRY(proto_rd_i64(rd, &e->created_ms));
    PROTO_TRY(proto_rd_str(rd, e->org, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_u8(rd, PROTO_SCOPE_ORG, &e->scope));
    PROTO_TRY(proto_rd_str(rd, e->scope_id, PROTO_ID_MAX));
    PROTO_TRY(proto_rd_u32(rd, UINT32_MAX, &e->limit_id));
    PROTO_TRY(proto_rd_u8(rd, PROTO_METRIC_COUNT_ - 1, &e->metric));
    PROTO_TRY(rd_window(rd, &e->window));
    PROTO_TRY(proto_rd_i64(rd, &e->period_start_ms));
    PROTO_TRY(proto_rd_i64(rd, &e->period_end_ms));
    PROTO_TRY(proto_rd_u16(rd, PROTO_BP_MAX, &e->threshold_bp));
    PROTO_TRY(proto_rd_i64(rd, &e->max));
    PROTO_TRY(proto_rd_i64(rd, &e->used));
    return event_ok(e) ? CG_ERR_OK : CG_ERR_PROTO;
}

/* ---- limit states, refusals, amounts, totals ---- */

void proto_wr_states(proto_wr *w, const proto_limit_state *s, uint8_t n)
{
    assert(n <= PROTO_LIMITS_MAX);
    proto_wr_array(w, n);
    for (uint32_t i = 0; i < n; i++) {
        assert(state_ok(&s[i]));
        proto_wr_array(w, STATE_ARITY);
        proto_wr_u64(w, s[i].limit_id);
        proto_wr_i64(w, s[i].used);
        proto_wr_i64(w, s[i].reserved);
        proto_wr_i64(w, s[i].period_start_ms);
        proto_wr_i64(w, s[i].period_end_ms);
        proto_wr_u64(w, s[i].metric);
        wr_window(w, s[i].window);
        proto_wr_i64(w, s[i].max);
        proto_wr_u64(w, s[i].action);
    }
}

static cg_err rd_state(proto_rd *rd, proto_limit_state *s)
{
    PROTO_TRY(proto_rd_array_n(rd, STATE_ARITY));
    PROTO_TRY(proto_rd_u32(rd, UINT32_MAX, &s->limit_id));
    PROTO_TRY(proto_rd_i64(rd, &s->used));
    PROTO_TRY(proto_rd_i64(rd, &s->reserved));
    PROTO_TRY(proto_rd_i64(rd, &s->period_start_ms));
    PROTO_TRY(proto_rd_i64(rd, &s->period_end_ms));
    PROTO_TRY(proto_rd_u8(rd, PROTO_METRIC_COUNT_ - 1, &s->metric));
    PROTO_TRY(rd_window(rd, &s->window));
    PROTO_TRY(proto_rd_i64(rd, &s->max));
    PROTO_TRY(proto_rd_u8(rd, PROTO_ACTION_WARN, &s->action));
    return state_ok(s) ? CG_ERR_OK : CG_ERR_PROTO;
}

cg_err proto_rd_states(proto_rd *rd, proto_limit_state *s, uint8_t *n_out)
{
    uint32_t n;
    PROTO_TRY(proto_rd_array(rd, PROTO_LIMITS_MAX, &n));
    for (uint32_t i = 0; i < n; i++) {
        PROTO_TRY(rd_state(rd, &s[i]));
    }
    *n_out = (uint8_t)n;
    return CG_ERR_OK;
}

void proto_wr_refusal(proto_wr *w, const proto_refusal *r)
{
    assert(refusal_ok(r));
    proto_wr_array(w, REFUSAL_ARITY);
    proto_wr_u64(w, r->limit_id);
    proto_wr_u64(w, r->metric);
    wr_window(w, r->window);
    proto_wr_i64(w, r->max);
    proto_wr_i64(w, r->used);
    proto_wr_i64(w, r->reserved);
    proto_wr_i64(w, r->resets_at_ms);
    proto_wr_i64(w, r->retry_after_ms);
}

cg_err proto_rd_refusal(proto_rd *rd, proto_refusal *r)
{
    PROTO_TRY(proto_rd_array_n(rd, REFUSAL_ARITY));
    PROTO_TRY(proto_rd_u32(rd, UINT32_MAX, &r->limit_id));
    PROTO_TRY(proto_rd_u8(rd, PROTO_METRIC_COUNT_ - 1, &r->metric));
    PROTO_TRY(rd_window(rd, &r->window));
    PROTO_TRY(proto_rd_i64(rd, &r->max));
    PROTO_TRY(proto_rd_i64(rd, &r->used));
    PROTO_TRY(proto_rd_i64(rd, &r->reserved));
    PROTO_TRY(proto_rd_i64(rd, &r->resets_at_ms));
    PROTO_TRY(proto_rd_i64(rd, &r->retry_after_ms));
    return refusal_ok(r) ? CG_ERR_OK : CG_ERR_PROTO;
}

void proto_wr_amounts(proto_wr *w, const proto_amounts *a)
{
    proto_wr_array(w, AMOUNTS_ARITY);
    proto_wr_i64(w, a->cost_nusd);
    proto_wr_i64(w, a->tokens);
    proto_wr_i64(w, a->requests);
}

cg_err proto_rd_amounts(proto_rd *rd, proto_amounts *a)
{
    PROTO_TRY(proto_rd_array_n(rd, AMOUNTS_ARITY));
    PROTO_TRY(proto_rd_i64(rd, &a->cost_nusd));
    PROTO_TRY(proto_rd_i64(rd, &a->tokens));
    return proto_rd_i64(rd, &a->requests);
}

void proto_wr_totals(proto_wr *w, const proto_usage_totals *t)
{
    proto_wr_array(w, TOTALS_ARITY);
    proto_wr_i64(w, t->requests);
    proto_wr_i64(w, t->prompt_tokens);
    proto_wr_i64(w, t->completion_tokens);
    proto_wr_i64(w, t->cost_nusd);
}

cg_err proto_rd_totals(proto_rd *rd, proto_usage_totals *t)
{
    PROTO_TRY(proto_rd_array_n(rd, TOTALS_ARITY));
    PROTO_TRY(proto_rd_i64(rd, &t->requests));
    PROTO_TRY(proto_rd_i64(rd, &t->prompt_tokens));
    PROTO_TRY(proto_rd_i64(rd, &t->completion_tokens));
    return proto_rd_i64(rd, &t->cost_nusd);
}

/* ---- names ---- */

static const char *const metric_names[] = {"cost", "tokens", "requests"};
static const char *const action_names[] = {"block", "warn"};
static const char *const scope_names[] = {"key", "group", "customer", "org"};
static const char *const event_names[] = {
    NULL,
    "spend_cap_warning_threshold_reached",
    "spend_cap_reached",
    "token_quota_warning_threshold_reached",
    "token_quota_reached",
    "request_quota_warning_threshold_reached",
    "request_quota_reached",
};
static const char *const op_names[] = {
    NULL,        "ping",         "auth",         "reserve",      "settle",        "release",
    "put_org",   "get_org",      "put_key",      "get_key",      "events_since",  "put_group",
    "get_group", "put_customer", "get_customer", "delete",       "usage_query",   "get_org_state",
    "list_keys", "put_pricing",  "list_pricing", "usage_series", "usage_records",
};
static const char *const low_budget_names[] = {"inherit", "reject", "clamp"};

#define NAME_AT(table, i) \
    ((i) >= 0 && (size_t)(i) < sizeof(table) / sizeof((table)[0]) ? (table)[i] : NULL)

static int name_find(const char *const *table, size_t n, const char *s)
{
    if (s == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (table[i] != NULL && strcmp(table[i], s) == 0) {
            return (int)i;
        }
    }
    return -1;
}

const char *proto_metric_name(int metric)
{
    return NAME_AT(metric_names, metric);
}

const char *proto_action_name(int action)
{
    return NAME_AT(action_names, action);
}

const char *proto_scope_name(int scope)
{
    return NAME_AT(scope_names, scope);
}

const char *proto_event_type_name(int type)
{
    return NAME_AT(event_names, type);
}

const char *proto_op_name(int op)
{
    return NAME_AT(op_names, op);
}

int proto_metric_parse(const char *s)
{
    return name_find(metric_names, sizeof(metric_names) / sizeof(metric_names[0]), s);
}

int proto_action_parse(const char *s)
{
    return name_find(action_names, sizeof(action_names) / sizeof(action_names[0]), s);
}

int proto_event_type_for(int metric, int reached)
{
    if (metric < 0 || metric >= PROTO_METRIC_COUNT_) {
        return -1;
    }
    return 1 + metric * 2 + (reached ? 1 : 0);
}

const char *proto_low_budget_name(int v)
{
    return NAME_AT(low_budget_names, v);
}

int proto_low_budget_parse(const char *s)
{
    return name_find(low_budget_names, sizeof(low_budget_names) / sizeof(low_budget_names[0]), s);
}

uint32_t proto_limit_natural_id(uint8_t metric, cg_window window)
{
    uint32_t len = window_len_s(window);
    if (len > NATURAL_SLIDING_MAX) {
        len = NATURAL_SLIDING_MAX;
    }
    return ((uint32_t)(metric + 1u) << NATURAL_METRIC_SHIFT) |
           ((uint32_t)window.kind << NATURAL_KIND_SHIFT) | len;
}
