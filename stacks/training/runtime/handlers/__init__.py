"""Lambda functions of the training state machine: validate a data file, split it, gate a candidate.

Each module's docstring is its contract (event, output, errors, environment).
"""
