/*
 * kvm.c: the KVM half of guestmem's addon (guestmem/kvm).
 *
 * Thin, checked wrappers of the /dev/kvm ioctls a VMM needs for memory slots, dirty logging and
 * vCPUs. The rules of guestmem.c hold here too: every argument is checked again, and no value
 * the JS side passes can crash the process.
 *  - A memory slot's host memory is named by an ArrayBuffer (an external one over an mmap'd
 *    mapping); its address never crosses into JS. The JS side keeps the mapping alive for as
 *    long as the slot exists.
 *  - Registers, special registers and dirty logs travel in typed arrays whose sizes are checked
 *    against the kernel's structures.
 *  - A vCPU lives in a process-wide registry under a number, so that a worker thread can run it.
 *    Its fd and kvm_run mapping go only when the last user is gone: closing it while another
 *    thread is inside KVM_RUN sets immediate_exit and signals that thread (a no-op handler
 *    installed without SA_RESTART), so KVM_RUN returns EINTR and the thread drops its reference.
 *
 * A failed ioctl throws an Error with `errno` and `syscall` (the ioctl's name); the TypeScript
 * layer turns it into a KvmError.
 */
#define _GNU_SOURCE
#include "kvm.h"
#include "napi-util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * The exit record kvmRun fills (and reads the answer of an `in` or MMIO read from):
 *   0 u32 exit reason        4 u32 direction (io: 1 = out) / is_write (mmio)
 *   8 u32 size (io: bytes per access; mmio: length)      12 u32 port     16 u32 count
 *  24 u64 mmio address / hardware entry failure reason / internal error suberror
 *  32 data: the io bytes (size * count) or the mmio bytes (up to 8)
 */
#define EXIT_DATA 32
#define EXIT_RECORD (EXIT_DATA + 4096)

typedef struct vcpu {
  struct vcpu *next; /* registry list, under `vcpu_lock` */
  double id;
  int fd;
  struct kvm_run *run;
  size_t run_size;
  unsigned refs;     /* the registry's + one per thread inside kvmRun */
  bool closed;       /* closed: no new kvmRun, and a running one returns */
  bool running;      /* a thread is inside kvmRun: `thread` may be signalled */
  pthread_t thread;
  size_t pending_in; /* bytes of an `in` or MMIO read answer to copy before the next run */
} vcpu;

static pthread_mutex_t vcpu_lock = PTHREAD_MUTEX_INITIALIZER;
static vcpu *vcpus;
static double next_vcpu_id = 1;
static pthread_once_t kick_once = PTHREAD_ONCE_INIT;
static int kick_signal;

static void kick_handler(int sig) { (void)sig; }

/* The kick only has to interrupt KVM_RUN: a handler that does nothing, without SA_RESTART. */
static void install_kick(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = kick_handler;
  sigemptyset(&sa.sa_mask);
  kick_signal = SIGRTMAX - 2;
  sigaction(kick_signal, &sa, NULL);
}

static void vcpu_unref_locked(vcpu *v, bool *free_it) {
  *free_it = --v->refs == 0;
}

static void vcpu_free(vcpu *v) {
  munmap(v->run, v->run_size);
  close(v->fd);
  free(v);
}

static void vcpu_unref(vcpu *v) {
  bool last;
  pthread_mutex_lock(&vcpu_lock);
  vcpu_unref_locked(v, &last);
  pthread_mutex_unlock(&vcpu_lock);
  if (last) vcpu_free(v);
}

/*
 * The pages of every memory slot made here, by VM fd and slot id. KVM_GET_DIRTY_LOG writes one
 * bit per page of the slot into the caller's buffer, so that buffer is checked against the
 * slot's real size, never against what the JS side believes. Slots are made, deleted and their
 * logs read under `slot_lock`, so an entry always matches the slot while it is used. A VM fd
 * closed and reused by another VM leaves stale entries: harmless, since a slot of the new VM is
 * recorded when it is made, and the kernel refuses one that does not exist before it writes.
 */
typedef struct slot_size {
  struct slot_size *next;
  int vm;
  uint32_t slot;
  uint64_t pages;
} slot_size;

static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static slot_size *slot_sizes;

/* The entry of a slot (under `slot_lock`), or where it would be linked. */
static slot_size **slot_find(int vm, uint32_t slot) {
  slot_size **p = &slot_sizes;
  while (*p != NULL && !((*p)->vm == vm && (*p)->slot == slot)) p = &(*p)->next;
  return p;
}

