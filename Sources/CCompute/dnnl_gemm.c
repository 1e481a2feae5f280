// oneDNN matmul behind Tensor's gemm (see include/ccompute.h for the contract).
#include "ccompute.h"
#include <oneapi/dnnl/dnnl.h>
#include <immintrin.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void omp_set_num_threads(int);
extern int omp_get_max_threads(void);

static dnnl_engine_t g_engine;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_bf16_native;
static sigset_t g_async_signals;  // blocked while a primitive runs (see run)

static void init_engine(void) {
    sigfillset(&g_async_signals);
    const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) sigdelset(&g_async_signals, faults[i]);
    if (dnnl_engine_create(&g_engine, dnnl_cpu, 0) != dnnl_success) g_engine = NULL;
    g_bf16_native = dnnl_get_effective_cpu_isa() >= dnnl_cpu_isa_avx512_core_bf16
                    && __builtin_cpu_supports("avx512f");
}

int w2v_dnnl_has_avx512(void) {
    pthread_once(&g_once, init_engine);
    return g_engine != NULL && dnnl_get_effective_cpu_isa() >= dnnl_cpu_isa_avx512_core;
}
int w2v_dnnl_has_bf16(void) { pthread_once(&g_once, init_engine); return g_engine != NULL && g_bf16_native; }
const char *w2v_dnnl_bf16_isa(void) {
    if (!w2v_dnnl_has_bf16()) return "";
    return dnnl_get_effective_cpu_isa() >= dnnl_cpu_isa_avx512_core_amx ? "amx" : "avx512_bf16";
}

const char *w2v_dnnl_version(void) {
    static char buf[32];
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, sizeof buf, "%d.%d.%d", v->major, v->minor, v->patch);
    return buf;
}

void w2v_dnnl_set_threads(int n) { omp_set_num_threads(n < 1 ? 1 : n); }
int w2v_dnnl_get_threads(void) { return omp_get_max_threads(); }

// ---- f32 → bf16 -------------------------------------------------------------------------------

static inline uint16_t bf16_scalar(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

__attribute__((target("avx512f,avx512bf16,avx512vl")))
static void convert_row_native(uint16_t *dst, const float *src, long n) {
    long i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)v);
    }
    for (; i + 16 <= n; i += 16) {
        __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)v);
    }
    for (; i < n; i++) dst[i] = bf16_scalar(src[i]);
}

static void convert_row(uint16_t *dst, const float *src, long n) {
    if (g_bf16_native) { convert_row_native(dst, src, n); return; }
    for (long i = 0; i < n; i++) dst[i] = bf16_scalar(src[i]);
}

// dst[cols×rows] (dense) = bf16(srcᵀ) for source columns [from, to), i.e. whole rows of dst (threads that
// split by destination rows never write the same cache line), src stored [rows×cols] with row stride ld.
// Bands of 64 columns (whole cache lines of src, each read once) walked down the rows in 16×16 tiles.
static void convert_transposed(uint16_t *dst, const float *src, long ld, long rows, long from, long to) {
    uint16_t tile[16 * 16];
    for (long band = from; band < to; band += 64) {
        long band_end = band + 64 < to ? band + 64 : to;
        for (long r0 = 0; r0 < rows; r0 += 16) {
            long rn = rows - r0 < 16 ? rows - r0 : 16;
            for (long c0 = band; c0 < band_end; c0 += 16) {
                long cn = band_end - c0 < 16 ? band_end - c0 : 16;
                for (long r = 0; r < rn; r++) convert_row(tile + r * 16, src + (r0 + r) * ld + c0, cn);
                for (long c = 0; c < cn; c++) {
                    uint16_t *d = dst + (c0 + c) * rows + r0;
                    for (long r = 0; r < rn; r++) d[r] = tile[r * 16 + c];
                }
            }
        }
    }
}

void w2v_f32_to_bf16(unsigned short *dst, const float *src, long n) {
    pthread_once(&g_once, init_engine);
    convert_row(dst, src, n);
}

void w2v_bf16_round(float *dst, const float *src, long n) {
    for (long i = 0; i < n; i++) {
        uint32_t u = (uint32_t)bf16_scalar(src[i]) << 16;
        memcpy(dst + i, &u, 4);
    }
}

// ---- per-thread state ---------------------------------------------------------------------------

typedef struct {
    long prec, ta, tb, m, n, k, lda, ldb, ldc, bias;
    float alpha, beta;
} key_t_;

typedef struct {
    key_t_ key;
    int used;
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, dst, bias, scratch;
    size_t scratch_bytes;
} entry_t;

#define CACHE_SLOTS 4096  /* power of two; a full table is flushed (shapes come from a few buckets) */

typedef struct {
    dnnl_stream_t stream;
    entry_t *slots;
    long count, created;
    void *buf[5], *buf_s;
    size_t cap[5], cap_s;
    char impl[128];
} tstate_t;

static __thread tstate_t *t_state;

