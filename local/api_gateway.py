"""The local stage's API Gateway: the REST API of the synthesized inference template, served over HTTP.

moto's CloudFormation skips ``AWS::ApiGateway::Stage`` and moto runs no API Gateway data plane, so
the local stage reads the API from the template it deployed (``api_spec``) and answers as the
deployed REST API does (``LocalRestApi``), under ``/{stage}/...`` like the invoke URL
``https://{api}.execute-api.{region}.amazonaws.com/{stage}/...``:

- **Routes**: the resource tree (a literal path part wins over a ``{param}``; one trailing ``/`` is
  ignored). An unknown resource or method is 403 ``Missing Authentication Token``.
- **API keys**: a method with ``ApiKeyRequired`` needs a currently valid key in ``x-api-key``, else
  403 ``Forbidden``. The keys come from a callable (the stage reads the emulated account); if it
  returns a mapping of key value -> key id, the id is the event's ``identity.apiKeyId``.
- **Request validation**, as the method's validator says: required parameters (400 ``Missing
  required request parameters: [...]``), and the body against the model of the request's
  content type (``$default`` as the fallback, no ``Content-Type`` counts as ``application/json``)
  as draft-04 JSON Schema (400 ``Invalid request body``, also for JSON that does not parse). A
  content type without a model is not validated, as in API Gateway.
- **Lambda proxy integration**: the handler gets the REST API proxy event (payload 1.0: ``path``
  without the stage, ``requestContext.path`` with it), plus the headers the integration's
  request parameters map (``X-Request-Body`` carries the raw body). Its answer is returned as API
  Gateway returns it: ``headers`` and ``multiValueHeaders`` merged, ``Content-Type`` defaulting
  to ``application/json``, a base64 body decoded only when the API's binary media types match the
  request's ``Accept`` (otherwise the base64 text goes out as is). An exception, or an answer
  that is not a proxy response (no ``statusCode``, a non-string body, keys of another payload
  format), is 502 ``Internal server error``.
- **Stage cache**: a method with caching enabled by the stage's method settings (and a cache
  cluster) keeps 2xx answers for its TTL, keyed on the method, the resource (or the cache
  namespace) and the values of its cache key parameters; a hit does not call the handler.
  ``flush`` empties it (the emulated ``FlushStageCache`` calls it).

- **Cache limits** (documented; see ``stacks/inference/api-gateway-limits.md``): an answer over
  1,048,576 bytes is not stored; a request whose cache key values exceed 10,240 bytes (the
  documented budget of a request line and its headers) bypasses the cache (``bypass``): it reaches
  the function, is never refused for it, and never shares an entry.

Local diagnostics only: the answers of cached methods carry ``x-local-cache: hit|miss|bypass``; the
deployed API sends no such header. Not emulated: usage plan throttling and quotas, WAF, the 29 s
integration timeout, payload size limits, ``Cache-Control: max-age=0`` invalidation, and header
name case (ASGI lowercases header names; API Gateway passes them as the client sent them, and
Powertools reads them case-insensitively).
"""

from __future__ import annotations

import base64
import fnmatch
import heapq
import itertools
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from jsonschema import Draft4Validator
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from local.lambda_runtime import LocalContext
from model.schema import RequestError, parse_json

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

DEFAULT_CACHE_TTL_SECONDS = 300  # API Gateway's default when a method setting enables caching
# documented limits (sources in stacks/inference/api-gateway-limits.md)
MAX_CACHED_RESPONSE_BYTES = 1_048_576  # "the maximum size of a response that can be cached"
MAX_REQUEST_LINE_AND_HEADERS_BYTES = 10_240  # "total combined size of request line and header values"
INTEGRATION_TIMEOUT_SECONDS = 29
API_KEY_HEADER = "x-api-key"
CACHE_HEADER = "x-local-cache"
NO_ROUTE = "Missing Authentication Token"  # API Gateway's answer for an unknown resource or method
PROXY = "AWS_PROXY"
DRAFT_04 = "http://json-schema.org/draft-04/schema#"
BUILT_IN_MODELS: dict[str, dict[str, Any]] = {
    "Empty": {"$schema": DRAFT_04, "title": "Empty Schema", "type": "object"},
    "Error": {
        "$schema": DRAFT_04,
        "title": "Error Schema",
        "type": "object",
        "properties": {"message": {"type": "string"}},
    },
}
PROXY_RESPONSE_KEYS = frozenset({"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"})
HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

