"""mobile_service application code."""
