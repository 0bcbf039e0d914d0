#!/usr/bin/env python3
"""Scan files for secrets: ``python tools/secret_scanner.py artifacts/ --fail-on-found``.

The same scanner as ``rotating-llm scan``; works from a checkout without installing.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from rotating_llm.scanner.cli import main
except ImportError:  # not installed: use the checkout's src/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from rotating_llm.scanner.cli import main

if __name__ == "__main__":
    sys.exit(main())
