"""moe plugin: Pollinations text, image and speech experts, a task-classifier gate, a
multimodal combiner and ``GET /{prompt}``."""
