/*
 * guestmem.c: the native half of guestmem/mmap.
 *
 * Node has no mmap, so this small Node-API addon maps guest RAM (anonymous, memfd or file) and
 * hands it to JavaScript as external ArrayBuffers. It is C against raw Node-API version 8: that
 * ABI is stable, so one binary serves Node 20, 22 and 24, and there is nothing to install.
 *
 * Everything here serves one rule: no value the JS side passes can crash the process.
 *  - Every argument is checked here again, although the TypeScript layer checks it first.
 *  - Memory is mapped read-write at an address the kernel picks (MAP_FIXED is refused), and its
 *    protection is never lowered afterwards: a JS write to a read-only page would be a SIGSEGV.
 *    That is also why there is no mprotect here; read-only backends map privately instead.
 *  - Only regular files are mapped, never past their end (a page past EOF raises SIGBUS), and
 *    hugetlbfs never with MAP_NORESERVE (a fault without a reserved huge page raises SIGBUS).
 *  - A mapping is unmapped only when nothing can reach it. Each JS handle (one per backend, per
 *    thread) and each external ArrayBuffer over the mapping holds a reference; the last one to
 *    go calls munmap. Handles and ArrayBuffers each belong to one thread, but the count is shared
 *    by all threads of the process: that is what keeps a worker's view valid when the main
 *    thread closes the backend or its GC collects its own views.
 *  - Mappings sit in a process-wide registry under a number, so that a worker can take a new
 *    handle on the same memory from a number it was sent. A stale or forged number fails cleanly.
 *
 * The second half is the transport of guestmem's vhost-user backend: AF_UNIX sockets, messages
 * with SCM_RIGHTS descriptors, eventfds, and a readiness watcher on the event loop (uv_poll_t).
 * The watcher polls its own duplicate of the fd, so that closing the original from JS while it
 * is watched (which libuv does not allow) cannot hurt.
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <node_api.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <uv.h>

#include "kvm.h"
#include "napi-util.h"

/*
 * Node 20 refuses external buffers over 4 GiB, and on refusal calls the finalizer at once
 * (which would drop our reference twice): never ask it for more.
 */
#define MAX_EXTERNAL_BUFFER 4294967296.0

typedef struct mapping {
  struct mapping *next; /* registry list, under `lock` */
  double id;            /* registry key, never reused within the process */
  uint8_t *addr;
  size_t length;
  unsigned owners; /* live handles; a new handle may be taken only while this is > 0 */
  unsigned refs;   /* live handles + live ArrayBuffers; the mapping goes when it reaches 0 */
} mapping;

/* One JS handle on a mapping: `m` holds one owner reference until released. */
typedef struct {
  mapping *m;
} holder;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static mapping *registry;
static double next_id = 1;
/* Random per process, so that a description from another process never matches a local id. */
static double process_key;
static pthread_once_t process_key_once = PTHREAD_ONCE_INIT;

/* Tells our handles apart from any other object (a forged one would be a wild pointer). */
static const napi_type_tag HANDLE_TAG = {0x67756573746d656dULL, 0x6d6d61702d68646cULL};

static void unref(mapping *m, bool owner) {
  pthread_mutex_lock(&lock);
  if (owner) m->owners--;
  bool last = --m->refs == 0;
  if (last) {
    mapping **p = &registry;
    while (*p != m) p = &(*p)->next;
    *p = m->next;
  }
  pthread_mutex_unlock(&lock);
  if (last) {
    munmap(m->addr, m->length);
    free(m);
  }
}

/* The holder behind a handle this module made, or NULL (and a pending error). */
static holder *get_holder(napi_env env, napi_value v) {
  napi_valuetype type;
  bool tagged = false;
  void *h = NULL;
  if (napi_typeof(env, v, &type) != napi_ok || type != napi_object ||
      napi_check_object_type_tag(env, v, &HANDLE_TAG, &tagged) != napi_ok || !tagged ||
      napi_unwrap(env, v, &h) != napi_ok) {
    BAD_ARG(env, "handle");
    return NULL;
  }
  return h;
}

/* The mapping behind a handle that was not released yet, or NULL (and a pending error). */
static mapping *live_mapping(napi_env env, napi_value v) {
  holder *h = get_holder(env, v);
  if (h != NULL && h->m == NULL)
    fail(env, "ERR_BACKEND_CLOSED", "guestmem native: the handle was released");
  return h == NULL ? NULL : h->m;
}

