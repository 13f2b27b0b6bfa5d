"""Building blocks of the payload models: rule codes, content checks, field types, group rules.

Shape and type checks are pydantic's (strict mode, Rust core). Content checks (empty, placeholder,
URL format, placeholder image) run as after-validators on required fields only and raise
:class:`~pydantic_core.PydanticCustomError` whose ``type`` is the stable rule code, so one pydantic
pass reports every problem with its location. Rules that span several fields (either/or
alternatives such as ``judul``/``title``, "at least one home section has items") are *group rules*
checked by one wrap validator on :class:`PayloadModel`, which merges their errors with the fields'
errors instead of stopping at the first.

Models are immutable after class creation. The only shared state is the bounded memo of content
verdicts (plain dict reads and writes, each atomic), so everything here is safe to share between
threads and event loops.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Protocol, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.placeholders import TextDefect, UrlDefect, text_defect, url_defect


class Rule(enum.StrEnum):
    """Stable short codes of validation failures; stored in events, so never rename one."""

    MISSING = "missing"
    TYPE = "type"
    EMPTY = "empty"
    PLACEHOLDER = "placeholder"
    PLACEHOLDER_IMAGE = "placeholder_image"
    URL_FORMAT = "url_format"
    OUT_OF_RANGE = "out_of_range"
    CONFIDENCE_BELOW_THRESHOLD = "confidence_below_threshold"
    NOT_OBJECT = "not_object"
    INVALID = "invalid"
    TRUNCATED = "truncated"


Problem = tuple[Rule, str]
"""A broken rule and a short human sentence about it."""


_TEXT_PROBLEMS: dict[TextDefect, Problem] = {
    TextDefect.EMPTY: (Rule.EMPTY, "is empty"),
    TextDefect.PLACEHOLDER: (Rule.PLACEHOLDER, "is a placeholder value"),
    TextDefect.ERROR_TEXT: (Rule.PLACEHOLDER, "looks like error-page text"),
}
_URL_PROBLEMS: dict[UrlDefect, Problem] = {
    UrlDefect.MALFORMED: (
        Rule.URL_FORMAT,
        "is not an absolute http(s) URL with a host and no whitespace",
    ),
    UrlDefect.PLACEHOLDER_PATH: (
        Rule.PLACEHOLDER,
        "has a placeholder path segment such as 'undefined'",
    ),
    UrlDefect.PLACEHOLDER_IMAGE: (Rule.PLACEHOLDER_IMAGE, "points at a placeholder image"),
}


# Scraped answers repeat the same titles, slugs and URLs across requests and endpoints (the home
# page changes a few items per refresh), so remembering verdicts of these pure checks makes most
# of them a dict lookup. lru_cache keeps it bounded and thread-safe.
_MEMO_MAX_ENTRIES = 4096


@functools.lru_cache(maxsize=_MEMO_MAX_ENTRIES)
def text_problem(value: str) -> Problem | None:
    """Find what is wrong with the value of a required text field.

    Args:
        value: The field's string value.

    Returns:
        ``None`` when the value is usable, otherwise the rule it breaks and why.
    """
    defect = text_defect(value)
    return None if defect is None else _TEXT_PROBLEMS[defect]


@functools.lru_cache(maxsize=_MEMO_MAX_ENTRIES)
def url_problem(value: str) -> Problem | None:
    """Find what is wrong with the value of a required page or stream URL field.

    Args:
        value: The field's string value.

    Returns:
        ``None`` when the value is an absolute http(s) URL not built from a missing value,
        otherwise the rule it breaks and why ("N/A" is a placeholder, not a malformed URL).
    """
    token = text_defect(value, error_text=False)
    if token is not None:
        return _TEXT_PROBLEMS[token]
    defect = url_defect(value)
    return None if defect is None else _URL_PROBLEMS[defect]


@functools.lru_cache(maxsize=_MEMO_MAX_ENTRIES)
def image_url_problem(value: str) -> Problem | None:
    """Find what is wrong with the value of a required image URL field.

    Args:
        value: The field's string value.

    Returns:
        ``None`` when the value is a usable image URL, otherwise the rule it breaks and why.
    """
    token = text_defect(value, error_text=False)
    if token is not None:
        return _TEXT_PROBLEMS[token]
    defect = url_defect(value, image=True)
    return None if defect is None else _URL_PROBLEMS[defect]


def _as_validator(problem_of: Callable[[str], Problem | None]) -> Callable[[str], str]:
    def check(value: str) -> str:
        found = problem_of(value)
        if found is not None:
            raise PydanticCustomError(found[0].value, found[1])
        return value

    return check


RequiredText = Annotated[
    str, AfterValidator(_as_validator(text_problem)), Field(json_schema_extra={"minLength": 1})
]
"""A string that must be non-blank and not a placeholder or error text."""

RequiredUrl = Annotated[
    str, AfterValidator(_as_validator(url_problem)), Field(json_schema_extra={"format": "uri"})
]
"""An absolute http(s) URL."""


class GroupRule(Protocol):
    """A rule over several fields of one object, checked on the raw input."""

    def errors(self, data: Mapping[str, object]) -> list[InitErrorDetails]:
        """Return one error per problem found; an empty list when the rule holds."""
        ...

    def json_schema(self) -> dict[str, Any]:
        """Return the JSON Schema fragment that documents the rule."""
        ...


def _group_loc(names: tuple[str, ...]) -> tuple[str]:
    return ("|".join(names),)


@dataclass(frozen=True, slots=True)
class OneOf:
    """At least one of ``names`` holds a value that passes ``problem_of``.

    Alternatives that are present but fail are reported only when no alternative passes, so
    ``{"judul": "N/A", "title": "Naruto"}`` is fine. A present value of the wrong type is left to
    the field's own type check.
    """

    names: tuple[str, ...]
    problem_of: Callable[[str], Problem | None]

    def errors(self, data: Mapping[str, object]) -> list[InitErrorDetails]:
        """Return the problems of the alternatives, or none when one of them is usable."""
        found: list[InitErrorDetails] = []
        any_present = False
        for name in self.names:
            value = data.get(name)
            if value is None:
                continue
            any_present = True
            if not isinstance(value, str):
                continue
            problem = self.problem_of(value)
            if problem is None:
                return []
            found.append(
                {
                    "type": PydanticCustomError(problem[0].value, problem[1]),
                    "loc": (name,),
                    "input": value,
                }
            )
        if not any_present:
            detail = f"one of {', '.join(self.names)} is required"
            return [
                {
                    "type": PydanticCustomError(Rule.MISSING.value, detail),
                    "loc": _group_loc(self.names),
                    "input": None,
                }
            ]
        return found

    def json_schema(self) -> dict[str, Any]:
        """Document the rule as "at least one of the properties is a non-empty string"."""
        usable: dict[str, Any] = {"type": "string", "minLength": 1}
        if self.problem_of in (url_problem, image_url_problem):
            usable["format"] = "uri"
        return {"anyOf": [{"required": [n], "properties": {n: usable}} for n in self.names]}


def _has_items(value: object) -> bool:
    if isinstance(value, list):
        return bool(value)
    if isinstance(value, dict):
        return any(isinstance(day, list) and day for day in value.values())
    return False


@dataclass(frozen=True, slots=True)
class AnyHasItems:
    """At least one of ``names`` is a non-empty list, or a mapping holding a non-empty list."""

    names: tuple[str, ...]

    def errors(self, data: Mapping[str, object]) -> list[InitErrorDetails]:
        """Return an ``empty`` problem when every named container is absent or empty."""
        if any(_has_items(data.get(name)) for name in self.names):
            return []
        detail = f"none of {', '.join(self.names)} has any item"
        return [
            {
                "type": PydanticCustomError(Rule.EMPTY.value, detail),
                "loc": _group_loc(self.names),
                "input": None,
            }
        ]

    def json_schema(self) -> dict[str, Any]:
        """Document the rule as "at least one of the properties is present and not empty"."""
        has_items: dict[str, Any] = {"not": {"enum": [None, [], {}]}}
        return {"anyOf": [{"required": [n], "properties": {n: has_items}} for n in self.names]}


def _reraisable(exc: ValidationError) -> list[InitErrorDetails]:
    # Rebuilding as custom errors keeps each error's type code, location, message and input;
    # only the context dict is dropped, which nothing downstream reads.
    return [
        {
            "type": PydanticCustomError(err["type"], err["msg"]),
            "loc": err["loc"],
            "input": err["input"],
        }
        for err in exc.errors(include_url=False, include_context=False)
    ]


def _document_group_rules(schema: dict[str, Any], model: type[Any]) -> None:
    rules: tuple[GroupRule, ...] = getattr(model, "group_rules", ())
    if rules:
        schema["allOf"] = [rule.json_schema() for rule in rules]


class PayloadModel(BaseModel):
    """Base of every payload model: strict types, extra fields allowed, group rules applied."""

    # strict: the answer is passed to clients untouched, so "8" where a number is due is an error,
    # not something to coerce. extra="allow": upstreams add fields and that is fine.
    model_config = ConfigDict(strict=True, extra="allow", json_schema_extra=_document_group_rules)

    group_rules: ClassVar[tuple[GroupRule, ...]] = ()

    @model_validator(mode="wrap")
    @classmethod
    def _apply_group_rules(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        if not cls.group_rules or not isinstance(data, dict):
            return handler(data)
        group_errors = [err for rule in cls.group_rules for err in rule.errors(data)]
        if not group_errors:
            return handler(data)
        field_errors: list[InitErrorDetails] = []
        try:
            handler(data)
        except ValidationError as exc:
            field_errors = _reraisable(exc)
        raise ValidationError.from_exception_data(cls.__name__, [*field_errors, *group_errors])
