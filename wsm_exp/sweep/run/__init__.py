"""Running one job: merge if needed, evaluate, record (the merge-variant job and the SFT job)."""