/* handle, offset, length -> the mapping, with [offset, offset + length) inside it. */
static mapping *get_range(napi_env env, napi_value *argv, double *offset, double *length) {
  mapping *m = live_mapping(env, argv[0]);
  if (m == NULL) return NULL;
  if (!get_index(env, argv[1], MAX_SAFE_INTEGER, offset) ||
      !get_index(env, argv[2], MAX_SAFE_INTEGER, length) || *length == 0 ||
      *offset + *length > (double)m->length) {
    BAD_ARG(env, "range");
    return NULL;
  }
  return m;
}

static napi_value int_value(napi_env env, int n);

/* ---- handles ---- */

static void holder_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  holder *h = data;
  if (h->m != NULL) unref(h->m, true);
  free(h);
}

/* A new JS handle on `m`, which already counts the owner reference this handle takes over. */
static napi_value make_handle(napi_env env, mapping *m) {
  napi_value obj;
  holder *h = malloc(sizeof *h);
  if (h != NULL) h->m = m;
  if (h == NULL || napi_create_object(env, &obj) != napi_ok ||
      napi_wrap(env, obj, h, holder_finalize, NULL, NULL) != napi_ok) {
    free(h);
    unref(m, true);
    return fail(env, "ERR_MMAP_FAILED", "guestmem native: cannot create a handle");
  }
  /* From here the finalizer owns the reference. The properties are informative only: the
     addon always reads the mapping from the wrapped holder. */
  napi_property_descriptor props[] = {
      {"id", NULL, NULL, NULL, NULL, NULL, napi_enumerable, NULL},
      {"address", NULL, NULL, NULL, NULL, NULL, napi_enumerable, NULL},
      {"length", NULL, NULL, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_type_tag_object(env, obj, &HANDLE_TAG) != napi_ok ||
      napi_create_double(env, m->id, &props[0].value) != napi_ok ||
      napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)m->addr, &props[1].value) != napi_ok ||
      napi_create_double(env, (double)m->length, &props[2].value) != napi_ok ||
      napi_define_properties(env, obj, 3, props) != napi_ok)
    return fail(env, "ERR_MMAP_FAILED", "guestmem native: cannot create a handle");
  return obj;
}

/*
 * map(length, flags, fd, offset) -> handle. fd is -1 with MAP_ANONYMOUS. Protection is always
 * read + write (see the top of the file); flags are MAP_SHARED or MAP_PRIVATE plus a few that
 * cannot hurt.
 */
static napi_value js_map(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  double length, offset;
  int32_t flags, fd;
  if (!get_args(env, info, 4, argv) ||
      !get_index(env, argv[0], MAX_SAFE_INTEGER, &length) || length == 0 ||
      napi_get_value_int32(env, argv[1], &flags) != napi_ok ||
      napi_get_value_int32(env, argv[2], &fd) != napi_ok || fd < -1 ||
      !get_index(env, argv[3], MAX_SAFE_INTEGER, &offset))
    return BAD_ARG(env, "arguments to map");
  if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))
    return fail(env, "ERR_MMAP_FIXED_FORBIDDEN", "guestmem native: MAP_FIXED is forbidden");
  int type = flags & MAP_TYPE;
  bool anonymous = flags & MAP_ANONYMOUS;
  if ((type != MAP_SHARED && type != MAP_PRIVATE) ||
      (flags & ~(MAP_TYPE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_POPULATE)) ||
      anonymous != (fd == -1) || (anonymous && offset != 0))
    return BAD_ARG(env, "mmap flags");
  if (offset + length > MAX_SAFE_INTEGER)
    return fail(env, "ERR_MMAP_INVALID_OFFSET_LENGTH", "guestmem native: offset + length overflows");
  if (!anonymous) {
    struct stat st;
    struct statfs sf;
    if (fstat(fd, &st) != 0) return fail_errno(env, "fstat", errno);
    if (!S_ISREG(st.st_mode)) return BAD_ARG(env, "fd: not a regular file");
    if (offset + length > (double)st.st_size)
      return fail(env, "ERR_MMAP_PAST_EOF", "guestmem native: mapping past the end of the file");
    if (fstatfs(fd, &sf) != 0) return fail_errno(env, "fstatfs", errno);
    if (sf.f_type == HUGETLBFS_MAGIC && (flags & MAP_NORESERVE))
      return BAD_ARG(env, "flags: MAP_NORESERVE on hugetlbfs");
  }
  void *addr = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE, flags, fd, (off_t)offset);
  if (addr == MAP_FAILED) return fail_errno(env, "mmap", errno);
  mapping *m = malloc(sizeof *m);
  if (m == NULL) {
    munmap(addr, (size_t)length);
    return fail_errno(env, "malloc", ENOMEM);
  }
  m->addr = addr;
  m->length = (size_t)length;
  m->owners = m->refs = 1;
  pthread_mutex_lock(&lock);
  m->id = next_id++;
  m->next = registry;
  registry = m;
  pthread_mutex_unlock(&lock);
  return make_handle(env, m);
}