/* ---- arguments ---- */

static bool get_u64(napi_env env, napi_value v, double max, uint64_t *out) {
  double d;
  if (!get_index(env, v, max, &d)) return false;
  *out = (uint64_t)d;
  return true;
}

/* The bytes of a typed array of the given type and exact byte length (0: any length). */
static void *get_array(napi_env env, napi_value v, napi_typedarray_type want, size_t bytes, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  size_t n;
  void *p = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, &n, &p, NULL, NULL) != napi_ok || type != want)
    return NULL;
  size_t size = n * (want == napi_biguint64_array ? 8 : 1);
  if (p == NULL || (bytes != 0 && size != bytes)) return NULL;
  if (len != NULL) *len = size;
  return p;
}

static napi_value number(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

static int xioctl(int fd, unsigned long req, void *arg) {
  int r;
  while ((r = ioctl(fd, req, arg)) < 0 && errno == EINTR) continue;
  return r;
}

/* ---- system and VM ---- */

/* kvmOpen() -> a close-on-exec fd of /dev/kvm. */
static napi_value js_open(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return fail_errno(env, "open", errno);
  return number(env, fd);
}

/* kvmCheckExtension(fd, cap) -> what KVM_CHECK_EXTENSION answers (0: not offered). */
static napi_value js_check_extension(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  uint64_t cap;
  if (!get_args(env, info, 2, argv) || !get_fd(env, argv[0], &fd) || !get_u64(env, argv[1], 1 << 20, &cap))
    return BAD_ARG(env, "arguments to kvmCheckExtension");
  int r = ioctl(fd, KVM_CHECK_EXTENSION, (unsigned long)cap);
  if (r < 0) return fail_errno(env, "KVM_CHECK_EXTENSION", errno);
  return number(env, r);
}

/* An ioctl of `fd` that takes no argument and answers a non-negative int. */
static napi_value int_ioctl(napi_env env, napi_callback_info info, unsigned long req, const char *name) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], &fd)) return BAD_ARG(env, "fd");
  int r = ioctl(fd, req, 0);
  if (r < 0) return fail_errno(env, name, errno);
  return number(env, r);
}

static napi_value js_api_version(napi_env env, napi_callback_info info) {
  return int_ioctl(env, info, KVM_GET_API_VERSION, "KVM_GET_API_VERSION");
}

static napi_value js_vcpu_mmap_size(napi_env env, napi_callback_info info) {
  return int_ioctl(env, info, KVM_GET_VCPU_MMAP_SIZE, "KVM_GET_VCPU_MMAP_SIZE");
}

/* kvmCreateVm(fd) -> a VM fd (close-on-exec, as every KVM fd). */
static napi_value js_create_vm(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], &fd)) return BAD_ARG(env, "fd");
  int vm;
  while ((vm = ioctl(fd, KVM_CREATE_VM, 0)) < 0 && errno == EINTR) continue;
  if (vm < 0) return fail_errno(env, "KVM_CREATE_VM", errno);
  return number(env, vm);
}

/* kvmSetTssAddr(vm, addr) and kvmSetIdentityMapAddr(vm, addr): x86 set-up below 4 GiB. */
static napi_value js_set_tss_addr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  uint64_t addr;
  if (!get_args(env, info, 2, argv) || !get_fd(env, argv[0], &fd) || !get_u64(env, argv[1], 0xffffd000, &addr))
    return BAD_ARG(env, "arguments to kvmSetTssAddr");
  if (ioctl(fd, KVM_SET_TSS_ADDR, (unsigned long)addr) < 0) return fail_errno(env, "KVM_SET_TSS_ADDR", errno);
  return NULL;
}

static napi_value js_set_identity_map_addr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  uint64_t addr;
  if (!get_args(env, info, 2, argv) || !get_fd(env, argv[0], &fd) || !get_u64(env, argv[1], 0xfffff000, &addr))
    return BAD_ARG(env, "arguments to kvmSetIdentityMapAddr");
  if (xioctl(fd, KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0) return fail_errno(env, "KVM_SET_IDENTITY_MAP_ADDR", errno);
  return NULL;
}

/*
 * kvmSetMemoryRegion(vm, slot, flags, guestAddress, size, buffer, offset): the slot shows `size`
 * bytes of `buffer` from `offset`. Size 0 deletes the slot (buffer may then be null).
 */
