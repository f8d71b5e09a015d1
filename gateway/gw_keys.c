/*
 * gw_keys.c — capgate API keys: generation, format check, hashing (gw_keys.h).
 *
 * Layout of a key (GW_KEY_LEN bytes, fixed):
 *   "cg-" | "k_" + 16 lowercase hex (the key id) | "-" | 43 base62 (secret) | 6 base62 (CRC32)
 * The secret encodes 32 bytes from RAND_bytes as one big-endian number in
 * base 62, left-padded with '0' (62^43 > 2^256, so 43 digits always suffice).
 * The checksum is zlib's CRC32 over the 65 bytes before it, also fixed-width
 * base 62 (62^6 > 2^32). CRC32 detects every error confined to 32 consecutive
 * bits, so any single mistyped character is refused by gw_key_parse without a
 * lookup. Only HMAC-SHA256(pepper, key) leaves this file.
 *
 * Invariants: pure functions, thread-safe. The only state is a per-thread HMAC
 * context keyed with the last pepper used (gw_key_hash runs on every proxied
 * request: the one-shot HMAC() fetches the algorithm and expands the key each
 * time); it is freed when its thread exits.
 */
#include "gw_keys.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <zlib.h>

#define GW_KEY_PREFIX "cg-"
#define GW_KEY_PREFIX_LEN 3
#define GW_KEY_ID_HEX 16                  /* hex digits after "k_" */
#define GW_KEY_ID_LEN (2 + GW_KEY_ID_HEX) /* "k_" + hex */
#define GW_KEY_SECRET_BYTES 32            /* random bytes in the secret */
#define GW_KEY_SECRET_DIGITS 43           /* base62 digits for 256 bits */
#define GW_KEY_SUM_DIGITS 6               /* base62 digits for 32 bits */
#define GW_KEY_SECRET_OFF (GW_KEY_PREFIX_LEN + GW_KEY_ID_LEN + 1)
#define GW_KEY_SUM_OFF (GW_KEY_SECRET_OFF + GW_KEY_SECRET_DIGITS)
#define GW_KEY_LEN (GW_KEY_SUM_OFF + GW_KEY_SUM_DIGITS) /* 71 */

_Static_assert(GW_KEY_LEN <= GW_KEY_MAX, "key layout exceeds GW_KEY_MAX");
_Static_assert(GW_KEY_ID_LEN <= GW_KEY_ID_MAX, "key id exceeds GW_KEY_ID_MAX");

static const char gw_b62_digits[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* Value of a base62 digit, or -1. */
static int gw_b62_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'Z') {
        return c - 'A' + 10;
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 36;
    }
    return -1;
}

/*
 * Write the big-endian number in buf[0..n) as exactly `digits` base62 digits
 * (most significant first). buf is consumed (divided down to zero).
 * The caller guarantees 62^digits exceeds the number.
 */
static void gw_b62_encode(uint8_t *buf, size_t n, char *out, size_t digits)
{
    for (size_t d = digits; d > 0; d--) {
        uint32_t rem = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t cur = (rem << 8) | buf[i];
            buf[i] = (uint8_t)(cur / 62);
            rem = cur % 62;
        }
        out[d - 1] = gw_b62_digits[rem];
    }
}

static uint32_t gw_key_crc(const char *s, size_t len)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    return (uint32_t)crc32(crc, (const Bytef *)s, (uInt)len);
}

static void gw_key_sum_encode(uint32_t crc, char out[GW_KEY_SUM_DIGITS])
{
    uint8_t be[4] = {(uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8), (uint8_t)crc};
    gw_b62_encode(be, sizeof(be), out, GW_KEY_SUM_DIGITS);
}

