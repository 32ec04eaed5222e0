"""Throw hostile frames at live servers; report what was tried and what came back.

Run: ``python -m benchmarks.stress.fuzz --help``.
"""