static napi_value js_set_memory_region(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  int fd;
  uint64_t slot, flags, gpa, size, offset;
  if (!get_args(env, info, 7, argv) || !get_fd(env, argv[0], &fd) || !get_u64(env, argv[1], UINT32_MAX, &slot) ||
      !get_u64(env, argv[2], KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY, &flags) ||
      (flags & ~(uint64_t)(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY)) != 0 ||
      !get_u64(env, argv[3], MAX_SAFE_INTEGER, &gpa) || !get_u64(env, argv[4], MAX_SAFE_INTEGER, &size) ||
      !get_u64(env, argv[6], MAX_SAFE_INTEGER, &offset))
    return BAD_ARG(env, "arguments to kvmSetMemoryRegion");
  uint64_t host = 0;
  if (size != 0) {
    bool is_ab = false;
    void *data = NULL;
    size_t length = 0;
    if (napi_is_arraybuffer(env, argv[5], &is_ab) != napi_ok || !is_ab ||
        napi_get_arraybuffer_info(env, argv[5], &data, &length) != napi_ok || data == NULL ||
        offset > length || size > length - offset)
      return BAD_ARG(env, "memory: the slot must lie inside a live buffer");
    host = (uint64_t)(uintptr_t)data + offset;
  }
  struct kvm_userspace_memory_region r = {
      .slot = (uint32_t)slot, .flags = (uint32_t)flags, .guest_phys_addr = gpa, .memory_size = size,
      .userspace_addr = host};
  pthread_mutex_lock(&slot_lock);
  int err = xioctl(fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? errno : 0;
  slot_size **p = slot_find(fd, (uint32_t)slot);
  if (err == 0 && size == 0 && *p != NULL) {
    slot_size *gone = *p;
    *p = gone->next;
    free(gone);
  } else if (err == 0 && size != 0) {
    /* The kernel took the size (whole pages) and keeps it until the slot is deleted. */
    if (*p == NULL && (*p = calloc(1, sizeof **p)) != NULL) **p = (slot_size){.vm = fd, .slot = (uint32_t)slot};
    if (*p != NULL) {
      (*p)->pages = size / 4096;
    } else {
      /* A slot whose log could not be checked must not exist: delete it again. */
      struct kvm_userspace_memory_region gone = {.slot = (uint32_t)slot};
      xioctl(fd, KVM_SET_USER_MEMORY_REGION, &gone);
      pthread_mutex_unlock(&slot_lock);
      return fail_errno(env, "calloc", ENOMEM);
    }
  }
  pthread_mutex_unlock(&slot_lock);
  if (err != 0) return fail_errno(env, "KVM_SET_USER_MEMORY_REGION", err);
  return NULL;
}

/* kvmEnableManualDirtyLog(vm): KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, logs not initially set. */
static napi_value js_enable_manual_dirty_log(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv) || !get_fd(env, argv[0], &fd)) return BAD_ARG(env, "fd");
  struct kvm_enable_cap cap = {.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
                               .args = {KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE}};
  if (xioctl(fd, KVM_ENABLE_CAP, &cap) < 0) return fail_errno(env, "KVM_ENABLE_CAP", errno);
  return NULL;
}

/*
 * kvmGetDirtyLog(vm, slot, log) -> dirty pages: fills `log` (a BigUint64Array, a bit per page),
 * which must hold the whole log of a slot made by kvmSetMemoryRegion (ENOENT for another slot).
 */
static napi_value js_get_dirty_log(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  uint64_t slot;
  uint64_t *log;
  size_t bytes;
  if (!get_args(env, info, 3, argv) || !get_fd(env, argv[0], &fd) || !get_u64(env, argv[1], UINT32_MAX, &slot) ||
      (log = get_array(env, argv[2], napi_biguint64_array, 0, &bytes)) == NULL)
    return BAD_ARG(env, "arguments to kvmGetDirtyLog");
  /* The kernel writes one bit per page of the slot, in whole u64 words: `log` must hold them. */
  pthread_mutex_lock(&slot_lock);
  slot_size *e = *slot_find(fd, (uint32_t)slot);
  uint64_t pages = e == NULL ? 0 : e->pages;
  int err = 0;
  if (pages == 0) err = ENOENT; /* what the kernel says for a slot that does not exist */
  else if ((pages + 63) / 64 * 8 <= bytes) {
    struct kvm_dirty_log d = {.slot = (uint32_t)slot, .dirty_bitmap = log};
    if (xioctl(fd, KVM_GET_DIRTY_LOG, &d) < 0) err = errno;
  }
  pthread_mutex_unlock(&slot_lock);
  if (pages != 0 && (pages + 63) / 64 * 8 > bytes) return BAD_ARG(env, "dirty log: shorter than the slot's pages");
  if (err != 0) return fail_errno(env, "KVM_GET_DIRTY_LOG", err);
  /* The count lets the caller skip clearing and merging a clean log, the usual case. */
  double dirty = 0;
  for (size_t k = 0; k < bytes / 8; k++) dirty += __builtin_popcountll(log[k]);
  return number(env, dirty);
}

