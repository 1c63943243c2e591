"""Structured JSON logs without patient names or IDs.

Every node log line is one JSON object: ``ts``, ``level``, ``logger``, ``event`` and the fields passed
with ``log(logger, "event", key=value, ...)``. Only technical identifiers are logged (UIDs, AE titles,
peer addresses, counts, durations, reasons). Datasets are never logged, and a filter drops any field
whose name looks like a patient attribute (``PatientName``, ``patient_id`` ...) as a second line of
defence. pynetdicom's own DEBUG output (which dumps datasets) and other chatty libraries (highdicom, pydicom,
matplotlib, kombu ...: ``CHATTY_LOGGERS``) are capped at WARNING.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

FORBIDDEN_FIELDS = frozenset({
    "patientname", "patient_name", "patientid", "patient_id", "patientbirthdate", "patient_birth_date",
    "otherpatientids", "other_patient_ids", "patientaddress", "accessionnumber", "accession_number",
    "referringphysicianname", "institutionname",
})
CHATTY_LOGGERS = ("pynetdicom", "highdicom", "pydicom", "matplotlib", "PIL", "urllib3", "kombu", "amqp",
                  "fontTools", "monai", "dicomweb_client")
"""Libraries whose INFO/DEBUG output is noise (or dumps datasets, or URLs: a QIDO-RS query names the Patient ID):
capped at WARNING."""
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k.lower().replace("-", "_") not in FORBIDDEN_FIELDS}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line (patient fields removed)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        extra = {k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")}
        out.update(_clean(extra))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable variant: ``time level logger event key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        extra = _clean({k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")})
        kv = " ".join(f"{k}={v}" for k, v in extra.items())
        line = f"{self.formatTime(record)} {record.levelname:<7} {record.name} {record.getMessage()} {kv}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class PatientFieldFilter(logging.Filter):
    """Drops patient-attribute fields from records of any logger it is attached to."""

    def filter(self, record: logging.LogRecord) -> bool:
        for k in list(record.__dict__):
            if k.lower() in FORBIDDEN_FIELDS:
                delattr(record, k)
        return True


def setup_logging(level: str = "INFO", json_lines: bool = True, stream: Any = None) -> None:
    """Configure the root logger once for the process (idempotent)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_cspine", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._cspine = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(PatientFieldFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("celery").setLevel(max(logging.INFO, root.level))


def log(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with structured ``fields`` (patient-attribute fields are dropped)."""
    logger.log(level, event, extra=_clean(fields))
