"""Python Lambda functions packaged without Docker, hardened the same way everywhere.

Packaging (CDK's Docker bundling is not available on the project's machines or in CI):

- :class:`DependenciesLayer`: a Lambda layer with the ``runtime`` dependency group, pinned by
  ``uv.lock`` (``uv export``), installed as manylinux wheels for the Lambda platform
  (x86_64, CPython 3.11). Built once per lock content into ``build/lambda/`` and reused, so a
  synth after the first costs a copy, not a download. boto3 is pinned in the layer too, rather
  than taking whatever the Lambda runtime ships that week.
- :func:`source_code`: the project's own runtime packages, copied file by file (only the given
  paths, never ``shared/infra`` or anything else that imports ``aws_cdk``); the asset hash is
  the files' content, so an unchanged handler is not uploaded again.

:class:`HardenedFunction` gives every function the same shape: Python 3.11, x86_64, X-Ray
active tracing, its own KMS-encrypted log group with retention (JSON logs), an explicit role
with only the statements it is granted, optional VPC placement and reserved concurrency.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from shared.config import EnvironmentConfig, FunctionConfig
from shared.infra.acknowledge import acknowledge, acknowledge_wildcards
from shared.infra.logs import EncryptedLogGroup
from shared.infra.vpc_access import allow_vpc_interfaces

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / "build" / "lambda"
RUNTIME = lambda_.Runtime.PYTHON_3_11
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-manylinux2014"
DEPENDENCY_GROUP = "runtime"
BUILD_OPTIONS = "no-deps,compile-bytecode"  # part of the cache key: a changed build is a new layer
_SKIPPED = {"__pycache__"}


class BundlingError(RuntimeError):
    """A Lambda package could not be built (the message says which command failed and why)."""


def _run(args: Sequence[str], *, cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)  # noqa: S603 (uv, fixed args)
    if result.returncode != 0:
        raise BundlingError(f"{' '.join(args[:3])} ... failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        raise BundlingError(
            "uv is not on PATH; install the bootstrap tools (pip install -r requirements/bootstrap.txt)"
        )
    return uv


def locked_requirements(group: str | Sequence[str] = DEPENDENCY_GROUP, *, hashes: bool = False) -> str:
    """The pinned requirements of a dependency group (or of several, together), as ``uv.lock``
    resolves them.

    With ``hashes`` every requirement carries its artifacts' sha256 (for ``pip --require-hashes``).
    """
    groups = [group] if isinstance(group, str) else list(group)
    args = [_uv(), "export", "--frozen", "--no-default-groups", "--no-emit-project"]
    for name in groups:
        args += ["--group", name]
    args += ["--no-header", "--no-annotate"] + ([] if hashes else ["--no-hashes"])
    return _run(args, cwd=ROOT)


def build_dependencies(requirements: str, *, cache_dir: Path = BUILD_DIR) -> Path:
    """Install ``requirements`` for the Lambda platform into ``cache_dir/layer-{hash}/python``.

    Returns the layer root. Built once per requirements content; the directory is renamed into
    place when complete, so an interrupted build is never reused.
    """
    digest = hashlib.sha256(
        f"{PLATFORM}:{PYTHON_VERSION}:{BUILD_OPTIONS}\n{requirements}".encode()
    ).hexdigest()[:16]
    layer_root = cache_dir / f"layer-{digest}"
    if layer_root.is_dir():
        return layer_root
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".building-") as work:
        requirements_file = Path(work) / "requirements.txt"
        requirements_file.write_text(requirements)
        staging = Path(work) / "layer"
        _run(
            [
                _uv(),
                "pip",
                "install",
                "--quiet",
                "--no-deps",  # the exported list is already the complete, locked closure
                # /opt is read-only in Lambda: without bytecode every cold start compiles the
                # layer (~1 s measured by nox -s bench)
                "--compile-bytecode",
                "--target",
                str(staging / "python"),
                "--python-platform",
                PLATFORM,
                "--python-version",
                PYTHON_VERSION,
                "--only-binary",
                ":all:",
                "--requirement",
                str(requirements_file),
            ],
            cwd=ROOT,
        )
        try:
            staging.rename(layer_root)
        except OSError:
            if not layer_root.is_dir():  # another process finished the same build first
                raise
    return layer_root


@jsii.implements(cdk.ILocalBundling)
class _CopyBundling:
    """Local bundling: copy a prepared directory (or a list of files) into CDK's output directory."""

    def __init__(self, files: dict[str, Path] | None = None, directory: Path | None = None) -> None:
        self._files = files or {}
        self._directory = directory

    def try_bundle(self, output_dir: str, *_args: Any, **_kwargs: Any) -> bool:
        out = Path(output_dir)
        if self._directory is not None:
            shutil.copytree(self._directory, out, dirs_exist_ok=True)
        for relative, source in self._files.items():
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        return True


