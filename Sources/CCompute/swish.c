// Swish forward and backward over a run of values (Sources/Tensor/Activations.swift splits the runs over the
// rank's threads). In C so that the build picks AVX-512 on CPUs that have it (Swift's kernels are compiled
// for Haswell; these were the largest elementwise cost of a step). The exp is FastMath.swift's `fastExp`
// operation for operation, with no contraction into fused multiply-adds: every value gets the same IEEE
// results as the Swift version, whatever the vector width or the split.
#include "ccompute.h"
#include "clones.h"
#include <stdint.h>
#include <string.h>

#pragma clang fp contract(off)

static inline uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

// FastMath.swift's fastExp: clamp, n = round(x/ln2) by the 1.5·2²³ trick, r = x − n·ln2 in two parts,
// Cephes' degree-6 polynomial, 2ⁿ in the exponent bits; 0 below −87.3.
static inline float fast_exp(float x) {
    const float lo = -87.3f, hi = 88.3f, magic = 12582912.0f;
    float xc = x < lo ? lo : x;
    xc = x > hi ? hi : xc;
    float t = xc * 1.442695041f + magic;
    float n = t - magic;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * r2 + r + 1;
    uint32_t ni = bits(t) - bits(magic);
    float scale = from_bits((ni + 127u) << 23);
    float out = e * scale;
    return x < lo ? 0.0f : out;
}

W2V_CLONES
void w2v_swish_forward(float *restrict y, const float *restrict x, long n) {
    for (long i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + fast_exp(-x[i]));
        y[i] = s * x[i];
    }
}

W2V_CLONES
void w2v_swish_backward(float *restrict dx, const float *restrict dy, const float *restrict x, long n, int overwrite) {
    if (overwrite) {
        for (long i = 0; i < n; i++) {
            float s = 1.0f / (1.0f + fast_exp(-x[i]));
            dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
        }
    } else {
        for (long i = 0; i < n; i++) {
            float s = 1.0f / (1.0f + fast_exp(-x[i]));
            dx[i] = dx[i] + dy[i] * s * (1.0f + x[i] * (1.0f - s));
        }
    }
}
