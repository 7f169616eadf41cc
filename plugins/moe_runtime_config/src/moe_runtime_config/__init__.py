"""Experts added, changed and removed over HTTP, kept in an overlay beside the configuration."""