def _bundled_asset(files: dict[str, Path] | None, directory: Path | None, asset_hash: str) -> lambda_.Code:
    # the image is never pulled: local bundling always succeeds or raises
    return lambda_.Code.from_asset(
        str(directory or ROOT),
        asset_hash=asset_hash,
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        bundling=cdk.BundlingOptions(
            image=cdk.DockerImage.from_registry("public.ecr.aws/sam/build-python3.11"),
            local=_CopyBundling(files=files, directory=directory),
        ),
    )


def python_sources(paths: Iterable[str]) -> dict[str, Path]:
    """Every ``.py`` file of the given repository paths (files or packages), by relative path."""
    files: dict[str, Path] = {}
    for relative in paths:
        path = ROOT / relative
        if path.is_file():
            files[relative] = path
        elif path.is_dir():
            for source in sorted(path.rglob("*.py")):
                if not _SKIPPED.intersection(source.relative_to(ROOT).parts):
                    files[str(source.relative_to(ROOT))] = source
        else:
            raise BundlingError(f"{relative} does not exist in the repository")
    return files


def source_code(paths: Iterable[str]) -> lambda_.Code:
    """A Lambda code asset of the project's own runtime files under ``paths`` (relative to the repo)."""
    files = python_sources(paths)
    digest = hashlib.sha256()
    for relative, source in sorted(files.items()):
        digest.update(relative.encode() + b"\0" + source.read_bytes() + b"\0")
    return _bundled_asset(files, None, digest.hexdigest())


def package_size(paths: Iterable[str]) -> int:
    """Bytes of the source files ``source_code(paths)`` packages (reported by the benchmark)."""
    return sum(path.stat().st_size for path in python_sources(paths).values())


class DependenciesLayer(Construct):
    """A locked dependency group (``runtime`` by default) as a Lambda layer for Python 3.11 on x86_64."""

    def __init__(
        self, scope: Construct, construct_id: str, *, description: str, group: str = DEPENDENCY_GROUP
    ) -> None:
        super().__init__(scope, construct_id)
        requirements = locked_requirements(group)
        layer_root = build_dependencies(requirements)
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=_bundled_asset(None, layer_root, layer_root.name),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[lambda_.Architecture.X86_64],
            description=description,
            removal_policy=cdk.RemovalPolicy.RETAIN,  # functions' earlier versions still use it
        )


