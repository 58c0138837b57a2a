"""Merge math (weights.py), checkpoint series (series.py) and the streaming merger (merger.py)."""
