/* kvm.h: the KVM half of the addon (kvm.c), registered by guestmem.c's module init. */
#ifndef GUESTMEM_KVM_H
#define GUESTMEM_KVM_H
#include <node_api.h>
#include <stdbool.h>

/* Adds the kvm* functions and constants to `exports`; false (with an error pending) on failure. */
bool guestmem_kvm_init(napi_env env, napi_value exports);

#endif
