"""lm-eval task configs (YAML) and their data loaders (loaders.py); passed to lm-eval as include_path."""
