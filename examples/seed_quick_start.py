"""The original design's Quick Start (step 5): initialise, check health, send a message.

Run: ``python examples/seed_quick_start.py`` (against the simulator unless
``KEY_STORE_PATH`` names your keys file; see ``seed_common.py``).
"""

from __future__ import annotations

import sys

from seed_common import seed_environment

from rotating_llm.keys import get_key_manager
from rotating_llm.router import get_request_router


def main() -> int:
    with seed_environment() as key_store_path:
        # Initialize
        key_manager = get_key_manager(key_store_path=key_store_path)
        router = get_request_router(key_manager=key_manager)

        # Health check
        health = router.health_check()
        print(f"System healthy: {health['healthy']}")

        # Send test message
        response = router.send_one_shot(
            prompt="Hello! Can you confirm you received this message?",
            model_preference="gemini-2.5-flash",
        )

        print(f"Response: {response['content']}")
        print(f"Model: {response['model']}")
        print(f"Tokens: {response['tokens']}")
        key_manager.close()
        return 0 if health["healthy"] and response["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
