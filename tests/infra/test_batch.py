"""Template assertions for the batch layer (every environment).

Compute (Fargate Spot before on-demand, isolated subnets, service-linked role), the job definition,
least privilege of every role, the state machine's graph (rendered from its ``DefinitionString``),
its logging and tracing, the EventBridge triggers, the notification topic, the outputs, and the
cdk-nag acknowledgements. Expected values come from ``shared.config``; other stacks' resources are
found through the exports they publish.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.analytics import crawler_name
from shared.config import ENVIRONMENTS, EnvironmentConfig, RemovalPolicy
from shared.infra.acknowledge import MIN_REASON_LENGTH
from shared.outputs import BatchOutputs, DataOutputs, NetworkOutputs
from stacks.batch.runtime.handlers.list_inputs import ListSettings
from stacks.batch.runtime.handlers.report import ReportSettings
from stacks.batch.runtime.job.job import JobSettings
from tests.infra import asl
from tests.infra.conftest import resources_of

ENVS = sorted(ENVIRONMENTS)
LAYER = "batch"
TemplateJson = Callable[[str, str], dict[str, Any]]
DOCKERFILE = Path(__file__).resolve().parents[2] / "stacks" / "batch" / "image" / "Dockerfile"

# the batch functions by the name part of their FunctionName (config.resource_name(name))
FUNCTIONS = ("batch-list", "batch-inline", "batch-report")
# Errors AWS documents as transient for the Lambda and Batch integrations (service faults,
# throttling, SDK client errors); a handler's or a job's own failure is none of them.
TRANSIENT_ERRORS = frozenset(
    {
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.ClientExecutionTimeoutException",
        "Lambda.TooManyRequestsException",
        "Batch.AWSBatchException",
        "Batch.ServerException",
        "Batch.TooManyRequestsException",
        "Glue.OperationTimeoutException",
        "Glue.InternalServiceException",
        "Glue.ThrottlingException",
    }
)
# what every VPC function with X-Ray needs besides its own grants; those with Resource "*"
# are the ones IAM has no resource-level permissions for
LAMBDA_BASELINE_ACTIONS = frozenset(
    {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "ec2:AssignPrivateIpAddresses",
        "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
        "ec2:UnassignPrivateIpAddresses",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "xray:PutTelemetryRecords",
        "xray:PutTraceSegments",
    }
)
LAMBDA_UNSCOPED_ACTIONS = frozenset(
    {
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "xray:PutTelemetryRecords",
        "xray:PutTraceSegments",
    }
)
# Step Functions' log delivery, X-Ray and Batch's DescribeJobs: no resource-level permissions
STATE_MACHINE_UNSCOPED_ACTIONS = frozenset(
    {
        "batch:DescribeJobs",
        "logs:CreateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:DescribeLogGroups",
        "logs:DescribeResourcePolicies",
        "logs:GetLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:UpdateLogDelivery",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:PutTelemetryRecords",
        "xray:PutTraceSegments",
    }
)
# the rule Step Functions manages for the Batch ".sync" integration (AWS documentation)
SYNC_EVENTS_RULE = "StepFunctionsGetEventsForBatchJobsRule"
DYNAMODB_WRITE_ACTIONS = frozenset(
    {"dynamodb:BatchWriteItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
)


# ----- helpers -----------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _one(template: dict[str, Any], resource_type: str) -> tuple[str, dict[str, Any]]:
    found = resources_of(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    ((logical_id, resource),) = found.items()
    return logical_id, resource["Properties"]


def _get_att_id(value: Any) -> str:
    assert isinstance(value, dict), value
    assert set(value) == {"Fn::GetAtt"}, value
    return str(value["Fn::GetAtt"][0])


def _import_of(template_json: TemplateJson, env: str, layer: str, output_key: str) -> dict[str, str]:
    """The ``Fn::ImportValue`` of the export carrying the same value as ``layer``'s named output."""
    producer = template_json(env, layer)
    value = producer["Outputs"][output_key]["Value"]
    exports = [
        output["Export"]["Name"]
        for output in producer["Outputs"].values()
        if "Export" in output and output["Value"] == value
    ]
    assert len(exports) == 1, f"{layer} exports {output_key}'s value {len(exports)} times"
    return {"Fn::ImportValue": exports[0]}


def _isolated_subnet_imports(template_json: TemplateJson, env: str) -> list[dict[str, str]]:
    network = template_json(env, "network")
    isolated = [
        logical_id
        for logical_id, subnet in resources_of(network, "AWS::EC2::Subnet").items()
        if {"Key": "aws-cdk:subnet-type", "Value": "Isolated"} in subnet["Properties"].get("Tags", [])
    ]
    assert isolated, "the network stack has no isolated subnets"
    by_value = {
        json.dumps(output["Value"], sort_keys=True): output["Export"]["Name"]
        for output in network["Outputs"].values()
        if "Export" in output
    }
    return [{"Fn::ImportValue": by_value[json.dumps({"Ref": s}, sort_keys=True)]} for s in isolated]


def _function_ids(template: dict[str, Any], config: EnvironmentConfig) -> dict[str, str]:
    """Function name part (``batch-list``...) -> logical id of the Lambda function."""
    by_name = {
        f["Properties"]["FunctionName"]: logical_id
        for logical_id, f in resources_of(template, "AWS::Lambda::Function").items()
    }
    return {name: by_name[config.resource_name(name)] for name in FUNCTIONS}


def _roles(template: dict[str, Any], config: EnvironmentConfig) -> dict[str, str]:
    """Every batch role by what it serves -> the role's logical id."""
    functions = resources_of(template, "AWS::Lambda::Function")
    _, job_definition = _one(template, "AWS::Batch::JobDefinition")
    _, machine = _one(template, "AWS::StepFunctions::StateMachine")
    container = job_definition["ContainerProperties"]
    roles = {
        "job": _get_att_id(container["JobRoleArn"]),
        "execution": _get_att_id(container["ExecutionRoleArn"]),
        "state-machine": _get_att_id(machine["RoleArn"]),
    }
    for name, logical_id in _function_ids(template, config).items():
        roles[name] = _get_att_id(functions[logical_id]["Properties"]["Role"])
    return roles


