"""Issue 9 short-run ablations, collected: each `recipes/ablations/ablate-*.yaml` run (SmolLM2-135M 16/64,
predictor+ffn, 20 steps × 512 tokens, the same data order and validation windows) against `ablate-base`.

    for f in recipes/ablations/ablate-*.yaml; do codesign train --recipe $f --out RUNS/$(basename $f .yaml | cut -d- -f2-); done
    python bench/smollm2_ablations.py --runs RUNS

Writes bench/results/smollm2_ablations.json: per variant the final validation ppl (4,096 tokens), its ratio to
the reference choice, the last training losses and the run's wall time. One seed and 10K tokens a run: a
difference of a few percent is within what another seed would move.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _results import write_result

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "smollm2_ablations.json"


def _last_losses(run: Path, n: int = 5) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r][-n:]
    keys = ("loss", "lm_loss", "kl_loss", "aux_loss")
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys if rows and all(k in r for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True)
    args = ap.parse_args()
    rows = {}
    for recipe in sorted((REPO / "recipes" / "ablations").glob("ablate-*.yaml")):
        name = recipe.stem.removeprefix("ablate-")
        summary = args.runs / name / "summary.json"
        if not summary.is_file():
            rows[name] = {"recipe": str(recipe.relative_to(REPO)), "status": "not run"}
            continue
        s = json.loads(summary.read_text())
        ev = s["evals"]["sparse"]
        rows[name] = {
            "recipe": str(recipe.relative_to(REPO)),
            "what": recipe.read_text().splitlines()[0].split("(", 1)[-1].split(")", 1)[0],
            "val_ppl": ev["val_ppl"],
            "val_tokens": ev["val_tokens"],
            "tokens_seen": s["tokens_seen"],
            "wall_s": s["wall_s"],
            "last5_train": _last_losses(args.runs / name),
        }
    base = rows.get("base", {}).get("val_ppl")
    for r in rows.values():
        if base and "val_ppl" in r:
            r["vs_base"] = r["val_ppl"] / base
    write_result(RESULT, {"benchmark": "smollm2_ablations", "runs": str(args.runs), "rows": rows})
    for name, r in sorted(rows.items(), key=lambda kv: kv[1].get("val_ppl", 1e9)):
        print(f"{name:>14}: " + (f"ppl {r['val_ppl']:7.2f}  x{r.get('vs_base', 0):.3f}  {r['what']}" if "val_ppl" in r else "not run"))


if __name__ == "__main__":
    main()
