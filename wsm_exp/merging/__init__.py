"""Merging: weights (math), window (step math), series (discovery), st_io (checked headers), identity (content
hashes + cache), plan (MergePlan), merger (streaming merge, merge_or_reuse), writer (header-first safetensors)."""
