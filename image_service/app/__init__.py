"""image_service application code."""
