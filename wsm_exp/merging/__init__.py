"""Merging: checkpoint series, merge plans and content identities, and the streaming merger that writes them.

Lowest layer first: hashing, st_io, arith, weights, window (leaves); ckpt_files, writer, dcp_io
(file formats); identity, series, plan, extrapolate (checkpoints and plans); reader, engine,
output, merger, cache (the merge). docs/merging.md has the map."""
