"""The layer stacks of ml-pipeline and the stage that wires them (infrastructure code only)."""
