"""Recording what jobs produce: result rows, the sweep folder's identity, freshness, W&B runs, the console."""