/* kvmClearDirtyLog(vm, slot, firstPage, pages, log): clears (and re-protects) those pages. */
static napi_value js_clear_dirty_log(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  int fd;
  uint64_t slot, first, pages;
  size_t bytes;
  void *log;
  if (!get_args(env, info, 5, argv) || !get_fd(env, argv[0], &fd) || !get_u64(env, argv[1], UINT32_MAX, &slot) ||
      !get_u64(env, argv[2], MAX_SAFE_INTEGER, &first) || !get_u64(env, argv[3], UINT32_MAX, &pages) ||
      (log = get_array(env, argv[4], napi_biguint64_array, 0, &bytes)) == NULL || (pages + 7) / 8 > bytes)
    return BAD_ARG(env, "arguments to kvmClearDirtyLog");
  struct kvm_clear_dirty_log c = {.slot = (uint32_t)slot, .num_pages = (uint32_t)pages, .first_page = first,
                                  .dirty_bitmap = log};
  if (xioctl(fd, KVM_CLEAR_DIRTY_LOG, &c) < 0) return fail_errno(env, "KVM_CLEAR_DIRTY_LOG", errno);
  return NULL;
}

/* ---- vCPUs ---- */

/* The vCPU of `id` with a reference taken, or NULL (closed or unknown). */
static vcpu *vcpu_get(double id) {
  pthread_mutex_lock(&vcpu_lock);
  vcpu *v = vcpus;
  while (v != NULL && v->id != id) v = v->next;
  if (v != NULL) v->refs++;
  pthread_mutex_unlock(&vcpu_lock);
  return v;
}

static vcpu *vcpu_arg(napi_env env, napi_value value) {
  uint64_t id;
  if (!get_u64(env, value, MAX_SAFE_INTEGER, &id)) {
    BAD_ARG(env, "vCPU id");
    return NULL;
  }
  vcpu *v = vcpu_get((double)id);
  if (v == NULL) fail(env, "ERR_KVM_VCPU_CLOSED", "guestmem native: the vCPU was closed");
  return v;
}

/* kvmCreateVcpu(vm, index, mmapSize) -> the vCPU's registry id. */
static napi_value js_create_vcpu(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  uint64_t index, size;
  if (!get_args(env, info, 3, argv) || !get_fd(env, argv[0], &fd) || !get_u64(env, argv[1], 4095, &index) ||
      !get_u64(env, argv[2], 1 << 24, &size) || size < sizeof(struct kvm_run))
    return BAD_ARG(env, "arguments to kvmCreateVcpu");
  pthread_once(&kick_once, install_kick);
  int cfd = ioctl(fd, KVM_CREATE_VCPU, (unsigned long)index);
  if (cfd < 0) return fail_errno(env, "KVM_CREATE_VCPU", errno);
  void *run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
  if (run == MAP_FAILED) {
    int err = errno;
    close(cfd);
    return fail_errno(env, "mmap", err);
  }
  vcpu *v = calloc(1, sizeof *v);
  if (v == NULL) {
    munmap(run, size);
    close(cfd);
    return fail_errno(env, "calloc", ENOMEM);
  }
  v->fd = cfd;
  v->run = run;
  v->run_size = size;
  v->refs = 1;
  pthread_mutex_lock(&vcpu_lock);
  v->id = next_vcpu_id++;
  v->next = vcpus;
  vcpus = v;
  pthread_mutex_unlock(&vcpu_lock);
  return number(env, v->id);
}

/*
 * kvmCloseVcpu(id): takes the vCPU out of the registry and makes a running KVM_RUN return now
 * (immediate_exit, then a signal to its thread). The fd goes with the last reference.
 * Idempotent: an unknown id does nothing.
 */
