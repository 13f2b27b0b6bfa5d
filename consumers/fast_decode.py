"""The consumer's fast path: a strict msgspec decoder derived from the event models.

``consumers.rows`` validates every consumed message against the pydantic event models (the
contract). Measured on the 2-core target, pydantic-core took 10-13 µs for a 512-byte event
and a msgspec decoder of the same shape about 3 µs: the largest share of a consumed event's
CPU in Python. So every message is decoded here first, and only a message this decoder
rejects goes through the pydantic validator, which then either accepts it (a lax input such
as ``"200"`` for an int) or says precisely why it is poison.

That split is only sound if this decoder never accepts what the models reject, nor accepts
with another value. It is therefore derived from the models and stricter than them:
``strict=True`` (no coercion at all), the same unknown-field rule (forbid), the same defaults
and factories, enums as the literal of their values, and the column limits of
``consumers.rows`` (unsigned ranges, finite floats). tests/unit/test_rows.py feeds both paths
the same inputs and requires the same rows.

One known difference: a timestamp with more than 6 fractional digits is rounded to the
microsecond here and truncated by pydantic; the column keeps milliseconds, so the two can
differ by 1 ms only for such over-precise input.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

import msgspec
from pydantic import BaseModel

from schemas.events import EVENT_TYPES

__all__ = ["event_decoder"]

# msgspec checks integer bounds in int64; a larger upper bound is clipped to it, which only
# narrows what this path accepts (bigger values fall through to pydantic).
_INT64_MAX = 2**63 - 1
# Any finite double; JSON cannot spell inf/nan, but 1e999 decodes to inf without a bound.
_FINITE = msgspec.Meta(ge=-1.7976931348623157e308, le=1.7976931348623157e308)


def _field_type(
    name: str, annotation: Any, uint_max: Mapping[str, int], finite: frozenset[str]
) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        (inner,) = (arg for arg in typing.get_args(annotation) if arg is not type(None))
        return _field_type(name, inner, uint_max, finite) | None
    if origin is list:
        (item,) = typing.get_args(annotation)
        return list[_field_type(name, item, uint_max, finite)]  # type: ignore[misc]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return Literal[tuple(member.value for member in annotation)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _struct(annotation, uint_max, finite)
    if annotation is int and name in uint_max:
        return Annotated[int, msgspec.Meta(ge=0, le=min(uint_max[name], _INT64_MAX))]
    if annotation is float and name in finite:
        return Annotated[float, _FINITE]
    if annotation in (str, int, float) or annotation.__module__ == "datetime":
        return annotation
    raise TypeError(f"{name}: no fast-path type for {annotation!r}")


def _struct(
    model: type[BaseModel],
    uint_max: Mapping[str, int],
    finite: frozenset[str],
    tag: str | None = None,
) -> type[msgspec.Struct]:
    """A Struct with ``model``'s fields in order (minus the ``type`` tag), defaults included."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for name, info in model.model_fields.items():
        if tag is not None and name == "type":
            continue  # the union's tag field
        kind = _field_type(name, info.annotation, uint_max, finite)
        if info.is_required():
            fields.append((name, kind))
        elif info.default_factory is not None:
            factory = info.default_factory
            fields.append((name, kind, msgspec.field(default_factory=factory)))  # type: ignore[arg-type]
        else:
            fields.append((name, kind, info.default))
    return msgspec.defstruct(
        model.__name__,
        fields,
        kw_only=True,
        forbid_unknown_fields=True,
        tag_field="type" if tag is not None else None,
        tag=tag,
        array_like=False,
    )


def event_decoder(
    uint_max: Mapping[str, int], finite: frozenset[str]
) -> tuple[msgspec.json.Decoder[Any], dict[type[msgspec.Struct], str]]:
    """A strict decoder of any event's JSON bytes into a Struct of its type.

    ``msgspec.structs.astuple`` of a decoded event lists its fields in the model's order
    without ``type``, which is the order of its table's columns.

    Args:
        uint_max: unsigned integer columns and their largest value.
        finite: float columns that must hold a finite number.

    Returns:
        The decoder, and the event type of each Struct it decodes into.
    """
    types_of = {
        _struct(model, uint_max, finite, tag=event_type): event_type
        for event_type, model in EVENT_TYPES.items()
    }
    union = Union[tuple(types_of)]  # type: ignore[valid-type]  # noqa: UP007
    return msgspec.json.Decoder(union, strict=True), types_of
