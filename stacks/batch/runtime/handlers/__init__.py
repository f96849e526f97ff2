"""Lambda functions of the batch state machine: list inputs, predict a small input inline, report a run.

Each module's docstring is its contract (event, output, errors, environment).
"""
