"""moe-context: what experts need beyond the messages: image descriptions, linked pages, web
search results and uploaded files, added just before each expert call."""
