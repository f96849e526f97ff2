"""Deploy a synthesized stage into the emulated account, from the real templates, in plan order.

What ``cdk deploy`` would do, against moto: the bootstrap version parameter, the file assets
uploaded to the bootstrap bucket, each stack created from its template in the order of the
cloud assembly's manifest (cross-stack imports resolve in moto). Then what moto leaves out is
applied through the service APIs and reported, so an emulator gap is visible, not silent:

- S3 bucket versioning and DynamoDB TTL (moto's CloudFormation ignores both);
- custom resources (moto would invoke their Lambda in Docker, which the local stage has not):
  ``Custom::VpcRestrictDefaultSG`` is taken out of the template and its effect, removing every
  rule of the VPC's default security group, is applied through EC2.

Nothing here is a second list of resources: everything comes from the templates.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from local.emulator import cfn_resources
from local.emulator import cloudwatch as cloudwatch_emulator
from local.emulator import events as events_emulator
from tools.deploy_plan import StackPlan, deployment_plan

BOOTSTRAP_VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
BOOTSTRAP_VERSION = "30"
EMULATED_CUSTOM_RESOURCES = ("Custom::VpcRestrictDefaultSG",)


@dataclass
class Deployment:
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # stack name -> outputs
    patches: list[str] = field(default_factory=list)


class DeployError(RuntimeError):
    pass


def _zip_directory(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


class StageDeployer:
    def __init__(self, session: Any, *, poll_seconds: float = 0.2, timeout_seconds: float = 120.0) -> None:
        self.cfn = session.client("cloudformation")
        self.s3 = session.client("s3")
        self.ssm = session.client("ssm")
        self.ec2 = session.client("ec2")
        self.dynamodb = session.client("dynamodb")
        self.apigateway = session.client("apigateway")
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.api_creator = cfn_resources.ApiCreator(session)

    def deploy(self, cdk_out: Path, stage: str) -> Deployment:
        plans = deployment_plan(cdk_out)
        if stage not in plans:
            raise DeployError(f"stage {stage!r} is not in {cdk_out}; synthesize it first")
        result = Deployment()
        self._bootstrap(result)
        for plan in plans[stage]:
            self._upload_assets(plan)
            template = json.loads(plan.template_file.read_text())
            custom = self._take_out_custom_resources(template)
            api_created = cfn_resources.take_out(
                template, region=self.api_creator.region, account=self.api_creator.account
            )
            # moto's CloudFormation has no CloudWatch alarms: references to them become literals
            # (local.emulator.cloudwatch creates and evaluates the alarms from the templates)
            cloudwatch_emulator.literal_alarm_references(template, account=plan.account, region=plan.region)
            events_emulator.resolve_pattern_imports(template, self._exports())
            self._create(plan.stack_name, template)
            result.patches += self.api_creator.create(plan.stack_name, api_created)
            resources = self._physical_ids(plan.stack_name)
            for logical_id, resource in custom.items():
                result.patches.append(self._emulate(plan.stack_name, logical_id, resource, resources))
            result.patches += self._apply_dropped_properties(plan.stack_name, template, resources)
            result.patches += self._create_api_stage_and_keys(plan.stack_name, template, resources)
            result.patches += self._not_created(plan.stack_name, template, resources)
            result.outputs[plan.stack_name] = self._outputs(plan.stack_name)
        return result

    def _exports(self) -> dict[str, str]:
        """The emulated account's CloudFormation exports (of the stacks deployed so far)."""
        exports: dict[str, str] = {}
        for page in self.cfn.get_paginator("list_exports").paginate():
            exports.update({e["Name"]: e["Value"] for e in page["Exports"]})
        return exports

    # ----- what cdk bootstrap / cdk deploy would do -----
    def _bootstrap(self, result: Deployment) -> None:
        try:
            self.ssm.get_parameter(Name=BOOTSTRAP_VERSION_PARAMETER)
        except ClientError:
            self.ssm.put_parameter(Name=BOOTSTRAP_VERSION_PARAMETER, Value=BOOTSTRAP_VERSION, Type="String")
            result.patches.append(
                f"bootstrap: {BOOTSTRAP_VERSION_PARAMETER} = {BOOTSTRAP_VERSION} (cdk bootstrap's)"
            )

    def _upload_assets(self, plan: StackPlan) -> None:
        manifest = plan.template_file.with_name(
            plan.template_file.name.replace(".template.json", ".assets.json")
        )
        if not manifest.exists():
            return
        for asset in json.loads(manifest.read_text()).get("files", {}).values():
            source = manifest.parent / asset["source"]["path"]
            body = (
                _zip_directory(source) if asset["source"].get("packaging") == "zip" else source.read_bytes()
            )
            for destination in asset["destinations"].values():
                bucket = destination["bucketName"]
                try:
                    self.s3.head_bucket(Bucket=bucket)
                except ClientError:
                    self.s3.create_bucket(Bucket=bucket)
                self.s3.put_object(Bucket=bucket, Key=destination["objectKey"], Body=body)

    def _create(self, stack_name: str, template: dict[str, Any]) -> None:
        self.cfn.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(template),
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        waited = 0.0
        while True:
            stack = self.cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
            status = stack["StackStatus"]
            if status == "CREATE_COMPLETE":
                return
            if not status.endswith("IN_PROGRESS") or waited >= self.timeout_seconds:
                events = self.cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
                failed = [
                    f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
                    for e in events
                    if "FAILED" in e["ResourceStatus"]
                ]
                raise DeployError(f"{stack_name} ended {status}: {'; '.join(failed) or 'no reason given'}")
            time.sleep(self.poll_seconds)
            waited += self.poll_seconds

    def _physical_ids(self, stack_name: str) -> dict[str, str]:
        resources = self.cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
        return {
            r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
            for r in resources
            if r.get("LogicalResourceId")  # moto lists resources it could not create without one
        }

    def _outputs(self, stack_name: str) -> dict[str, str]:
        stack = self.cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    # ----- what moto leaves out -----
    @staticmethod
    def _take_out_custom_resources(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
        resources = template["Resources"]
        custom = {k: v for k, v in resources.items() if v["Type"] in EMULATED_CUSTOM_RESOURCES}
        unknown = sorted(
            v["Type"] for k, v in resources.items() if v["Type"].startswith("Custom::") and k not in custom
        )
        if unknown:
            raise DeployError(f"custom resources the local stage cannot emulate: {', '.join(unknown)}")
        for logical_id in custom:
            del resources[logical_id]
        return custom

    def _emulate(self, stack: str, logical_id: str, resource: dict[str, Any], ids: dict[str, str]) -> str:
        # DefaultSecurityGroupId is Fn::GetAtt [<vpc>, DefaultSecurityGroup]
        vpc_logical_id = resource["Properties"]["DefaultSecurityGroupId"]["Fn::GetAtt"][0]
        vpc_id = ids[vpc_logical_id]
        groups = self.ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]}]
        )["SecurityGroups"]
        for group in groups:
            if group["IpPermissions"]:
                self.ec2.revoke_security_group_ingress(
                    GroupId=group["GroupId"], IpPermissions=group["IpPermissions"]
                )
            if group["IpPermissionsEgress"]:
                self.ec2.revoke_security_group_egress(
                    GroupId=group["GroupId"], IpPermissions=group["IpPermissionsEgress"]
                )
        return (
            f"{stack}: {logical_id} ({resource['Type']}) emulated: default security group of {vpc_id} "
            "emptied via EC2"
        )

    @staticmethod
    def _not_created(stack: str, template: dict[str, Any], ids: dict[str, str]) -> list[str]:
        """Resource types moto's CloudFormation skips: reported, since nothing enforces them locally."""
        missing: dict[str, int] = {}
        for logical_id, resource in template["Resources"].items():
            if logical_id not in ids or not ids[logical_id]:
                missing[resource["Type"]] = missing.get(resource["Type"], 0) + 1
        return [
            f"{stack}: {count} x {kind} not created (moto's CloudFormation skips the type; "
            "not enforced locally)"
            for kind, count in sorted(missing.items())
        ]

    def _create_api_stage_and_keys(
        self, stack: str, template: dict[str, Any], ids: dict[str, str]
    ) -> list[str]:
        """API Gateway stage, API keys and usage plans (moto's CloudFormation skips them).

        The stage must exist for ``FlushStageCache``; the keys are what the local API accepts.
        Created through the API Gateway API and recorded in ``ids`` under their logical ids.
        """
        patches = []
        resources = template["Resources"]

        def ref(value: Any) -> str:
            return ids[value["Ref"]] if isinstance(value, dict) and "Ref" in value else str(value)

        for logical_id, resource in resources.items():
            properties = resource.get("Properties", {})
            if resource["Type"] == "AWS::ApiGateway::Stage" and not ids.get(logical_id):
                api_id = ref(properties["RestApiId"])
                self.apigateway.create_deployment(
                    restApiId=api_id, stageName=properties["StageName"], description="local stage"
                )
                ids[logical_id] = properties["StageName"]
                patches.append(f"{stack}: stage {properties['StageName']} of API {api_id} via API Gateway")
            elif resource["Type"] == "AWS::ApiGateway::ApiKey" and not ids.get(logical_id):
                key = self.apigateway.create_api_key(
                    name=properties.get("Name", logical_id), enabled=True, generateDistinctId=True
                )
                ids[logical_id] = key["id"]
                patches.append(f"{stack}: API key {key['name']} via API Gateway")
        for logical_id, resource in resources.items():
            properties = resource.get("Properties", {})
            if resource["Type"] == "AWS::ApiGateway::UsagePlan" and not ids.get(logical_id):
                plan = self.apigateway.create_usage_plan(
                    name=properties.get("UsagePlanName", logical_id),
                    apiStages=[
                        {"apiId": ref(stage["ApiId"]), "stage": ref(stage["Stage"])}
                        for stage in properties.get("ApiStages", [])
                    ],
                    throttle={
                        "rateLimit": properties.get("Throttle", {}).get("RateLimit", 0),
                        "burstLimit": properties.get("Throttle", {}).get("BurstLimit", 0),
                    },
                    quota={
                        "limit": properties.get("Quota", {}).get("Limit", 0),
                        "period": properties.get("Quota", {}).get("Period", "DAY"),
                    },
                )
                ids[logical_id] = plan["id"]
                patches.append(f"{stack}: usage plan {plan['name']} via API Gateway")
        for logical_id, resource in resources.items():
            properties = resource.get("Properties", {})
            if resource["Type"] == "AWS::ApiGateway::UsagePlanKey" and not ids.get(logical_id):
                self.apigateway.create_usage_plan_key(
                    usagePlanId=ref(properties["UsagePlanId"]),
                    keyId=ref(properties["KeyId"]),
                    keyType="API_KEY",
                )
                ids[logical_id] = ref(properties["KeyId"])
                patches.append(f"{stack}: usage plan key {logical_id} via API Gateway")
        return patches

    def _apply_dropped_properties(
        self, stack: str, template: dict[str, Any], ids: dict[str, str]
    ) -> list[str]:
        patches = []
        for logical_id, resource in template["Resources"].items():
            properties = resource.get("Properties", {})
            if resource["Type"] == "AWS::S3::Bucket" and properties.get("VersioningConfiguration"):
                status = properties["VersioningConfiguration"]["Status"]
                self.s3.put_bucket_versioning(
                    Bucket=ids[logical_id], VersioningConfiguration={"Status": status}
                )
                patches.append(
                    f"{stack}: {ids[logical_id]} versioning {status} via S3 (moto ignores the property)"
                )
            if resource["Type"] == "AWS::DynamoDB::Table" and properties.get("TimeToLiveSpecification"):
                ttl = properties["TimeToLiveSpecification"]
                self.dynamodb.update_time_to_live(TableName=ids[logical_id], TimeToLiveSpecification=ttl)
                patches.append(
                    f"{stack}: {ids[logical_id]} TTL on {ttl['AttributeName']} via DynamoDB "
                    "(moto ignores the property)"
                )
        return patches