QUERY = "method.request.querystring."
HEADER = "method.request.header."
PATH = "method.request.path."
BODY = "method.request.body"
INTEGRATION_HEADER = "integration.request.header."
_SUB_ARN = re.compile(r"\$\{([A-Za-z0-9]+)\.Arn\}")


# -- the API, read from the template -------------------------------------------------------------


@dataclass(frozen=True)
class BodyModel:
    name: str
    schema: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True)
class MethodSpec:
    """One method of the REST API, with the stage's method settings applied."""

    logical_id: str
    http_method: str  # GET, POST, ... or ANY
    resource_path: str  # /predictions/{predictionId}
    resource_logical_id: str  # the resource's logical id (the RestApi's for the root resource)
    api_key_required: bool
    request_models: Mapping[str, BodyModel] = field(hash=False)  # content type -> model
    validate_body: bool
    validate_parameters: bool
    required_parameters: tuple[str, ...]  # method.request.{querystring,header,path}.NAME
    caching_enabled: bool  # the method setting, and the stage has a cache cluster
    cache_ttl_seconds: int
    cache_key_parameters: tuple[str, ...]
    cache_namespace: str | None
    integration_type: str
    integration_parameters: Mapping[str, str] = field(hash=False)  # integration.request.X -> source
    function_logical_id: str | None  # the Lambda function the integration invokes

    @property
    def body_schema(self) -> Mapping[str, Any] | None:
        """The schema of ``application/json`` bodies (None: no model for JSON)."""
        model = self.request_models.get("application/json")
        return model.schema if model is not None else None


@dataclass(frozen=True)
class ApiSpec:
    rest_api_logical_id: str
    api_name: str
    stage_name: str
    cache_cluster_enabled: bool
    api_key_source: str  # HEADER (x-api-key) or AUTHORIZER
    binary_media_types: tuple[str, ...]
    methods: tuple[MethodSpec, ...]

    def method(self, http_method: str, resource_path: str) -> MethodSpec:
        for method in self.methods:
            if method.http_method == http_method and method.resource_path == resource_path:
                return method
        raise KeyError(f"{http_method} {resource_path}")

    def describe(self) -> list[str]:
        """One line per route, for the stage's start-up listing."""
        lines = []
        for method in self.methods:
            facts = ["API key required" if method.api_key_required else "no API key"]
            if method.validate_parameters and method.required_parameters:
                names = ", ".join(_parameter_label(p, method) for p in method.required_parameters)
                facts.append(f"requires {names}")
            if method.validate_body and method.request_models:
                models = ", ".join(f"{m.name} ({t})" for t, m in sorted(method.request_models.items()))
                facts.append(f"body validated against {models}")
            if method.caching_enabled and method.cache_ttl_seconds > 0:
                keys = ", ".join(_parameter_label(p, method) for p in method.cache_key_parameters)
                facts.append(f"cached {method.cache_ttl_seconds} s keyed on {keys or 'the resource only'}")
            else:
                facts.append("not cached")
            target = method.function_logical_id or method.integration_type
            lines.append(
                f"{method.http_method} /{self.stage_name}{_join(method.resource_path)} -> {target}: "
                + "; ".join(facts)
            )
        return lines


