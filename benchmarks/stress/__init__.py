"""Runs that judge behaviour under load and faults, each on real servers.

``python -m benchmarks.stress.soak``
    Thousands of connections coming and going: nothing may leak.
``python -m benchmarks.stress.slow_clients``
    Clients that stop reading: the others do not wait, memory stays bounded.
``python -m benchmarks.stress.stream_faults``
    Dropped connections, cut Redis links, flushed stores, killed servers:
    nothing lost without a signal, nothing twice.
``python -m benchmarks.stress.fuzz``
    Hostile frames: the server survives and answers as the RFC says.

Each takes ``--smoke``: a short run that first checks the run's own
judgement on planted faults, then the servers, and exits non-zero on any
failure.
"""