/* acquire(id) -> a new handle on a mapping some handle (maybe in another thread) still owns. */
static napi_value js_acquire(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  double id;
  if (!get_args(env, info, 1, argv) || !get_index(env, argv[0], MAX_SAFE_INTEGER, &id))
    return BAD_ARG(env, "id");
  pthread_mutex_lock(&lock);
  mapping *m = registry;
  while (m != NULL && m->id != id) m = m->next;
  if (m != NULL && m->owners > 0) {
    m->owners++;
    m->refs++;
  } else {
    m = NULL;
  }
  pthread_mutex_unlock(&lock);
  if (m == NULL) return fail(env, "ERR_BACKEND_CLOSED", "guestmem native: no such open mapping");
  return make_handle(env, m);
}

/* release(handle): drops the handle's reference now rather than at GC. Idempotent. */
static napi_value js_release(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  holder *h;
  if (!get_args(env, info, 1, argv) || (h = get_holder(env, argv[0])) == NULL) return NULL;
  if (h->m != NULL) unref(h->m, true);
  h->m = NULL;
  return NULL;
}

static void buffer_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)data;
  unref(hint, false);
}

/* wrap(handle, offset, length) -> an external ArrayBuffer over that part of the mapping. */
static napi_value js_wrap(napi_env env, napi_callback_info info) {
  napi_value argv[3], result;
  double offset, length;
  if (!get_args(env, info, 3, argv)) return BAD_ARG(env, "arguments to wrap");
  mapping *m = get_range(env, argv, &offset, &length);
  if (m == NULL) return NULL;
  if (length > MAX_EXTERNAL_BUFFER) return BAD_ARG(env, "length: over 4 GiB");
  pthread_mutex_lock(&lock);
  m->refs++;
  pthread_mutex_unlock(&lock);
  napi_status s = napi_create_external_arraybuffer(env, m->addr + (size_t)offset, (size_t)length,
                                                   buffer_finalize, m, &result);
  if (s == napi_ok) return result;
  /*
   * Only the early refusal (a runtime with a V8 sandbox, such as Electron) is known not to
   * call the finalizer; after any other failure it may still run, so keep the reference
   * (a leak) rather than risk dropping it twice (an early munmap).
   */
  if (s == napi_no_external_buffers_allowed) {
    unref(m, false);
    return fail(env, "ERR_NATIVE_UNAVAILABLE",
                "this runtime does not allow external ArrayBuffers (V8 sandbox)");
  }
  return fail(env, "ERR_MMAP_FAILED", "guestmem native: cannot create an external ArrayBuffer");
}

/*
 * detach(arrayBuffer): detaches it, so that every view over it reads as empty. Its memory
 * reference drops when V8 lets go of the backing store (Node calls the finalizer soon after).
 */
static napi_value js_detach(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  bool is_ab = false, detached = false;
  if (!get_args(env, info, 1, argv) || napi_is_arraybuffer(env, argv[0], &is_ab) != napi_ok ||
      !is_ab || napi_is_detached_arraybuffer(env, argv[0], &detached) != napi_ok)
    return BAD_ARG(env, "ArrayBuffer");
  if (!detached && napi_detach_arraybuffer(env, argv[0]) != napi_ok)
    return BAD_ARG(env, "ArrayBuffer: not detachable");
  return NULL;
}

/* madvise(handle, offset, length, advice) with advice from a short list of harmless ones. */
static napi_value js_madvise(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  double offset, length;
  int32_t advice;
  if (!get_args(env, info, 4, argv)) return BAD_ARG(env, "arguments to madvise");
  mapping *m = get_range(env, argv, &offset, &length);
  if (m == NULL) return NULL;
  if (napi_get_value_int32(env, argv[3], &advice) != napi_ok ||
      (advice != MADV_DONTNEED && advice != MADV_REMOVE && advice != MADV_HUGEPAGE &&
       advice != MADV_POPULATE_READ && advice != MADV_POPULATE_WRITE))
    return BAD_ARG(env, "advice");
  if (madvise(m->addr + (size_t)offset, (size_t)length, advice) != 0)
    return fail_errno(env, "madvise", errno);
  return NULL;
}

/* mlock(handle, offset, length). munmap unlocks, so there is no munlock. */
static napi_value js_mlock(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  double offset, length;
  if (!get_args(env, info, 3, argv)) return BAD_ARG(env, "arguments to mlock");
  mapping *m = get_range(env, argv, &offset, &length);
  if (m == NULL) return NULL;
  if (mlock(m->addr + (size_t)offset, (size_t)length) != 0) return fail_errno(env, "mlock", errno);
  return NULL;
}