def api_spec(template: Mapping[str, Any], *, rest_api: str | None = None) -> ApiSpec:
    """The REST API (``rest_api``: its logical id; default: the template's only one) and its stage."""
    resources: Mapping[str, Any] = template.get("Resources", {})
    apis = _of_type(resources, "AWS::ApiGateway::RestApi")
    if rest_api is None:
        if len(apis) != 1:
            raise ValueError(f"expected one AWS::ApiGateway::RestApi, found {sorted(apis)}: pass rest_api=")
        (rest_api,) = apis
    elif rest_api not in apis:
        raise ValueError(f"no AWS::ApiGateway::RestApi {rest_api!r} in the template")
    api = apis[rest_api]

    def of_api(resource_type: str) -> dict[str, dict[str, Any]]:
        found = _of_type(resources, resource_type)
        return {k: p for k, p in found.items() if _ref(p.get("RestApiId")) == rest_api}

    stages = of_api("AWS::ApiGateway::Stage")
    if len(stages) != 1:
        raise ValueError(f"expected one AWS::ApiGateway::Stage of {rest_api}, found {sorted(stages)}")
    (stage,) = stages.values()
    cache_cluster = _bool(stage.get("CacheClusterEnabled", False))
    settings: list[dict[str, Any]] = list(stage.get("MethodSettings", []))

    paths = _resource_paths(of_api("AWS::ApiGateway::Resource"), rest_api)
    model_names: dict[str, str] = {}
    schemas: dict[str, dict[str, Any]] = dict(BUILT_IN_MODELS)
    for logical_id, props in of_api("AWS::ApiGateway::Model").items():
        name = str(props.get("Name", logical_id))
        model_names[logical_id] = name
        schema = props.get("Schema", {})
        schemas[name] = json.loads(schema) if isinstance(schema, str) else dict(schema)
    validators = of_api("AWS::ApiGateway::RequestValidator")

    methods = []
    for logical_id, props in of_api("AWS::ApiGateway::Method").items():
        resource_id = props.get("ResourceId")
        if _root_of(resource_id) == rest_api:
            resource_path, resource_logical_id = "/", rest_api
        elif (ref := _ref(resource_id)) in paths:
            resource_path, resource_logical_id = paths[ref], ref
        else:
            raise ValueError(f"{logical_id}: ResourceId {resource_id!r} is not a resource of {rest_api}")
        http_method = str(props["HttpMethod"]).upper()
        models = {}
        for content_type, model in (props.get("RequestModels") or {}).items():
            name = model if isinstance(model, str) else model_names.get(_ref(model) or "", "")
            if name not in schemas:
                raise ValueError(f"{logical_id}: request model {model!r} is not defined in the template")
            models[str(content_type).lower()] = BodyModel(name=name, schema=schemas[name])
        validator = validators.get(_ref(props.get("RequestValidatorId")) or "", {})
        integration: dict[str, Any] = props.get("Integration", {})
        method_settings = _method_settings(settings, resource_path, http_method)
        methods.append(
            MethodSpec(
                logical_id=logical_id,
                http_method=http_method,
                resource_path=resource_path,
                resource_logical_id=resource_logical_id,
                api_key_required=_bool(props.get("ApiKeyRequired", False)),
                request_models=models,
                validate_body=_bool(validator.get("ValidateRequestBody", False)),
                validate_parameters=_bool(validator.get("ValidateRequestParameters", False)),
                required_parameters=tuple(
                    sorted(k for k, v in (props.get("RequestParameters") or {}).items() if _bool(v))
                ),
                caching_enabled=cache_cluster and _bool(method_settings.get("CachingEnabled", False)),
                cache_ttl_seconds=int(method_settings.get("CacheTtlInSeconds", DEFAULT_CACHE_TTL_SECONDS)),
                cache_key_parameters=tuple(integration.get("CacheKeyParameters", [])),
                cache_namespace=integration.get("CacheNamespace"),
                integration_type=str(integration.get("Type", "")),
                integration_parameters={
                    str(k): str(v) for k, v in (integration.get("RequestParameters") or {}).items()
                },
                function_logical_id=_function_of(integration.get("Uri")),
            )
        )
    return ApiSpec(
        rest_api_logical_id=rest_api,
        api_name=str(api.get("Name", rest_api)),
        stage_name=str(stage["StageName"]),
        cache_cluster_enabled=cache_cluster,
        api_key_source=str(api.get("ApiKeySourceType", "HEADER")),
        binary_media_types=tuple(_unescape(str(t)) for t in api.get("BinaryMediaTypes", [])),
        methods=tuple(sorted(methods, key=lambda m: (m.resource_path, m.http_method))),
    )


def _of_type(resources: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: dict(r.get("Properties", {})) for k, r in resources.items() if r.get("Type") == resource_type}


def _ref(value: Any) -> str | None:
    if isinstance(value, Mapping) and set(value) == {"Ref"}:
        return str(value["Ref"])
    return None


def _get_att(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, Mapping) or set(value) != {"Fn::GetAtt"}:
        return None
    target = value["Fn::GetAtt"]
    parts = target.split(".", 1) if isinstance(target, str) else list(target)
    return (str(parts[0]), str(parts[1])) if len(parts) == 2 else None


def _root_of(value: Any) -> str | None:
    """The RestApi whose root resource ``value`` is (``{"Fn::GetAtt": [api, "RootResourceId"]}``)."""
    att = _get_att(value)
    return att[0] if att is not None and att[1] == "RootResourceId" else None


