"""The OpenAI wire format for moe: ``/v1/chat/completions`` in, OpenAI-compatible backends out."""
