"""rotating-llm."""
