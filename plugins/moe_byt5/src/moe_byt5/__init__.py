"""moe plugin: ByT5 byte-level expert (not implemented yet)."""
