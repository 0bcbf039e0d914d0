"""``python -m bench``: every benchmark in one run (see ``bench/run.py``)."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from bench.run import main

    sys.exit(main())
