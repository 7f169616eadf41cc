"""moe plugin: Pollinations text, image and speech experts (not implemented yet)."""
