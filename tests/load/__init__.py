"""Load and stress tests: short overloads and the report tool on a tiny run."""
