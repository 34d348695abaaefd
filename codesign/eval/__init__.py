"""Evaluation: perplexity, predictor recall vs the oracle (and, in other modules, RULER-CWE, diagnosis)."""
