/*
 * fixture_sig.c — Standard Webhooks signing, re-implemented for the tests
 * with OpenSSL directly, so a delivery's signature is verified independently
 * of capgate's own signing code: `webhook-signature: v1,<base64 HMAC-SHA256>`
 * over "<webhook-id>.<webhook-timestamp>.<body>", keyed with the
 * base64-decoded part of the secret after "whsec_".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include "fixture.h"

void fx_webhook_secret(char out[64])
{
    unsigned char raw[24], b64[48];
    FX_CHECK(RAND_bytes(raw, sizeof(raw)) == 1, "RAND_bytes");
    EVP_EncodeBlock(b64, raw, sizeof(raw));
    snprintf(out, 64, "whsec_%s", (const char *)b64);
}

/* The expected "v1,<base64>" for id, ts and body under secret; 0 if the secret
 * cannot be decoded. No FX_CHECK: this also runs on the receiver's thread. */
static int fx_sig_expected(const char *secret, const char *id, const char *ts,
                           const fx_hook_req *req, char want[128])
{
    unsigned char key[64];
    if (strncmp(secret, "whsec_", 6) != 0 || strlen(secret) >= 80) {
        return 0;
    }
    const char *b64 = secret + 6;
    size_t blen = strlen(b64);
    int klen = EVP_DecodeBlock(key, (const unsigned char *)b64, (int)blen);
    if (klen <= 0 || blen < 2) {
        return 0;
    }
    klen -= (b64[blen - 1] == '=') + (b64[blen - 2] == '=');
    size_t mlen = strlen(id) + strlen(ts) + req->body_len + 2;
    char *msg = malloc(mlen + 1);
    if (msg == NULL) {
        return 0;
    }
    int off = snprintf(msg, mlen + 1, "%s.%s.", id, ts);
    memcpy(msg + off, req->body, req->body_len);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), key, klen, (const unsigned char *)msg, mlen, mac, &maclen);
    free(msg);
    memcpy(want, "v1,", 4);
    EVP_EncodeBlock((unsigned char *)want + 3, mac, (int)maclen);
    return 1;
}

/* 0 = verifies; else a static reason. */
static const char *fx_sig_problem(const fx_hook_req *req, const char *secret, char want[128])
{
    const char *id = fx_hook_req_header(req, "webhook-id");
    const char *ts = fx_hook_req_header(req, "webhook-timestamp");
    const char *sig = fx_hook_req_header(req, "webhook-signature");
    want[0] = '\0';
    if (id == NULL || ts == NULL || sig == NULL) {
        return "missing webhook-* headers";
    }
    char *end = NULL;
    long long t = strtoll(ts, &end, 10);
    if (end == ts || *end != '\0') {
        return "webhook-timestamp is not an integer";
    }
    long long now = (long long)time(NULL);
    if (!(t > now - 300 && t < now + 300)) {
        return "webhook-timestamp far from now";
    }
    if (!fx_sig_expected(secret, id, ts, req, want)) {
        return "cannot decode the secret";
    }
    /* The header may list several space-separated signatures. */
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", sig);
    int match = 0;
    for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok != NULL;
         tok = strtok_r(NULL, " ", &save)) {
        match |= strcmp(tok, want) == 0;
    }
    return match ? NULL : "webhook-signature does not verify";
}

int fx_sig_verifies(const fx_hook_req *req, const char *secret)
{
    char want[128];
    return fx_sig_problem(req, secret, want) == NULL;
}

void fx_hook_check_signature(const fx_hook_req *req, const char *secret)
{
    char want[128];
    const char *why = fx_sig_problem(req, secret, want);
    const char *sig = fx_hook_req_header(req, "webhook-signature");
    FX_CHECK(why == NULL, "%s: webhook-signature %s (want %s)", why != NULL ? why : "",
             sig != NULL ? sig : "(none)", want);
}
