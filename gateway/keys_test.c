/*
 * keys_test.c — unit tests of gw_keys.c: format, checksum, hashing.
 */
#include <string.h>

#include "cg_test.h"
#include "gw_keys.h"
#include <openssl/evp.h>
#include <openssl/hmac.h>

CG_TEST(key_roundtrip)
{
    char key[GW_KEY_MAX + 1], id[GW_KEY_ID_MAX + 1], parsed[GW_KEY_ID_MAX + 1];

    for (int i = 0; i < 200; i++) {
        CG_CHECK_EQ_INT(gw_key_generate(key, sizeof(key), id, sizeof(id)), CG_ERR_OK);
        CG_CHECK_EQ_INT(strlen(key), 71);
        CG_CHECK(strncmp(key, "cg-k_", 5) == 0);
        CG_CHECK_EQ_INT(strlen(id), 18);
        CG_CHECK(strncmp(key + 3, id, 18) == 0);
        CG_CHECK(key[21] == '-');
        CG_CHECK_EQ_INT(gw_key_parse(key, strlen(key), parsed, sizeof(parsed)), CG_ERR_OK);
        CG_CHECK_EQ_STR(parsed, id);
    }
}

CG_TEST(key_unique)
{
    char k1[GW_KEY_MAX + 1], k2[GW_KEY_MAX + 1], id1[GW_KEY_ID_MAX + 1], id2[GW_KEY_ID_MAX + 1];

    CG_CHECK_EQ_INT(gw_key_generate(k1, sizeof(k1), id1, sizeof(id1)), CG_ERR_OK);
    CG_CHECK_EQ_INT(gw_key_generate(k2, sizeof(k2), id2, sizeof(id2)), CG_ERR_OK);
    CG_CHECK(strcmp(k1, k2) != 0);
    CG_CHECK(strcmp(id1, id2) != 0);
}

/* Every single-character substitution anywhere in the key must be refused. */
CG_TEST(key_one_char_changed)
{
    char key[GW_KEY_MAX + 1], id[GW_KEY_ID_MAX + 1], out[GW_KEY_ID_MAX + 1];
    /* Every base62 digit plus separators and look-alikes. */
    static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "abcdefghijklmnopqrstuvwxyz-_+/=. ";

    CG_CHECK_EQ_INT(gw_key_generate(key, sizeof(key), id, sizeof(id)), CG_ERR_OK);
    size_t len = strlen(key);
    for (size_t pos = 0; pos < len; pos++) {
        char orig = key[pos];
        for (size_t j = 0; j < sizeof(alphabet) - 1; j++) {
            char c = alphabet[j];
            if (c == orig) {
                continue;
            }
            key[pos] = c;
            if (gw_key_parse(key, len, out, sizeof(out)) != CG_ERR_UNAUTHORIZED) {
                fprintf(stderr, "  accepted change at %zu to '%c'\n", pos, c);
                CG_CHECK(0);
            }
        }
        key[pos] = orig;
    }
    CG_CHECK_EQ_INT(gw_key_parse(key, len, out, sizeof(out)), CG_ERR_OK);
}

CG_TEST(key_bad_shapes)
{
    char key[GW_KEY_MAX + 1], id[GW_KEY_ID_MAX + 1], out[GW_KEY_ID_MAX + 1], buf[128];

    CG_CHECK_EQ_INT(gw_key_generate(key, sizeof(key), id, sizeof(id)), CG_ERR_OK);
    size_t len = strlen(key);
    /* Wrong prefix. */
    memcpy(buf, key, len + 1);
    memcpy(buf, "sk-", 3);
    CG_CHECK_EQ_INT(gw_key_parse(buf, len, out, sizeof(out)), CG_ERR_UNAUTHORIZED);
    /* Truncated, at every length. */
    for (size_t n = 0; n < len; n++) {
        CG_CHECK_EQ_INT(gw_key_parse(key, n, out, sizeof(out)), CG_ERR_UNAUTHORIZED);
    }
    /* Extended. */
    memcpy(buf, key, len);
    buf[len] = 'A';
    buf[len + 1] = '\0';
    CG_CHECK_EQ_INT(gw_key_parse(buf, len + 1, out, sizeof(out)), CG_ERR_UNAUTHORIZED);
    /* Upper-case hex id is not the canonical form. */
    memcpy(buf, key, len + 1);
    for (size_t i = 5; i < 21; i++) {
        if (buf[i] >= 'a' && buf[i] <= 'f') {
            buf[i] = (char)(buf[i] - 'a' + 'A');
            CG_CHECK_EQ_INT(gw_key_parse(buf, len, out, sizeof(out)), CG_ERR_UNAUTHORIZED);
            break;
        }
    }
    CG_CHECK_EQ_INT(gw_key_parse("", 0, out, sizeof(out)), CG_ERR_UNAUTHORIZED);
    CG_CHECK_EQ_INT(gw_key_parse(NULL, 0, out, sizeof(out)), CG_ERR_UNAUTHORIZED);
}

