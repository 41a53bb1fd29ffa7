#ifndef TSR_CCRYPTO_SHIM_H
#define TSR_CCRYPTO_SHIM_H
// OpenSSL libcrypto: only the EVP digest API is used (SHA-256). The functions are plain
// C functions, so no wrappers are needed.
#include <openssl/evp.h>
#endif
