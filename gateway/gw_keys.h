/*
 * gw_keys.h — capgate API key format, generation and hashing.
 *
 * A key reads `cg-<key id>-<secret><checksum>`: the id is "k_" + 16 lowercase
 * hex digits, the secret 43 base62 characters encoding 32 random bytes
 * (OpenSSL RAND_bytes), the checksum 6 base62 characters of a CRC32 over
 * everything before it, so a mistyped key is refused before any lookup.
 * Only HMAC-SHA256(pepper, whole key) is ever stored.
 * Pure functions; thread-safe.
 */
#ifndef GW_KEYS_H
#define GW_KEYS_H
#include <stddef.h>
#include <stdint.h>
#include "cg_err.h"

#define GW_KEY_MAX 96    /* bytes of a key string, without NUL */
#define GW_KEY_ID_MAX 24 /* bytes of a key id, without NUL */

/* New random key. key_out >= GW_KEY_MAX + 1, id_out >= GW_KEY_ID_MAX + 1. */
cg_err gw_key_generate(char *key_out, size_t keycap, char *id_out, size_t idcap);
/* A new random secret for an existing key id (rotation): the key keeps its id. CG_ERR_INVAL
 * if id is not a key id of this format. key_out >= GW_KEY_MAX + 1. */
cg_err gw_key_generate_for(const char *id, char *key_out, size_t keycap);
/* Check format and checksum; on success write the key id. CG_ERR_UNAUTHORIZED otherwise. */
cg_err gw_key_parse(const char *key, size_t len, char *id_out, size_t idcap);
/* HMAC-SHA256(pepper, key). */
void gw_key_hash(const char *pepper, const char *key, size_t len, uint8_t out[32]);

#endif
