"""Data helpers: robust audio reading, datasets, batching, built-in corpus."""
