"""pytest plugin of rotating-llm (fixtures for the provider simulator)."""
