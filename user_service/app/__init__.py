"""user_service application code: routes, schemas, account logic and data access."""
