"""Clients of the other services: Triton inference and model control, the search service."""