static tstate_t *state(void) {
    if (t_state) return t_state;
    pthread_once(&g_once, init_engine);
    if (!g_engine) return NULL;
    tstate_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    if (dnnl_stream_create(&s->stream, g_engine, dnnl_stream_default_flags) != dnnl_success) { free(s); return NULL; }
    s->slots = calloc(CACHE_SLOTS, sizeof(entry_t));
    if (!s->slots) { free(s); return NULL; }
    t_state = s;
    return s;
}

static int grow(void **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t c = need + need / 4 + 4096;
    void *p = NULL;
    if (posix_memalign(&p, 64, c) != 0) return -1;
    free(*buf);
    *buf = p; *cap = c;
    return 0;
}

static uint64_t hash_key(const key_t_ *k) {
    const unsigned char *p = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof *k; i++) { h ^= p[i]; h *= 1099511628211ull; }
    return h;
}

static void destroy_entry(entry_t *e) {
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->src) dnnl_memory_destroy(e->src);
    if (e->wei) dnnl_memory_destroy(e->wei);
    if (e->dst) dnnl_memory_destroy(e->dst);
    if (e->bias) dnnl_memory_destroy(e->bias);
    if (e->scratch) dnnl_memory_destroy(e->scratch);
    memset(e, 0, sizeof *e);
}

static dnnl_status_t create_entry(tstate_t *s, entry_t *e, const key_t_ *k) {
    dnnl_status_t st;
    dnnl_data_type_t in_t = k->prec ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t a_md, b_md, c_md, bias_md;
    dnnl_dims_t a_dims = {k->m, k->k}, b_dims = {k->k, k->n}, c_dims = {k->m, k->n};
    dnnl_dims_t a_str = {k->ta ? 1 : k->lda, k->ta ? k->lda : 1};
    dnnl_dims_t b_str = {k->tb ? 1 : k->ldb, k->tb ? k->ldb : 1};
    dnnl_dims_t c_str = {k->ldc, 1};
    if ((st = dnnl_memory_desc_init_by_strides(&a_md, 2, a_dims, in_t, a_str))) return st;
    if ((st = dnnl_memory_desc_init_by_strides(&b_md, 2, b_dims, in_t, b_str))) return st;
    if ((st = dnnl_memory_desc_init_by_strides(&c_md, 2, c_dims, dnnl_f32, c_str))) return st;
    dnnl_dims_t bias_dims = {1, k->n}, bias_str = {k->n, 1};
    if ((st = dnnl_memory_desc_init_by_strides(&bias_md, 2, bias_dims, dnnl_f32, bias_str))) return st;
    dnnl_matmul_desc_t md;
    if ((st = dnnl_matmul_desc_init(&md, &a_md, &b_md, k->bias ? &bias_md : NULL, &c_md))) return st;
    dnnl_primitive_attr_t attr;
    if ((st = dnnl_primitive_attr_create(&attr))) return st;
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (k->alpha != 1.0f) dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha);
    if (k->beta != 0.0f) {
        dnnl_post_ops_t po;
        dnnl_post_ops_create(&po);
        dnnl_post_ops_append_sum(po, k->beta);
        dnnl_primitive_attr_set_post_ops(attr, po);
        dnnl_post_ops_destroy(po);
    }
    dnnl_primitive_desc_t pd;
    st = dnnl_primitive_desc_create(&pd, &md, attr, g_engine, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st) return st;
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
        snprintf(s->impl, sizeof s->impl, "%s", impl);
    const dnnl_memory_desc_t *sp_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    e->scratch_bytes = sp_md ? dnnl_memory_desc_get_size(sp_md) : 0;
    st = dnnl_primitive_create(&e->prim, pd);
    if (!st) st = dnnl_memory_create(&e->src, &a_md, g_engine, DNNL_MEMORY_NONE);
    if (!st) st = dnnl_memory_create(&e->wei, &b_md, g_engine, DNNL_MEMORY_NONE);
    if (!st) st = dnnl_memory_create(&e->dst, &c_md, g_engine, DNNL_MEMORY_NONE);
    if (!st && k->bias) st = dnnl_memory_create(&e->bias, &bias_md, g_engine, DNNL_MEMORY_NONE);
    if (!st && e->scratch_bytes) st = dnnl_memory_create(&e->scratch, sp_md, g_engine, DNNL_MEMORY_NONE);
    dnnl_primitive_desc_destroy(pd);
    if (st) { destroy_entry(e); return st; }
    e->key = *k; e->used = 1;
    s->created++;
    return dnnl_success;
}

// The calling thread's cached primitive for key (created on a miss; the table is flushed when half full).
static dnnl_status_t lookup(tstate_t *s, const key_t_ *key, entry_t **out) {
    uint64_t h = hash_key(key);
    entry_t *e = NULL;
    for (long probe = 0; probe < CACHE_SLOTS; probe++) {
        entry_t *x = &s->slots[(h + probe) & (CACHE_SLOTS - 1)];
        if (!x->used) { e = x; break; }
        if (memcmp(&x->key, key, sizeof *key) == 0) { e = x; break; }
    }
    if (!e || (!e->used && s->count * 2 >= CACHE_SLOTS)) {
        for (long i = 0; i < CACHE_SLOTS; i++) if (s->slots[i].used) destroy_entry(&s->slots[i]);
        s->count = 0;
        e = &s->slots[h & (CACHE_SLOTS - 1)];
    }
    if (!e->used) {
        dnnl_status_t st = create_entry(s, e, key);
        if (st) return st;
        s->count++;
    }
    *out = e;
    return dnnl_success;
}

