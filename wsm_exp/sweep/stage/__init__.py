"""The merge stage ahead of the jobs: every merge they need in one pass, optionally as a Slurm array."""