/*
 * zeroPrivate(handle, offset, length): replaces [offset, offset + length) of a private file
 * mapping with fresh anonymous memory, so that it reads zeros (MADV_DONTNEED would bring back
 * the file's contents). MAP_FIXED is safe here, and only here: the range lies inside a mapping
 * this module made and still holds, so nothing else can live at those addresses.
 */
static napi_value js_zero_private(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  double offset, length;
  if (!get_args(env, info, 3, argv)) return BAD_ARG(env, "arguments to zeroPrivate");
  mapping *m = get_range(env, argv, &offset, &length);
  if (m == NULL) return NULL;
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  if ((uint64_t)offset % page != 0 || (uint64_t)length % page != 0)
    return BAD_ARG(env, "range: not page aligned");
  void *at = m->addr + (size_t)offset;
  void *p = mmap(at, (size_t)length, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  if (p == MAP_FAILED) return fail_errno(env, "mmap", errno);
  return NULL;
}

/* memfdCreate(name, hugetlb) -> a close-on-exec memfd that allows sealing. */
static napi_value js_memfd_create(napi_env env, napi_callback_info info) {
  napi_value argv[2], result;
  char name[250]; /* the kernel takes 249 bytes */
  size_t len;
  bool hugetlb;
  if (!get_args(env, info, 2, argv) ||
      napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok ||
      len >= sizeof name - 1 || napi_get_value_bool(env, argv[1], &hugetlb) != napi_ok)
    return BAD_ARG(env, "arguments to memfdCreate");
  int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | (hugetlb ? MFD_HUGETLB : 0));
  if (fd < 0) return fail_errno(env, "memfd_create", errno);
  napi_create_int32(env, fd, &result);
  return result;
}

/*
 * addSeals(fd, seals): F_ADD_SEALS with seals from the F_SEAL_* constants. guestmem seals its
 * memfds against shrinking (which would SIGBUS every mapping of them) and then with F_SEAL_SEAL,
 * so that no other holder of the fd can add F_SEAL_WRITE and break guest writes.
 */
static napi_value js_add_seals(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  double seals;
  const int known = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
  if (!get_args(env, info, 2, argv) || !get_fd(env, argv[0], &fd) ||
      !get_index(env, argv[1], known, &seals) || seals == 0 || ((int)seals & ~known) != 0)
    return BAD_ARG(env, "arguments to addSeals");
  if (fcntl(fd, F_ADD_SEALS, (int)seals) != 0) return fail_errno(env, "fcntl", errno);
  return NULL;
}

/*
 * getSeals(fd) -> the file's F_SEAL_* bits: what a vhost-user back-end checks before it maps a
 * front-end's fd. A file that cannot be sealed at all (a regular file on most file systems)
 * answers EINVAL, which is 0 here: nothing stops it from shrinking.
 */
static napi_value js_get_seals(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], &fd)) return BAD_ARG(env, "fd");
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 && errno != EINVAL) return fail_errno(env, "fcntl", errno);
  return int_value(env, seals < 0 ? 0 : seals);
}

/* dup(fd) -> a close-on-exec duplicate, so that a backend owns its own descriptor. */
static napi_value js_dup(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int fd;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], &fd)) return BAD_ARG(env, "fd");
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) return fail_errno(env, "fcntl", errno);
  napi_create_int32(env, copy, &result);
  return result;
}

/* ---- sockets: AF_UNIX stream sockets, always non-blocking and close-on-exec ---- */

/* The most descriptors one message may carry (vhost-user sends at most 8). */
#define MAX_FDS 32

/* The bytes of a Uint8Array argument (length 0 when its buffer was detached). */
static bool get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *length) {
  bool is_ta = false;
  napi_typedarray_type type;
  void *p = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, length, &p, NULL, NULL) != napi_ok ||
      type != napi_uint8_array)
    return false;
  *data = p;
  return true;
}

static bool get_path(napi_env env, napi_value v, struct sockaddr_un *sa) {
  size_t len;
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (napi_get_value_string_utf8(env, v, sa->sun_path, sizeof sa->sun_path, &len) != napi_ok ||
      len == 0 || len >= sizeof sa->sun_path - 1 || strlen(sa->sun_path) != len)
    return false;
  return true;
}

static napi_value int_value(napi_env env, int n) {
  napi_value v;
  napi_create_int32(env, n, &v);
  return v;
}

