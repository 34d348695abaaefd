"""Measured weight traffic of the sparse SwiGLU kernel vs batch size (Triton interpreter, CPU).

For SmolLM2-135M FFN shapes (d 576, I 1536, B 64, k 16) and 1, 4, 16, 64 tokens with independent random masks,
the traffic probe counts the 32-byte sectors of bundled weights the kernel loads; compared side by side with the
bundled-layout prediction (channels read x bundle bytes) and with dense. Shows how batching erodes the saving
(the union of independent 16/64 masks). Writes bench/results/kernels-probe-<shape>.json.
    PYTHONPATH=. python bench/kernels_cpu.py [--out F] [--force]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ["TRITON_INTERPRET"] = "1"  # before codesign.kernels defines its kernels

from codesign.kernels.probe import probe_sparse_swiglu  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=576)
    p.add_argument("--intermediate", type=int, default=1536)
    p.add_argument("--tokens", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--out", default=None)
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    out = args.out or f"bench/results/kernels-probe-d{args.hidden}-i{args.intermediate}.json"
    if os.path.exists(out) and not args.force:
        print(f"{out} exists (pass --force)", file=sys.stderr)
        return 2
    rows = []
    for tokens in args.tokens:
        start = time.time()
        r = probe_sparse_swiglu(args.hidden, args.intermediate, 64, 16, tokens=tokens, seed=tokens)
        r.pop("probe")
        r["probe_wall_s"] = time.time() - start
        rows.append(r)
        print(
            f"tokens {tokens:3d}: weights measured {r['weight_bytes_measured']:>9d} B, predicted "
            f"{r['weight_bytes_predicted']:>9d} B, {r['measured_over_dense']:.3f} of dense ({r['probe_wall_s']:.1f}s)",
            flush=True,
        )
    result = {"note": "independent random masks per token (pessimistic for batches)", "rows": rows}
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
