"""The batch inference job (runs on AWS Batch / Fargate from the project's job image)."""
