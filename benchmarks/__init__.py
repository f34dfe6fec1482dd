"""Benchmarks of the sampler and of the vault sync, outside the library (docs/sampling.md, docs/vault.md).

    python -m benchmarks.sampler --users N     (the sampler against a hand-written lower bound)
    python -m benchmarks.vault --files N       (the vault sync of N small files)
"""