def _function_of(uri: Any) -> str | None:
    """The logical id of the function an integration URI invokes (its ``Fn::GetAtt`` ... ``Arn``)."""
    att = _get_att(uri)
    if att is not None:
        return att[0] if att[1] == "Arn" else None
    if isinstance(uri, str):
        match = _SUB_ARN.search(uri)
        return match.group(1) if match else None
    if isinstance(uri, Mapping):
        uri = list(uri.values())
    for value in uri if isinstance(uri, list) else []:
        found = _function_of(value)
        if found is not None:
            return found
    return None


def _bool(value: Any) -> bool:
    return value.lower() == "true" if isinstance(value, str) else bool(value)


def _unescape(path: str) -> str:
    """A method-settings or media-type path part: ``~1`` encodes ``/`` and ``~0`` encodes ``~``."""
    return path.replace("~1", "/").replace("~0", "~")


def _join(resource_path: str) -> str:
    return "" if resource_path == "/" else resource_path


def _resource_paths(resources: Mapping[str, dict[str, Any]], rest_api: str) -> dict[str, str]:
    """Logical id -> full path, built from the ``ParentId`` chain up to the API's root resource."""
    paths: dict[str, str] = {}

    def path_of(logical_id: str, seen: frozenset[str]) -> str:
        if logical_id in paths:
            return paths[logical_id]
        if logical_id in seen or logical_id not in resources:
            raise ValueError(f"resource {logical_id!r} is unknown or its ParentId chain has a cycle")
        props = resources[logical_id]
        parent = props.get("ParentId")
        if _root_of(parent) == rest_api:
            base = ""
        elif (ref := _ref(parent)) is not None:
            base = path_of(ref, seen | {logical_id})
        else:
            raise ValueError(
                f"resource {logical_id!r}: ParentId {parent!r} is neither a resource nor the root"
            )
        paths[logical_id] = f"{base}/{props['PathPart']}"
        return paths[logical_id]

    for logical_id in resources:
        path_of(logical_id, frozenset())
    return paths


def _method_settings(
    settings: Sequence[Mapping[str, Any]], resource_path: str, http_method: str
) -> dict[str, Any]:
    """The stage's ``/*`` ``*`` defaults, overridden by the resource's ``*`` and then its method's entry."""

    def rank(setting: Mapping[str, Any]) -> int | None:
        raw_path, method = str(setting.get("ResourcePath", "/*")), str(setting.get("HttpMethod", "*")).upper()
        if raw_path == "/*":
            return 0 if method == "*" else None
        if _unescape(raw_path[1:]) != resource_path:
            return None
        return 1 if method == "*" else 2 if method == http_method else None

    merged: dict[str, Any] = {}
    for level in (0, 1, 2):
        for setting in settings:
            if rank(setting) == level:
                merged.update(setting)
    return merged


def _parameter_label(parameter: str, method: MethodSpec) -> str:
    for prefix, label in ((QUERY, "query"), (HEADER, "header"), (PATH, "path")):
        if parameter.startswith(prefix):
            return f"{label} {parameter.removeprefix(prefix)}"
    if parameter.startswith(INTEGRATION_HEADER):
        source = method.integration_parameters.get(parameter)
        mapped = " (= the body)" if source == BODY else f" (= {source})" if source else ""
        return f"header {parameter.removeprefix(INTEGRATION_HEADER)}{mapped}"
    return parameter


