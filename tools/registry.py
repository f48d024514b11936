"""Python tools: functions registered in code, their JSON schema derived from type hints."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class PythonTool:
    name: str
    description: str
    parameters: dict[str, Any]
    func: Callable[..., Any]
    idempotent: bool
    takes_context: bool
    # The parameter an idempotency key is passed in, when the function honours one.
    idempotency_key_argument: str = ""

    def accepts(self, argument: str) -> bool:
        """Whether the function can be called with a keyword argument of this name."""
        parameters = inspect.signature(self.func).parameters
        if argument in parameters and argument != "context":
            return parameters[argument].kind in (
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                inspect.Parameter.KEYWORD_ONLY,
            )
        return any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())


_registry: dict[str, PythonTool] = {}


def _schema_for(annotation: object) -> dict[str, Any]:
    origin = get_origin(annotation)
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    if origin is Literal:
        values = list(get_args(annotation))
        return {"enum": values}
    if origin in (list, typing.List):  # noqa: UP006
        (item,) = get_args(annotation) or (str,)
        return {"type": "array", "items": _schema_for(item)}
    if origin in (dict, typing.Dict):  # noqa: UP006
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return _schema_for(options[0])
        return {"anyOf": [_schema_for(a) for a in options]}
    raise TypeError(f"Unsupported parameter type {annotation!r} for a Python tool")


def schema_from_signature(
    func: Callable[..., Any], *, runtime_filled: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The JSON schema of the function's parameters, less those the runtime fills in (the
    context, an idempotency key): the model never sees or sets them."""
    hints = typing.get_type_hints(func)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, param in inspect.signature(func).parameters.items():
        if name in ("context", *runtime_filled) or param.kind in (
            param.VAR_POSITIONAL,
            param.VAR_KEYWORD,
        ):
            continue
        if name not in hints:
            raise TypeError(f"Parameter {name!r} of {func.__name__} needs a type hint")
        properties[name] = _schema_for(hints[name])
        if param.default is inspect.Parameter.empty:
            required.append(name)
        else:
            properties[name]["default"] = param.default
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


def python_tool(
    name: str | None = None,
    *,
    description: str | None = None,
    idempotent: bool = True,
    idempotency_key: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function as a tool. A `context` parameter receives the ToolContext; the
    parameter named by `idempotency_key` receives the call's idempotency key (the same on
    every attempt), which says the function honours one: it makes its change once per key."""

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        tool_name = name or func.__name__
        doc = description or inspect.getdoc(func) or tool_name
        runtime_filled = (idempotency_key,) if idempotency_key else ()
        registered = PythonTool(
            name=tool_name,
            description=doc,
            parameters=schema_from_signature(func, runtime_filled=runtime_filled),
            func=func,
            idempotent=idempotent,
            takes_context="context" in inspect.signature(func).parameters,
            idempotency_key_argument=idempotency_key,
        )
        if idempotency_key and not registered.accepts(idempotency_key):
            raise TypeError(f"{func.__name__} takes no argument named {idempotency_key!r}")
        _registry[tool_name] = registered
        return func

    return decorator


def registered_tools() -> dict[str, PythonTool]:
    return dict(_registry)


def get_python_tool(name: str) -> PythonTool | None:
    return _registry.get(name)
