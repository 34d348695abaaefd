"""Evaluation: perplexity (ppl.py, with `evaluate_checkpoint` for `codesign eval ppl`), predictor recall vs
the oracle (recall.py), greedy generation recording prefill + decode routing (generate.py), per-layer k at
equal density (layer_k.py); other evaluations are added the same way, one module each.

eval imports sparse, data and trace only (tests/sweep/test_layers.py): loading a model from an adapter or a
training run directory, and jobs that evaluate many points, live above it in codesign.jobs and codesign.sweep.
"""
