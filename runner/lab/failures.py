"""Whatever goes wrong underneath the lab's public functions (a file system, the Docker API, a command) reaches the
user as one LabError line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from runner.errors import LabError

_P = ParamSpec("_P")
_R = TypeVar("_R")


def one_line(text: object) -> str:
    return " ".join(str(text).split())[:400]


def reported(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Wrap a public lab action so that its failures are one LabError line naming the action (`lab up: ...`)."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        except LabError as exc:
            raise LabError(one_line(exc)) from None
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise LabError(f"lab {func.__name__}: {exc.strerror or exc}{where}") from None
        except Exception as exc:
            import docker

            if isinstance(exc, docker.errors.DockerException):
                raise LabError(f"lab {func.__name__}: Docker engine error: {one_line(exc)}") from None
            raise

    return wrapper
