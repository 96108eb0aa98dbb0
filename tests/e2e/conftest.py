"""Fixtures of the end-to-end tier: real receivers (Phoenix, Prometheus) and a real llama.cpp server."""
