"""moto's request dispatch without the work that gives the same answer on every request.

Profiling the local stage under load (``nox -s bench``) showed two steps of moto 5.2's server that
are repeated for every request although their answer never changes while the process runs:

- ``moto.backends.list_of_moto_modules``: the werkzeug app asks it, for every request, whether the
  host names a service; it lists moto's package directory and calls ``isdir`` on each of its
  ~150 entries;
- ``moto.core.utils.method_names_from_class``: ``BaseResponse.call_action`` asks it for the
  response class's method names on every request; it runs ``inspect.getmembers`` over the class.

Both are replaced by cached equivalents with the same answers. The method names are cached per
class *and* the size of every class dictionary on its MRO, so an operation added to a response
class later (as ``local.emulator.sagemaker`` and ``local.emulator.apigateway`` do) is still found.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any

from moto import backends
from moto.core import responses

GAPS = (
    "moto request dispatch: service list and response-class method names cached, not recomputed "
    "per request (local.emulator.dispatch)",
)

_list_of_moto_modules = backends.list_of_moto_modules


@cache
def moto_modules() -> tuple[str, ...]:
    """What ``list_of_moto_modules`` yields (moto's service packages), listed once."""
    return tuple(_list_of_moto_modules())


def _shape(clazz: type) -> tuple[int, ...]:
    return tuple(len(vars(base)) for base in clazz.__mro__)


@cache
def _method_names(clazz: type, _shape: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(name for name, _ in inspect.getmembers(clazz, predicate=inspect.isfunction))


def method_names(clazz: Any) -> list[str]:
    """``method_names_from_class``: the names of the functions of ``clazz`` (inherited included)."""
    if not isinstance(clazz, type):
        return [name for name, _ in inspect.getmembers(clazz, predicate=inspect.isfunction)]
    return list(_method_names(clazz, _shape(clazz)))


def install() -> tuple[str, ...]:
    """Swap in the cached versions (idempotent)."""
    backends.list_of_moto_modules = moto_modules
    responses.method_names_from_class = method_names  # type: ignore[attr-defined]
    return GAPS
