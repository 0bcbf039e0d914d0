"""Test helpers for rotating-llm and its users: a provider simulator (work in progress)."""
