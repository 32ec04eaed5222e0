"""Break stream connections on purpose; count what clients lose or get twice.

Run: ``python -m benchmarks.stress.stream_faults --help``.
"""
