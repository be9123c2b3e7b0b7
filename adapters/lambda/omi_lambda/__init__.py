"""AWS Lambda adapter of omi-adapters (see the Lambda issue)."""
