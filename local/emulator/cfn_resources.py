"""Resources moto's CloudFormation cannot create, created through their service APIs instead.

moto's CloudFormation has no model for Glue databases, tables, crawlers and security
configurations, Athena workgroups and named queries, or Firehose delivery streams: it skips them,
and a ``Ref``/``Fn::GetAtt`` to one fails the stack. The deployer takes them out of the template
(``take_out``), replaces references to them in the rest by the names and ARNs they will have (all
literal in the project's templates), creates the stack, and then creates them from their template
properties (``create``) with moto's Glue, Athena and Firehose APIs, resolving ``Ref``,
``Fn::GetAtt`` (role ARNs), ``Fn::ImportValue`` and ``Fn::Join`` against the created stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

GAP = (
    "moto's CloudFormation skips Glue, Athena and Firehose resources: created from the template's "
    "properties through their APIs (local.emulator.cfn_resources)"
)
# in creation order (each may refer to the ones before it)
API_CREATED = (
    "AWS::Glue::SecurityConfiguration",
    "AWS::Glue::Database",
    "AWS::Glue::Table",
    "AWS::Glue::Crawler",
    "AWS::Athena::WorkGroup",
    "AWS::Athena::NamedQuery",
    "AWS::KinesisFirehose::DeliveryStream",
)


class UnresolvedReferenceError(ValueError):
    pass


def _name(resource: dict[str, Any]) -> str:
    props = resource["Properties"]
    kind = resource["Type"]
    if kind == "AWS::Glue::Database":
        return str(props["DatabaseInput"]["Name"])
    if kind == "AWS::Glue::Table":
        return str(props["TableInput"]["Name"])
    if kind == "AWS::KinesisFirehose::DeliveryStream":
        return str(props["DeliveryStreamName"])
    return str(props["Name"])


def _arn(resource: dict[str, Any], region: str, account: str) -> str:
    if resource["Type"] == "AWS::KinesisFirehose::DeliveryStream":
        return f"arn:aws:firehose:{region}:{account}:deliverystream/{_name(resource)}"
    raise UnresolvedReferenceError(f"no ARN for {resource['Type']}")


def _replace(node: Any, swap: Callable[[Any], Any | None]) -> Any:
    replaced = swap(node)
    if replaced is not None:
        return replaced
    if isinstance(node, dict):
        return {k: _replace(v, swap) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, swap) for v in node]
    return node


def take_out(template: dict[str, Any], *, region: str, account: str) -> dict[str, dict[str, Any]]:
    """Remove the API-created resources from ``template``; references to them become literals."""
    resources = template["Resources"]
    removed = {k: v for k, v in resources.items() if v["Type"] in API_CREATED}
    for logical_id in removed:
        del resources[logical_id]

    def swap(node: Any) -> Any | None:
        if isinstance(node, dict) and len(node) == 1:
            if "Ref" in node and node["Ref"] in removed:
                return _name(removed[node["Ref"]])
            if "Fn::GetAtt" in node and node["Fn::GetAtt"][0] in removed:
                return _arn(removed[node["Fn::GetAtt"][0]], region, account)
        return None

    for key in ("Resources", "Outputs"):
        if key in template:
            template[key] = _replace(template[key], swap)
    for resource in template["Resources"].values():
        depends = resource.get("DependsOn")
        if isinstance(depends, list):
            resource["DependsOn"] = [d for d in depends if d not in removed]
            if not resource["DependsOn"]:
                del resource["DependsOn"]
        elif isinstance(depends, str) and depends in removed:
            del resource["DependsOn"]
    return removed


class ApiCreator:
    """Creates taken-out resources in the emulated account (moto's service APIs)."""

    def __init__(self, session: Any) -> None:
        self.cfn = session.client("cloudformation")
        self.iam = session.client("iam")
        self.glue = session.client("glue")
        self.athena = session.client("athena")
        self.firehose = session.client("firehose")
        self.region = session.region_name
        self.account = session.client("sts").get_caller_identity()["Account"]

    def create(self, stack_name: str, removed: dict[str, dict[str, Any]]) -> list[str]:
        if not removed:
            return []
        ids = {
            r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
            for r in self.cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
            if r.get("LogicalResourceId")  # moto lists resources it could not create without one
        }
        exports = {e["Name"]: e["Value"] for e in self._exports()}
        names = {logical_id: _name(resource) for logical_id, resource in removed.items()}
        template = self.cfn.get_template(StackName=stack_name)["TemplateBody"]
        types = {k: v["Type"] for k, v in template["Resources"].items()} if isinstance(template, dict) else {}

        pseudo = {"AWS::Region": self.region, "AWS::AccountId": self.account, "AWS::Partition": "aws"}

        def ref(value: str) -> Any:
            return pseudo.get(value) or names.get(value) or ids[value]

        def get_att(value: list[str]) -> Any:
            logical_id, attribute = value
            if attribute == "Arn" and types.get(logical_id) == "AWS::IAM::Role":
                return self.iam.get_role(RoleName=ids[logical_id])["Role"]["Arn"]
            raise UnresolvedReferenceError(f"Fn::GetAtt {logical_id}.{attribute}")

        def join(value: list[Any]) -> str:
            delimiter, parts = value
            return str(delimiter).join(str(resolve(p)) for p in parts)

        intrinsics: dict[str, Callable[[Any], Any]] = {
            "Ref": ref,
            "Fn::GetAtt": get_att,
            "Fn::ImportValue": lambda value: exports[resolve(value)],
            "Fn::Join": join,
        }

        def resolve(node: Any) -> Any:
            if isinstance(node, dict) and len(node) == 1:
                ((key, value),) = node.items()
                if key in intrinsics:
                    return intrinsics[key](value)
            if isinstance(node, dict):
                return {k: resolve(v) for k, v in node.items()}
            if isinstance(node, list):
                return [resolve(v) for v in node]
            return node

        created = []
        order = {kind: index for index, kind in enumerate(API_CREATED)}
        for logical_id, resource in sorted(removed.items(), key=lambda item: order[item[1]["Type"]]):
            props = resolve(resource["Properties"])
            self._create(resource["Type"], props)
            created.append(f"{resource['Type']} {names[logical_id]}")
        return [
            f"{stack_name}: created through the service APIs (moto's CloudFormation skips them): "
            + ", ".join(created)
        ]

    def _exports(self) -> list[dict[str, str]]:
        exports: list[dict[str, str]] = []
        for page in self.cfn.get_paginator("list_exports").paginate():
            exports += page["Exports"]
        return exports

    def _create(self, kind: str, props: dict[str, Any]) -> None:
        if kind == "AWS::Glue::SecurityConfiguration":
            config = props["EncryptionConfiguration"]
            self.glue.create_security_configuration(
                Name=props["Name"],
                EncryptionConfiguration={
                    "S3Encryption": config.get("S3Encryptions", []),
                    "CloudWatchEncryption": config.get("CloudWatchEncryption", {}),
                    "JobBookmarksEncryption": config.get("JobBookmarksEncryption", {}),
                },
            )
        elif kind == "AWS::Glue::Database":
            self.glue.create_database(CatalogId=props["CatalogId"], DatabaseInput=props["DatabaseInput"])
        elif kind == "AWS::Glue::Table":
            self.glue.create_table(
                CatalogId=props["CatalogId"],
                DatabaseName=props["DatabaseName"],
                TableInput=props["TableInput"],
            )
        elif kind == "AWS::Glue::Crawler":
            fields = (
                "Name",
                "Role",
                "DatabaseName",
                "Description",
                "Targets",
                "TablePrefix",
                "SchemaChangePolicy",
                "RecrawlPolicy",
                "Configuration",
                "CrawlerSecurityConfiguration",
            )
            self.glue.create_crawler(**{k: props[k] for k in fields if k in props})
        elif kind == "AWS::Athena::WorkGroup":
            self.athena.create_work_group(
                Name=props["Name"],
                Configuration=props.get("WorkGroupConfiguration", {}),
                **({"Description": props["Description"]} if props.get("Description") else {}),
            )
        elif kind == "AWS::Athena::NamedQuery":
            self.athena.create_named_query(
                Name=props["Name"],
                **({"Description": props["Description"]} if props.get("Description") else {}),
                Database=props["Database"],
                QueryString=props["QueryString"],
                WorkGroup=props["WorkGroup"],
            )
        elif kind == "AWS::KinesisFirehose::DeliveryStream":
            arguments = {
                k: props[k]
                for k in (
                    "DeliveryStreamName",
                    "DeliveryStreamType",
                    "DeliveryStreamEncryptionConfigurationInput",
                    "ExtendedS3DestinationConfiguration",
                )
                if k in props
            }
            self.firehose.create_delivery_stream(**arguments)
        else:  # pragma: no cover - API_CREATED lists exactly the kinds above
            raise ValueError(kind)
