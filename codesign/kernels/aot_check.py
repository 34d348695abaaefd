"""Compile every kernel for a CUDA architecture on a machine without a GPU (Triton's bundled ptxas).

The interpreter forgives type and shape errors that break compiled kernels (tl.dot tile minimums, int64/int32
mixes, shared-memory overflow); this lowers each kernel at its real configurations (every autotune config of the
forward kernels, the fixed tiles of the others) to a cubin so such errors surface on CPU CI.
Run with TRITON_INTERPRET unset:  python -m codesign.kernels.aot_check [--full]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

SMEM_LIMIT_BYTES = 232448  # H100 / H200 shared memory per block (227 KB)
SKIPPED = "too much shared memory (autotune skips it)"
TOPK_PTRS = ("logits_ptr", "h_ptr", "w_ptr", "bias_ptr")
FWD_PTRS = ("x_ptr", "g_ptr", "u_ptr", "s_ptr")
BWD_PTRS = ("x_ptr", "g_ptr", "u_ptr", "dn_ptr", "s_ptr", "dy_ptr")
INDEX_PTRS = {"idx_ptr": "i64", "bits_ptr": "u8", "cols_ptr": "i32", "counts_ptr": "i32"}
SCRATCH = (
    "h_ptr",
    "pa_ptr",
    "pb_ptr",
    "a1_ptr",
    "a2_ptr",
    "part_ptr",
    "da_ptr",
    "db_ptr",
    "hs_ptr",
    "ds_ptr",
    "gg_ptr",
    "gu_ptr",
    "gd_ptr",
)


def _ptrs(dtype: str, data: tuple[str, ...]) -> dict[str, str]:
    """Pointer element types: data pointers in `dtype`, scratch in fp32, routing in its integer types."""
    return {**INDEX_PTRS, **{n: "fp32" for n in SCRATCH}, **{n: dtype for n in data}}


def _variants(full: bool):
    """(label, "module.kernel", pointer types, constexprs, warps, stages)."""
    from codesign.kernels.decode import DOWN_CONFIGS, GATE_UP_CONFIGS
    from codesign.kernels.gathered_rows import ROWS_CONFIGS
    from codesign.kernels.routing import DECODE_TILE_TOKENS, TILE_TOKENS
    from codesign.kernels.sparse_swiglu import H_CONFIGS

    for dt in ("bf16", "fp32") if full else ("bf16",):
        f32 = dt == "fp32"
        for tile in TILE_TOKENS if full else (DECODE_TILE_TOKENS,):
            for fused in (False, True):
                const = dict(B=64, K=16, BLOCK_T=tile, BLOCK_R=64, FUSED=fused, HAS_BIAS=True, DOT_F32=f32)
                yield (
                    f"bank_topk {dt} tile={tile} fused={fused}",
                    "bank_topk._bank_topk_fwd_kernel",
                    _ptrs(dt, TOPK_PTRS),
                    const,
                    4,
                    3,
                )
            for bk, bd, w, st in H_CONFIGS:
                const = dict(B=64, BLOCK_T=tile, BLOCK_K=bk, BLOCK_D=bd, HAS_SCALE=True, DOT_F32=f32)
                yield (
                    f"fwd {dt} tile={tile} cfg={bk},{bd},{w},{st}",
                    "sparse_swiglu._sparse_swiglu_fwd_kernel",
                    _ptrs(dt, FWD_PTRS),
                    const,
                    w,
                    st,
                )
            for two in (False, True):
                for bk, bd, w, st in ROWS_CONFIGS:
                    const = dict(B=64, BLOCK_T=tile, BLOCK_K=bk, BLOCK_D=bd, TWO=two, DOT_F32=f32)
                    yield (
                        f"rows {dt} tile={tile} two={two} cfg={bk},{bd},{w},{st}",
                        "gathered_rows._gathered_rows_matmul_kernel",
                        _ptrs(dt, ("w1_ptr", "w2_ptr")),
                        const,
                        w,
                        st,
                    )
            const = dict(B=64, BLOCK_T=tile, BLOCK_K=16, BLOCK_D=128, HAS_SCALE=True, DOT_F32=f32)
            yield (
                f"bwd {dt} tile={tile}",
                "sparse_swiglu._sparse_swiglu_bwd_kernel",
                _ptrs(dt, BWD_PTRS),
                const,
                4,
                3,
            )
            const = dict(B=64, BLOCK_T=tile, BLOCK_D=128, DOT_F32=f32)
            yield (
                f"bwd_w {dt} tile={tile}",  # the tile is this kernel's tl.dot K: why tiles below 16 are refused
                "sparse_swiglu._sparse_swiglu_bwd_w_kernel",
                _ptrs(dt, ("x_ptr", "dy_ptr")),
                const,
                4,
                3,
            )
        # decode path: elementwise up to 4 tokens (BLOCK_T 1, 2, 4), tl.dot for 5..16 (BLOCK_T 16)
        for bt in (1, 2, 4, 16) if full else (1, 4, 16):
            dot = bt == 16
            for fused in (False, True) if bt < 16 else ():  # bank_topk's decode block (16: above)
                const = dict(B=64, K=16, BLOCK_T=bt, BLOCK_R=128, FUSED=fused, HAS_BIAS=True, DOT_F32=f32)
                yield (
                    f"bank_topk {dt} tokens<={bt} fused={fused}",
                    "bank_topk._bank_topk_fwd_kernel",
                    _ptrs(dt, TOPK_PTRS),
                    const,
                    4,
                    3,
                )
            for bk, bd, w, st in GATE_UP_CONFIGS:
                const = dict(B=64, BLOCK_T=bt, BLOCK_K=bk, BLOCK_D=bd, USE_DOT=dot, DOT_F32=f32)
                yield (
                    f"decode_gate_up {dt} tokens<={bt} cfg={bk},{bd},{w},{st}",
                    "decode._decode_gate_up_kernel",
                    _ptrs(dt, ("x_ptr", "g_ptr", "u_ptr")),
                    const,
                    w,
                    st,
                )
            for bk, bd, w, st in DOWN_CONFIGS:
                const = dict(B=64, BLOCK_T=bt, BLOCK_K=bk, BLOCK_D=bd, BLOCK_S=8, HAS_SCALE=True, USE_DOT=dot, DOT_F32=f32)  # fmt: skip
                yield (
                    f"decode_down {dt} tokens<={bt} cfg={bk},{bd},{w},{st}",
                    "decode._decode_down_kernel",
                    _ptrs(dt, ("s_ptr", "dn_ptr")),
                    const,
                    w,
                    st,
                )
        const = {"BLOCK_S": 128, "BLOCK_D": 64}
        yield (
            f"reduce_splits {dt}",
            "gathered_rows._reduce_splits_kernel",
            _ptrs(dt, ("out_ptr",)),
            const,
            4,
            3,
        )


def compile_all(arch: int = 90, full: bool = False) -> list[tuple[str, str]]:
    """[(label, "ok" | SKIPPED... | error text)] for every variant; raises nothing so one failure shows all."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", arch, 32)
    results = []
    for label, name, ptrs, const, warps, stages in _variants(full):
        module, attr = name.split(".")
        kernel = getattr(importlib.import_module(f"codesign.kernels.{module}"), attr)
        signature = {
            arg: "constexpr" if arg in const else (f"*{ptrs[arg]}" if arg in ptrs else "i32")
            for arg in kernel.arg_names
        }
        try:
            options = {"num_warps": warps, "num_stages": stages}
            compiled = triton.compile(ASTSource(kernel, signature, const), target=target, options=options)
            shared = compiled.metadata.shared
            results.append((label, "ok" if shared <= SMEM_LIMIT_BYTES else f"{SKIPPED}: {shared} bytes"))
        except Exception as exc:  # report every variant, then fail
            results.append((label, f"{type(exc).__name__}: {exc}"[:2000]))
    return results


def failures(results: list[tuple[str, str]]) -> list[str]:
    """Compile errors, and autotuned kernels left without one config that fits (per dtype and tile)."""
    failed = [
        f"{label}: {status}" for label, status in results if status != "ok" and not status.startswith(SKIPPED)
    ]
    fits: dict[str, bool] = {}
    for label, status in results:
        if " cfg=" in label:
            group = label.split(" cfg=")[0]
            fits[group] = fits.get(group, False) or status == "ok"
    return failed + [f"{group}: no autotune config fits" for group, ok in fits.items() if not ok]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability x10 (H100/H200: 90)")
    parser.add_argument("--full", action="store_true", help="fp32 and 64-token tiles too (a few minutes)")
    args = parser.parse_args(argv)
    start = time.time()
    results = compile_all(args.arch, args.full)
    for label, status in results:
        tag = "ok  " if status == "ok" else "skip" if status.startswith(SKIPPED) else "FAIL"
        print(f"{tag} {label}" + ("" if status == "ok" else f": {status}"))
    failed = failures(results)
    print(f"{len(results)} variants in {time.time() - start:.1f}s; {len(failed)} failures")
    for line in failed:
        print(f"FAIL {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
