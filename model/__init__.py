"""The ml-pipeline model: data, feature schema, training, SageMaker inference entry point, model server.

``model.data`` loads the deterministic Breast Cancer Wisconsin split, ``model.schema`` derives and checks
the feature schema, ``model.train`` trains versions ``v1``/``v2`` into SageMaker scikit-learn model
archives, ``model.inference`` is the archive's ``code/inference.py`` and ``model.server`` serves an
archive over the SageMaker container HTTP contract (``/ping``, ``/invocations``). Runtime code: it never
imports ``aws_cdk``.
"""
