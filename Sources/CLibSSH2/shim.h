#ifndef FERRY_CLIBSSH2_SHIM_H
#define FERRY_CLIBSSH2_SHIM_H
#include <libssh2.h>
#include <libssh2_sftp.h>
#endif
