"""Whole user jobs as library calls: load a model, read a corpus, run the libraries below, save.

Orchestration sits above the libraries it calls (sim, eval, train, sparse, trace), never inside one of them,
so every import here points down. `codesign.sweep` and the CLI call these.
"""
