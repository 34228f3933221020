#ifndef FERRY_NATIVE_STACK_H
#define FERRY_NATIVE_STACK_H
#include <stddef.h>
#include <stdint.h>

/// The calling thread's stack: its lowest address and size. 0 on success.
int ferry_stack_bounds(uintptr_t *low, size_t *size);

#endif
