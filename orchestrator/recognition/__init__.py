"""Answering who is in an image: the recognition service, answer shapes, cache, batched search, log."""
