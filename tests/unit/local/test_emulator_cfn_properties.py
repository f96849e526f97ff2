"""Resources as CDK writes them (KMS key tags and policy, SSM parameter tag maps) in the emulated account."""

from __future__ import annotations

import json

import boto3
from moto import mock_aws

from local.emulator import cfn_properties
from local.lambda_runtime import handler_of

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
    assert len(cfn_properties.GAPS) == 5
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


SAGEMAKER = {
    "Resources": {
        "Model": {
            "Type": "AWS::SageMaker::Model",
            "Properties": {
                "ModelName": "endpoint-v1-abc",
                "ExecutionRoleArn": "arn:aws:iam::123456789012:role/sagemaker",
                "PrimaryContainer": {
                    "Image": "image:tag",
                    "ModelDataUrl": "s3://bucket/models/v1/model.tar.gz",
                },
            },
        },
        "Config": {
            "Type": "AWS::SageMaker::EndpointConfig",
            "Properties": {
                "EndpointConfigName": "endpoint-config-abc",
                "ProductionVariants": [
                    {
                        "VariantName": "ModelA",
                        "ModelName": {"Fn::GetAtt": ["Model", "ModelName"]},
                        "InitialInstanceCount": 1,
                        "InstanceType": "ml.m5.large",
                        "InitialVariantWeight": 1.0,
                    }
                ],
            },
        },
        "Endpoint": {
            "Type": "AWS::SageMaker::Endpoint",
            "Properties": {
                "EndpointName": "endpoint",
                "EndpointConfigName": {"Fn::GetAtt": ["Config", "EndpointConfigName"]},
            },
        },
    }
}


def test_sagemaker_resources_get_the_names_the_template_gives(aws):
    cfn_properties.install()
    aws.client("cloudformation").create_stack(StackName="endpoint", TemplateBody=json.dumps(SAGEMAKER))
    sagemaker = aws.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName="endpoint")
    assert endpoint["EndpointConfigName"] == "endpoint-config-abc"
    config = sagemaker.describe_endpoint_config(EndpointConfigName="endpoint-config-abc")
    assert config["ProductionVariants"][0]["ModelName"] == "endpoint-v1-abc"
    assert sagemaker.describe_model(ModelName="endpoint-v1-abc")["ModelName"] == "endpoint-v1-abc"


def test_a_compute_environment_without_a_service_role_gets_batchs_service_linked_role():
    with mock_aws():
        fixed = cfn_properties.batch_compute_environment({"Type": "MANAGED"}, "123456789012")
        role_name = fixed["ServiceRole"].rsplit("/", 1)[-1]
        role = boto3.client("iam").get_role(RoleName=role_name)["Role"]
        assert role["Path"] == "/aws-service-role/batch.amazonaws.com/"
        # created once: a second environment reuses it
        again = cfn_properties.batch_compute_environment({}, "123456789012")
        assert again == {"ServiceRole": fixed["ServiceRole"]}
        # a role the template names is kept
        assert cfn_properties.batch_compute_environment({"ServiceRole": "arn:x"}, "123456789012") == {
            "ServiceRole": "arn:x"
        }


def test_an_image_function_keeps_its_package_type_and_command(aws):
    """The training layer's image functions: moto's handler would drop both (no handler at all)."""
    cfn_properties.install()
    role = aws.client("iam").create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    command = "stacks.training.runtime.handlers.validate.handler"
    template = {
        "Resources": {
            "Image": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "FunctionName": "image-fn",
                    "PackageType": "Image",
                    "Code": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/assets:abc"},
                    "ImageConfig": {"Command": [command]},
                    "Role": role,
                },
            }
        }
    }
    aws.client("cloudformation").create_stack(StackName="images", TemplateBody=json.dumps(template))
    config = aws.client("lambda").get_function_configuration(FunctionName="image-fn")
    assert config["PackageType"] == "Image"
    assert config["ImageConfigResponse"]["ImageConfig"]["Command"] == [command]
    assert handler_of(config) == command
