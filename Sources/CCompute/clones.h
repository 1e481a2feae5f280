// Function multiversioning for the C loops (adamw.c, swish.c): one clone each for AVX-512, AVX2 and the
// baseline, picked at load time by the CPU, so one binary runs on any x86 node and uses what it has.
#ifndef W2VBERT_CLONES_H
#define W2VBERT_CLONES_H
#if defined(__x86_64__) && defined(__clang__)
#define W2V_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define W2V_CLONES
#endif
#endif
