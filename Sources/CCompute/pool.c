// The rank's thread pool (see include/ccompute.h).
//
// Parts are claimed dynamically under a mutex: the caller and every awake worker take the next unclaimed
// part until none is left, and the caller then waits only for parts already being run. A worker that the
// OS has not scheduled (other processes on the cores) therefore never holds up a job: the caller runs its
// part. Which part covers which range is fixed by the part index alone, so results do not depend on which
// thread ran it.
#define _GNU_SOURCE
#include "ccompute.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <immintrin.h>

extern void omp_set_num_threads(int);

#define MAX_THREADS 256
#define SPIN_ROUNDS 20000   /* pauses before a waiting worker sleeps */

static int g_threads = 1;
static int g_started = 0;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;     // guards the job fields and claims
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static atomic_long g_generation;                            // bumped per job (read without the lock to spin)
static atomic_long g_done;                                  // parts of the current job finished
static long g_next;                                         // next unclaimed part (under g_mu)
static w2v_range_fn g_fn;
static void *g_ctx;
static long g_n;
static long g_parts;
static __thread int t_in_task;

// Claims one part of job `gen` (returns 0 when none is left or the job is over).
static int claim(long gen, w2v_range_fn *fn, void **ctx, long *lo, long *hi) {
    int ok = 0;
    pthread_mutex_lock(&g_mu);
    if (atomic_load_explicit(&g_generation, memory_order_relaxed) == gen && g_next < g_parts) {
        long p = g_next++;
        *fn = g_fn; *ctx = g_ctx;
        *lo = g_n * p / g_parts; *hi = g_n * (p + 1) / g_parts;
        ok = 1;
    }
    pthread_mutex_unlock(&g_mu);
    return ok;
}

static void run_claimed(long gen) {
    w2v_range_fn fn; void *ctx; long lo, hi;
    while (claim(gen, &fn, &ctx, &lo, &hi)) {
        if (lo < hi) fn(ctx, lo, hi);
        atomic_fetch_add_explicit(&g_done, 1, memory_order_acq_rel);
    }
}

static void *worker(void *arg) {
    (void)arg;
    omp_set_num_threads(1);    // oneDNN/OpenMP calls made from a worker stay on that worker
    t_in_task = 1;
    long seen = 0;
    pthread_mutex_lock(&g_mu);
    seen = atomic_load(&g_generation);
    pthread_mutex_unlock(&g_mu);
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
        run_claimed(gen);
    }
    return NULL;
}

void w2v_pool_set_threads(int threads) {
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    while (g_started < threads - 1) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, worker, NULL) != 0) { pthread_attr_destroy(&attr); break; }
        pthread_attr_destroy(&attr);
        g_started++;
    }
    g_threads = threads <= g_started + 1 ? threads : g_started + 1;
}

int w2v_pool_threads(void) { return g_threads; }
int w2v_pool_in_task(void) { return t_in_task; }

void w2v_pool_run(long n, void *ctx, w2v_range_fn fn) {
    if (n <= 0) return;
    // Up to 4 parts per thread: an idle thread takes over the parts of one that the OS has descheduled.
    long parts = (long)g_threads * 4 < n ? (long)g_threads * 4 : n;
    if (parts <= 1 || t_in_task) { fn(ctx, 0, n); return; }
    pthread_mutex_lock(&g_mu);
    g_fn = fn; g_ctx = ctx; g_n = n; g_parts = parts; g_next = 0;
    atomic_store_explicit(&g_done, 0, memory_order_relaxed);
    long gen = atomic_fetch_add_explicit(&g_generation, 1, memory_order_release) + 1;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    t_in_task = 1;
    run_claimed(gen);
    t_in_task = 0;
    // Wait for the parts workers claimed. Spin, then yield the core.
    for (long spins = 0; atomic_load_explicit(&g_done, memory_order_acquire) < parts; spins++) {
        if (spins < 4000) _mm_pause(); else sched_yield();
    }
}

int w2v_affinity_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int c = CPU_COUNT(&set);
    return c < 1 ? 1 : c;
}