/* unixListen(path, backlog) -> a listening socket bound to `path` (which must not exist). */
static napi_value js_unix_listen(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  struct sockaddr_un sa;
  int32_t backlog;
  if (!get_args(env, info, 2, argv) || !get_path(env, argv[0], &sa) ||
      napi_get_value_int32(env, argv[1], &backlog) != napi_ok || backlog < 1)
    return BAD_ARG(env, "arguments to unixListen");
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail_errno(env, "socket", errno);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    int err = errno;
    close(fd);
    return fail_errno(env, "bind", err);
  }
  if (listen(fd, backlog) != 0) {
    int err = errno;
    close(fd);
    return fail_errno(env, "listen", err);
  }
  return int_value(env, fd);
}

/* unixConnect(path) -> a socket connected to `path`. */
static napi_value js_unix_connect(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct sockaddr_un sa;
  if (!get_args(env, info, 1, argv) || !get_path(env, argv[0], &sa)) return BAD_ARG(env, "path");
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail_errno(env, "socket", errno);
  int r;
  while ((r = connect(fd, (struct sockaddr *)&sa, sizeof sa)) != 0 && errno == EINTR) continue;
  if (r != 0) {
    int err = errno;
    close(fd);
    return fail_errno(env, "connect", err);
  }
  return int_value(env, fd);
}

/* accept(fd) -> a connected socket, or -1 when no connection is waiting. */
static napi_value js_accept(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd, c;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], &fd)) return BAD_ARG(env, "fd");
  while ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) < 0 && errno == EINTR) continue;
  if (c < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED))
    return int_value(env, -1);
  if (c < 0) return fail_errno(env, "accept4", errno);
  return int_value(env, c);
}

/* socketpair() -> [fd, fd], a connected pair of stream sockets. */
static napi_value js_socketpair(napi_env env, napi_callback_info info) {
  (void)info;
  int sv[2];
  napi_value result;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
    return fail_errno(env, "socketpair", errno);
  if (napi_create_array_with_length(env, 2, &result) != napi_ok ||
      napi_set_element(env, result, 0, int_value(env, sv[0])) != napi_ok ||
      napi_set_element(env, result, 1, int_value(env, sv[1])) != napi_ok) {
    close(sv[0]);
    close(sv[1]);
    return fail(env, "ERR_INVALID_ARG_VALUE", "guestmem native: cannot return the pair");
  }
  return result;
}

/*
 * adoptSocket(fd) -> true if it listens, false if it is connected. Refuses anything but an
 * AF_UNIX stream socket, and makes it non-blocking and close-on-exec.
 */
static napi_value js_adopt_socket(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int fd, type = 0, listening = 0;
  struct stat st;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss, optlen = sizeof type;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], &fd)) return BAD_ARG(env, "fd");
  if (fstat(fd, &st) != 0) return fail_errno(env, "fstat", errno);
  if (!S_ISSOCK(st.st_mode)) return fail_errno(env, "fstat", ENOTSOCK);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return fail_errno(env, "getsockname", errno);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &optlen) != 0)
    return fail_errno(env, "getsockopt", errno);
  if (ss.ss_family != AF_UNIX || type != SOCK_STREAM) return fail_errno(env, "getsockname", EPROTOTYPE);
  optlen = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) != 0)
    return fail_errno(env, "getsockopt", errno);
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
    return fail_errno(env, "fcntl", errno);
  napi_get_boolean(env, listening != 0, &result);
  return result;
}

static void close_fds(const int *fds, size_t n) {
  for (size_t i = 0; i < n; i++) close(fds[i]);
}

/*
 * recvMsg(fd, bytes, maxFds) -> { bytes, fds, truncated }, or null when nothing is waiting.
 * `bytes` is 0 at end of stream. `truncated` says the peer sent more than maxFds descriptors:
 * the kernel dropped the rest, and the ones received are returned, for the caller to close.
 */
