"""moe plugin: a long-document expert (Longformer embeddings, LED summaries)."""
