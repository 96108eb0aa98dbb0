"""Fixtures of the e2e tier: real receivers (Phoenix, Prometheus) and a llama.cpp server."""
