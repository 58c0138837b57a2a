"""lm-eval task configs (YAML) and their data loaders (utils.py); passed to lm-eval as include_path."""
