#ifndef CAEAD_H
#define CAEAD_H

#include <stddef.h>
#include <stdint.h>

/// AES-256-GCM for the frames between nodes, over OpenSSL's libcrypto (static in `make static`).
/// One context per direction of a connection, keyed once: swift-crypto's API sets a key up and
/// allocates its output on every call, which costs more than sealing a small frame and copies
/// every chunk twice. Here sealing and opening work in place, and opening can be fed in pieces,
/// so a data chunk is decrypted where it lands. Functions return 1 on success, 0 on failure.

typedef struct caead caead;

/// A context for the 32-byte `key`; NULL if libcrypto cannot make one.
caead *caead_new(const uint8_t key[32]);
void caead_free(caead *c);

/// Encrypts `len` bytes at `buf` in place, authenticating `aad` too; writes the 16-byte tag.
int caead_seal(caead *c, const uint8_t nonce[12], const uint8_t *aad, size_t aadlen, uint8_t *buf, size_t len, uint8_t tag[16]);

/// Opening in pieces: begin with the nonce and the authenticated header, decrypt each piece in
/// place in order, then check the tag. Nothing decrypted may be trusted before `caead_finish`
/// returns 1.
int caead_begin(caead *c, const uint8_t nonce[12], const uint8_t *aad, size_t aadlen);
int caead_update(caead *c, uint8_t *buf, size_t len);
int caead_finish(caead *c, const uint8_t tag[16]);

#endif
