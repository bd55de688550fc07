/* isa_copies.h — compiles the kernels of ISA_COPIES_SOURCE (a file of
 * functions named KERNEL(name)) once per instruction set: name_portable
 * always, and with GCC on x86-64 name_avx2 and name_avx512 under
 * `#pragma GCC target`, defining ISA_COPIES_X86. The including file defines
 * ISA_COPIES_SOURCE (a quoted file name) first and picks a copy at run time
 * from kernels_isa_current() (kernels.h). No include guard: one use per
 * translation unit. */
#define KERNEL(name) name##_portable
#include ISA_COPIES_SOURCE
#undef KERNEL
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ISA_COPIES_X86 1
#pragma GCC push_options
#pragma GCC target("avx2")
#define KERNEL(name) name##_avx2
#include ISA_COPIES_SOURCE
#undef KERNEL
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f")
#define KERNEL(name) name##_avx512
#include ISA_COPIES_SOURCE
#undef KERNEL
#pragma GCC pop_options
#endif
