"""Hosting one service: ``mmate run`` (docs/running.md)."""