static napi_value js_recv_msg(napi_env env, napi_callback_info info) {
  napi_value argv[3], result, list;
  int fd;
  uint8_t *data;
  size_t length;
  int32_t max_fds;
  if (!get_args(env, info, 3, argv) || !get_fd(env, argv[0], &fd) ||
      !get_bytes(env, argv[1], &data, &length) || length == 0 ||
      napi_get_value_int32(env, argv[2], &max_fds) != napi_ok || max_fds < 0 || max_fds > MAX_FDS)
    return BAD_ARG(env, "arguments to recvMsg");
  union {
    char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
    struct cmsghdr align;
  } control;
  struct iovec iov = {data, length};
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = max_fds > 0 ? control.buf : NULL;
  msg.msg_controllen = max_fds > 0 ? CMSG_SPACE((size_t)max_fds * sizeof(int)) : 0;
  ssize_t n;
  while ((n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT)) < 0 && errno == EINTR) continue;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    napi_get_null(env, &result);
    return result;
  }
  if (n < 0) return fail_errno(env, "recvmsg", errno);
  int fds[MAX_FDS];
  size_t nfds = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int f;
      memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
      /* CMSG_SPACE rounds up, so the kernel may pass one more than asked for. */
      if (nfds < (size_t)max_fds) fds[nfds++] = f; else { close(f); msg.msg_flags |= MSG_CTRUNC; }
    }
  }
  napi_value v;
  if (napi_create_object(env, &result) != napi_ok ||
      napi_create_array_with_length(env, nfds, &list) != napi_ok) {
    close_fds(fds, nfds);
    return fail(env, "ERR_INVALID_ARG_VALUE", "guestmem native: cannot return the message");
  }
  for (size_t i = 0; i < nfds; i++) napi_set_element(env, list, (uint32_t)i, int_value(env, fds[i]));
  napi_create_double(env, (double)n, &v);
  napi_set_named_property(env, result, "bytes", v);
  napi_set_named_property(env, result, "fds", list);
  napi_get_boolean(env, (msg.msg_flags & MSG_CTRUNC) != 0, &v);
  napi_set_named_property(env, result, "truncated", v);
  return result;
}

/* sendMsg(fd, bytes, fds) -> bytes sent; the descriptors go with the first byte. */
static napi_value js_send_msg(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  uint8_t *data;
  size_t length;
  uint32_t nfds;
  bool is_array = false;
  if (!get_args(env, info, 3, argv) || !get_fd(env, argv[0], &fd) ||
      !get_bytes(env, argv[1], &data, &length) || length == 0 ||
      napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[2], &nfds) != napi_ok || nfds > MAX_FDS)
    return BAD_ARG(env, "arguments to sendMsg");
  union {
    char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
    struct cmsghdr align;
  } control;
  int fds[MAX_FDS];
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value e;
    if (napi_get_element(env, argv[2], i, &e) != napi_ok || !get_fd(env, e, &fds[i]))
      return BAD_ARG(env, "fd in sendMsg");
  }
  struct iovec iov = {data, length};
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    memset(control.buf, 0, sizeof control.buf);
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  ssize_t n;
  while ((n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT)) < 0 && errno == EINTR) continue;
  if (n < 0) return fail_errno(env, "sendmsg", errno);
  napi_value result;
  napi_create_double(env, (double)n, &result);
  return result;
}

/* ---- eventfds ---- */

/* eventfd() -> a non-blocking, close-on-exec eventfd with a zero counter. */
static napi_value js_eventfd(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return fail_errno(env, "eventfd", errno);
  return int_value(env, fd);
}

/*
 * The descriptor made non-blocking before it is read or written: one from a peer may be blocking
 * (file flags belong to the open file, which the peer shares), and an empty or full counter must
 * not stop the event loop. 0, or the errno of fcntl.
 */
static int make_nonblocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return errno;
  if ((fl & O_NONBLOCK) == 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) return errno;
  return 0;
}

/* eventfdRead(fd) -> the counter (as a bigint), reset to 0; null when it was 0. */
static napi_value js_eventfd_read(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int fd, err;
  uint64_t value;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], &fd)) return BAD_ARG(env, "fd");
  if ((err = make_nonblocking(fd)) != 0) return fail_errno(env, "fcntl", err);
  ssize_t n;
  while ((n = read(fd, &value, sizeof value)) < 0 && errno == EINTR) continue;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    napi_get_null(env, &result);
    return result;
  }
  if (n < 0) return fail_errno(env, "read", errno);
  if (n != sizeof value) return fail_errno(env, "read", EPROTO); /* not an eventfd */
  napi_create_bigint_uint64(env, value, &result);
  return result;
}

/* eventfdWrite(fd, n): adds n (1 .. 2^53 - 1) to the counter. */
static napi_value js_eventfd_write(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd, err;
  double d;
  if (!get_args(env, info, 2, argv) || !get_fd(env, argv[0], &fd) ||
      !get_index(env, argv[1], MAX_SAFE_INTEGER, &d) || d == 0)
    return BAD_ARG(env, "arguments to eventfdWrite");
  if ((err = make_nonblocking(fd)) != 0) return fail_errno(env, "fcntl", err);
  uint64_t value = (uint64_t)d;
  ssize_t n;
  while ((n = write(fd, &value, sizeof value)) < 0 && errno == EINTR) continue;
  if (n < 0) return fail_errno(env, "write", errno);
  if (n != sizeof value) return fail_errno(env, "write", EPROTO);
  return NULL;
}