# -- the gateway ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayRequest:
    """An HTTP request to the stage (``path`` includes ``/{stage}``; headers as received)."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    scheme: str = "http"
    protocol: str = "HTTP/1.1"


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[-1] if values else None


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    flushes: int
    entries: int


@dataclass(frozen=True)
class _Route:
    parts: tuple[tuple[int, str], ...]  # (0 literal | 1 {param} | 2 {param+}, text or name)
    methods: Mapping[str, MethodSpec] = field(hash=False)

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        parameters: dict[str, str] = {}
        for index, (kind, text) in enumerate(self.parts):
            if kind == 2:
                rest = segments[index:]
                if not rest or "" in rest:
                    return None
                parameters[text] = "/".join(rest)
                return parameters
            if index >= len(segments) or not segments[index]:
                return None
            if kind == 0 and segments[index] != text:
                return None
            if kind == 1:
                parameters[text] = segments[index]
        return parameters if len(segments) == len(self.parts) else None


@dataclass(frozen=True)
class _Values:
    """What request parameters, mappings and cache keys read from one request."""

    query: Mapping[str, list[str]]
    headers: Mapping[str, list[str]]  # lowercased names
    path: Mapping[str, str]
    body: str | None

    def get(self, source: str, method: MethodSpec) -> str | None:
        if source == BODY:
            return self.body
        if source.startswith(QUERY):
            values = self.query.get(source.removeprefix(QUERY))
            return values[-1] if values else None
        if source.startswith(HEADER):
            values = self.headers.get(source.removeprefix(HEADER).lower())
            return values[-1] if values else None
        if source.startswith(PATH):
            return self.path.get(source.removeprefix(PATH))
        if source.startswith(INTEGRATION_HEADER):
            return self.get(method.integration_parameters[source], method)
        if len(source) >= 2 and source[0] == source[-1] == "'":
            return source[1:-1]  # a static value
        raise ValueError(f"unsupported request parameter source {source!r}")


@dataclass(frozen=True)
class _Call:
    """A request admitted to a method: what the integration and the cache read."""

    request: GatewayRequest
    request_id: str
    extended_id: str
    method: MethodSpec
    relative_path: str  # the path without the stage, as the event's ``path``
    values: _Values
    binary: bool  # the request's content type is one of the API's binary media types
    api_key: str | None  # the key the method required
    api_key_id: str | None


def _key_bytes(values: Sequence[str | None]) -> int:
    return sum(len(v.encode()) for v in values if v is not None)


def _supported_source(source: str) -> bool:
    return (
        source == BODY
        or any(source.startswith(p) and len(source) > len(p) for p in (QUERY, HEADER, PATH))
        or (len(source) >= 2 and source[0] == source[-1] == "'")
    )


def _set_header(headers: dict[str, list[str]], name: str, value: str | None) -> None:
    for existing in [k for k in headers if k.lower() == name.lower()]:
        del headers[existing]
    if value is not None:
        headers[name] = [value]


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


class LocalRestApi:
    """The stage of a REST API with Lambda proxy integrations, in front of one handler."""

    def __init__(
        self,
        spec: ApiSpec,
        handler: Handler,
        api_keys: Callable[[], Collection[str]],
        *,
        context_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        account_id: str = "123456789012",
        api_id: str = "local",
        region: str = "us-east-1",
    ) -> None:
        problems = [problem for method in spec.methods for problem in _unsupported(method)]
        if spec.api_key_source != "HEADER" and any(m.api_key_required for m in spec.methods):
            problems.append(f"API key source {spec.api_key_source} (only HEADER is emulated)")
        if problems:
            raise ValueError("cannot emulate: " + "; ".join(problems))
        self.spec = spec
        self.api_id = api_id
        self._handler = handler
        self._api_keys = api_keys
        self._clock = clock
        self._account_id = account_id
        self._region = region
        functions = sorted({m.function_logical_id for m in spec.methods if m.function_logical_id})
        self._function_name = functions[0] if len(functions) == 1 else "local-api"
        self._context_factory = context_factory or self._default_context
        self._validators: dict[tuple[str, str, str], Draft4Validator] = {}
        for method in spec.methods:
            for content_type, model in method.request_models.items():
                Draft4Validator.check_schema(model.schema)
                key = (method.http_method, method.resource_path, content_type)
                self._validators[key] = Draft4Validator(model.schema)
        self._routes = self._compile(spec.methods)
        self._lock = threading.Lock()
        self._cache: dict[tuple[Any, ...], tuple[float, GatewayResponse]] = {}
        # (expiry, order, key) of every store: expired entries are dropped from the front in
        # O(log n) each, instead of scanning the whole cache on every store
        self._expiries: list[tuple[float, int, tuple[Any, ...]]] = []
        self._order = itertools.count()
        self._hits = self._misses = self._flushes = 0

    # -- the stage cache --

    def flush(self, api_id: str | None = None, stage_name: str | None = None) -> None:
        """Empty the stage cache (a ``FlushStageCache`` listener: another API's or stage's is ignored)."""
        if (api_id is not None and api_id != self.api_id) or (
            stage_name is not None and stage_name != self.spec.stage_name
        ):
            return
        with self._lock:
            self._cache.clear()
            self._expiries.clear()
            self._flushes += 1

    def cache_stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, self._flushes, len(self._cache))

    def _cached(self, key: tuple[Any, ...]) -> GatewayResponse | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and self._clock() < entry[0]:
                self._hits += 1
                return entry[1]
            self._misses += 1
            return None

    def _store(self, key: tuple[Any, ...], ttl_seconds: int, response: GatewayResponse) -> None:
        with self._lock:
            now = self._clock()
            while self._expiries and self._expiries[0][0] <= now:
                until, _, expired = heapq.heappop(self._expiries)
                entry = self._cache.get(expired)
                if entry is not None and entry[0] == until:  # not stored again since
                    del self._cache[expired]
            self._cache[key] = (now + ttl_seconds, response)
            heapq.heappush(self._expiries, (now + ttl_seconds, next(self._order), key))

    # -- serving --

    def app(self) -> Starlette:
        """The stage as an ASGI app: ``/{stage_name}/...`` as on the invoke URL."""

        async def gateway(request: Request) -> Response:
            gateway_request = GatewayRequest(
                method=request.method,
                path=request.scope["path"],
                query=tuple(request.query_params.multi_items()),
                headers=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw),
                body=await request.body(),
                source_ip=request.client.host if request.client else "127.0.0.1",
                scheme=request.url.scheme,
                protocol=f"HTTP/{request.scope.get('http_version', '1.1')}",
            )
            answer = await run_in_threadpool(self.handle, gateway_request)
            response = Response(content=answer.body, status_code=answer.status)
            response.raw_headers += [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in answer.headers
                if k.lower() != "content-length"
            ]
            return response

        return Starlette(routes=[Route("/{path:path}", gateway, methods=HTTP_METHODS)])

    def handle(self, request: GatewayRequest) -> GatewayResponse:
        """API Gateway's answer to one request (routing, key, validation, cache, integration)."""
        call = self._admit(request, request_id=str(uuid.uuid4()))
        if isinstance(call, GatewayResponse):
            return call
        method = call.method
        cache_key: tuple[Any, ...] | None = None
        bypass = False
        if method.caching_enabled and method.cache_ttl_seconds > 0:
            parameters = tuple(call.values.get(p, method) for p in method.cache_key_parameters)
            # a key whose values do not fit the documented header budget cannot be relied on:
            # such a request goes to the integration uncached, never fails, never shares an entry
            bypass = _key_bytes(parameters) > MAX_REQUEST_LINE_AND_HEADERS_BYTES
            if not bypass:
                cache_key = (
                    method.cache_namespace or method.resource_path,
                    request.method.upper(),
                    parameters,
                )
                cached = self._cached(cache_key)
                if cached is not None:
                    return self._finish(cached, call, "hit")
        answer = self._invoke(self._event(call), call)
        if answer is None:
            return self._error(502, "Internal server error", "InternalServerErrorException", call.request_id)
        cacheable = 200 <= answer.status < 300 and len(answer.body) <= MAX_CACHED_RESPONSE_BYTES
        if cache_key is not None and cacheable:
            self._store(cache_key, method.cache_ttl_seconds, answer)
        state = "bypass" if bypass else None if cache_key is None else "miss"
        return self._finish(answer, call, state)

    def _admit(self, request: GatewayRequest, request_id: str) -> _Call | GatewayResponse:
        """The method a request reaches, or API Gateway's refusal (route, API key, validation)."""
        found = self._route(request.method, request.path)
        if found is None:
            return self._error(403, NO_ROUTE, "IncompleteSignatureException", request_id)
        method, relative_path, path_parameters = found
        headers: dict[str, list[str]] = {}
        for name, value in request.headers:
            headers.setdefault(name.lower(), []).append(value)
        api_key = headers.get(API_KEY_HEADER, [None])[-1]
        api_key_id: str | None = None
        if method.api_key_required:
            valid = self._api_keys()
            if api_key is None or api_key not in valid:
                return self._error(403, "Forbidden", "ForbiddenException", request_id)
            if isinstance(valid, Mapping):
                api_key_id = str(valid[api_key])
        query: dict[str, list[str]] = {}
        for name, value in request.query:
            query.setdefault(name, []).append(value)
        content_type = _media_type(headers.get("content-type", [None])[-1]) or "application/json"
        body_text = request.body.decode("utf-8", errors="replace") if request.body else None
        call = _Call(
            request=request,
            request_id=request_id,
            extended_id=base64.b64encode(secrets.token_bytes(10)).decode(),
            method=method,
            relative_path=relative_path,
            values=_Values(query=query, headers=headers, path=path_parameters, body=body_text),
            binary=self._binary(content_type),
            api_key=api_key if method.api_key_required else None,
            api_key_id=api_key_id,
        )
        if method.validate_parameters:
            missing = [p for p in method.required_parameters if call.values.get(p, method) is None]
            if missing:
                names = ", ".join(p.rsplit(".", 1)[-1] for p in missing)
                message = f"Missing required request parameters: [{names}]"
                return self._error(400, message, "BadRequestException", request_id)
        if method.validate_body and not call.binary and not self._valid_body(method, content_type, body_text):
            return self._error(400, "Invalid request body", "BadRequestException", request_id)
        return call

    def _compile(self, methods: Sequence[MethodSpec]) -> list[_Route]:
        by_path: dict[str, dict[str, MethodSpec]] = {}
        for method in methods:
            by_path.setdefault(method.resource_path, {})[method.http_method] = method
        routes = []
        for path, path_methods in by_path.items():
            parts = []
            for part in path.strip("/").split("/") if path != "/" else []:
                if part.startswith("{") and part.endswith("+}"):
                    parts.append((2, part[1:-2]))
                elif part.startswith("{") and part.endswith("}"):
                    parts.append((1, part[1:-1]))
                else:
                    parts.append((0, part))
            routes.append(_Route(parts=tuple(parts), methods=path_methods))
        # a literal part beats a {param}, which beats a {param+}, at the first place they differ
        return sorted(routes, key=lambda r: [kind for kind, _ in r.parts])

    def _route(self, http_method: str, path: str) -> tuple[MethodSpec, str, dict[str, str]] | None:
        prefix = f"/{self.spec.stage_name}"
        if path != prefix and not path.startswith(f"{prefix}/"):
            return None
        relative = path[len(prefix) :] or "/"
        trimmed = relative[1:-1] if relative.endswith("/") else relative[1:]
        segments = trimmed.split("/") if trimmed else []
        for route in self._routes:
            parameters = route.match(segments)
            if parameters is not None:
                method = route.methods.get(http_method.upper()) or route.methods.get("ANY")
                return (method, relative, parameters) if method is not None else None
        return None

    def _binary(self, media_type: str | None) -> bool:
        media = _media_type(media_type)
        return bool(media) and any(
            fnmatch.fnmatchcase(media, t.lower()) for t in self.spec.binary_media_types
        )

    def _valid_body(self, method: MethodSpec, content_type: str, body: str | None) -> bool:
        validator = self._validators.get((method.http_method, method.resource_path, content_type))
        if validator is None:
            validator = self._validators.get((method.http_method, method.resource_path, "$default"))
        if validator is None:
            return True  # no model for this content type: API Gateway does not validate the body
        try:
            instance = parse_json(body or "")
        except RequestError:  # not JSON, NaN/Infinity, or nested deeper than any request needs
            return False
        return bool(validator.is_valid(instance))

    def _event(self, call: _Call) -> dict[str, Any]:
        """The REST API proxy event (payload format 1.0) API Gateway sends the function."""
        request, method, values = call.request, call.method, call.values
        headers = values.headers
        names = {name.lower(): name for name, _ in request.headers}
        multi_headers = {names[lower]: list(v) for lower, v in headers.items()}
        forwarded = ", ".join([*headers.get("x-forwarded-for", []), request.source_ip])
        _set_header(multi_headers, "X-Forwarded-For", forwarded)
        _set_header(multi_headers, "X-Forwarded-Proto", request.scheme)
        # the integration's mapped headers replace what the client sent under those names
        for target, source in method.integration_parameters.items():
            _set_header(multi_headers, target.removeprefix(INTEGRATION_HEADER), values.get(source, method))
        query = {k: list(v) for k, v in values.query.items()}
        binary = call.binary and bool(request.body)
        if binary:
            body: str | None = base64.b64encode(request.body).decode()
        else:
            body = values.body
        now = time.time()
        user_agent = headers.get("user-agent", [None])[-1]
        stage = self.spec.stage_name
        return {
            "resource": method.resource_path,
            "path": call.relative_path,
            "httpMethod": request.method.upper(),
            "headers": {k: v[-1] for k, v in multi_headers.items()} or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "pathParameters": dict(values.path) or None,
            "stageVariables": None,
            "requestContext": {
                "resourceId": method.resource_logical_id,
                "resourcePath": method.resource_path,
                "httpMethod": request.method.upper(),
                "extendedRequestId": call.extended_id,
                "requestTime": _request_time(now),
                "path": f"/{stage}{call.relative_path}",
                "accountId": self._account_id,
                "protocol": request.protocol,
                "stage": stage,
                "domainPrefix": self.api_id,
                "requestTimeEpoch": int(now * 1000),
                "requestId": call.request_id,
                "identity": {
                    "cognitoIdentityPoolId": None,
                    "accountId": None,
                    "cognitoIdentityId": None,
                    "caller": None,
                    "sourceIp": request.source_ip,
                    "principalOrgId": None,
                    "accessKey": None,
                    "cognitoAuthenticationType": None,
                    "cognitoAuthenticationProvider": None,
                    "userArn": None,
                    "userAgent": user_agent,
                    "user": None,
                    "apiKey": call.api_key,
                    "apiKeyId": call.api_key_id,
                },
                "domainName": f"{self.api_id}.execute-api.{self._region}.amazonaws.com",
                "apiId": self.api_id,
            },
            "body": body,
            "isBase64Encoded": binary,
        }

    def _invoke(self, event: dict[str, Any], call: _Call) -> GatewayResponse | None:
        """The handler's proxy response as API Gateway returns it; None when the invocation failed."""
        method = call.method
        route = f"{method.http_method} {method.resource_path}"
        try:
            result = self._handler(event, self._context_factory())
        except Exception:
            logger.exception("%s: the function failed (API Gateway answers 502)", route)
            return None
        accept = call.values.headers.get("accept", [None])[0]
        answer = _proxy_response(result, decode_base64=self._binary(accept))
        if answer is None:
            logger.error("%s: malformed Lambda proxy response (API Gateway answers 502): %r", route, result)
        return answer

    def _finish(self, answer: GatewayResponse, call: _Call, cache: str | None) -> GatewayResponse:
        added = [("x-amzn-RequestId", call.request_id), ("x-amz-apigw-id", call.extended_id)]
        if cache is not None:
            added.append((CACHE_HEADER, cache))
        return replace(answer, headers=answer.headers + tuple(added))

    def _error(self, status: int, message: str, error_type: str, request_id: str) -> GatewayResponse:
        body = json.dumps({"message": message}, separators=(",", ":")).encode()
        headers = (
            ("Content-Type", "application/json"),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-ErrorType", error_type),
        )
        return GatewayResponse(status=status, headers=headers, body=body)

    def _default_context(self) -> LocalContext:
        name = self._function_name
        return LocalContext(
            function_name=name,
            memory_limit_in_mb=128,
            timeout_seconds=INTEGRATION_TIMEOUT_SECONDS,
            invoked_function_arn=f"arn:aws:lambda:{self._region}:{self._account_id}:function:{name}",
        )


