"""Shared test builders: real .debs, signed archives, a fault-injecting HTTP server, apt."""