cg_err gw_key_generate(char *key_out, size_t keycap, char *id_out, size_t idcap)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t idbytes[GW_KEY_ID_HEX / 2];
    uint8_t secret[GW_KEY_SECRET_BYTES];
    char key[GW_KEY_LEN + 1];

    assert(key_out != NULL && keycap >= GW_KEY_MAX + 1);
    assert(id_out != NULL && idcap >= GW_KEY_ID_MAX + 1);
    if (RAND_bytes(idbytes, sizeof(idbytes)) != 1 || RAND_bytes(secret, sizeof(secret)) != 1) {
        return CG_ERR_INTERNAL;
    }
    memcpy(key, GW_KEY_PREFIX "k_", GW_KEY_PREFIX_LEN + 2);
    for (size_t i = 0; i < sizeof(idbytes); i++) {
        key[GW_KEY_PREFIX_LEN + 2 + 2 * i] = hex[idbytes[i] >> 4];
        key[GW_KEY_PREFIX_LEN + 3 + 2 * i] = hex[idbytes[i] & 0xf];
    }
    key[GW_KEY_SECRET_OFF - 1] = '-';
    gw_b62_encode(secret, sizeof(secret), key + GW_KEY_SECRET_OFF, GW_KEY_SECRET_DIGITS);
    gw_key_sum_encode(gw_key_crc(key, GW_KEY_SUM_OFF), key + GW_KEY_SUM_OFF);
    key[GW_KEY_LEN] = '\0';

    memcpy(key_out, key, GW_KEY_LEN + 1);
    memcpy(id_out, key + GW_KEY_PREFIX_LEN, GW_KEY_ID_LEN);
    id_out[GW_KEY_ID_LEN] = '\0';
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(key, sizeof(key));
    return CG_ERR_OK;
}

cg_err gw_key_generate_for(const char *id, char *key_out, size_t keycap)
{
    uint8_t secret[GW_KEY_SECRET_BYTES];
    char key[GW_KEY_LEN + 1];

    assert(id != NULL && key_out != NULL && keycap >= GW_KEY_MAX + 1);
    if (strlen(id) != GW_KEY_ID_LEN || strncmp(id, "k_", 2) != 0 ||
        strspn(id + 2, "0123456789abcdef") != GW_KEY_ID_HEX) {
        return CG_ERR_INVAL;
    }
    if (RAND_bytes(secret, sizeof(secret)) != 1) {
        return CG_ERR_INTERNAL;
    }
    memcpy(key, GW_KEY_PREFIX, GW_KEY_PREFIX_LEN);
    memcpy(key + GW_KEY_PREFIX_LEN, id, GW_KEY_ID_LEN);
    key[GW_KEY_SECRET_OFF - 1] = '-';
    gw_b62_encode(secret, sizeof(secret), key + GW_KEY_SECRET_OFF, GW_KEY_SECRET_DIGITS);
    gw_key_sum_encode(gw_key_crc(key, GW_KEY_SUM_OFF), key + GW_KEY_SUM_OFF);
    key[GW_KEY_LEN] = '\0';
    memcpy(key_out, key, GW_KEY_LEN + 1);
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(key, sizeof(key));
    return CG_ERR_OK;
}

