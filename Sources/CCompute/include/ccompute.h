#ifndef W2VBERT_CCOMPUTE_H
#define W2VBERT_CCOMPUTE_H
#include <stddef.h>
// The oneDNN side of Tensor's one GEMM entry point (Sources/Tensor/Gemm.swift). Row-major
// C[M×N] = alpha·op(A)[M×K]·op(B)[K×N] + beta·C with lda/ldb/ldc the row strides as stored.
// w2v_dnnl_gemm: f32 operands used in place; w2v_dnnl_gemm_bf16: bf16 operands packed by w2v_bf16_pack
// (round to nearest even), f32 accumulate and output. Primitives are cached per calling thread by
// (precision, transposes, shape, strides, alpha, beta, bias); every thread owns its cache, operand buffers
// and scratchpad, so calls from several threads at once are safe. The calling thread blocks asynchronous
// signals while a product runs (dnnl_gemm.c says why). bias (may be NULL; only with alpha 1 and beta 0):
// C = op(A)·op(B) + bias[N] broadcast over the rows, added in the kernel's epilogue. Returns 0 on success,
// otherwise a dnnl_status_t.

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when oneDNN can run on this CPU with AVX-512 (f32 engine worth using), else 0.
int w2v_dnnl_has_avx512(void);
/// 1 when the CPU has native bf16 dot products (avx512_bf16 / AMX), else 0.
int w2v_dnnl_has_bf16(void);
/// The instruction set behind native bf16: "amx" or "avx512_bf16" ("" when there is none).
const char *w2v_dnnl_bf16_isa(void);
/// oneDNN's version, "major.minor.patch".
const char *w2v_dnnl_version(void);
/// OpenMP threads oneDNN uses for calls made from the calling thread.
void w2v_dnnl_set_threads(int n);
int w2v_dnnl_get_threads(void);

int w2v_dnnl_gemm(int transA, int transB, long m, long n, long k, float alpha,
                  const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc, const float *bias);

/// bf16 product on operands already packed by w2v_bf16_pack: A [M×K] (transA 0, row stride lda) or stored
/// [K×M] (transA 1, row stride lda), B [K×N] with row stride ldb; f32 accumulation and C. Cached like above.
int w2v_dnnl_gemm_bf16(int transA, long m, long n, long k, float alpha, const unsigned short *a, long lda,
                       const unsigned short *b, long ldb, float beta, float *c, long ldc, const float *bias);
/// Converts src [rows×cols] (row stride ld) to bf16 (round to nearest even): rows [r0, r1) dense into
/// dst[r·cols + c], or with transpose 1 columns [r0, r1) into dst[c·rows + r] (rows r0..<r1 of dst). Disjoint
/// ranges may run on several threads.
void w2v_bf16_pack(unsigned short *dst, const float *src, long ld, long rows, long cols, int transpose, long r0, long r1);
/// The calling thread's operand buffer `which` (0, 1: a product's bf16 packing or f32 window copy; 2, 3:
/// bf16 copies shared by several products; 4: the partial sums of `blockSums`), grown to at least `bytes`;
/// NULL when out of memory.
void *w2v_thread_buffer(int which, size_t bytes);

/// The implementation oneDNN picked for the last primitive this thread created (for the start-up log).
const char *w2v_dnnl_last_impl(void);
/// Primitives this thread created so far (cache misses).
long w2v_dnnl_created(void);

/// f32 → bf16 (round to nearest even) and back, for tests and the reference path.
void w2v_f32_to_bf16(unsigned short *dst, const float *src, long n);
void w2v_bf16_round(float *dst, const float *src, long n);

// ---- Swish (swish.c) --------------------------------------------------------------------------------
/// y = x·σ(x) over n values; the same bits as the Swift kernels' fastExp-based sigmoid.
void w2v_swish_forward(float *y, const float *x, long n);
/// dx = (overwrite ? 0 : dx) + dy·σ(x)·(1 + x·(1 − σ(x))) over n values.
void w2v_swish_backward(float *dx, const float *dy, const float *x, long n, int overwrite);

// ---- AdamW (adamw.c) ---------------------------------------------------------------------------------
/// One run of n parameters: g' = g·gscale; m = b1·m + (1 − b1)·g'; v = b2·v + (1 − b2)·g'·g';
/// p = p·keep − step_size·m / (√v·inv_sqrt_bc2 + eps). Exact IEEE f32, no fused multiply-adds.
void w2v_adamw(float *p, const float *g, float *m, float *v, long n, float gscale, float keep, float b1,
               float b2, float step_size, float inv_sqrt_bc2, float eps);

// ---- The rank's thread pool (pool.c) ----------------------------------------------------------
// One persistent pool per process: `threads − 1` workers plus the calling thread. w2v_pool_run splits
// [0, n) into `parts` contiguous ranges [i·n/parts, (i+1)·n/parts) (parts = min(threads, n)), runs
// part 0 on the caller and the others on the workers, and returns when all are done. A call made from
// inside a pool task runs serially on that thread (no nesting). Workers spin briefly, then sleep.

typedef void (*w2v_range_fn)(void *ctx, long begin, long end);

/// Sets the pool size (1 = no workers). Starts workers as needed; call from the main thread while idle.
void w2v_pool_set_threads(int threads);
int w2v_pool_threads(void);
/// 1 inside a pool task (on a worker or the caller while it runs part 0).
int w2v_pool_in_task(void);
void w2v_pool_run(long n, void *ctx, w2v_range_fn fn);
/// CPUs this process may run on (sched_getaffinity), at least 1.
int w2v_affinity_cpus(void);

#ifdef __cplusplus
}
#endif
#endif
