"""The original design's Debugger Agent example: analyse a failure, then follow up in
the same conversation (whichever key serves each turn).

Run: ``python examples/seed_debugger.py``.
"""

from __future__ import annotations

import sys
import uuid

from seed_common import seed_environment

from rotating_llm.router import get_request_router

TRACEBACK = """Traceback (most recent call last):
  File "test_strategy.py", line 12, in test_signal
    assert signal([1.0, 2.0, 3.0]) == 1
AssertionError"""


def main() -> int:
    with seed_environment():
        router = get_request_router()
        task_id = uuid.uuid4().hex[:8]
        traceback = TRACEBACK

        # Analyze failure with conversation context
        conv_id = f"debug_{task_id}"

        response = router.send_chat(
            conv_id=conv_id,
            prompt=f"Analyze this test failure:\n{traceback}",
            model_preference="gemini-2.5-flash",  # Flash is good for analysis
            expected_completion_tokens=1024,
        )

        # Continue conversation
        follow_up = None
        if response["success"]:
            follow_up = router.send_chat(
                conv_id=conv_id,
                prompt="What's the root cause?",
                model_preference="gemini-2.5-flash",
            )
            print(f"Analysis (key {response['key_id']}): {response['content']}")
            print(f"Follow-up (key {follow_up['key_id']}): {follow_up['content']}")
            meta = router.conversation_store.get_metadata(conv_id) or {}
            print(f"Conversation {conv_id}: {meta.get('message_count')} messages")
        router.key_manager.close()
        return 0 if follow_up is not None and follow_up["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
