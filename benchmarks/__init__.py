"""Measure django_realtime on real servers; never imported by the tests.

``python -m benchmarks`` is the comparison suite (:mod:`benchmarks.suite`):
django_realtime, Channels and a framework-free ASGI floor on uvicorn and
daphne. ``benchmarks/stress/`` holds the runs that judge behaviour under
load rather than speed (soak, slow clients, stream faults, frame fuzzing);
each checks itself with ``--smoke``. Every run starts its servers through
:mod:`benchmarks.servers`.
"""
