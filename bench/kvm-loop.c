/*
 * kvm-loop.c: the C baseline of `npm run bench:kvm`, doing the same ioctls as guestmem/kvm in
 * a plain loop. Built by bench/kvm.ts with `cc -O2`.
 *
 *   kvm-loop dirty MIB ROUNDS  a protected-mode guest writes every page of a MIB-MiB logged
 *                              slot, then KVM_GET_DIRTY_LOG (+ KVM_CLEAR_DIRTY_LOG where
 *                              offered) ORed into a bitmap: median ns per harvest, dense and clean
 *   kvm-loop exit ITERS        a real-mode guest looping on `out 0x14, al`: ns per KVM_RUN
 *
 * Prints `RESULT <name> <ns per op>`.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
  perror(what);
  exit(1);
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* 32-bit protected mode, flat segments, no paging: writes a byte to every page in [0x2000, esi). */
static const uint8_t DIRTY_EVERY_PAGE[] = {
    0xbf, 0x00, 0x20, 0x00, 0x00,       /* 0x1000: mov edi, 0x2000 */
    0x88, 0x07,                         /* 0x1005: mov [edi], al */
    0x81, 0xc7, 0x00, 0x10, 0x00, 0x00, /* 0x1007: add edi, 0x1000 */
    0x39, 0xf7,                         /* 0x100d: cmp edi, esi */
    0x72, 0xf4,                         /* 0x100f: jb 0x1005 */
    0xe6, 0x14,                         /* 0x1011: out 0x14, al */
    0xeb, 0xeb,                         /* 0x1013: jmp 0x1000 */
};

