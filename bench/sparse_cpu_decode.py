"""CPU batch-1 decode of one SwiGLU FFN at Qwen2.5-7B shapes (d 3584, I 18944, bf16): sparse 16/64 vs dense.

Side by side in one run, interleaved repetitions, medians reported as ratios (absolute CPU times on a shared
2-core VM are noise; ratios are what this bench claims):

* dense:   down(silu(gate(x)) * up(x)) with torch bf16 linears (the HF MLP's own compute);
* sparse:  SparseSwiGLU.forward in eval mode = predictor + bank top-k + gathered kept channels (gather.py);
* pred+topk: the predictor and the bank top-k alone, as a fraction of the dense FFN's time and FLOPs;
* a sweep of the decode gather chunk (channels gathered per step) that picked gather.DECODE_CHUNK.

Weights are random (speed does not depend on their values). Writes bench/results/sparse_cpu_decode.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _results import torch_host, write_result  # bench/_results.py

import codesign.sparse.gather as gather
from codesign.sparse import SparseSwiGLU, SparsityConfig
from codesign.sparse.topk import bank_topk_indices

OUT = Path(__file__).parent / "results" / "sparse_cpu_decode.json"


def timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=3584)
    ap.add_argument("--intermediate", type=int, default=18944)
    ap.add_argument("--bank-size", type=int, default=64)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--rank", type=int, default=128)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--chunks", default="32,64,128,256")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    d, i, b, k, r = args.hidden, args.intermediate, args.bank_size, args.k, args.rank
    dtype = torch.bfloat16

    cfg = SparsityConfig(bank_size=b, k=k, rank=r, init="random")
    mlp = SparseSwiGLU(d, i, cfg, layer_idx=0, dtype=dtype).eval()
    with torch.no_grad():
        for lin in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
            lin.weight.normal_(0, d**-0.5)
    x = torch.randn(1, d, dtype=dtype)

    def dense():
        with torch.no_grad():
            return F.linear(
                F.silu(F.linear(x, mlp.gate_proj.weight)) * F.linear(x, mlp.up_proj.weight),
                mlp.down_proj.weight,
            )

    def sparse():
        with torch.no_grad():
            return mlp(x)

    def pred_topk():
        with torch.no_grad():
            return bank_topk_indices(mlp.predictor(x).float(), b, k)

    # Correctness in the same run: the gathered path equals the masked dense reference.
    with torch.no_grad():
        out = sparse()
        mask = mlp.last_mask
        g, u = (
            F.linear(x.float(), mlp.gate_proj.weight.float()),
            F.linear(x.float(), mlp.up_proj.weight.float()),
        )
        ref = F.linear(F.silu(g) * u * mask, mlp.down_proj.weight.float())
        max_err = float((out.float() - ref).abs().max() / ref.abs().max())
    assert int(mask.sum()) == i // b * k

    for fn in (dense, sparse, pred_topk):  # warm-up (also builds the decode bundle once)
        timed(fn, 3)
    times = {"dense": [], "sparse": [], "pred_topk": []}
    for _ in range(args.reps):  # interleaved so drift and neighbours' load hit all three alike
        for name, fn in (("dense", dense), ("sparse", sparse), ("pred_topk", pred_topk)):
            times[name] += timed(fn, 1)
    med = {n: statistics.median(t) for n, t in times.items()}

    chunk_sweep = {}
    default_chunk = gather.DECODE_CHUNK
    for c in (int(v) for v in args.chunks.split(",")):
        gather.DECODE_CHUNK = c
        timed(sparse, 2)
        pair = [(timed(dense, 1)[0], timed(sparse, 1)[0]) for _ in range(max(5, args.reps // 3))]
        chunk_sweep[c] = statistics.median(dn for dn, _ in pair) / statistics.median(sp for _, sp in pair)
    gather.DECODE_CHUNK = default_chunk

    # The same comparison with one torch thread (a neighbour-free proxy: on the shared VM the second core is
    # often busy, which hurts the many small ops of the sparse path more than dense's few big GEMVs).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    timed(sparse, 2)
    pair = [(timed(dense, 1)[0], timed(sparse, 1)[0]) for _ in range(max(5, args.reps // 2))]
    single_thread = {
        "dense_s": statistics.median(dn for dn, _ in pair),
        "sparse_s": statistics.median(sp for _, sp in pair),
    }
    single_thread["speedup"] = single_thread["dense_s"] / single_thread["sparse_s"]
    torch.set_num_threads(threads)

    kept = i // b * k
    dense_flops = 2 * 3 * d * i
    pred_flops = 2 * (d * r + r * i)
    result = {
        "benchmark": "sparse_cpu_decode",
        "shapes": {
            "hidden": d,
            "intermediate": i,
            "bank_size": b,
            "k": k,
            "rank": r,
            "dtype": "bfloat16",
            "batch": 1,
        },
        "median_s": med,
        "speedup_sparse_vs_dense": med["dense"] / med["sparse"],
        "target_speedup": 2.5,
        "pred_topk_time_fraction_of_dense": med["pred_topk"] / med["dense"],
        "pred_flops_fraction_of_dense": pred_flops / dense_flops,
        "target_pred_fraction": 0.05,
        "sparse_flops_fraction_of_dense_incl_pred": (2 * 3 * d * kept + pred_flops) / dense_flops,
        "weight_bytes": {
            "dense": 3 * d * i * 2,
            "sparse_kept": 3 * d * kept * 2,
            "predictor": 2 * (d * r + r * i + i),
        },
        "byte_limit_speedup": 3 * d * i / (3 * d * kept + d * r + r * i + i),
        "one_thread": single_thread,
        "decode_chunk": default_chunk,
        "chunk_sweep_speedup": chunk_sweep,
        "max_rel_err_vs_masked_dense_fp32": max_err,
        "reps": args.reps,
        "host": torch_host("shared 2-core VM; medians of interleaved reps; ratios only"),
    }
    write_result(args.out, result)
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "median_s",
                    "speedup_sparse_vs_dense",
                    "pred_topk_time_fraction_of_dense",
                    "pred_flops_fraction_of_dense",
                    "byte_limit_speedup",
                    "chunk_sweep_speedup",
                    "one_thread",
                    "max_rel_err_vs_masked_dense_fp32",
                )
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