def _unsupported(method: MethodSpec) -> Iterator[str]:
    route = f"{method.http_method} {method.resource_path}"
    if method.integration_type != PROXY:
        yield f"{route}: integration type {method.integration_type!r} (only {PROXY} is emulated)"
    for target, source in method.integration_parameters.items():
        if not target.startswith(INTEGRATION_HEADER) or not _supported_source(source):
            yield f"{route}: request parameter mapping {target} = {source}"
    for parameter in method.cache_key_parameters:
        mapped = parameter.startswith(INTEGRATION_HEADER) and parameter in method.integration_parameters
        if not mapped and not _supported_source(parameter):
            yield f"{route}: cache key parameter {parameter}"
    for parameter in method.required_parameters:
        if not _supported_source(parameter) or parameter == BODY:
            yield f"{route}: required request parameter {parameter}"


def _proxy_response(result: Any, *, decode_base64: bool) -> GatewayResponse | None:
    """API Gateway's reading of a Lambda proxy response; None for a malformed one."""
    if not isinstance(result, Mapping) or not set(result) <= PROXY_RESPONSE_KEYS:
        return None
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return None
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    body = result.get("body")
    if (
        not isinstance(single, Mapping)
        or not isinstance(multi, Mapping)
        or not all(isinstance(v, list) for v in multi.values())
        or not (body is None or isinstance(body, str))
    ):
        return None
    headers = [(str(k), str(v)) for k, values in multi.items() for v in values]
    multi_names = {str(k).lower() for k in multi}
    headers += [(str(k), str(v)) for k, v in single.items() if str(k).lower() not in multi_names]
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    if result.get("isBase64Encoded") and decode_base64 and body:
        try:
            content = base64.b64decode(body, validate=True)
        except ValueError:
            return None
    else:
        content = (body or "").encode()
    return GatewayResponse(status=status, headers=tuple(headers), body=content)


def _request_time(epoch_seconds: float) -> str:
    """``$context.requestTime``: ``09/Apr/2015:12:34:56 +0000``."""
    moment = time.gmtime(epoch_seconds)
    return time.strftime(f"%d/{MONTHS[moment.tm_mon - 1]}/%Y:%H:%M:%S +0000", moment)
