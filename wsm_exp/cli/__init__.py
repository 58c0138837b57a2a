"""Command-line tools (`wsm-merge`)."""
