#define _GNU_SOURCE
#include <pthread.h>
#include "native_stack.h"

int ferry_stack_bounds(uintptr_t *low, size_t *size) {
    pthread_attr_t attr;
    void *addr = 0;
    if (pthread_getattr_np(pthread_self(), &attr) != 0) return -1;
    int rc = pthread_attr_getstack(&attr, &addr, size);
    pthread_attr_destroy(&attr);
    *low = (uintptr_t)addr;
    return rc;
}
