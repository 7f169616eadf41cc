"""The OpenAI wire format for moe: ``/v1/chat/completions`` in, any OpenAI-compatible backend out."""
