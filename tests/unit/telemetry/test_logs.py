"""Log lines: JSON with the current trace, and no secret in any format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from procall.telemetry.logs import REDACTED, configure_logging, redact

TOKEN = "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1LTEifQ.c2lnbmF0dXJlLWJ5dGVz"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("procall.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, out, handler
    logger.removeHandler(handler)


def test_json_lines_carry_the_trace_and_span_of_the_current_span(
    logged: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, out, handler = logged
    configure_logging("json", handlers=[handler])
    tracer = TracerProvider().get_tracer("test")
    logger.info("outside %s", "any span")
    with tracer.start_as_current_span("work") as span:
        logger.warning("inside")
        context = span.get_span_context()
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "outside any span" and first["level"] == "INFO"
    assert first["logger"] == "procall.test.logs" and "time" in first
    assert "trace_id" not in first and "span_id" not in first
    assert second["trace_id"] == format(context.trace_id, "032x")
    assert second["span_id"] == format(context.span_id, "016x")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_format_writes_tokens_passwords_or_configured_secrets(
    log_format: str, logged: tuple[logging.Logger, io.StringIO, logging.Handler]
) -> None:
    logger, out, handler = logged
    configure_logging(log_format, secrets=["the-service-credential"], handlers=[handler])
    logger.debug("token %s", TOKEN)
    logger.debug("metadata (('authorization', 'Bearer abc.def-ghi'),)")
    logger.debug("connecting to redis://:hunter2@redis:6379/0 and postgresql://u:pw9@db/chat")
    logger.debug("proof key the-service-credential")
    try:
        raise ValueError(f"bad token {TOKEN}")
    except ValueError:
        logger.exception("failed")
    text = out.getvalue()
    for secret in [TOKEN, "abc.def-ghi", "hunter2", "pw9", "the-service-credential"]:
        assert secret not in text
    assert text.count(REDACTED) >= 6
    assert "redis://:[redacted]@redis:6379/0" in text  # where it went stays readable


def test_redact_leaves_ordinary_text_alone() -> None:
    line = "alice logged in on uc-1 (session s-1) at http://127.0.0.1:9464/metrics"
    assert redact(line, ["", "x" * 40]) == line
