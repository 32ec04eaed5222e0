"""Clients that stop reading during a broadcast: who pays?

Run: ``python -m benchmarks.stress.slow_clients --help``.
"""
