"""``python -m rotating_llm.scanner PATH...``."""

from __future__ import annotations

import sys

from rotating_llm.scanner.cli import main

if __name__ == "__main__":
    sys.exit(main())
