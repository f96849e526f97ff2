"""Resources as CDK writes them (KMS key tags and policy, SSM parameter tag maps) in the emulated account."""

from __future__ import annotations

import json

from local.emulator import cfn_properties

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
        },
        "Parameter": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {
                "Name": "/ml-pipeline/local/models/active-version",
                "Type": "String",
                "Value": "v1",
                "Tags": {"Project": "ml-pipeline"},
            },
        },
    },
    "Outputs": {"KeyArn": {"Value": {"Fn::GetAtt": ["Key", "Arn"]}}},
}


def test_cdk_shaped_keys_and_parameters_are_created(aws):
    assert cfn_properties.install() == cfn_properties.GAPS
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="keys", TemplateBody=json.dumps(TEMPLATE))
    stack = cfn.describe_stacks(StackName="keys")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    key_arn = stack["Outputs"][0]["OutputValue"]
    kms = aws.client("kms")
    assert kms.list_resource_tags(KeyId=key_arn)["Tags"] == [{"TagKey": "Project", "TagValue": "ml-pipeline"}]
    policy = json.loads(kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])
    assert policy["Statement"][0]["Action"] == "kms:*"
    ssm = aws.client("ssm")
    tags = ssm.list_tags_for_resource(
        ResourceType="Parameter", ResourceId="/ml-pipeline/local/models/active-version"
    )
    assert tags["TagList"] == [{"Key": "Project", "Value": "ml-pipeline"}]
