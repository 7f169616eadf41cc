"""moe plugin: the ByT5 byte-level expert, the input-feature gate and the /process API."""
