"""Local causal language models as moe experts (and, later, learned domain routing)."""
