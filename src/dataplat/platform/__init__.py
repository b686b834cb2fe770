"""Clients for the platform's components: warehouse, stream, lake, metrics."""
