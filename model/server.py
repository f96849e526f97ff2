"""Model server: the SageMaker inference container HTTP contract on Starlette + uvicorn.

``python -m model.server (--model-dir DIR | --artifact model.tar.gz) [--host 127.0.0.1] [--port 8080]
[--variant ModelA] [--max-body-bytes N] [--access-log] [--log-level info]``

It serves one model version the way the SageMaker scikit-learn container would: it imports the
model's own ``code/inference.py`` from the model directory (the extracted archive; ``--artifact`` is
extracted into a temporary directory removed on exit) and calls exactly its ``model_fn`` (once, at
start-up), ``input_fn``, ``predict_fn`` and ``output_fn``.

* ``GET /ping``: 200 once the model is loaded (loading happens before the server accepts
  connections; a model that does not load stops start-up with the reason).
* ``POST /invocations``: ``Content-Type`` ``application/json`` or ``text/csv``, ``Accept``
  ``application/json``, any number of rows. Errors are JSON ``{"error": message, "details": [...]}``:
  400 for a payload the schema rejects (the message names row, feature and reason), 415 for an
  unsupported content type, 406 for an unsupported ``Accept``, 413 for a body over the limit
  (default 6 MB, SageMaker's real-time payload limit), 500 with a generic message for anything
  unexpected (the traceback goes to the log only).
* ``--variant NAME`` adds ``X-Amzn-Invoked-Production-Variant: NAME`` to invocation responses, as the
  SageMaker runtime reports the variant that served a request.

One process, one uvicorn worker, bound only to ``--host`` (default loopback). Predictions run in a
worker thread so ``/ping`` stays responsive. Access logs are off unless ``--access-log``. SIGTERM and
SIGINT shut down gracefully (in-flight requests get ``GRACEFUL_SHUTDOWN_SECONDS`` to finish); the
process then removes the extracted artifact and exits 0. A model that cannot be served exits 2.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import signal
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024
DEFAULT_PORT = 8080
GRACEFUL_SHUTDOWN_SECONDS = 10
VARIANT_HEADER = "X-Amzn-Invoked-Production-Variant"
ENTRY_POINT = Path("code") / "inference.py"
_HANDLERS = ("model_fn", "input_fn", "predict_fn", "output_fn")

logger = logging.getLogger("model.server")


class ServerSetupError(RuntimeError):
    """The model cannot be served (missing entry point, unreadable archive)."""


class _BodyTooLargeError(Exception):
    pass


class _StopSignalError(Exception):
    """SIGTERM/SIGINT arrived; uvicorn re-raises the signal after its graceful shutdown."""


def _stop(signum: int, _frame: object) -> None:
    raise _StopSignalError(signal.Signals(signum).name)


def load_entry_point(model_dir: Path) -> ModuleType:
    """Import ``code/inference.py`` of a model directory under a name unique to its path."""
    path = (model_dir / ENTRY_POINT).resolve()
    if not path.is_file():
        raise ServerSetupError(
            f"{model_dir} has no {ENTRY_POINT.as_posix()}; is it an extracted model archive?"
        )
    name = "_mlpipeline_entry_" + hashlib.sha256(str(path).encode("utf-8")).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ServerSetupError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    missing = [handler for handler in (*_HANDLERS, "RequestError") if not hasattr(module, handler)]
    if missing:
        raise ServerSetupError(f"{ENTRY_POINT.as_posix()} lacks {', '.join(missing)}")
    return module


def create_app(
    model_dir: str | Path,
    variant: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Starlette:
    """The ASGI app serving the model in ``model_dir`` (an extracted archive); loads it now."""
    directory = Path(model_dir)
    entry = load_entry_point(directory)
    model = entry.model_fn(str(directory))
    request_error: type[Exception] = entry.RequestError
    variant_headers = {VARIANT_HEADER: variant} if variant else {}

    def invoke(body: bytes, content_type: str | None, accept: str | None) -> tuple[str, str]:
        rows = entry.input_fn(body, content_type)
        prediction = entry.predict_fn(rows, model)
        payload, media_type = entry.output_fn(prediction, accept)
        return str(payload), str(media_type)

    async def ping(_: Request) -> Response:
        return JSONResponse({"status": "ok", "model_version": getattr(model, "model_version", None)})

    async def invocations(request: Request) -> Response:
        try:
            body = await _read_body(request, max_body_bytes)
        except _BodyTooLargeError:
            return _error(
                413,
                f"the request body exceeds {max_body_bytes} bytes; split the rows into smaller requests",
                headers=variant_headers,
            )
        try:
            payload, media_type = await run_in_threadpool(
                invoke, body, request.headers.get("content-type"), request.headers.get("accept")
            )
        except request_error as exc:
            status = int(getattr(exc, "status_code", 400))
            details = [str(detail) for detail in getattr(exc, "errors", [])]
            return _error(status, str(exc), details, headers=variant_headers)
        except Exception:
            logger.exception("invocation failed")
            return _error(500, "internal error while serving the prediction", headers=variant_headers)
        return Response(payload, media_type=media_type, headers=variant_headers)

    app = Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
        ]
    )
    app.state.entry = entry  # the model's code/inference.py module and what its model_fn returned
    app.state.model = model
    return app


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLargeError
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def _error(
    status: int, message: str, details: Sequence[str] = (), headers: dict[str, str] | None = None
) -> Response:
    document: dict[str, Any] = {"error": message, "details": list(details)}
    return Response(json.dumps(document), status_code=status, media_type="application/json", headers=headers)


def extract_artifact(artifact: Path, destination: Path) -> Path:
    """Extract ``model.tar.gz`` safely (no links, no paths outside ``destination``)."""
    try:
        with tarfile.open(artifact, mode="r:gz") as tar:
            tar.extractall(destination, filter="data")
    except (OSError, tarfile.TarError) as exc:
        raise ServerSetupError(f"cannot extract {artifact}: {exc}") from exc
    return destination


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.server", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", type=Path, help="an extracted model archive")
    source.add_argument("--artifact", type=Path, help="a model.tar.gz (extracted to a temporary directory)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    parser.add_argument("--variant", default=None, help="production variant name reported in responses")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--access-log", action="store_true", help="log every request (off by default)")
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # uvicorn handles SIGTERM/SIGINT itself while serving, then re-raises the signal under the
    # handlers found at start: these turn it into a normal return, so the extracted artifact is removed
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    try:
        with tempfile.TemporaryDirectory(prefix="mlpipeline-model-") as scratch:
            try:
                model_dir = args.model_dir or extract_artifact(args.artifact, Path(scratch))
                app = create_app(model_dir, variant=args.variant, max_body_bytes=args.max_body_bytes)
            except _StopSignalError:
                raise
            except Exception as exc:  # start-up failure: say why and stop
                sys.stderr.write(f"error: cannot serve the model: {exc}\n")
                return 2
            uvicorn.run(
                app,
                host=args.host,
                port=args.port,
                workers=1,
                access_log=args.access_log,
                log_level=args.log_level,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            )
    except _StopSignalError as stop:
        logger.info("stopped by %s", stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