/* ---- readiness: a uv_poll_t on the event loop that calls back into JS ---- */

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;          /* strong while active */
  napi_ref self;              /* strong while active: the JS handle lives as long as the poll */
  napi_async_context context;
  int fd;                     /* our own duplicate, closed with the handle */
  bool stopped;               /* unwatch ran (uv_close was asked for) */
  bool closed;                /* libuv closed the handle */
  bool collected;             /* the JS handle was finalized */
} watcher;

static const napi_type_tag WATCHER_TAG = {0x67756573746d656dULL, 0x7761746368657221ULL};

static void watcher_closed(uv_handle_t *h) {
  watcher *w = h->data;
  close(w->fd);
  w->closed = true;
  if (w->collected) free(w);
}

static void watcher_cleanup(void *arg);

/* Stops polling and lets go of the JS side; the memory goes when both halves are done. */
static void watcher_stop(watcher *w, bool from_cleanup) {
  if (w->stopped) return;
  w->stopped = true;
  if (!from_cleanup) napi_remove_env_cleanup_hook(w->env, watcher_cleanup, w);
  uv_poll_stop(&w->poll);
  napi_delete_reference(w->env, w->callback);
  napi_delete_reference(w->env, w->self);
  napi_async_destroy(w->env, w->context);
  uv_close((uv_handle_t *)&w->poll, watcher_closed);
}

static void watcher_cleanup(void *arg) {
  watcher_stop(arg, true);
}

static void watcher_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  watcher *w = data;
  w->collected = true;
  if (w->closed) free(w);
}

static void watcher_fired(uv_poll_t *h, int status, int events) {
  watcher *w = h->data;
  napi_env env = w->env;
  napi_handle_scope scope;
  napi_value cb, recv, args[2], ignored;
  if (w->stopped || napi_open_handle_scope(env, &scope) != napi_ok) return;
  if (napi_get_reference_value(env, w->callback, &cb) == napi_ok && cb != NULL &&
      napi_get_global(env, &recv) == napi_ok) {
    /* status is a negative errno from libuv (or 0); the callback may unwatch re-entrantly. */
    args[0] = int_value(env, status < 0 ? -status : 0);
    args[1] = int_value(env, status < 0 ? 0 : events);
    if (napi_make_callback(env, w->context, recv, cb, 2, args, &ignored) == napi_pending_exception) {
      napi_value error;
      if (napi_get_and_clear_last_exception(env, &error) == napi_ok) napi_fatal_exception(env, error);
    }
  }
  napi_close_handle_scope(env, scope);
}

/*
 * watch(fd, events, callback) -> handle. Calls callback(errno, events) on the event loop each
 * time the fd is ready (events: 1 readable, 2 writable, 4 disconnect) until unwatch(handle).
 * An active watcher keeps the process alive, as a Node socket does.
 */
static napi_value js_watch(napi_env env, napi_callback_info info) {
  napi_value argv[3], obj, name;
  int fd;
  int32_t events;
  napi_valuetype type;
  struct stat st;
  uv_loop_t *loop;
  if (!get_args(env, info, 3, argv) || !get_fd(env, argv[0], &fd) ||
      napi_get_value_int32(env, argv[1], &events) != napi_ok || events <= 0 ||
      (events & ~(UV_READABLE | UV_WRITABLE | UV_DISCONNECT)) != 0 ||
      napi_typeof(env, argv[2], &type) != napi_ok || type != napi_function)
    return BAD_ARG(env, "arguments to watch");
  if (fstat(fd, &st) != 0) return fail_errno(env, "fstat", errno);
  /* epoll refuses regular files and directories: say so here rather than inside libuv. */
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) return fail_errno(env, "epoll_ctl", EPERM);
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return fail(env, "ERR_NATIVE_UNAVAILABLE", "no event loop");
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) return fail_errno(env, "fcntl", errno);
  watcher *w = calloc(1, sizeof *w);
  if (w == NULL) {
    close(copy);
    return fail_errno(env, "malloc", ENOMEM);
  }
  w->env = env;
  w->fd = copy;
  w->poll.data = w;
  int r = uv_poll_init(loop, &w->poll, copy);
  if (r != 0) {
    close(copy);
    free(w);
    return fail_errno(env, "uv_poll_init", -r);
  }
  if (napi_create_object(env, &obj) != napi_ok ||
      napi_create_string_utf8(env, "guestmem:watch", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, obj, name, &w->context) != napi_ok) {
    w->collected = true;
    w->stopped = true;
    uv_close((uv_handle_t *)&w->poll, watcher_closed);
    return fail(env, "ERR_INVALID_ARG_VALUE", "guestmem native: cannot create a watcher");
  }
  if (napi_wrap(env, obj, w, watcher_finalize, NULL, NULL) != napi_ok) {
    napi_async_destroy(env, w->context);
    w->collected = true;
    w->stopped = true;
    uv_close((uv_handle_t *)&w->poll, watcher_closed);
    return fail(env, "ERR_INVALID_ARG_VALUE", "guestmem native: cannot create a watcher");
  }
  /* From here the finalizer owns the memory's JS half. */
  napi_type_tag_object(env, obj, &WATCHER_TAG);
  napi_create_reference(env, argv[2], 1, &w->callback);
  napi_create_reference(env, obj, 1, &w->self);
  napi_add_env_cleanup_hook(env, watcher_cleanup, w);
  r = uv_poll_start(&w->poll, events, watcher_fired);
  if (r != 0) {
    watcher_stop(w, false);
    return fail_errno(env, "uv_poll_start", -r);
  }
  return obj;
}

