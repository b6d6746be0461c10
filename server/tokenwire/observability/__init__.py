"""Metrics, request-scoped context (request id, trailers) and log formatting."""
