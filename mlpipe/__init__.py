"""``mlpipe``: the model lifecycle of ml-pipeline (registry, traffic control, rollback).

Runtime code: it talks to AWS through boto3 and never imports CDK. The command-line tool
(``mlpipe ...``) and the inference layer's deploy function call the same functions.
"""
