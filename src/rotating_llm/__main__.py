"""``python -m rotating_llm`` (``--health-check`` exits 0 only when healthy)."""

from __future__ import annotations

import sys

from rotating_llm.cli import main

sys.exit(main())