static int protected_mode_vcpu(int kvm, int vm, struct kvm_run **run, size_t end) {
  int cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (cpu < 0) die("KVM_CREATE_VCPU");
  int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
  if (*run == MAP_FAILED) die("mmap kvm_run");
  struct kvm_sregs s;
  if (ioctl(cpu, KVM_GET_SREGS, &s) < 0) die("KVM_GET_SREGS");
  struct kvm_segment code = {.base = 0, .limit = 0xffffffff, .selector = 8, .type = 0xb, .present = 1, .db = 1, .s = 1, .g = 1};
  struct kvm_segment data = code;
  data.selector = 16;
  data.type = 3;
  s.cs = code;
  s.ds = s.es = s.fs = s.gs = s.ss = data;
  s.cr0 |= 1;
  if (ioctl(cpu, KVM_SET_SREGS, &s) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs;
  memset(&regs, 0, sizeof regs);
  regs.rip = 0x1000;
  regs.rsi = end;
  regs.rflags = 2;
  if (ioctl(cpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
  return cpu;
}

static void run_to_out(int cpu, struct kvm_run *run) {
  if (ioctl(cpu, KVM_RUN, 0) < 0) die("KVM_RUN");
  if (run->exit_reason != KVM_EXIT_IO) {
    fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
    exit(1);
  }
}

/* GET (+ CLEAR) the log of slot 0 and OR it into `bitmap`; returns the bits set. */
static long harvest(int vm, int manual, size_t pages, uint64_t *log, uint64_t *bitmap) {
  struct kvm_dirty_log d = {.slot = 0, .dirty_bitmap = log};
  if (ioctl(vm, KVM_GET_DIRTY_LOG, &d) < 0) die("KVM_GET_DIRTY_LOG");
  if (manual) {
    struct kvm_clear_dirty_log c = {.slot = 0, .num_pages = pages, .first_page = 0, .dirty_bitmap = log};
    if (ioctl(vm, KVM_CLEAR_DIRTY_LOG, &c) < 0) die("KVM_CLEAR_DIRTY_LOG");
  }
  long set = 0;
  for (size_t k = 0; k < (pages + 63) / 64; k++)
    if (log[k] != 0) {
      set += __builtin_popcountll(log[k]);
      __atomic_fetch_or(&bitmap[k], log[k], __ATOMIC_SEQ_CST);
    }
  return set;
}

#define CLEAN_CALLS 50

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: kvm-loop dirty MIB ITERS | exit ITERS\n");
    return 2;
  }
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("open /dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) die("KVM_SET_TSS_ADDR");
  int manual = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) > 0;
  if (strcmp(argv[1], "dirty") == 0 && argc >= 4) {
    size_t size = (size_t)atol(argv[2]) << 20;
    long rounds = atol(argv[3]);
    if (manual) {
      struct kvm_enable_cap cap = {.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .args = {KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE}};
      if (ioctl(vm, KVM_ENABLE_CAP, &cap) < 0) die("KVM_ENABLE_CAP");
    }
    uint8_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) die("mmap");
    memcpy(mem + 0x1000, DIRTY_EVERY_PAGE, sizeof DIRTY_EVERY_PAGE);
    struct kvm_userspace_memory_region r = {.slot = 0, .flags = KVM_MEM_LOG_DIRTY_PAGES, .guest_phys_addr = 0,
                                            .memory_size = size, .userspace_addr = (uintptr_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("KVM_SET_USER_MEMORY_REGION");
    struct kvm_run *run;
    int cpu = protected_mode_vcpu(kvm, vm, &run, size);
    size_t pages = size >> 12, words = (pages + 63) / 64;
    uint64_t *log = calloc(words, 8), *bitmap = calloc(words, 8);
    double *dense = calloc(rounds + 1, sizeof *dense), *clean = calloc(rounds + 1, sizeof *clean);
    long set = 0;
    for (long round = 0; round <= rounds; round++) {
      run_to_out(cpu, run); /* the guest writes a byte to every page from 0x2000 */
      double t0 = now_ns();
      set += harvest(vm, manual, pages, log, bitmap);
      double t1 = now_ns();
      for (int k = 0; k < CLEAN_CALLS; k++) harvest(vm, manual, pages, log, bitmap); /* clean logs */
      double t2 = now_ns();
      dense[round] = t1 - t0;
      clean[round] = (t2 - t1) / CLEAN_CALLS;
    }
    /* Round 0 faulted the memory in: medians of the others, as bench/kvm.ts takes them. */
    qsort(dense + 1, rounds, sizeof *dense, by_value);
    qsort(clean + 1, rounds, sizeof *clean, by_value);
    printf("RESULT dirty-dense-%smib %.1f\nRESULT dirty-clean-%smib %.1f\nINFO pages-per-round %ld\n", argv[2],
           dense[1 + rounds / 2], argv[2], clean[1 + rounds / 2], set / (rounds + 1));
    return 0;
  }
  if (strcmp(argv[1], "exit") == 0) {
    long iters = atol(argv[2]);
    size_t size = 0x10000;
    uint8_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) die("mmap");
    static const uint8_t code[] = {0xe6, 0x14, 0xeb, 0xfc}; /* out 0x14, al ; jmp back to it */
    memcpy(mem + 0x1000, code, sizeof code);
    struct kvm_userspace_memory_region r = {.slot = 0, .guest_phys_addr = 0, .memory_size = size, .userspace_addr = (uintptr_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("KVM_SET_USER_MEMORY_REGION");
    int cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (cpu < 0) die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");
    struct kvm_sregs s;
    if (ioctl(cpu, KVM_GET_SREGS, &s) < 0) die("KVM_GET_SREGS");
    s.cs.base = 0;
    s.cs.selector = 0;
    if (ioctl(cpu, KVM_SET_SREGS, &s) < 0) die("KVM_SET_SREGS");
    struct kvm_regs regs;
    memset(&regs, 0, sizeof regs);
    regs.rip = 0x1000;
    regs.rflags = 2;
    if (ioctl(cpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
    uint64_t sum = 0;
    for (int warm = 0; warm < 2; warm++) {
      double t0 = now_ns();
      for (long i = 0; i < iters; i++) {
        if (ioctl(cpu, KVM_RUN, 0) < 0) die("KVM_RUN");
        if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0x14) {
          fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
          return 1;
        }
        sum += ((uint8_t *)run)[run->io.data_offset]; /* the handler's share of the work */
      }
      if (warm == 1) printf("RESULT exit %.1f\n", (now_ns() - t0) / iters);
    }
    return sum == 1 ? 1 : 0;
  }
  fprintf(stderr, "unknown mode %s\n", argv[1]);
  return 2;
}