static napi_value js_close_vcpu(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint64_t id;
  if (!get_args(env, info, 1, argv) || !get_u64(env, argv[0], MAX_SAFE_INTEGER, &id)) return BAD_ARG(env, "vCPU id");
  bool last = false;
  pthread_mutex_lock(&vcpu_lock);
  vcpu **p = &vcpus;
  while (*p != NULL && (*p)->id != (double)id) p = &(*p)->next;
  vcpu *v = *p;
  if (v != NULL) {
    *p = v->next;
    v->closed = true;
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    /* Under the lock, `running` says the thread is between its check and its unref: alive. */
    if (v->running) pthread_kill(v->thread, kick_signal);
    vcpu_unref_locked(v, &last);
  }
  pthread_mutex_unlock(&vcpu_lock);
  if (last) vcpu_free(v);
  return NULL;
}

/* kvmGetRegs(id, BigUint64Array(18)) and kvmSetRegs: struct kvm_regs, field by field in order. */
static napi_value regs_io(napi_env env, napi_callback_info info, unsigned long req, const char *name,
                          size_t bytes) {
  napi_value argv[2];
  void *data;
  if (!get_args(env, info, 2, argv)) return BAD_ARG(env, "arguments");
  vcpu *v = vcpu_arg(env, argv[0]);
  if (v == NULL) return NULL;
  napi_typedarray_type type = bytes == sizeof(struct kvm_regs) ? napi_biguint64_array : napi_uint8_array;
  if ((data = get_array(env, argv[1], type, bytes, NULL)) == NULL) {
    vcpu_unref(v);
    return BAD_ARG(env, "register buffer");
  }
  int r = xioctl(v->fd, req, data);
  int err = errno;
  vcpu_unref(v);
  if (r < 0) return fail_errno(env, name, err);
  return NULL;
}

static napi_value js_get_regs(napi_env env, napi_callback_info info) {
  return regs_io(env, info, KVM_GET_REGS, "KVM_GET_REGS", sizeof(struct kvm_regs));
}
static napi_value js_set_regs(napi_env env, napi_callback_info info) {
  return regs_io(env, info, KVM_SET_REGS, "KVM_SET_REGS", sizeof(struct kvm_regs));
}
static napi_value js_get_sregs(napi_env env, napi_callback_info info) {
  return regs_io(env, info, KVM_GET_SREGS, "KVM_GET_SREGS", sizeof(struct kvm_sregs));
}
static napi_value js_set_sregs(napi_env env, napi_callback_info info) {
  return regs_io(env, info, KVM_SET_SREGS, "KVM_SET_SREGS", sizeof(struct kvm_sregs));
}

static void put32(uint8_t *rec, size_t at, uint32_t v) { memcpy(rec + at, &v, 4); }
static void put64(uint8_t *rec, size_t at, uint64_t v) { memcpy(rec + at, &v, 8); }

/*
 * kvmRun(id, record) -> the exit reason, with the exit described in `record` (a Uint8Array of
 * EXIT_RECORD bytes); -1 when the vCPU was closed (before or during the run). The answer to the
 * previous exit (an `in`'s bytes, an MMIO read's value) is taken from the record's data first.
 * A signal that interrupts KVM_RUN (not a close) returns KVM_EXIT_INTR: the caller runs again.
 */
