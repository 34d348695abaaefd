"""Co-design sweeps: bank size B × k (× hardware knobs) against accuracy, as a cached DAG of stages.

spec.py (the YAML, validated) → grid.py (model points × hardware points) → dag.py (networkx stages, cache
keys) → executors.py (local process pool or Ray) → run.py (the whole sweep as one call) → pareto.py,
table.py, plots.py (rows, fronts, recommendation, PNGs). The stages' work is in codesign.jobs.
"""