static dnnl_status_t run(tstate_t *s, entry_t *e, const void *a, const void *b, float *c, const float *bias) {
    if (grow(&s->buf_s, &s->cap_s, e->scratch_bytes)) return dnnl_out_of_memory;
    dnnl_memory_set_data_handle(e->src, (void *)a);
    dnnl_memory_set_data_handle(e->wei, (void *)b);
    dnnl_memory_set_data_handle(e->dst, c);
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, e->src}, {DNNL_ARG_WEIGHTS, e->wei}, {DNNL_ARG_DST, e->dst}};
    int nargs = 3;
    if (e->bias) { dnnl_memory_set_data_handle(e->bias, (void *)bias); args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, e->bias}; }
    if (e->scratch) {
        dnnl_memory_set_data_handle(e->scratch, s->buf_s);
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, e->scratch};
    }
    // oneDNN's JIT f32 GEMM kernel (behind the "gemm:jit" matmul, which oneDNN picks for many of the f32 products)
    // runs with rsp pointing at a page-aligned workspace it mallocs when a K block does not fit its stack buffer.
    // A signal handled on this thread meanwhile gets its frame (about 3 KB with the AVX-512 state) written below
    // that rsp, over the heap chunk before the workspace, and glibc aborts at a later free there ("corrupted size
    // vs. prev_size while consolidating"). So asynchronous signals (SIGTERM, SIGUSR1, ...) are blocked while a
    // primitive runs: one that arrives meanwhile goes to another thread or waits until the kernel has returned.
    sigset_t old;
    pthread_sigmask(SIG_BLOCK, &g_async_signals, &old);
    dnnl_status_t st = dnnl_primitive_execute(e->prim, s->stream, nargs, args);
    if (!st) st = dnnl_stream_wait(s->stream);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return st;
}

static void fill_key(key_t_ *key, int prec, int ta, int tb, long m, long n, long k, float alpha,
                     long lda, long ldb, float beta, long ldc, const float *bias) {
    memset(key, 0, sizeof *key);  // padding bytes take part in the hash
    key->prec = prec; key->ta = ta ? 1 : 0; key->tb = tb ? 1 : 0;
    key->m = m; key->n = n; key->k = k;
    key->lda = lda; key->ldb = ldb; key->ldc = ldc;
    key->alpha = alpha; key->beta = beta;
    key->bias = bias != NULL;
}

int w2v_dnnl_gemm(int transA, int transB, long m, long n, long k, float alpha,
                  const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc, const float *bias) {
    tstate_t *s = state();
    if (!s) return dnnl_runtime_error;
    if (bias && (alpha != 1.0f || beta != 0.0f)) return dnnl_invalid_arguments;
    key_t_ key;
    fill_key(&key, 0, transA, transB, m, n, k, alpha, lda, ldb, beta, ldc, bias);
    entry_t *e;
    dnnl_status_t st = lookup(s, &key, &e);
    if (st) return st;
    return run(s, e, a, b, c, bias);
}

int w2v_dnnl_gemm_bf16(int transA, long m, long n, long k, float alpha, const unsigned short *a, long lda,
                       const unsigned short *b, long ldb, float beta, float *c, long ldc, const float *bias) {
    tstate_t *s = state();
    if (!s) return dnnl_runtime_error;
    if (bias && (alpha != 1.0f || beta != 0.0f)) return dnnl_invalid_arguments;
    key_t_ key;
    fill_key(&key, 1, transA, 0, m, n, k, alpha, lda, ldb, beta, ldc, bias);
    entry_t *e;
    dnnl_status_t st = lookup(s, &key, &e);
    if (st) return st;
    return run(s, e, a, b, c, bias);
}

void *w2v_thread_buffer(int which, size_t bytes) {
    tstate_t *s = state();
    if (!s || which < 0 || which > 4) return NULL;
    return grow(&s->buf[which], &s->cap[which], bytes) ? NULL : s->buf[which];
}

void w2v_bf16_pack(unsigned short *dst, const float *src, long ld, long rows, long cols, int transpose,
                   long r0, long r1) {
    pthread_once(&g_once, init_engine);
    if (r1 <= r0 || cols <= 0) return;
    if (transpose) { convert_transposed(dst, src, ld, rows, r0, r1); return; }
    if (ld == cols) { convert_row(dst + r0 * cols, src + r0 * ld, (r1 - r0) * cols); return; }
    for (long r = r0; r < r1; r++) convert_row(dst + r * cols, src + r * ld, cols);
}

const char *w2v_dnnl_last_impl(void) { tstate_t *s = state(); return s ? s->impl : ""; }
long w2v_dnnl_created(void) { tstate_t *s = state(); return s ? s->created : 0; }