/* unwatch(handle): stops the watcher. Idempotent; safe inside its own callback. */
static napi_value js_unwatch(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  napi_valuetype type;
  bool tagged = false;
  void *w = NULL;
  if (!get_args(env, info, 1, argv) || napi_typeof(env, argv[0], &type) != napi_ok ||
      type != napi_object || napi_check_object_type_tag(env, argv[0], &WATCHER_TAG, &tagged) != napi_ok ||
      !tagged || napi_unwrap(env, argv[0], &w) != napi_ok)
    return BAD_ARG(env, "watcher");
  watcher_stop(w, false);
  return NULL;
}

static void make_process_key(void) {
  uint64_t r = 0;
  while (getrandom(&r, sizeof r, 0) < 0 && errno == EINTR) continue;
  process_key = (double)(r >> 12); /* 52 random bits: an exact JS number */
}

NAPI_MODULE_INIT() {
  pthread_once(&process_key_once, make_process_key);
  static const struct {
    const char *name;
    double value;
  } constants[] = {
      {"MAP_SHARED", MAP_SHARED},
      {"MAP_PRIVATE", MAP_PRIVATE},
      {"MAP_ANONYMOUS", MAP_ANONYMOUS},
      {"MAP_NORESERVE", MAP_NORESERVE},
      {"MAP_POPULATE", MAP_POPULATE},
      {"MAP_FIXED", MAP_FIXED},
      {"MAP_FIXED_NOREPLACE", MAP_FIXED_NOREPLACE},
      {"MADV_DONTNEED", MADV_DONTNEED},
      {"MADV_REMOVE", MADV_REMOVE},
      {"MADV_HUGEPAGE", MADV_HUGEPAGE},
      {"MADV_POPULATE_READ", MADV_POPULATE_READ},
      {"MADV_POPULATE_WRITE", MADV_POPULATE_WRITE},
      {"F_SEAL_SEAL", F_SEAL_SEAL},
      {"F_SEAL_SHRINK", F_SEAL_SHRINK},
      {"F_SEAL_GROW", F_SEAL_GROW},
      {"F_SEAL_WRITE", F_SEAL_WRITE},
  };
  static const struct {
    const char *name;
    napi_callback fn;
  } functions[] = {
      {"map", js_map},          {"acquire", js_acquire},          {"release", js_release},
      {"wrap", js_wrap},        {"detach", js_detach},            {"madvise", js_madvise},
      {"mlock", js_mlock},      {"memfdCreate", js_memfd_create}, {"addSeals", js_add_seals},
      {"dup", js_dup},          {"unixListen", js_unix_listen},   {"unixConnect", js_unix_connect},
      {"accept", js_accept},    {"socketpair", js_socketpair},    {"adoptSocket", js_adopt_socket},
      {"recvMsg", js_recv_msg}, {"sendMsg", js_send_msg},         {"eventfd", js_eventfd},
      {"eventfdRead", js_eventfd_read}, {"eventfdWrite", js_eventfd_write},
      {"watch", js_watch},      {"unwatch", js_unwatch},
      {"getSeals", js_get_seals},       {"zeroPrivate", js_zero_private},
  };
  napi_value value;
  for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
    if (napi_create_double(env, constants[i].value, &value) != napi_ok ||
        napi_set_named_property(env, exports, constants[i].name, value) != napi_ok)
      return NULL;
  }
  if (napi_create_double(env, (double)sysconf(_SC_PAGESIZE), &value) != napi_ok ||
      napi_set_named_property(env, exports, "PAGE_SIZE", value) != napi_ok ||
      napi_create_double(env, process_key, &value) != napi_ok ||
      napi_set_named_property(env, exports, "PROCESS_KEY", value) != napi_ok)
    return NULL;
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    if (napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL,
                             &value) != napi_ok ||
        napi_set_named_property(env, exports, functions[i].name, value) != napi_ok)
      return NULL;
  }
  if (!guestmem_kvm_init(env, exports)) return NULL;
  return exports;
}
