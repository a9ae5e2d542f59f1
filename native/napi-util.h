/* napi-util.h: the error and argument helpers both halves of the addon (guestmem.c, kvm.c) use. */
#ifndef GUESTMEM_NAPI_UTIL_H
#define GUESTMEM_NAPI_UTIL_H
#include <limits.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>

/* Every JS number up to 2^53 - 1 is an exact integer; lengths and offsets live below that. */
#define MAX_SAFE_INTEGER 9007199254740991.0

/* ---- errors: a code string for checks that fail here, errno + syscall for the kernel's ---- */

static inline napi_value fail(napi_env env, const char *code, const char *message) {
  napi_throw_error(env, code, message);
  return NULL;
}

static inline napi_value fail_errno(napi_env env, const char *syscall, int err) {
  napi_value message, error, value;
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, NULL, message, &error);
  napi_create_int32(env, err, &value);
  napi_set_named_property(env, error, "errno", value);
  napi_set_named_property(env, error, "syscall", message);
  napi_throw(env, error);
  return NULL;
}

#define BAD_ARG(env, what) fail(env, "ERR_INVALID_ARG_VALUE", "guestmem native: bad " what)

/* ---- arguments ---- */

static inline bool get_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  size_t argc = n;
  return napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= n;
}

/* An integer in [0, max], taken from a JS number exactly (no truncation, no NaN). */
static inline bool get_index(napi_env env, napi_value v, double max, double *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= max)) return false;
  if (d != (double)(uint64_t)d) return false;
  *out = d;
  return true;
}

static inline bool get_fd(napi_env env, napi_value v, int *fd) {
  double d;
  if (!get_index(env, v, INT_MAX, &d)) return false;
  *fd = (int)d;
  return true;
}

#endif
