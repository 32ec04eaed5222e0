import sys

from benchmarks.stress.slow_clients.run import main

sys.exit(main())
