"""Checking a command before any work: every job composed and checked (pre-flight), or previewed (plan=true)."""
