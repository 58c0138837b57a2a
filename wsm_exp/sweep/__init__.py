"""The runner: one Hydra job per merge variant, result rows, W&B tracking, end-of-sweep callbacks."""