/* Character classes of the fixed layout; the checksum is verified separately. */
static int gw_key_layout_ok(const char *key)
{
    if (memcmp(key, GW_KEY_PREFIX "k_", GW_KEY_PREFIX_LEN + 2) != 0) {
        return 0;
    }
    for (size_t i = GW_KEY_PREFIX_LEN + 2; i < GW_KEY_SECRET_OFF - 1; i++) {
        char c = key[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    if (key[GW_KEY_SECRET_OFF - 1] != '-') {
        return 0;
    }
    for (size_t i = GW_KEY_SECRET_OFF; i < GW_KEY_LEN; i++) {
        if (gw_b62_value(key[i]) < 0) {
            return 0;
        }
    }
    return 1;
}

cg_err gw_key_parse(const char *key, size_t len, char *id_out, size_t idcap)
{
    char sum[GW_KEY_SUM_DIGITS];

    assert(id_out != NULL && idcap >= GW_KEY_ID_LEN + 1);
    if (key == NULL || len != GW_KEY_LEN || !gw_key_layout_ok(key)) {
        return CG_ERR_UNAUTHORIZED;
    }
    gw_key_sum_encode(gw_key_crc(key, GW_KEY_SUM_OFF), sum);
    if (memcmp(sum, key + GW_KEY_SUM_OFF, GW_KEY_SUM_DIGITS) != 0) {
        return CG_ERR_UNAUTHORIZED;
    }
    memcpy(id_out, key + GW_KEY_PREFIX_LEN, GW_KEY_ID_LEN);
    id_out[GW_KEY_ID_LEN] = '\0';
    return CG_ERR_OK;
}

/*
 * Keys hashed lately by this thread, with their HMAC: a client sends the same key
 * request after request, and the HMAC was ~3% of the gateway's CPU per request
 * (perf, bench/GATEWAY_NOTES.md). Direct-mapped by an FNV-1a of the key; a hit is
 * confirmed by comparing the whole key in constant time (CRYPTO_memcmp), so the
 * cache neither weakens the check nor leaks by timing how much of a guess matched.
 * Wiped when the thread ends or the pepper changes.
 */
#define GW_KEY_CACHE 64

typedef struct gw_key_slot {
    uint8_t used;
    uint8_t mac[32];
    char key[GW_KEY_LEN];
} gw_key_slot;

/* The calling thread's HMAC-SHA256 context, the pepper it is keyed with, its key cache. */
typedef struct gw_hmac_tls {
    EVP_MAC_CTX *ctx;
    gw_key_slot slots[GW_KEY_CACHE];
    size_t pepper_len;
    char pepper[];
} gw_hmac_tls;

static pthread_key_t gw_hmac_key;
static pthread_once_t gw_hmac_once = PTHREAD_ONCE_INIT;
static int gw_hmac_key_ok;

static void gw_hmac_tls_free(void *v)
{
    gw_hmac_tls *t = v;
    EVP_MAC_CTX_free(t->ctx);
    OPENSSL_cleanse(t->pepper, t->pepper_len);
    OPENSSL_cleanse(t->slots, sizeof(t->slots));
    free(t);
}

static void gw_hmac_key_make(void)
{
    gw_hmac_key_ok = pthread_key_create(&gw_hmac_key, gw_hmac_tls_free) == 0;
}

/* This thread's state for pepper (context keyed with it, key cache); NULL if none
 * could be made (the caller falls back to the one-shot HMAC()). */
static gw_hmac_tls *gw_hmac_tls_get(const char *pepper, size_t plen)
{
    pthread_once(&gw_hmac_once, gw_hmac_key_make);
    if (!gw_hmac_key_ok) {
        return NULL;
    }
    gw_hmac_tls *t = pthread_getspecific(gw_hmac_key);
    if (t != NULL && t->pepper_len == plen && memcmp(t->pepper, pepper, plen) == 0) {
        return t;
    }
    gw_hmac_tls *n = calloc(1, sizeof(*n) + plen);
    EVP_MAC *mac = n != NULL ? EVP_MAC_fetch(NULL, "HMAC", NULL) : NULL;
    EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (ctx == NULL || EVP_MAC_init(ctx, (const unsigned char *)pepper, plen, params) != 1 ||
        pthread_setspecific(gw_hmac_key, n) != 0) {
        EVP_MAC_CTX_free(ctx);
        free(n);
        return NULL;
    }
    n->ctx = ctx;
    n->pepper_len = plen;
    memcpy(n->pepper, pepper, plen);
    if (t != NULL) {
        gw_hmac_tls_free(t);
    }
    return n;
}

static unsigned gw_key_slot_of(const char *key)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < GW_KEY_LEN; i++) {
        h = (h ^ (unsigned char)key[i]) * 16777619u;
    }
    return (h ^ (h >> 16)) % GW_KEY_CACHE;
}

void gw_key_hash(const char *pepper, const char *key, size_t len, uint8_t out[32])
{
    unsigned int outlen = 0;
    const unsigned char *r;

    assert(pepper != NULL && key != NULL);
    size_t plen = strlen(pepper);
    gw_hmac_tls *t = gw_hmac_tls_get(pepper, plen);
    gw_key_slot *slot = NULL;
    if (t != NULL && len == GW_KEY_LEN) {
        slot = &t->slots[gw_key_slot_of(key)];
        if (slot->used && CRYPTO_memcmp(slot->key, key, GW_KEY_LEN) == 0) {
            memcpy(out, slot->mac, 32);
            return;
        }
    }
    size_t maclen = 0;
    /* EVP_MAC_init with a NULL key re-initialises with the key already set. */
    if (t != NULL && EVP_MAC_init(t->ctx, NULL, 0, NULL) == 1 &&
        EVP_MAC_update(t->ctx, (const unsigned char *)key, len) == 1 &&
        EVP_MAC_final(t->ctx, out, &maclen, 32) == 1 && maclen == 32) {
        if (slot != NULL) {
            memcpy(slot->key, key, GW_KEY_LEN);
            memcpy(slot->mac, out, 32);
            slot->used = 1;
        }
        return;
    }
    r = HMAC(EVP_sha256(), pepper, (int)strlen(pepper), (const unsigned char *)key, len, out,
             &outlen);
    /* HMAC-SHA256 with the default provider cannot fail short of a broken OpenSSL install. */
    assert(r != NULL && outlen == 32);
    (void)r;
}
