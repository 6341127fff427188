"""An event line is one record without an exception, so it lands in AppTraces where the queries read it."""

from __future__ import annotations

import json
import logging

import pytest

from chargeback.domain.logs import LLM_LOG_DAY_FAILED, TRACE_PREFIX, log_event

logger = logging.getLogger("chargeback.tests.logs")


def refuse() -> None:
    raise ValueError("the workspace answered 403")


def failure() -> ValueError:
    """An exception that was raised, so it carries a traceback."""
    try:
        refuse()
    except ValueError as exc:
        return exc
    raise AssertionError("refuse() returned")


def test_an_event_line_is_its_name_and_its_facts_as_json(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="chargeback"):
        log_event(logger, LLM_LOG_DAY_FAILED, logging.ERROR, day="2026-11-02", tokens=12)
    [record] = caplog.records
    assert record.getMessage() == 'chargeback.llm_logs.failed {"day": "2026-11-02", "tokens": 12}'
    assert (record.levelno, record.exc_info) == (logging.ERROR, None)


def test_an_exception_goes_to_a_record_of_its_own_and_never_onto_the_event_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="chargeback"):
        log_event(logger, LLM_LOG_DAY_FAILED, logging.ERROR, day="2026-11-02", exc_info=failure())
    line, trace = caplog.records
    assert line.exc_info is None
    assert json.loads(line.getMessage().removeprefix(f"{LLM_LOG_DAY_FAILED} ")) == {"day": "2026-11-02"}
    assert trace.getMessage() == f"{TRACE_PREFIX}{LLM_LOG_DAY_FAILED}"
    assert trace.exc_info is not None and trace.exc_info[0] is ValueError
    assert not trace.getMessage().startswith("chargeback.")  # no query of event lines matches it


def test_nothing_is_written_below_the_loggers_level(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="chargeback"):
        log_event(logger, LLM_LOG_DAY_FAILED, logging.INFO, exc_info=failure())
    assert caplog.records == []
