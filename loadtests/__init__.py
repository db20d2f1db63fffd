"""Locust scenarios against the facerec REST API, and the performance report tool."""