class HardenedFunction(Construct):
    """A Python 3.11 function with its own role, encrypted log group, tracing and limits."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        name: str,
        description: str,
        code: lambda_.Code,
        handler: str,
        sizing: FunctionConfig,
        log_key: kms.IKey,
        environment: dict[str, str],
        layers: Sequence[lambda_.ILayerVersion] = (),
        vpc: ec2.IVpc | None = None,
        security_groups: Sequence[ec2.ISecurityGroup] = (),
        image: bool = False,
    ) -> None:
        """``image``: ``code`` is a container image (``lambda_.Code.from_asset_image`` with the
        handler as its command); ``handler`` then only names it for the local stage and readers."""
        super().__init__(scope, construct_id)
        function_name = config.resource_name(name)
        self.log_group = EncryptedLogGroup(
            self,
            "Logs",
            config=config,
            log_group_name=f"{config.log_group_prefix}/lambda/{name}",
            key=log_key,
        ).log_group
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{function_name}: only what the function is granted",
        )
        # Logs go to this function's own log group, nowhere else.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn, f"{self.log_group.log_group_arn}:log-stream:*"],
            )
        )
        if vpc is not None:
            self._allow_vpc_networking(vpc, security_groups)
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description=description,
            runtime=lambda_.Runtime.FROM_IMAGE if image else RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            code=code,
            handler=lambda_.Handler.FROM_IMAGE if image else handler,
            layers=list(layers) or None,
            memory_size=sizing.memory_mb,
            timeout=cdk.Duration.seconds(sizing.timeout_seconds),
            reserved_concurrent_executions=sizing.reserved_concurrency,
            role=self.role,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            tracing=lambda_.Tracing.ACTIVE,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED) if vpc else None,
            security_groups=list(security_groups) or None,
            allow_public_subnet=False,
            environment={
                "STAGE": config.name,
                "POWERTOOLS_SERVICE_NAME": function_name,
                "POWERTOOLS_METRICS_NAMESPACE": "MlPipeline",
                "POWERTOOLS_LOG_LEVEL": "INFO",
                **environment,
            },
        )
        if not image:
            acknowledge(
                self.function,
                nag=["AwsSolutions-L1"],
                reason="The project pins Python 3.11 for every function (the runtime its code, wheels and "
                "type checks target); the runtime is upgraded for all functions together, deliberately.",
            )
        # X-Ray's PutTraceSegments/PutTelemetryRecords have no resource-level permissions.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"], resources=["*"]
            )
        )

    # wildcards every function's role has, and why IAM cannot scope them further
    BASE_WILDCARDS: Mapping[str, str] = {
        "Resource::*:log-stream:*": "Log stream names are chosen by Lambda at run time; the statement is "
        "limited "
        "to the streams of this function's own log group.",
        "Resource::arn:*:ec2:*:network-interface/*": "Lambda creates the function's network interfaces at "
        "run "
        "time, so their ids are unknown; the same statement limits it to the VPC's subnets and security "
        "groups.",
        "Resource::*": "X-Ray PutTraceSegments/PutTelemetryRecords and EC2 Describe* support no "
        "resource-level "
        "permissions (AWS service authorization reference).",
        "Action::s3:*": "Action families of CDK's S3 grants (GetObject*, GetBucket*, List*, Abort*), each in "
        "a "
        "statement limited to one bucket and key prefix.",
        "Action::kms:*": "Action families of CDK's KMS grants (GenerateDataKey*, ReEncrypt*), limited to the "
        "project's key ARN in the same statement.",
    }

    def acknowledge_wildcards(self, reasons: Mapping[str, str] | None = None) -> None:
        """Acknowledge the role's wildcards (call after its last grant); ``reasons`` adds patterns
        (or replaces a base reason that does not say all the function's role holds)."""
        acknowledge_wildcards(self.role, {**self.BASE_WILDCARDS, **(reasons or {})})

    def _allow_vpc_networking(self, vpc: ec2.IVpc, security_groups: Sequence[ec2.ISecurityGroup]) -> None:
        """What Lambda needs to attach the function to the VPC (the managed policy, scoped down)."""
        allow_vpc_interfaces(
            self.role,
            vpc=vpc,
            security_groups=security_groups,
            manage=[
                "ec2:CreateNetworkInterface",
                "ec2:DeleteNetworkInterface",
                "ec2:AssignPrivateIpAddresses",
                "ec2:UnassignPrivateIpAddresses",
            ],
            describe=["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"],
        )


def vpc_functions(
    scope: Construct,
    *,
    config: EnvironmentConfig,
    code: lambda_.Code,
    layer: lambda_.ILayerVersion,
    log_key: kms.IKey,
    vpc: ec2.IVpc,
    security_groups: Sequence[ec2.ISecurityGroup],
) -> Callable[..., HardenedFunction]:
    """How a layer makes its functions: one code asset, one dependencies layer, in the VPC.

    The maker takes what differs per function: ``(construct_id, name=, description=, handler=,
    sizing=, environment=)``.
    """
    return functools.partial(
        HardenedFunction,
        scope,
        config=config,
        code=code,
        layers=[layer],
        log_key=log_key,
        vpc=vpc,
        security_groups=list(security_groups),
    )


def python_files(paths: Iterable[str]) -> list[str]:
    """Relative paths of the files a :func:`source_code` asset of ``paths`` contains (for tests)."""
    return sorted(python_sources(paths))


__all__ = [
    "BundlingError",
    "DependenciesLayer",
    "HardenedFunction",
    "build_dependencies",
    "locked_requirements",
    "package_size",
    "python_files",
    "python_sources",
    "source_code",
    "vpc_functions",
]