def _role_policies(template: dict[str, Any], role_id: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: policy
        for logical_id, policy in resources_of(template, "AWS::IAM::Policy").items()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
    }


def _statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """Every statement of the role: its attached inline policies and its own ``Policies``."""
    role = template["Resources"][role_id]["Properties"]
    assert not role.get("ManagedPolicyArns"), f"{role_id} has managed policies"
    documents = [p["Properties"]["PolicyDocument"] for p in _role_policies(template, role_id).values()]
    documents += [p["PolicyDocument"] for p in role.get("Policies", [])]
    statements = [s for d in documents for s in d["Statement"]]
    assert statements, f"{role_id} has no permissions"
    assert all(s["Effect"] == "Allow" for s in statements)
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    return [str(a) for a in _as_list(statement["Action"])]


def _resources(statement: dict[str, Any]) -> list[Any]:
    return _as_list(statement["Resource"])


def _with_service(statements: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    return [s for s in statements if any(a.startswith(f"{service}:") for a in _actions(s))]


def _lambda_baseline(statements: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the function's VPC/X-Ray/log statements, its own grants)."""
    baseline = [s for s in statements if set(_actions(s)) <= LAMBDA_BASELINE_ACTIONS]
    own = [s for s in statements if not set(_actions(s)) <= LAMBDA_BASELINE_ACTIONS]
    for statement in baseline:
        if "*" in _resources(statement):
            assert set(_actions(statement)) <= LAMBDA_UNSCOPED_ACTIONS, statement
    return baseline, own


def _bucket_arn(config: EnvironmentConfig, purpose: str) -> str:
    return f"arn:aws:s3:::{config.bucket_name(purpose)}"


S3_ACCESS = {
    "s3:Get": "read",
    "s3:List": "read",
    "s3:Put": "write",
    "s3:Abort": "write",
    "s3:Delete": "delete",
}


def _s3_access(statements: list[dict[str, Any]]) -> dict[str, set[Any]]:
    """Resources the role may read, write and delete in S3 (CDK merges grants on equal resources into
    one statement, so each action is classified); "delete-actions" lists the delete actions."""
    access: dict[str, set[Any]] = {"read": set(), "write": set(), "delete": set(), "delete-actions": set()}
    for statement in _with_service(statements, "s3"):
        resources = {json.dumps(r) if isinstance(r, dict) else r for r in _resources(statement)}
        for action in _actions(statement):
            kinds = [kind for prefix, kind in S3_ACCESS.items() if action.startswith(prefix)]
            assert len(kinds) == 1, f"unexpected action {action} in {statement}"
            access[kinds[0]] |= resources
            if kinds[0] == "delete":
                access["delete-actions"].add(action)
    return access


def _objects(resources: set[Any]) -> set[Any]:
    """Object ARNs (``arn:aws:s3:::bucket/key``) of a set of S3 resources, buckets left out."""
    return {r for r in resources if isinstance(r, str) and "/" in r}


def _definition(template: dict[str, Any]) -> dict[str, Any]:
    _, machine = _one(template, "AWS::StepFunctions::StateMachine")
    return asl.render(machine["DefinitionString"])


def _nag_suppressions(policy: dict[str, Any]) -> dict[str, str]:
    entries = policy.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    return {e["id"]: e.get("reason", "") for e in entries}


def _flatten(value: Any) -> str:
    """A policy resource as cdk-nag names it in an IAM5 finding."""
    if isinstance(value, str):
        return value
    ((intrinsic, argument),) = value.items()
    if intrinsic == "Fn::Join":
        return str(argument[0]).join(_flatten(v) for v in argument[1])
    if intrinsic == "Fn::GetAtt":
        return f"<{argument[0]}.{argument[1]}>"
    if intrinsic == "Ref":
        return f"<{argument}>"
    if intrinsic == "Fn::ImportValue":
        return str(argument)
    raise AssertionError(f"unexpected intrinsic in a policy: {value}")


def _wildcards(document: dict[str, Any]) -> set[str]:
    findings: set[str] = set()
    for statement in document["Statement"]:
        findings |= {f"Action::{a}" for a in _actions(statement) if "*" in a}
        findings |= {f"Resource::{_flatten(r)}" for r in _resources(statement) if "*" in _flatten(r)}
    return findings


# ----- 1. compute ---------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_fargate_compute_environments_in_the_isolated_subnets_spot_first(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    environments = resources_of(template, "AWS::Batch::ComputeEnvironment")
    by_kind = {
        e["Properties"]["ComputeResources"]["Type"]: logical_id for logical_id, e in environments.items()
    }
    expected_kinds = {"FARGATE_SPOT", "FARGATE"} if config.batch.use_spot else {"FARGATE"}
    assert set(by_kind) == expected_kinds
    assert len(environments) == len(expected_kinds)
    subnets = _isolated_subnet_imports(template_json, env)
    security_group = _import_of(template_json, env, "network", NetworkOutputs.COMPUTE_SECURITY_GROUP_ID)
    for environment in environments.values():
        props = environment["Properties"]
        assert props["Type"] == "MANAGED"
        assert props["State"] == "ENABLED"
        # no ServiceRole: Batch uses its service-linked role
        assert "ServiceRole" not in props
        resources = props["ComputeResources"]
        assert resources["MaxvCpus"] == config.batch.max_vcpus
        assert sorted(map(json.dumps, resources["Subnets"])) == sorted(map(json.dumps, subnets))
        assert resources["SecurityGroupIds"] == [security_group]

    _, queue = _one(template, "AWS::Batch::JobQueue")
    assert queue["State"] == "ENABLED"
    order = sorted(queue["ComputeEnvironmentOrder"], key=lambda o: o["Order"])
    expected = (["FARGATE_SPOT"] if config.batch.use_spot else []) + ["FARGATE"]
    assert [o["ComputeEnvironment"] for o in order] == [{"Ref": by_kind[kind]} for kind in expected]
    assert [o["Order"] for o in order][: len(expected)] == sorted({o["Order"] for o in order})
    if config.batch.use_spot:
        assert [o["Order"] for o in order] == [1, 2]


@pytest.mark.parametrize("env", ENVS)
def test_the_maps_concurrency_fits_in_the_compute_environments_vcpus(env, template_json):
    """Every input the Map runs at once can be a Batch job; none waits for vCPUs in the queue."""
    template = template_json(env, LAYER)
    _, job_definition = _one(template, "AWS::Batch::JobDefinition")
    requirements = {
        r["Type"]: r["Value"] for r in job_definition["ContainerProperties"]["ResourceRequirements"]
    }
    process = asl.all_states(_definition(template))["ProcessInputs"]
    for environment in resources_of(template, "AWS::Batch::ComputeEnvironment").values():
        max_vcpus = environment["Properties"]["ComputeResources"]["MaxvCpus"]
        assert process["MaxConcurrency"] * float(requirements["VCPU"]) <= max_vcpus


@pytest.mark.parametrize("env", ENVS)
def test_batch_functions_run_in_the_isolated_subnets(env, template_json):
    template = template_json(env, LAYER)
    functions = resources_of(template, "AWS::Lambda::Function")
    subnets = _isolated_subnet_imports(template_json, env)
    security_group = _import_of(template_json, env, "network", NetworkOutputs.COMPUTE_SECURITY_GROUP_ID)
    for logical_id in _function_ids(template, ENVIRONMENTS[env]).values():
        vpc = functions[logical_id]["Properties"]["VpcConfig"]
        assert sorted(map(json.dumps, vpc["SubnetIds"])) == sorted(map(json.dumps, subnets))
        assert vpc["SecurityGroupIds"] == [security_group]


# ----- 2. job definition --------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_job_definition_runs_the_project_image_as_non_root_with_resources_from_config(env, template_json):
    config = ENVIRONMENTS[env]
    job = config.batch.job
    template = template_json(env, LAYER)
    _, definition = _one(template, "AWS::Batch::JobDefinition")
    assert definition["Type"] == "container"
    assert definition["PlatformCapabilities"] == ["FARGATE"]
    container = definition["ContainerProperties"]

    image = container["Image"]["Fn::Sub"]
    repository = f"cdk-[a-z0-9]+-container-assets-{config.account}-{config.region}"
    assert re.fullmatch(
        rf"{config.account}\.dkr\.ecr\.{config.region}\.\$\{{AWS::URLSuffix\}}/{repository}:[0-9a-f]{{64}}",
        image,
    ), image
    # the execution role pulls from that repository only
    execution = _statements(template, _get_att_id(container["ExecutionRoleArn"]))
    (pull,) = [s for s in execution if "ecr:BatchGetImage" in _actions(s)]
    (pull_repository,) = _resources(pull)
    assert re.fullmatch(
        rf"arn:aws:ecr:{config.region}:{config.account}:repository/{repository}", pull_repository
    )

    # non-root: the image's own unprivileged user, on a read-only root filesystem
    (image_user,) = re.findall(r"^USER (\S+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert container["User"] == image_user
    assert all(int(part) != 0 for part in container["User"].split(":"))
    assert container["ReadonlyRootFilesystem"] is True
    requirements = {r["Type"]: r["Value"] for r in container["ResourceRequirements"]}
    assert set(requirements) == {"VCPU", "MEMORY"}
    assert float(requirements["VCPU"]) == job.vcpus
    assert int(requirements["MEMORY"]) == job.memory_mib
    assert container["NetworkConfiguration"] == {"AssignPublicIp": "DISABLED"}

    command = container["Command"]
    assert command == ["python", "-m", "stacks.batch.runtime.job.job", "Ref::input"]
    assert importlib.util.find_spec(command[2]) is not None

    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert (
        environment["OUTPUT_PREFIX"] == f"s3://{config.bucket_name('results')}/{config.batch.output_prefix}"
    )
    assert environment["ENDPOINT_NAME"] == config.resource_name("endpoint")
    assert environment["PREDICTIONS_TABLE"] == config.resource_name("predictions")
    assert environment["MODEL_BUCKET"] == config.bucket_name("models")
    assert environment["MODEL_PARAMETERS_PATH"] == config.model_parameters_path
    assert environment["PREDICTION_TTL_DAYS"] == str(config.data.prediction_ttl_days)
    assert environment["CHUNK_ROWS"] == str(job.chunk_rows)
    assert environment["REQUEST_ROWS"] == str(job.request_rows)
    # the job's own settings parse from exactly this environment
    settings = JobSettings.model_validate(environment)
    assert (settings.chunk_rows, settings.request_rows) == (job.chunk_rows, job.request_rows)

    assert definition["Timeout"] == {"AttemptDurationSeconds": job.timeout_seconds}
    retry = definition["RetryStrategy"]
    assert retry["Attempts"] == job.attempts
    rules = retry["EvaluateOnExit"]
    assert len(rules) <= 5  # Batch's limit
    assert rules[-1] == {"Action": "EXIT", "OnReason": "*"}
    for rule in rules[:-1]:
        assert rule["Action"] == "RETRY"
        conditions = {k: v for k, v in rule.items() if k != "Action"}
        assert len(conditions) == 1
        assert "*" not in conditions.values()  # a retry of everything would re-run the job's own failures


@pytest.mark.parametrize("env", ENVS)
def test_job_logs_to_the_stacks_encrypted_log_group(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    _, definition = _one(template, "AWS::Batch::JobDefinition")
    logging = definition["ContainerProperties"]["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs"
    assert logging["Options"]["awslogs-region"] == config.region
    group_id = logging["Options"]["awslogs-group"]["Ref"]
    group = template["Resources"][group_id]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["LogGroupName"].startswith(f"{config.log_group_prefix}/")
    assert group["Properties"]["KmsKeyId"] == _import_of(template_json, env, "data", DataOutputs.OPS_KEY_ARN)


@pytest.mark.parametrize("env", ENVS)
def test_every_log_group_is_encrypted_with_retention_and_removal_policy_from_config(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    ops_key = _import_of(template_json, env, "data", DataOutputs.OPS_KEY_ARN)
    groups = resources_of(template, "AWS::Logs::LogGroup")
    assert len(groups) == 5  # job, three functions, state machine
    expected = "Retain" if config.log_removal_policy == RemovalPolicy.RETAIN else "Delete"
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == config.log_retention_days
        assert group["Properties"]["KmsKeyId"] == ops_key
        assert group["DeletionPolicy"] == expected


# ----- 3. least privilege ------------------------------------------------------------------------


def _assert_job_permissions(
    statements: list[dict[str, Any]], config: EnvironmentConfig, data_key: Any
) -> None:
    """The batch job's grants (job role and batch-inline function): nothing beyond what it calls."""
    for statement in statements:
        assert "*" not in _resources(statement), f"Resource * granted: {statement}"
        assert len({a.split(":")[0] for a in _actions(statement)}) == 1, statement
    services = {a.split(":")[0] for s in statements for a in _actions(s)}
    assert services <= {"s3", "kms", "ssm", "dynamodb", "sagemaker"}

    (invoke,) = _with_service(statements, "sagemaker")
    assert _actions(invoke) == ["sagemaker:InvokeEndpoint"]
    endpoint = (
        f"arn:aws:sagemaker:{config.region}:{config.account}:endpoint/{config.resource_name('endpoint')}"
    )
    assert _resources(invoke) == [endpoint]

    settings = config.batch
    s3 = _s3_access(statements)
    data, models, results = (_bucket_arn(config, p) for p in ("data", "models", "results"))
    outputs = f"{results}/{settings.output_prefix}/*"
    # inputs, the champion's schema, and its own results (a restart compares and replaces them)
    assert _objects(s3["read"]) == {
        f"{data}/{settings.input_prefix}*",
        f"{models}/models/*/schema.json",
        outputs,
    }
    assert s3["read"] - _objects(s3["read"]) <= {data, models, results}
    assert s3["write"] == {outputs}
    # deletes (a restart removes part files an earlier run left) only under the output prefix
    assert s3["delete"] <= {outputs}

    table = f"arn:aws:dynamodb:{config.region}:{config.account}:table/{config.resource_name('predictions')}"
    dynamodb = _with_service(statements, "dynamodb")
    actions = {a for s in dynamodb for a in _actions(s)}
    assert actions & DYNAMODB_WRITE_ACTIONS >= {"dynamodb:BatchWriteItem", "dynamodb:PutItem"}
    assert actions <= DYNAMODB_WRITE_ACTIONS | {"dynamodb:DescribeTable"}
    assert not actions & {"dynamodb:Scan", "dynamodb:Query", "dynamodb:GetItem", "dynamodb:BatchGetItem"}
    resources = {r for s in dynamodb for r in _resources(s)}
    assert table in resources
    assert resources <= {table, f"{table}/index/*"}

    for statement in _with_service(statements, "kms"):
        assert _resources(statement) == [data_key]
    for statement in _with_service(statements, "ssm"):
        assert all(a.startswith(("ssm:Get", "ssm:Describe")) for a in _actions(statement))
        (parameter,) = _resources(statement)
        assert "*" not in _flatten(parameter)
        assert f":ssm:{config.region}:{config.account}:parameter" in _flatten(parameter)


@pytest.mark.parametrize("env", ENVS)
def test_job_role_is_least_privilege(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    statements = _statements(template, _roles(template, config)["job"])
    _assert_job_permissions(
        statements, config, _import_of(template_json, env, "data", DataOutputs.DATA_KEY_ARN)
    )


@pytest.mark.parametrize("env", ENVS)
def test_inline_function_has_the_jobs_permissions_and_nothing_more(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    _, own = _lambda_baseline(_statements(template, _roles(template, config)["batch-inline"]))
    _assert_job_permissions(own, config, _import_of(template_json, env, "data", DataOutputs.DATA_KEY_ARN))
    functions = resources_of(template, "AWS::Lambda::Function")
    environment = functions[_function_ids(template, config)["batch-inline"]]["Properties"]["Environment"]
    settings = JobSettings.model_validate(environment["Variables"])
    job = config.batch.job
    assert (settings.chunk_rows, settings.request_rows) == (job.chunk_rows, job.request_rows)
    assert settings.output_prefix == f"s3://{config.bucket_name('results')}/{config.batch.output_prefix}"


@pytest.mark.parametrize("role", ["job", "batch-inline"])
@pytest.mark.parametrize("env", ENVS)
def test_the_job_deletes_current_objects_and_never_versions(env, role, template_json):
    template = template_json(env, LAYER)
    statements = _statements(template, _roles(template, ENVIRONMENTS[env])[role])
    assert _s3_access(statements)["delete-actions"] <= {"s3:DeleteObject"}


@pytest.mark.parametrize("env", ENVS)
def test_list_function_reads_inputs_and_output_manifests_only(env, template_json):
    config = ENVIRONMENTS[env]
    settings = config.batch
    template = template_json(env, LAYER)
    _, own = _lambda_baseline(_statements(template, _roles(template, config)["batch-list"]))
    assert {a.split(":")[0] for s in own for a in _actions(s)} <= {"s3", "kms"}
    s3 = _s3_access(own)
    data, results = _bucket_arn(config, "data"), _bucket_arn(config, "results")
    assert _objects(s3["read"]) == {
        f"{data}/{settings.input_prefix}*",
        f"{results}/{settings.output_prefix}/*",
    }
    assert s3["read"] - _objects(s3["read"]) <= {data, results}
    assert s3["write"] == s3["delete"] == set()
    data_key = _import_of(template_json, env, "data", DataOutputs.DATA_KEY_ARN)
    for statement in _with_service(own, "kms"):
        assert set(_actions(statement)) <= {"kms:Decrypt", "kms:DescribeKey"}
        assert _resources(statement) == [data_key]
    functions = resources_of(template, "AWS::Lambda::Function")
    environment = functions[_function_ids(template, config)["batch-list"]]["Properties"]["Environment"]
    listing = ListSettings.model_validate(environment["Variables"])
    assert listing.max_inputs == settings.max_inputs_per_run
    assert listing.output_prefix == f"s3://{config.bucket_name('results')}/{settings.output_prefix}"


@pytest.mark.parametrize("env", ENVS)
def test_report_function_reads_output_prefix_and_writes_runs_prefix_only(env, template_json):
    config = ENVIRONMENTS[env]
    settings = config.batch
    template = template_json(env, LAYER)
    _, own = _lambda_baseline(_statements(template, _roles(template, config)["batch-report"]))
    assert {a.split(":")[0] for s in own for a in _actions(s)} <= {"s3", "kms"}
    s3 = _s3_access(own)
    results = _bucket_arn(config, "results")
    assert _objects(s3["read"]) == {f"{results}/{settings.output_prefix}/*"}
    assert s3["read"] - _objects(s3["read"]) <= {results}
    assert s3["write"] == {f"{results}/{settings.runs_prefix}/*"}
    assert s3["delete"] == set()
    data_key = _import_of(template_json, env, "data", DataOutputs.DATA_KEY_ARN)
    assert all(_resources(s) == [data_key] for s in _with_service(own, "kms"))
    functions = resources_of(template, "AWS::Lambda::Function")
    environment = functions[_function_ids(template, config)["batch-report"]]["Properties"]["Environment"]
    report = ReportSettings.model_validate(environment["Variables"])
    assert report.runs_prefix == f"s3://{config.bucket_name('results')}/{settings.runs_prefix}"


# ----- 4. state machine definition ---------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_run_lists_inputs_then_maps_them_with_bounded_concurrency(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    functions = _function_ids(template, config)
    definition = _definition(template)
    assert definition["StartAt"] == "ListInputs"
    assert definition["TimeoutSeconds"] == config.batch.run_timeout_minutes * 60
    states = definition["States"]

    listing = states["ListInputs"]
    assert listing["Resource"].endswith(":states:::lambda:invoke")
    assert listing["Parameters"]["FunctionName"] == asl.get_att(functions["batch-list"], "Arn")
    assert listing["Next"] == "AnyInputs"

    any_inputs = states["AnyInputs"]
    assert any_inputs["Type"] == "Choice"
    (rule,) = any_inputs["Choices"]
    assert rule["Variable"] == "$.count"
    assert rule["Next"] == "ProcessInputs"
    assert states[any_inputs["Default"]]["Type"] == "Succeed"

    process = states["ProcessInputs"]
    assert process["Type"] == "Map"
    assert process["ItemsPath"] == "$.inputs"
    assert process["MaxConcurrency"] == config.batch.max_concurrency
    assert process["Next"] == "Finish"


@pytest.mark.parametrize("env", ENVS)
def test_each_input_runs_inline_when_small_and_as_a_sync_batch_job_otherwise(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    functions = _function_ids(template, config)
    process = _definition(template)["States"]["ProcessInputs"]
    processor = process["ItemProcessor"]
    assert processor["StartAt"] == "InlineOrBatch"
    states = processor["States"]

    route = states["InlineOrBatch"]
    assert route["Type"] == "Choice"
    (rule,) = route["Choices"]
    assert rule == {
        "Variable": "$.size",
        "NumericLessThanEquals": config.batch.inline_max_bytes,
        "Next": "PredictInline",
    }
    assert route["Default"] == "RunBatchJob"

    inline = states["PredictInline"]
    assert inline["Type"] == "Task"
    assert inline["Resource"].endswith(":states:::lambda:invoke")
    assert inline["Parameters"]["FunctionName"] == asl.get_att(functions["batch-inline"], "Arn")

    job = states["RunBatchJob"]
    assert job["Type"] == "Task"
    assert job["Resource"] == "arn:<Ref:AWS::Partition>:states:::batch:submitJob.sync"
    queue_id, _ = _one(template, "AWS::Batch::JobQueue")
    definition_id, job_definition = _one(template, "AWS::Batch::JobDefinition")
    assert job["Parameters"]["JobQueue"] == asl.ref(queue_id)
    assert job["Parameters"]["JobDefinition"] == asl.ref(definition_id)
    assert job["Parameters"]["Parameters"] == {"input.$": "$.uri"}
    # the parameter the state machine submits is the one the container's command substitutes
    command = job_definition["ContainerProperties"]["Command"]
    submitted = {f"Ref::{name.removesuffix('.$')}" for name in job["Parameters"]["Parameters"]}
    assert submitted <= set(command)


@pytest.mark.parametrize("env", ENVS)
def test_submitted_job_keeps_the_configured_attempt_timeout(env, template_json):
    """SubmitJob's Timeout overrides the job definition's: the state machine must not send one that
    differs (CDK's BatchSubmitJob renders ``task_timeout`` as exactly that override)."""
    job = ENVIRONMENTS[env].batch.job
    run_batch_job = asl.all_states(_definition(template_json(env, LAYER)))["RunBatchJob"]
    timeout = run_batch_job["Parameters"].get("Timeout", {"AttemptDurationSeconds": job.timeout_seconds})
    assert timeout == {"AttemptDurationSeconds": job.timeout_seconds}


@pytest.mark.parametrize("env", ENVS)
def test_retries_are_for_transient_errors_and_input_failures_are_recorded(env, template_json):
    states = asl.all_states(_definition(template_json(env, LAYER)))
    for name, state in states.items():
        for retry in state.get("Retry", []):
            assert set(retry["ErrorEquals"]) <= TRANSIENT_ERRORS, f"{name} retries {retry['ErrorEquals']}"
            assert retry["BackoffRate"] > 1
            assert retry["MaxAttempts"] >= 1
    for name in ("PredictInline", "RunBatchJob"):
        assert states[name]["Retry"], f"{name} has no retry"
        (catch,) = states[name]["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"]
        assert catch["Next"] == "InputFailed"
        assert catch["ResultPath"] == "$.error"  # the input stays, the error is added
    failed = states["InputFailed"]
    assert failed["Type"] == "Pass"
    assert failed["Parameters"]["failed"] is True
    assert failed["Parameters"]["error.$"] == "$.error.Error"


@pytest.mark.parametrize("env", ENVS)
def test_finish_reports_beside_the_notification_and_failed_inputs_fail_the_run(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    topic_id, _ = _one(template, "AWS::SNS::Topic")
    functions = _function_ids(template, config)
    states = _definition(template)["States"]

    finish = states["Finish"]
    assert finish["Type"] == "Parallel"
    branches = {b["StartAt"]: b["States"] for b in finish["Branches"]}
    assert set(branches) == {"Report", "NotifyFinished"}
    report = branches["Report"]["Report"]
    assert report["Resource"].endswith(":states:::lambda:invoke")
    assert report["Parameters"]["FunctionName"] == asl.get_att(functions["batch-report"], "Arn")
    # then the analytics layer's crawler, by the name both layers derive; the manifest stays the
    # branch's result, and a crawl already running is no failure
    assert report["Next"] == "CatalogOutputs"
    catalog = branches["Report"]["CatalogOutputs"]
    assert catalog["Resource"].endswith(":states:::aws-sdk:glue:startCrawler")
    assert catalog["Parameters"] == {"Name": crawler_name(config)}
    assert catalog["ResultPath"] is None
    assert catalog.get("End") is True
    (caught,) = catalog["Catch"]
    assert caught["ErrorEquals"] == ["Glue.CrawlerRunningException"]
    assert caught["ResultPath"] is None
    assert branches["Report"][caught["Next"]]["Type"] == "Pass"
    assert all("States.ALL" not in r["ErrorEquals"] for r in catalog.get("Retry", []))
    notify = branches["NotifyFinished"]["NotifyFinished"]
    assert notify["Resource"].endswith(":states:::sns:publish")
    assert notify["Parameters"]["TopicArn"] == asl.ref(topic_id)
    assert finish["Next"] == "AllInputsSucceeded"

    verdict = states["AllInputsSucceeded"]
    assert verdict["Type"] == "Choice"
    (rule,) = verdict["Choices"]
    assert rule["Variable"] == "$.finish.report.failed_inputs"
    assert rule["NumericGreaterThan"] == 0
    assert rule["Next"] == "NotifyInputsFailed"
    assert states[verdict["Default"]]["Type"] == "Succeed"
    notify_failed = states["NotifyInputsFailed"]
    assert notify_failed["Resource"].endswith(":states:::sns:publish")
    assert notify_failed["Parameters"]["TopicArn"] == asl.ref(topic_id)
    assert states[notify_failed["Next"]]["Type"] == "Fail"
    assert notify_failed["Next"] == "InputsFailed"


@pytest.mark.parametrize("env", ENVS)
def test_a_failed_step_notifies_and_fails_the_run(env, template_json):
    template = template_json(env, LAYER)
    topic_id, _ = _one(template, "AWS::SNS::Topic")
    states = _definition(template)["States"]
    for name in ("ListInputs", "ProcessInputs", "Finish"):
        (catch,) = states[name]["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"], name
        assert catch["Next"] == "NotifyRunFailed", name
    notify = states["NotifyRunFailed"]
    assert notify["Resource"].endswith(":states:::sns:publish")
    assert notify["Parameters"]["TopicArn"] == asl.ref(topic_id)
    assert notify["Next"] == "RunFailed"
    assert states["RunFailed"]["Type"] == "Fail"
    # every step of the run is caught (the failure notifications themselves end in a Fail state)
    steps = [n for n, s in states.items() if s["Type"] in {"Task", "Map", "Parallel"}]
    uncaught = {n for n in steps if not states[n].get("Catch")}
    assert uncaught == {"NotifyRunFailed", "NotifyInputsFailed"}


@pytest.mark.parametrize("env", ENVS)
def test_every_path_ends_in_succeed_or_fail_without_waits_or_loops(env, template_json):
    definition = _definition(template_json(env, LAYER))
    states = asl.all_states(definition)
    assert not [n for n, s in states.items() if s["Type"] == "Wait"], "a fixed wait"
    assert {s["Type"] for s in states.values()} >= {"Choice", "Map", "Parallel", "Succeed", "Fail"}
    for path, scope in asl.scopes(definition):
        graph = scope["States"]
        assert scope["StartAt"] in graph, path
        for name, state in graph.items():
            following = asl.successors(state)
            assert set(following) <= set(graph), f"{path}{name} goes to a state not in its graph: {following}"
            if state["Type"] == "Choice":
                assert "Default" in state, f"{path}{name}: a Choice without Default fails unhandled"
            if state["Type"] in asl.TERMINAL_TYPES:
                assert not following, f"{path}{name}"
            elif state["Type"] != "Choice" and "Next" not in state:
                assert state.get("End") is True, f"{path}{name} is a dead end"
                # the top level ends only in Succeed or Fail, never in a task's End
                assert path, f"{name} ends the run outside a Succeed or Fail state"
        # every state reachable, and no cycle (a loop would be a polling loop or a retry in disguise)
        assert asl.reachable_without_cycles(graph, scope["StartAt"]) == set(graph), f"{path}: unreachable"


# ----- 5. state machine resource -----------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_state_machine_logs_everything_to_an_encrypted_vended_log_group_and_traces(env, template_json):
    template = template_json(env, LAYER)
    _, machine = _one(template, "AWS::StepFunctions::StateMachine")
    assert machine["StateMachineType"] == "STANDARD"
    logging = machine["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is True
    (destination,) = logging["Destinations"]
    group = template["Resources"][_get_att_id(destination["CloudWatchLogsLogGroup"]["LogGroupArn"])]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["LogGroupName"].startswith("/aws/vendedlogs/states/")
    assert group["Properties"]["KmsKeyId"] == _import_of(template_json, env, "data", DataOutputs.OPS_KEY_ARN)
    assert machine["TracingConfiguration"] == {"Enabled": True}


# ----- 6. state machine role ---------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_state_machine_role_grants_the_sync_integration_and_its_own_resources_only(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    statements = _statements(template, _roles(template, config)["state-machine"])
    by_action: dict[str, list[Any]] = {}
    for statement in statements:
        for action in _actions(statement):
            by_action.setdefault(action, []).extend(_resources(statement))
    arn = f":{config.region}:{config.account}:"

    events_rule = f"arn:aws:events{arn}rule/{SYNC_EVENTS_RULE}"
    for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
        assert by_action[action] == [events_rule], action

    queue_id, _ = _one(template, "AWS::Batch::JobQueue")
    submit = by_action["batch:SubmitJob"]
    assert {"Ref": queue_id} in submit
    assert all(r in ({"Ref": queue_id}, f"arn:aws:batch{arn}job-definition/*") for r in submit), submit
    assert "batch:DescribeJobs" in by_action
    assert by_action["batch:TerminateJob"] == [f"arn:aws:batch{arn}job/*"]

    functions = set(_function_ids(template, config).values())
    invoked = set()
    for resource in by_action["lambda:InvokeFunction"]:
        if "Fn::Join" in resource:  # versions and aliases: "<function ARN>:*"
            delimiter, (function_arn, suffix) = resource["Fn::Join"]
            assert (delimiter, suffix) == ("", ":*")
            invoked.add(_get_att_id(function_arn))
        else:
            invoked.add(_get_att_id(resource))
    assert invoked == functions

    topic_id, _ = _one(template, "AWS::SNS::Topic")
    assert by_action["sns:Publish"] == [{"Ref": topic_id}]
    ops_key = _import_of(template_json, env, "data", DataOutputs.OPS_KEY_ARN)
    kms = {a: r for a, r in by_action.items() if a.startswith("kms:")}
    assert kms
    assert all(resources == [ops_key] for resources in kms.values())

    assert by_action["glue:StartCrawler"] == [f"arn:aws:glue{arn}crawler/{crawler_name(config)}"]

    for statement in statements:
        if "*" in _resources(statement):
            assert set(_actions(statement)) <= STATE_MACHINE_UNSCOPED_ACTIONS, statement
    expected_actions = {
        "glue:StartCrawler",
        "events:PutTargets",
        "events:PutRule",
        "events:DescribeRule",
        "batch:SubmitJob",
        "batch:TerminateJob",
        "lambda:InvokeFunction",
        "sns:Publish",
        *kms,
        *STATE_MACHINE_UNSCOPED_ACTIONS,
    }
    assert set(by_action) <= expected_actions, set(by_action) - expected_actions


# ----- 7. EventBridge ----------------------------------------------------------------------------


def _rules(template: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    rules = [r["Properties"] for r in resources_of(template, "AWS::Events::Rule").values()]
    (schedule,) = [r for r in rules if "ScheduleExpression" in r]
    (created,) = [r for r in rules if "EventPattern" in r]
    assert len(rules) == 2
    return schedule, created


def _assert_target_runs_the_state_machine(
    template: dict[str, Any], target: dict[str, Any], ops_key: Any
) -> None:
    machine_id, _ = _one(template, "AWS::StepFunctions::StateMachine")
    assert target["Arn"] == {"Ref": machine_id}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 3
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] > 0
    queue_id = _get_att_id(target["DeadLetterConfig"]["Arn"])
    queue = template["Resources"][queue_id]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["KmsMasterKeyId"] == ops_key
    role = _statements(template, _get_att_id(target["RoleArn"]))
    assert role == [{"Action": "states:StartExecution", "Effect": "Allow", "Resource": {"Ref": machine_id}}]


@pytest.mark.parametrize("env", ENVS)
def test_schedule_starts_a_run_over_the_input_prefix(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    schedule, _ = _rules(template)
    assert schedule["ScheduleExpression"] == config.batch.schedule
    assert schedule["State"] == "ENABLED"
    (target,) = schedule["Targets"]
    _assert_target_runs_the_state_machine(
        template, target, _import_of(template_json, env, "data", DataOutputs.OPS_KEY_ARN)
    )
    assert json.loads(target["Input"]) == {
        "bucket": config.bucket_name("data"),
        "prefix": config.batch.input_prefix,
    }


@pytest.mark.parametrize("env", ENVS)
def test_an_object_created_under_the_input_prefix_starts_a_run_for_it(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    _, created = _rules(template)
    data_bucket = config.bucket_name("data")
    assert created["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [data_bucket]},
            "object": {"key": [{"prefix": config.batch.input_prefix}]},
        },
    }
    assert created["State"] == "ENABLED"
    (target,) = created["Targets"]
    _assert_target_runs_the_state_machine(
        template, target, _import_of(template_json, env, "data", DataOutputs.OPS_KEY_ARN)
    )
    transformer = target["InputTransformer"]
    paths = transformer["InputPathsMap"]
    assert set(paths.values()) == {"$.detail.bucket.name", "$.detail.object.key"}
    rendered = transformer["InputTemplate"]
    for name, path in paths.items():
        rendered = rendered.replace(f"<{name}>", json.dumps(path))
    assert json.loads(rendered) == {"bucket": "$.detail.bucket.name", "prefix": "$.detail.object.key"}
    # the data bucket sends its events to EventBridge (otherwise the rule never matches)
    (bucket,) = [
        b["Properties"]
        for b in resources_of(template_json(env, "data"), "AWS::S3::Bucket").values()
        if b["Properties"].get("BucketName") == data_bucket
    ]
    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"] == {"EventBridgeEnabled": True}


@pytest.mark.parametrize("env", ENVS)
def test_dead_letter_queue_accepts_the_rules_undelivered_events_only(env, template_json):
    template = template_json(env, LAYER)
    queue_id, _ = _one(template, "AWS::SQS::Queue")
    _, policy = _one(template, "AWS::SQS::QueuePolicy")
    assert policy["Queues"] == [{"Ref": queue_id}]
    allows = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    rules = set(resources_of(template, "AWS::Events::Rule"))
    sources = set()
    for statement in allows:
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"
        assert statement["Resource"] == {"Fn::GetAtt": [queue_id, "Arn"]}
        sources.add(_get_att_id(statement["Condition"]["ArnEquals"]["aws:SourceArn"]))
    assert sources == rules


# ----- 8. topic and outputs ----------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_notification_topic_is_encrypted_with_the_ops_key(env, template_json):
    template = template_json(env, LAYER)
    _, topic = _one(template, "AWS::SNS::Topic")
    assert topic["KmsMasterKeyId"] == _import_of(template_json, env, "data", DataOutputs.OPS_KEY_ARN)


@pytest.mark.parametrize("env", ENVS)
def test_outputs_name_every_batch_output_key(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    keys = {value for name, value in vars(BatchOutputs).items() if name.isupper()}
    assert len(keys) >= 13
    outputs = {key: output["Value"] for key, output in template["Outputs"].items()}
    assert keys <= set(outputs), keys - set(outputs)
    functions = _function_ids(template, config)
    settings = config.batch
    expected = {
        BatchOutputs.STATE_MACHINE_ARN: {"Ref": _one(template, "AWS::StepFunctions::StateMachine")[0]},
        BatchOutputs.JOB_QUEUE_ARN: {"Ref": _one(template, "AWS::Batch::JobQueue")[0]},
        BatchOutputs.JOB_DEFINITION_ARN: {"Ref": _one(template, "AWS::Batch::JobDefinition")[0]},
        BatchOutputs.NOTIFICATION_TOPIC_ARN: {"Ref": _one(template, "AWS::SNS::Topic")[0]},
        BatchOutputs.EVENTS_DEAD_LETTER_QUEUE_URL: {"Ref": _one(template, "AWS::SQS::Queue")[0]},
        BatchOutputs.LIST_FUNCTION_NAME: {"Ref": functions["batch-list"]},
        BatchOutputs.INLINE_FUNCTION_NAME: {"Ref": functions["batch-inline"]},
        BatchOutputs.REPORT_FUNCTION_NAME: {"Ref": functions["batch-report"]},
        BatchOutputs.INPUT_BUCKET_NAME: config.bucket_name("data"),
        BatchOutputs.INPUT_PREFIX: settings.input_prefix,
        BatchOutputs.OUTPUT_PREFIX: f"s3://{config.bucket_name('results')}/{settings.output_prefix}",
        BatchOutputs.RUNS_PREFIX: f"s3://{config.bucket_name('results')}/{settings.runs_prefix}",
    }
    for key, value in expected.items():
        assert outputs[key] == value, key
    schedule = outputs[BatchOutputs.SCHEDULE_RULE_NAME]["Ref"]
    assert "ScheduleExpression" in template["Resources"][schedule]["Properties"]


# ----- 9. cdk-nag acknowledgements ---------------------------------------------------------------

ROLES = ("job", "execution", "state-machine", *FUNCTIONS)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("env", ENVS)
def test_every_wildcard_of_a_batch_role_is_acknowledged_with_a_reason(env, role, template_json):
    template = template_json(env, LAYER)
    role_id = _roles(template, ENVIRONMENTS[env])[role]
    policies = _role_policies(template, role_id)
    assert policies
    for logical_id, policy in policies.items():
        findings = _wildcards(policy["Properties"]["PolicyDocument"])
        suppressed = _nag_suppressions(policy)
        # every wildcard acknowledged, and nothing acknowledged that is not there
        assert set(suppressed) == {f"AwsSolutions-IAM5[{f}]" for f in findings}, logical_id
        for finding, reason in suppressed.items():
            assert len(reason.strip()) >= MIN_REASON_LENGTH, (logical_id, finding)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("env", ENVS)
def test_scoped_wildcards_are_not_acknowledged_with_the_reason_for_unscoped_actions(env, role, template_json):
    """The reason given for ``Resource::*`` (actions without resource-level permissions) explains no
    other finding: a scoped wildcard (``job/*``, ``<function>:*``) has a reason of its own."""
    template = template_json(env, LAYER)
    role_id = _roles(template, ENVIRONMENTS[env])[role]
    for logical_id, policy in _role_policies(template, role_id).items():
        suppressed = _nag_suppressions(policy)
        unscoped = suppressed.get("AwsSolutions-IAM5[Resource::*]")
        if unscoped is None:
            continue
        reused = [
            finding
            for finding, reason in suppressed.items()
            if reason == unscoped and finding != "AwsSolutions-IAM5[Resource::*]"
        ]
        assert not reused, f"{logical_id}: {reused} carry the Resource::* reason"
