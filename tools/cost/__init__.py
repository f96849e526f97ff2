"""The cost model: a stage's monthly cost from its synthesized templates and the repository's price table.

``python -m tools.cost cdk.out`` (``nox -s cost``) prices every stage of a cloud assembly and writes
``reports/cost/{stage}.json`` and ``.md``. See :mod:`tools.cost.model` (what is priced and how),
:mod:`tools.cost.usage` (the assumptions) and ``prices-us-east-1.json`` (the prices and their sources).
"""
