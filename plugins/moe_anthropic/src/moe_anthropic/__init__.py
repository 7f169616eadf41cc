"""moe plugin: the Anthropic Messages API as a frontend, and Anthropic-compatible experts."""
