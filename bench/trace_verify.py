"""What the trace store's per-chunk checksums cost a reader: verified vs unverified reads, side by side.

Writes one synthetic Qwen2.5-7B-shaped trace (28 layers × 18944 channels, masks only, as the simulator reads
it), then streams it alternately with and without CRC verification (the same reader with its checksums
dropped) and reports the ratio of the medians. Run: python bench/trace_verify.py [--tokens 4096]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bench._results import write_result
from codesign.trace.store import TraceReader
from codesign.trace.synth import PRESETS, SynthSpec, write_synthetic


def stream(reader: TraceReader) -> tuple[float, int]:
    reader._cached = None  # no chunk kept from the previous pass
    t0 = time.perf_counter()
    n = sum(c.mask_bits.nbytes for c in reader.iter_chunks(with_logits=False))
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    hidden, inter, layers = PRESETS["qwen2.5-7b"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.zarr"
        spec = SynthSpec("uniform", hidden, inter, layers, sequences=16, decode_tokens=args.tokens // 16)
        write_synthetic(spec, path, with_global=False)
        verified, plain = TraceReader(path), TraceReader(path)
        plain._crc = None  # the legacy path: counts and files only, plus its cheap all-zero-row check
        times = {"verified": [], "unverified": []}
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
            times["verified"].append(stream(verified)[0])
            dt, nbytes = stream(plain)
            times["unverified"].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "what": "stream a 7B-shaped trace's masks: CRC-verified vs without CRCs (same reader, same files)",
        "tokens": spec.num_tokens,
        "mask_bytes": nbytes,
        "median_s": med,
        "all_s": times,
        "verified_over_unverified": med["verified"] / med["unverified"],
        "verified_gb_per_s": nbytes / med["verified"] / 1e9,
        "host": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
    }
    out = Path(__file__).parent / "results" / "trace_verify.json"
    write_result(out, result)
    print(f"verified {med['verified']:.3f} s, unverified {med['unverified']:.3f} s "
          f"(× {result['verified_over_unverified']:.3f}) for {nbytes / 1e6:.0f} MB of masks -> {out}")  # fmt: skip


if __name__ == "__main__":
    main()
