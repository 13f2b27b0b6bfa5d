"""Models of the gateway's own request/response shapes, used for the OpenAPI document."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class CategoryQuery(BaseModel):
    """Every /api/v1 endpoint takes a category; other parameters are forwarded upstream."""

    category: str = Field(description="A configured category name, or `all` for every category")


class SearchQuery(CategoryQuery):
    q: str = Field(min_length=1, max_length=200, description="Search text")


class SlugQuery(CategoryQuery):
    slug: str = Field(min_length=1, max_length=200, description="Slug of the title or episode")


class AttemptSummary(BaseModel):
    source: str
    role: Literal["primary", "fallback"]
    depth: int
    outcome: str
    status_code: int | None
    latency_ms: float
    detail: str
    url: str | None = Field(default=None, description="Only when APICAT_EXPOSE_UPSTREAM_URLS")


class ErrorBody(BaseModel):
    """Every error answer: a stable ``code`` to switch on and a sentence for humans."""

    code: str
    message: str
    request_id: str
    valid_categories: list[str] | None = None
    valid_endpoints: list[str] | None = None
    valid_days: list[str] | None = None
    parameter: str | None = None
    attempts: list[AttemptSummary] | None = None
    retry_after_seconds: int | None = None


class AllCategoriesBody(BaseModel):
    """Answer of ``category=all``: each category's upstream payload, or its error."""

    categories: dict[str, dict[str, object]]
    errors: dict[str, ErrorBody]


class HealthBody(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    checks: dict[str, dict[str, object]]
