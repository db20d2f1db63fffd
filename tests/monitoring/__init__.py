"""Prometheus and Grafana configuration, checked by promtool and a real Prometheus."""
