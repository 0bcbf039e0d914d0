"""The original design's Orchestrator example: plan tasks on the pro pool, in a
conversation.

Run: ``python examples/seed_orchestrator.py``.
"""

from __future__ import annotations

import logging
import sys
import uuid

from seed_common import seed_environment

from rotating_llm.router import get_request_router

logger = logging.getLogger("seed_orchestrator")


def main() -> int:
    with seed_environment():
        router = get_request_router()
        workflow_id = uuid.uuid4().hex[:8]
        user_request = "Build a backtest for a moving-average crossover strategy"

        # Start conversation
        conv_id = f"orchestrator_{workflow_id}"

        # Send task planning request
        response = router.send_chat(
            conv_id=conv_id,
            prompt=f"Plan tasks for: {user_request}",
            model_preference="gemini-2.5-pro",  # Use Pro for planning
            expected_completion_tokens=2048,
            system_prompt="You are an expert task planner...",
        )

        if response["success"]:
            task_plan = response["content"]
            print(f"Task plan ({response['model']}, key {response['key_id']}): {task_plan}")
            meta = router.conversation_store.get_metadata(conv_id) or {}
            print(f"Conversation {conv_id}: {meta.get('message_count')} messages")
        else:
            logger.error(f"Planning failed: {response['error']}")
        router.key_manager.close()
        return 0 if response["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
