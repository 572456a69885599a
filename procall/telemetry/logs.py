"""The log lines of a server process: readable text or JSON, never a secret.

``configure_logging`` sets the format of every handler of the root logger from
``[logging] format``:

* ``text``: ``time level logger: message`` (what ``procall`` always wrote);
* ``json``: one JSON object per line (python-json-logger) with ``time``, ``level``,
  ``logger`` and ``message`` (and ``exc_info`` for a traceback), plus ``trace_id`` and
  ``span_id`` (hex, as OTLP and the trace viewers show them) while an OpenTelemetry span
  is current in the code that logs; without one the keys are left out.

Whatever the format, each line passes through ``redact`` before it is written: session
tokens (JWTs), ``Bearer`` credentials, passwords in URLs and the secret values the
process was configured with (``secrets``: the service credential, the LDAP password)
become ``[redacted]``. procall does not log them on purpose; this keeps a mistake, or
a library's debug output, from putting them on disk.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

__all__ = [
    "REDACTED",
    "TEXT_FORMAT",
    "SecretRedactingFormatter",
    "TraceContextFilter",
    "configure_logging",
    "formatter_for",
    "redact",
]

#: What a secret is replaced with.
REDACTED = "[redacted]"
#: The format of the text lines.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_PATTERNS = (
    # a JWT (our session and resume tokens): three base64url parts, the first a JSON header
    re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
    # an authorization header's credential
    re.compile(r"(?i)(?<=bearer )[^\s'\",)]+"),
    # the password of a URL: scheme://user:PASSWORD@host
    re.compile(r"(?<=://)([^/\s:@]*):[^/\s@]+(?=@)"),
    # a PEM private key
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with tokens, credentials, URL passwords, private keys and each of
    ``secrets`` replaced by ``REDACTED``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        if pattern.pattern.startswith("(?<=://)"):
            text = pattern.sub(lambda m: f"{m.group(1)}:{REDACTED}", text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex) to a record while a span is current."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


class SecretRedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then ``redact``s the line."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record), self.secrets)


def formatter_for(log_format: str, secrets: Iterable[str] = ()) -> logging.Formatter:
    """The formatter of ``[logging] format`` (``text`` or ``json``), redacting."""
    inner: logging.Formatter
    if log_format == "json":
        inner = JsonFormatter(
            ["asctime", "levelname", "name", "message"],
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    else:
        inner = logging.Formatter(TEXT_FORMAT)
    return SecretRedactingFormatter(inner, secrets)


def configure_logging(
    log_format: str, secrets: Iterable[str] = (), handlers: Iterable[logging.Handler] = ()
) -> None:
    """Give ``handlers`` (every handler of the root logger when none are named) the
    formatter of ``log_format`` and the trace-context filter."""
    chosen = list(handlers) or list(logging.getLogger().handlers)
    formatter = formatter_for(log_format, secrets)
    for handler in chosen:
        handler.setFormatter(formatter)
        if not any(isinstance(f, TraceContextFilter) for f in handler.filters):
            handler.addFilter(TraceContextFilter())
