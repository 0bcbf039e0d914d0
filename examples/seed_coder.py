"""The original design's Coder Agent example: one-shot code generation, queued for
retry when the pool is out of capacity.

Run: ``python examples/seed_coder.py``.
"""

from __future__ import annotations

import logging
import sys

from seed_common import seed_environment

from rotating_llm.router import get_request_router

logger = logging.getLogger("seed_coder")
retry_queue: list[str] = []


def queue_for_retry(contract: str) -> None:
    """Keep the contract for a later attempt (here: a list)."""
    retry_queue.append(contract)


def main() -> int:
    with seed_environment():
        router = get_request_router()
        contract = "def signal(prices: list[float]) -> int: ...  # 1 buy, -1 sell, 0 hold"

        # Generate code
        response = router.send_one_shot(
            prompt=f"Generate Python strategy code:\n{contract}",
            model_preference="gemini-2.5-pro",  # Use Pro for code
            expected_completion_tokens=4096,
            temperature=0.3,  # Lower temp for code
            system_prompt="You are an expert Python developer...",
        )

        if response["success"]:
            code = response["content"]
            print(f"Code ({response['tokens']['total']} tokens): {code}")
        else:
            if response.get("error_type") == "rate_limited":
                # Queue for retry
                queue_for_retry(contract)
                print(f"Queued for retry in {response.get('retry_after')}s")
            else:
                # Handle error
                logger.error(f"Code generation failed: {response['error']}")
        router.key_manager.close()
        return 0 if response["success"] or retry_queue else 1


if __name__ == "__main__":
    sys.exit(main())