static napi_value js_run(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint8_t *rec;
  if (!get_args(env, info, 2, argv)) return BAD_ARG(env, "arguments to kvmRun");
  if ((rec = get_array(env, argv[1], napi_uint8_array, EXIT_RECORD, NULL)) == NULL) return BAD_ARG(env, "exit record");
  uint64_t id;
  if (!get_u64(env, argv[0], MAX_SAFE_INTEGER, &id)) return BAD_ARG(env, "vCPU id");
  vcpu *v = vcpu_get((double)id);
  if (v == NULL) return number(env, -1);
  struct kvm_run *run = v->run;
  pthread_mutex_lock(&vcpu_lock);
  bool closed = v->closed || v->running; /* one thread runs a vCPU at a time */
  bool busy = !v->closed && v->running;
  if (!closed) {
    v->running = true;
    v->thread = pthread_self();
  }
  pthread_mutex_unlock(&vcpu_lock);
  if (closed) {
    vcpu_unref(v);
    if (busy) return fail(env, "ERR_KVM_VCPU_BUSY", "guestmem native: the vCPU is running in another thread");
    return number(env, -1);
  }
  if (v->pending_in > 0) {
    if (run->exit_reason == KVM_EXIT_IO)
      memcpy((uint8_t *)run + run->io.data_offset, rec + EXIT_DATA, v->pending_in);
    else if (run->exit_reason == KVM_EXIT_MMIO)
      memcpy(run->mmio.data, rec + EXIT_DATA, v->pending_in);
    v->pending_in = 0;
  }
  int r = ioctl(v->fd, KVM_RUN, 0);
  int err = errno;
  pthread_mutex_lock(&vcpu_lock);
  v->running = false;
  closed = v->closed;
  pthread_mutex_unlock(&vcpu_lock);
  if (closed) {
    vcpu_unref(v);
    return number(env, -1);
  }
  if (r < 0 && err != EINTR) {
    vcpu_unref(v);
    return fail_errno(env, "KVM_RUN", err);
  }
  uint32_t reason = r < 0 ? KVM_EXIT_INTR : run->exit_reason;
  memset(rec, 0, EXIT_DATA);
  put32(rec, 0, reason);
  switch (reason) {
    case KVM_EXIT_IO: {
      size_t bytes = (size_t)run->io.size * run->io.count;
      if (bytes > EXIT_RECORD - EXIT_DATA || run->io.data_offset + bytes > v->run_size) bytes = 0;
      put32(rec, 4, run->io.direction == KVM_EXIT_IO_OUT);
      put32(rec, 8, run->io.size);
      put32(rec, 12, run->io.port);
      put32(rec, 16, bytes == 0 ? 0 : run->io.count);
      if (run->io.direction == KVM_EXIT_IO_OUT) memcpy(rec + EXIT_DATA, (uint8_t *)run + run->io.data_offset, bytes);
      else memset(rec + EXIT_DATA, 0, bytes), v->pending_in = bytes; /* the answer starts as zeros */
      break;
    }
    case KVM_EXIT_MMIO: {
      uint32_t len = run->mmio.len > 8 ? 8 : run->mmio.len;
      put32(rec, 4, run->mmio.is_write);
      put32(rec, 8, len);
      put64(rec, 24, run->mmio.phys_addr);
      if (run->mmio.is_write) memcpy(rec + EXIT_DATA, run->mmio.data, len);
      else memset(rec + EXIT_DATA, 0, len), v->pending_in = len;
      break;
    }
    case KVM_EXIT_FAIL_ENTRY:
      put64(rec, 24, run->fail_entry.hardware_entry_failure_reason);
      break;
    case KVM_EXIT_INTERNAL_ERROR:
      put64(rec, 24, run->internal.suberror);
      break;
    default:
      break;
  }
  vcpu_unref(v);
  return number(env, reason);
}

bool guestmem_kvm_init(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback fn;
  } functions[] = {
      {"kvmOpen", js_open},
      {"kvmApiVersion", js_api_version},
      {"kvmCheckExtension", js_check_extension},
      {"kvmVcpuMmapSize", js_vcpu_mmap_size},
      {"kvmCreateVm", js_create_vm},
      {"kvmSetTssAddr", js_set_tss_addr},
      {"kvmSetIdentityMapAddr", js_set_identity_map_addr},
      {"kvmSetMemoryRegion", js_set_memory_region},
      {"kvmEnableManualDirtyLog", js_enable_manual_dirty_log},
      {"kvmGetDirtyLog", js_get_dirty_log},
      {"kvmClearDirtyLog", js_clear_dirty_log},
      {"kvmCreateVcpu", js_create_vcpu},
      {"kvmCloseVcpu", js_close_vcpu},
      {"kvmGetRegs", js_get_regs},
      {"kvmSetRegs", js_set_regs},
      {"kvmGetSregs", js_get_sregs},
      {"kvmSetSregs", js_set_sregs},
      {"kvmRun", js_run},
  };
  napi_value value;
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    if (napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &value) != napi_ok ||
        napi_set_named_property(env, exports, functions[i].name, value) != napi_ok)
      return false;
  }
  static const struct {
    const char *name;
    double value;
  } constants[] = {
      {"KVM_EXIT_RECORD", EXIT_RECORD},
      {"KVM_EXIT_DATA", EXIT_DATA},
      {"KVM_SREGS_SIZE", sizeof(struct kvm_sregs)},
      {"KVM_REGS_COUNT", sizeof(struct kvm_regs) / 8},
  };
  for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
    if (napi_create_double(env, constants[i].value, &value) != napi_ok ||
        napi_set_named_property(env, exports, constants[i].name, value) != napi_ok)
      return false;
  }
  return true;
}
