import sys

from benchmarks.stress.slow_clients.cli import main

sys.exit(main())
