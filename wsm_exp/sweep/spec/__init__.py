"""What a job is, as plain data: the typed config schemas, ConfigError and the Variant (no I/O)."""