CG_TEST(key_hash)
{
    char key[GW_KEY_MAX + 1], id[GW_KEY_ID_MAX + 1];
    uint8_t h1[32], h2[32], h3[32], h4[32];

    CG_CHECK_EQ_INT(gw_key_generate(key, sizeof(key), id, sizeof(id)), CG_ERR_OK);
    gw_key_hash("pepper-1", key, strlen(key), h1);
    gw_key_hash("pepper-1", key, strlen(key), h2);
    gw_key_hash("pepper-2", key, strlen(key), h3);
    CG_CHECK(memcmp(h1, h2, 32) == 0);
    CG_CHECK(memcmp(h1, h3, 32) != 0);
    key[30] = key[30] == 'A' ? 'B' : 'A';
    gw_key_hash("pepper-1", key, strlen(key), h4);
    CG_CHECK(memcmp(h1, h4, 32) != 0);

    /* Known answer: RFC 4231 test case 2 (key "Jefe"). */
    static const uint8_t want[32] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e,
                                     0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
                                     0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83,
                                     0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    const char *msg = "what do ya want for nothing?";
    gw_key_hash("Jefe", msg, strlen(msg), h1);
    CG_CHECK(memcmp(h1, want, 32) == 0);
}

/* The per-thread cache of recent keys: 300 keys (more than its slots, so slots are
 * shared and replaced), hashed twice, and again after the pepper changed and came
 * back, always equal HMAC-SHA256(pepper, key) computed here directly; a key that
 * differs from a cached one in its last character never gets the cached hash. */
CG_TEST(key_hash_cache)
{
    enum { N = 300 };
    static char keys[N][GW_KEY_MAX + 1];
    char id[GW_KEY_ID_MAX + 1];
    uint8_t got[32], want[32];
    unsigned int wl = 0;
    for (int i = 0; i < N; i++) {
        CG_CHECK_EQ_INT(gw_key_generate(keys[i], sizeof(keys[i]), id, sizeof(id)), CG_ERR_OK);
    }
    const char *peppers[] = {"pepper-a", "pepper-a", "pepper-b", "pepper-a"};
    for (size_t r = 0; r < sizeof(peppers) / sizeof(peppers[0]); r++) {
        for (int i = 0; i < N; i++) {
            size_t kl = strlen(keys[i]);
            gw_key_hash(peppers[r], keys[i], kl, got);
            HMAC(EVP_sha256(), peppers[r], (int)strlen(peppers[r]), (const unsigned char *)keys[i],
                 kl, want, &wl);
            CG_CHECK(wl == 32 && memcmp(got, want, 32) == 0);
        }
    }
    char other[GW_KEY_MAX + 1];
    memcpy(other, keys[0], sizeof(other));
    size_t kl = strlen(other);
    gw_key_hash("pepper-a", keys[0], kl, want); /* cached */
    other[kl - 1] = other[kl - 1] == '0' ? '1' : '0';
    gw_key_hash("pepper-a", other, kl, got);
    CG_CHECK(memcmp(got, want, 32) != 0);
}

/* Rotation: a new secret for the same id, a valid key, never the old string. */
CG_TEST(key_generate_for_id)
{
    char key[GW_KEY_MAX + 1], id[GW_KEY_ID_MAX + 1], k2[GW_KEY_MAX + 1], out[GW_KEY_ID_MAX + 1];

    CG_CHECK(gw_key_generate(key, sizeof(key), id, sizeof(id)) == CG_ERR_OK);
    CG_CHECK(gw_key_generate_for(id, k2, sizeof(k2)) == CG_ERR_OK);
    CG_CHECK(strcmp(key, k2) != 0);
    CG_CHECK_EQ_INT(strlen(k2), strlen(key));
    CG_CHECK(gw_key_parse(k2, strlen(k2), out, sizeof(out)) == CG_ERR_OK);
    CG_CHECK_EQ_STR(out, id);
    CG_CHECK(gw_key_generate_for("k_0123", k2, sizeof(k2)) == CG_ERR_INVAL);
    CG_CHECK(gw_key_generate_for("k_0123456789ABCDEF", k2, sizeof(k2)) == CG_ERR_INVAL);
    CG_CHECK(gw_key_generate_for("x_0123456789abcdef", k2, sizeof(k2)) == CG_ERR_INVAL);
    CG_CHECK(gw_key_generate_for("k_0123456789abcdef0", k2, sizeof(k2)) == CG_ERR_INVAL);
}

int main(void)
{
    return CG_TEST_RUN(key_roundtrip, key_unique, key_one_char_changed, key_bad_shapes, key_hash,
                       key_hash_cache, key_generate_for_id);
}
