"""Speed benchmarks of codeal_jax: run each script from the repository root as ``python -m benchmarks.<name>``."""
