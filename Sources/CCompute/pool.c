// The rank's thread pool (see include/ccompute.h).
#define _GNU_SOURCE
#include "ccompute.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <immintrin.h>

extern void omp_set_num_threads(int);

#define MAX_THREADS 256
#define SPIN_ROUNDS 40000   /* ~0.1–0.3 ms of pause before a worker sleeps */

static int g_threads = 1;
static int g_started = 0;                 // workers started (1..g_started)
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static atomic_long g_generation;          // bumped per job
static atomic_int g_pending;              // parts not yet finished by workers
static w2v_range_fn g_fn;
static void *g_ctx;
static long g_n;
static int g_parts;
static __thread int t_in_task;
static long g_created_generation;         // written before pthread_create, read by the new worker

static void run_part(int part) {
    long lo = g_n * part / g_parts, hi = g_n * (part + 1) / g_parts;
    if (lo < hi) g_fn(g_ctx, lo, hi);
}

static void *worker(void *arg) {
    int id = (int)(long)arg;   // 1..threads-1
    omp_set_num_threads(1);    // oneDNN/OpenMP calls made from a worker stay on that worker
    t_in_task = 1;
    long seen = g_created_generation;  // the generation when this worker was created (no job in between)
    for (;;) {
        long gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&g_generation, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ROUNDS) { _mm_pause(); continue; }
            pthread_mutex_lock(&g_mu);
            while ((gen = atomic_load_explicit(&g_generation, memory_order_acquire)) == seen)
                pthread_cond_wait(&g_cv, &g_mu);
            pthread_mutex_unlock(&g_mu);
            break;
        }
        seen = gen;
        if (id < g_parts) run_part(id);
        atomic_fetch_sub_explicit(&g_pending, 1, memory_order_acq_rel);  // every started worker acknowledges
    }
    return NULL;
}

void w2v_pool_set_threads(int threads) {
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    g_created_generation = atomic_load(&g_generation);
    while (g_started < threads - 1) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, worker, (void *)(long)(g_started + 1)) != 0) { pthread_attr_destroy(&attr); break; }
        pthread_attr_destroy(&attr);
        g_started++;
    }
    g_threads = threads <= g_started + 1 ? threads : g_started + 1;
}

int w2v_pool_threads(void) { return g_threads; }
int w2v_pool_in_task(void) { return t_in_task; }

void w2v_pool_run(long n, void *ctx, w2v_range_fn fn) {
    if (n <= 0) return;
    int parts = g_threads < n ? g_threads : (int)n;
    if (parts <= 1 || t_in_task) { fn(ctx, 0, n); return; }
    g_fn = fn; g_ctx = ctx; g_n = n; g_parts = parts;
    // Every started worker wakes and acknowledges every job (those with id ≥ parts run nothing), so no
    // worker can still be reading this job's fields when the next one is posted.
    atomic_store_explicit(&g_pending, g_started, memory_order_relaxed);
    pthread_mutex_lock(&g_mu);
    atomic_fetch_add_explicit(&g_generation, 1, memory_order_release);
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    t_in_task = 1;
    run_part(0);
    t_in_task = 0;
    while (atomic_load_explicit(&g_pending, memory_order_acquire) > 0) _mm_pause();
}

int w2v_affinity_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int c = CPU_COUNT(&set);
    return c < 1 ? 1 : c;
}
