"""llm_service application code."""
