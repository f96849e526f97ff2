"""The local stage: an emulated AWS account (moto) and the project's own components on 127.0.0.1."""
