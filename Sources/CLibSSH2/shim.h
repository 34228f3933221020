#ifndef FERRY_CLIBSSH2_SHIM_H
#define FERRY_CLIBSSH2_SHIM_H
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <openssl/crypto.h>

/* libssh2 is built on OpenSSL's libcrypto, whose exit-time cleanup frees the locks it uses. A
   relay or lock thread still encrypting while the main thread exits would then crash (seen at
   the end of a deploy through two jump hosts): the cleanup is turned off, the OS frees all. */
static inline int ferry_openssl_keep_at_exit(void) {
    return OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
}
#endif
