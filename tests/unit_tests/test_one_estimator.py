"""The same request has the same token estimate whichever face sends it."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, message_to_dict

from rotating_llm.langchain._rotation import neutral_messages as lc_neutral
from rotating_llm.litellm._keys import max_output_tokens
from rotating_llm.litellm._keys import neutral_messages as litellm_neutral
from rotating_llm.router._engine import build_messages
from rotating_llm.tokens import estimate_request


def test_three_faces_estimate_the_same_request_equally() -> None:
    system, past_q, past_a, prompt = "Be brief.", "What is 2+2?", "4", "And 3+3? " * 40
    max_tokens = 256
    history = [message_to_dict(HumanMessage(past_q)), message_to_dict(AIMessage(past_a))]
    via_router = estimate_request(lc_neutral(build_messages(history, prompt, system)), max_tokens)
    via_langchain = estimate_request(
        lc_neutral([SystemMessage(system), HumanMessage(past_q), AIMessage(past_a),
                    HumanMessage(prompt)]),
        max_tokens,
    )  # fmt: skip
    openai_messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": past_q},
        {"role": "assistant", "content": past_a},
        {"role": "user", "content": [{"type": "text", "text": prompt}]},
    ]
    via_litellm = estimate_request(
        litellm_neutral(openai_messages), max_output_tokens({"max_tokens": max_tokens})
    )
    assert via_router == via_langchain == via_litellm
    assert via_litellm > max_tokens + 4 * 4  # overhead, text and the output cap all count


def test_media_costs_the_same_in_both_formats() -> None:
    lc = HumanMessage(content=[{"type": "image_url", "image_url": {"url": "data:x" * 9000}}])
    oa = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}
    assert estimate_request(lc_neutral([lc])) == estimate_request(litellm_neutral([oa]))
