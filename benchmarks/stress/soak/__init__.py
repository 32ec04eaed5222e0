"""The soak run: connections coming and going for minutes; nothing may stay.

Run: ``python -m benchmarks.stress.soak --help``.
"""
