"""AWS::KMS::Key from a template, as CDK writes it (tags and key policy), in the emulated account."""

from __future__ import annotations

import json

from local.emulator import kms as kms_ext

TEMPLATE = {
    "Resources": {
        "Key": {
            "Type": "AWS::KMS::Key",
            "Properties": {
                "EnableKeyRotation": True,
                "KeyPolicy": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                            "Action": "kms:*",
                            "Resource": "*",
                        }
                    ],
                },
                "Tags": [{"Key": "Project", "Value": "ml-pipeline"}],
            },
        }
    },
    "Outputs": {"KeyArn": {"Value": {"Fn::GetAtt": ["Key", "Arn"]}}},
}


def test_a_cdk_key_with_tags_and_a_policy_is_created(aws):
    assert kms_ext.install() == kms_ext.GAPS
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="keys", TemplateBody=json.dumps(TEMPLATE))
    stack = cfn.describe_stacks(StackName="keys")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    key_arn = stack["Outputs"][0]["OutputValue"]
    kms = aws.client("kms")
    assert kms.list_resource_tags(KeyId=key_arn)["Tags"] == [{"TagKey": "Project", "TagValue": "ml-pipeline"}]
    policy = json.loads(kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])
    assert policy["Statement"][0]["Action"] == "kms:*"
