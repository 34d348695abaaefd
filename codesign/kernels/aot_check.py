"""Compile every kernel for a CUDA architecture on a machine without a GPU (Triton's bundled ptxas).

The interpreter forgives type and shape errors that break compiled kernels (tl.dot tile minimums, int64/int32
mixes, shared-memory overflow); this lowers each kernel at its real configurations to a cubin so such errors
surface on CPU CI. Run with TRITON_INTERPRET unset:  python -m codesign.kernels.aot_check [--full]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time


def _variants(full: bool):
    """(label, kernel name, pointer dtypes, constexprs) at the configurations the launchers use."""
    dtypes = ("bf16", "fp32") if full else ("bf16",)
    tiles = (16, 64) if full else (16,)
    for dt in dtypes:
        f32 = dt == "fp32"
        for tile in tiles:
            for fused in (False, True):
                ptrs = {"logits_ptr": dt, "h_ptr": dt, "w_ptr": dt, "bias_ptr": dt, "idx_ptr": "i64",
                        "bits_ptr": "u8", "cols_ptr": "i32", "counts_ptr": "i32"}  # fmt: skip
                const = dict(B=64, K=16, BLOCK_T=tile, BLOCK_R=64, FUSED=fused, HAS_BIAS=True, DOT_F32=f32)
                yield (
                    f"bank_topk {dt} tile={tile} fused={fused}",
                    "bank_topk._bank_topk_fwd_kernel",
                    ptrs,
                    const,
                )
            ptrs = {n: dt for n in ("x_ptr", "g_ptr", "u_ptr", "s_ptr")}
            ptrs.update(bits_ptr="u8", cols_ptr="i32", counts_ptr="i32", h_ptr="fp32")
            const = dict(B=64, BLOCK_T=tile, BLOCK_K=16, BLOCK_D=256, HAS_SCALE=True, DOT_F32=f32)
            yield f"fwd {dt} tile={tile}", "sparse_swiglu._sparse_swiglu_fwd_kernel", ptrs, const
            for two in (False, True):
                ptrs = {"a1_ptr": "fp32", "a2_ptr": "fp32", "w1_ptr": dt, "w2_ptr": dt, "cols_ptr": "i32",
                        "counts_ptr": "i32", "part_ptr": "fp32"}  # fmt: skip
                const = dict(B=64, BLOCK_T=tile, BLOCK_K=32, BLOCK_D=64, TWO=two, DOT_F32=f32)
                yield (
                    f"rows {dt} tile={tile} two={two}",
                    "sparse_swiglu._gathered_rows_matmul_kernel",
                    ptrs,
                    const,
                )
            ptrs = {n: dt for n in ("x_ptr", "g_ptr", "u_ptr", "dn_ptr", "s_ptr", "dy_ptr")}
            ptrs.update(
                bits_ptr="u8",
                cols_ptr="i32",
                counts_ptr="i32",
                da_ptr="fp32",
                db_ptr="fp32",
                hs_ptr="fp32",
                ds_ptr="fp32",
            )
            const = dict(B=64, BLOCK_T=tile, BLOCK_K=16, BLOCK_D=128, HAS_SCALE=True, DOT_F32=f32)
            yield f"bwd {dt} tile={tile}", "sparse_swiglu._sparse_swiglu_bwd_kernel", ptrs, const
            ptrs = {"x_ptr": dt, "dy_ptr": dt, "da_ptr": "fp32", "db_ptr": "fp32", "hs_ptr": "fp32",
                    "counts_ptr": "i32", "gg_ptr": "fp32", "gu_ptr": "fp32", "gd_ptr": "fp32"}  # fmt: skip
            const = dict(B=64, BLOCK_T=tile, BLOCK_D=128, DOT_F32=f32)
            yield f"bwd_w {dt} tile={tile}", "sparse_swiglu._sparse_swiglu_bwd_w_kernel", ptrs, const
        yield (
            f"reduce {dt}",
            "sparse_swiglu._reduce_partials_kernel",
            {"part_ptr": "fp32", "out_ptr": dt},
            {"BLOCK_D": 1024},
        )


def compile_all(arch: int = 90, full: bool = False) -> list[tuple[str, str]]:
    """[(label, "ok" | error text)] for every variant; raises nothing so that one failure shows all."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", arch, 32)
    results = []
    for label, name, ptrs, const in _variants(full):
        module, attr = name.split(".")
        kernel = getattr(importlib.import_module(f"codesign.kernels.{module}"), attr)
        signature = {
            arg: "constexpr" if arg in const else (f"*{ptrs[arg]}" if arg in ptrs else "i32")
            for arg in kernel.arg_names
        }
        try:
            triton.compile(
                ASTSource(kernel, signature, const), target=target, options={"num_warps": 4, "num_stages": 3}
            )
            results.append((label, "ok"))
        except Exception as exc:  # report every variant, then fail
            results.append((label, f"{type(exc).__name__}: {exc}"[:2000]))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability x10 (H100/H200: 90)")
    parser.add_argument("--full", action="store_true", help="fp32 and 64-token tiles too (a few minutes)")
    args = parser.parse_args(argv)
    start = time.time()
    results = compile_all(args.arch, args.full)
    for label, status in results:
        print(f"{'ok  ' if status == 'ok' else 'FAIL'} {label}" + ("" if status == "ok" else f": {status}"))
    print(f"{len(results)} variants in {time.time() - start:.1f}s")
    return 0 if all(status == "ok" for _, status in results) else 1


if __name__ == "__main__":
    sys.exit(main())
