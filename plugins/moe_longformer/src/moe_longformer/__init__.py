"""moe plugin: Longformer and LED long-document expert (not implemented yet)."""
