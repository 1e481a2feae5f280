// The AdamW update of one run of parameters (Sources/W2VBert/Optimizer.swift splits the runs over the
// rank's threads). In C so that it vectorises (Swift lowers a SIMD square root to one libm call per lane)
// while staying exact: no contraction into fused multiply-adds, so every element gets the same IEEE
// operations in the same order whatever the vector width, the build target or the split.
#include "ccompute.h"
#include "clones.h"
#include <math.h>

#pragma clang fp contract(off)

W2V_CLONES
void w2v_adamw(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, long n,
               float gscale, float keep, float b1, float b2, float step_size, float inv_sqrt_bc2, float eps) {
    const float c1 = 1 - b1, c2 = 1 - b2;
    for (long i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        float mi = b1 * m[i] + c1 * gi;
        float vi = b2 * v[i] + c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * keep - step_size * mi / (__builtin_sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}
