#include "CAEAD.h"
#include <openssl/evp.h>
#include <limits.h>

struct caead {
    EVP_CIPHER_CTX *ctx;
};

caead *caead_new(const uint8_t key[32]) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx) return NULL;
    // The key schedule is computed once here; each frame sets only its nonce.
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, NULL, -1) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    caead *c = OPENSSL_malloc(sizeof(caead));
    if (!c) { EVP_CIPHER_CTX_free(ctx); return NULL; }
    c->ctx = ctx;
    return c;
}

void caead_free(caead *c) {
    if (!c) return;
    EVP_CIPHER_CTX_free(c->ctx);
    OPENSSL_free(c);
}

/// EVP takes int lengths: larger pieces go in slices.
static int update(EVP_CIPHER_CTX *ctx, uint8_t *out, const uint8_t *in, size_t len) {
    while (len > 0) {
        int n = len > (size_t)(INT_MAX / 2) ? INT_MAX / 2 : (int)len, outl = 0;
        if (EVP_CipherUpdate(ctx, out, &outl, in, n) != 1 || outl != n) return 0;
        out += n; in += n; len -= (size_t)n;
    }
    return 1;
}

static int start(caead *c, int enc, const uint8_t nonce[12], const uint8_t *aad, size_t aadlen) {
    int outl = 0;
    return EVP_CipherInit_ex(c->ctx, NULL, NULL, NULL, nonce, enc) == 1
        && (aadlen == 0 || EVP_CipherUpdate(c->ctx, NULL, &outl, aad, (int)aadlen) == 1);
}

int caead_seal(caead *c, const uint8_t nonce[12], const uint8_t *aad, size_t aadlen, uint8_t *buf, size_t len, uint8_t tag[16]) {
    int outl = 0;
    return start(c, 1, nonce, aad, aadlen)
        && update(c->ctx, buf, buf, len)
        && EVP_CipherFinal_ex(c->ctx, buf + len, &outl) == 1
        && EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
}

int caead_begin(caead *c, const uint8_t nonce[12], const uint8_t *aad, size_t aadlen) {
    return start(c, 0, nonce, aad, aadlen);
}

int caead_update(caead *c, uint8_t *buf, size_t len) {
    return update(c->ctx, buf, buf, len);
}

int caead_finish(caead *c, const uint8_t tag[16]) {
    int outl = 0;
    uint8_t scratch[16];
    return EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_GCM_SET_TAG, 16, (void *)tag) == 1
        && EVP_CipherFinal_ex(c->ctx, scratch, &outl) == 1;
}
