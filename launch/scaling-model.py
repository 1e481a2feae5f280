#!/usr/bin/env python3
"""α-β scaling model of a data-parallel step (docs/performance.md, "Scaling model").

step(N) = T_c + max(0, T_ar(N) − h·T_c),  T_ar(N) = 2(N−1)/N · S/β + 2(N−1)·α  (ring all-reduce of S bytes)

T_c: one node's compute time for its micro-batch (measured `w2vbert bench model`), h: share of the step that the
all-reduce can hide behind (backward, ≈ 2/3 of the matrix products), S: 4 bytes per parameter (gradients
are reduced in f32 in both precisions), α, β: latency and bandwidth fitted to `w2vbert check dist
--bandwidth`. Prints a Markdown table: step time and efficiency T_c / step for 1–64 nodes.

  python3 launch/scaling-model.py --base-fp32 S --base-bf16 S --alpha SEC --beta BYTES_PER_S [--hide 0.66] [--cores C]
(a cell reads "step time (T_c / step)"; ⚠ marks all-reduce time above compute time)
"""
import argparse

PARAMS = {"base": 104_218_368, "xl": 606_066_688}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-fp32", type=float, required=True, help="measured base step time per node, fp32 (s)")
    ap.add_argument("--base-bf16", type=float, required=True, help="measured base step time per node, bf16 (s)")
    ap.add_argument("--alpha", type=float, required=True, help="all-reduce latency per ring step (s)")
    ap.add_argument("--beta", type=float, required=True, help="all-reduce bandwidth (bytes/s)")
    ap.add_argument("--hide", type=float, default=0.66, help="share of compute the all-reduce can overlap")
    ap.add_argument("--cores", type=int, default=1,
                    help="cores per node: the node runs the measured micro-batch that much faster (ideal threads)")
    a = ap.parse_args()
    nodes = [1, 2, 4, 8, 16, 32, 64]
    print("| preset | precision | compute T_c | " + " | ".join(f"{n} node{'s' if n > 1 else ''}" for n in nodes) + " |")
    print("|---|---|---|" + "---|" * len(nodes))
    for preset in ("base", "xl"):
        for prec, tb in (("fp32", a.base_fp32), ("bf16", a.base_bf16)):
            # xl: compute scaled from base by the parameter count (matrix-product FLOPs per frame ∝ parameters).
            tc = tb * PARAMS[preset] / PARAMS["base"] / a.cores
            s = 4 * PARAMS[preset]
            cells = []
            for n in nodes:
                tar = 0.0 if n == 1 else 2 * (n - 1) / n * s / a.beta + 2 * (n - 1) * a.alpha
                step = tc + max(0.0, tar - a.hide * tc)
                cells.append(f"{step:.2f} s ({100 * tc / step:.0f} %)" + (" ⚠" if tar > tc else ""))
            print(f"| {preset} | {prec} | {tc:.2f} s | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
