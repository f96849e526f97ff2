"""KMS keys created by CloudFormation in moto (moto 5.2 mishandles two properties of ``AWS::KMS::Key``).

moto passes the template's ``Tags`` (``Key``/``Value``) to a tagger that expects KMS's API form
(``TagKey``/``TagValue``) and fails with ``KeyError: 'TagKey'``, and it stores ``KeyPolicy`` as the
template's object instead of a JSON document. Both are converted before moto's own handler runs.
"""

from __future__ import annotations

import json
from typing import Any

from moto.kms import models as kms_models

GAPS = (
    "CloudFormation AWS::KMS::Key Tags and KeyPolicy (moto mishandles them): fixed by local.emulator.kms",
)

_original = kms_models.Key.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]


def _create_from_cloudformation_json(
    cls: Any,
    /,
    resource_name: str,
    cloudformation_json: Any,
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> Any:
    properties = dict(cloudformation_json.get("Properties", {}))
    properties["Tags"] = [
        {"TagKey": tag["Key"], "TagValue": tag["Value"]} if "Key" in tag else tag
        for tag in properties.get("Tags", [])
    ]
    if isinstance(properties.get("KeyPolicy"), dict):
        properties["KeyPolicy"] = json.dumps(properties["KeyPolicy"])
    fixed = {**cloudformation_json, "Properties": properties}
    return _original(cls, resource_name, fixed, account_id, region_name, **kwargs)


def install() -> tuple[str, ...]:
    kms_models.Key.create_from_cloudformation_json = classmethod(_create_from_cloudformation_json)  # type: ignore[method-assign,assignment]
    return GAPS
