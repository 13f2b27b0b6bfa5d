"""Structured logs (gateway.logs): our loggers and libraries' warnings in one JSON format."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest

from gateway.logs import configure_logging, request_id_var


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root, ours = logging.getLogger(), logging.getLogger("apicat")
    saved = (root.handlers[:], ours.handlers[:], ours.level, ours.propagate)
    yield
    root.handlers[:], ours.handlers[:] = saved[0], saved[1]
    ours.setLevel(saved[2])
    ours.propagate = saved[3]


def json_lines(text: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.usefixtures("restore_logging")
def test_a_librarys_warning_is_a_json_line_with_the_request_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    token = request_id_var.set("req-42")
    try:
        logging.getLogger("stamina").warning("stamina.retry_scheduled", extra={"retry_num": 1})
        logging.getLogger("aiokafka").info("chatter below WARNING stays out")
    finally:
        request_id_var.reset(token)

    [line] = json_lines(capsys.readouterr().err)
    assert line["logger"] == "stamina"
    assert line["msg"] == "stamina.retry_scheduled"
    assert line["request_id"] == "req-42"
    assert line["retry_num"] == 1


@pytest.mark.usefixtures("restore_logging")
def test_configuring_twice_logs_each_line_once_and_keeps_other_handlers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    configure_logging("INFO", "json")
    configure_logging("INFO", "json")

    logging.getLogger("apicat.test").info("ours")
    logging.getLogger("uvicorn.error").error("theirs")

    assert [line["msg"] for line in json_lines(capsys.readouterr().err)] == ["ours", "theirs"]
    assert other in logging.getLogger().handlers
