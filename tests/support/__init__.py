"""Helpers shared by the tests and the load tools: the stack, child processes, photos, databases."""
