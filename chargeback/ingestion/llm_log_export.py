"""Reads a CSV export of the joined LLM-log rows, for running offline: the same counting rule, in Python."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from chargeback.domain.errors import ConfigurationError, MonitorError
from chargeback.domain.logs import LLM_LOG_ROW_REJECTED, log_event
from chargeback.ingestion.llm_log_calls import CALL_SPREAD, WindowUsage, count_calls
from chargeback.ingestion.llm_log_rows import EXPORT_COLUMNS, LlmLogRow, RejectedRow, parse_record

logger = logging.getLogger(__name__)


class CsvLlmLogExport:
    """An ``LlmLogSource`` over a CSV export of the joined query's rows (``EXPORT_COLUMNS``).

    The header must name every column of ``EXPORT_COLUMNS`` (in any order; others are ignored).
    A missing column is a ``ConfigurationError``; a row that cannot be read is counted by reason
    on its day and logged naming its line, so one bad line never hides the rest of the file. A
    row whose time cannot be read belongs to no day: it is logged once, when the file is read.
    The file is read once per source, on the first day asked for.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._by_day: dict[date, list[LlmLogRow | RejectedRow]] | None = None

    def day_usage(self, day: date, scope: str) -> WindowUsage:
        by_day = self._read() if self._by_day is None else self._by_day
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        first, last = start - CALL_SPREAD, end + CALL_SPREAD
        dates = [first.date() + timedelta(days=n) for n in range((last.date() - first.date()).days + 1)]
        near = [row for moment in dates for row in by_day.get(moment, []) if _near(row, first, last)]
        return count_calls(near, start, end, scope)

    def _read(self) -> dict[date, list[LlmLogRow | RejectedRow]]:
        by_day: dict[date, list[LlmLogRow | RejectedRow]] = {}
        for line, record in self._records():
            parsed = parse_record(record, f"{self._path.name}, line {line}")
            if isinstance(parsed, RejectedRow) and parsed.time is None:
                log_event(
                    logger,
                    LLM_LOG_ROW_REJECTED,
                    logging.WARNING,
                    where=parsed.where,
                    reason=parsed.reason,
                    detail=parsed.detail,
                )
                continue
            moment = parsed.time
            if moment is not None:
                by_day.setdefault(moment.date(), []).append(parsed)
        self._by_day = by_day
        return by_day

    def _records(self) -> Iterator[tuple[int, dict[str, str]]]:
        try:
            with self._path.open(encoding="utf-8-sig", newline="") as handle:
                reader = csv.DictReader(handle)
                missing = [name for name in EXPORT_COLUMNS if name not in (reader.fieldnames or [])]
                if missing:
                    raise ConfigurationError(f"the LLM-log export {self._path.name} lacks {', '.join(missing)}")
                for record in reader:
                    yield reader.line_num, {name: record.get(name) or "" for name in EXPORT_COLUMNS}
        except OSError as exc:
            raise MonitorError(f"cannot read the LLM-log export {self._path.name}: {exc.strerror}") from exc
        except (UnicodeDecodeError, csv.Error) as exc:
            raise MonitorError(f"the LLM-log export {self._path.name} is not UTF-8 CSV: {exc}") from exc


def _near(row: LlmLogRow | RejectedRow, start: datetime, end: datetime) -> bool:
    return row.time is not None and start <= row.time < end
