"""Operator commands say where their settings come from and end a configuration or storage error in one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from chargeback.adapters.tables import TableDeadLetterStore
from chargeback.app import runtime
from chargeback.ingestion.ledger import DeadLetter
from chargeback.ops import cli
from devtools.emulator import Azurite
from tests.support import ROOT, chargeback

README = (ROOT / "README.md").read_text(encoding="utf-8")
DEPLOY = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
COMMANDS = [["redrive", "--dry-run"], ["replay", "--capture", "capture"]]
PREFIXES = ("CHARGEBACK_", "ChargebackStorage", "EVENTHUB_", "LOG_ANALYTICS", "AZURE_")


def flat(text: str) -> str:
    """``text`` with every run of white space one space: Markdown and --help wrap lines differently."""
    return " ".join(text.split())


def clean_env(**values: str) -> dict[str, str]:
    """The process environment without any chargeback setting (or Azure sign-in), plus ``values``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(PREFIXES)}
    return {**env, **values}


def one_line_error(finished: subprocess.CompletedProcess[str]) -> str:
    """The one stderr line of a command stopped by a setting or storage; fails on anything else."""
    assert finished.returncode == 2, finished.stderr
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert "Traceback" not in finished.stderr
    return lines[0]


# --help and the docs ---------------------------------------------------------------------------


def test_help_says_settings_come_from_the_environment_or_a_local_settings_file() -> None:
    shown = flat(chargeback("--help", env=clean_env()).stdout)
    assert "from the environment, or with --settings FILE from the Values of a Functions local settings file" in shown
    assert "ChargebackStorage" in shown


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_each_commands_help_offers_the_settings_file_and_names_the_roles_it_needs(command: str) -> None:
    shown = flat(chargeback(command, "--help", env=clean_env()).stdout)
    assert "--settings FILE" in shown
    assert flat(cli.ROLES[command]) in shown if command in cli.ROLES else "prices none:" in shown


def test_prices_reads_the_price_sheet_setting_from_the_settings_file(tmp_path: Path) -> None:
    sheet = tmp_path / "nowhere" / "price-sheet.json"
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"CHARGEBACK_PRICE_SHEET": str(sheet)}}))
    finished = chargeback("prices", "--settings", str(settings), "check", env=clean_env())
    assert finished.returncode == 2
    assert str(sheet) in finished.stderr


GRANTS = [(command, role, scope) for command, grants in cli.ROLE_GRANTS.items() for role, scope in grants]


def unquoted(text: str) -> str:
    return flat(text).replace("`", "")


@pytest.mark.parametrize(("command", "role", "scope"), GRANTS)
def test_the_deployment_guide_names_each_role_a_command_needs_on_the_commands_row(
    command: str, role: str, scope: str
) -> None:
    [row] = [
        line for line in DEPLOY.splitlines() if line.startswith(f"| whoever runs `python -m chargeback {command}`")
    ]
    assert f"{role} on {scope}" in unquoted(row)


@pytest.mark.parametrize(("command", "role", "scope"), GRANTS)
def test_the_readme_names_each_role_a_command_needs(command: str, role: str, scope: str) -> None:
    section = README.split("## Recovering usage", 1)[1].split("\n## ", 1)[0]
    assert f"{role} on {scope}" in unquoted(section)


def test_neither_a_document_nor_the_app_role_says_the_admin_role_redrives() -> None:
    role = (ROOT / "infra" / "app" / "entra-app.bicep").read_text(encoding="utf-8")
    for text in (flat(README), flat(DEPLOY), flat(role)):
        assert not re.search(r"regenerat\w* reports and redriv", text)
        assert "their own Azure roles" not in text


# Configuration errors, without storage ---------------------------------------------------------


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0])
def test_without_a_storage_setting_a_command_says_which_setting_in_one_line(argv: list[str]) -> None:
    line = one_line_error(chargeback(*argv, env=clean_env()))
    assert line.startswith(f"python -m chargeback {argv[0]}: set ChargebackStorage")
    assert "--settings FILE" in line


@pytest.mark.parametrize(
    ("name", "value"),
    [("CHARGEBACK_LLM_LOG_SCOPE", "sometimes"), ("CHARGEBACK_FINAL_GRACE_DAYS", "five")],
)
def test_a_malformed_setting_is_named_in_one_line(name: str, value: str) -> None:
    env = clean_env(ChargebackStorage="UseDevelopmentStorage=true", **{name: value})
    assert name in one_line_error(chargeback("redrive", "--dry-run", env=env))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot be read"),
        ("{not json", "not valid JSON"),
        ('{"ChargebackStorage": "x"}', "has no Values object"),
        ('{"IsEncrypted": true, "Values": {}}', "is encrypted"),
        ('{"Values": {"CHARGEBACK_FINAL_GRACE_DAYS": 5}}', "must be a string"),
    ],
)
def test_a_settings_file_that_cannot_be_used_is_named_in_one_line(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "local.settings.json"
    if content is not None:
        path.write_text(content)
    line = one_line_error(chargeback("redrive", "--settings", str(path), env=clean_env()))
    assert str(path) in line
    assert reason in line


# Against storage ----------------------------------------------------------------------------


def dead_letters() -> TableDeadLetterStore:
    services = runtime.services()
    names = services.settings.storage
    return TableDeadLetterStore(
        services.storage.table(names.dead_letter_table), services.storage.container(names.dead_letter_container)
    )


def waiting(subscription: str) -> DeadLetter:
    body = orjson.dumps({"SubscriptionId": subscription, "TotalTokens": "5"})
    return DeadLetter("aoai-usage", "0", 1, datetime(2026, 11, 27, tzinfo=UTC), body, "missing_tokens", "older")


def examined(output: str) -> int:
    return int(re.search(r"^examined: (\d+)$", output, re.MULTILINE).group(1))  # type: ignore[union-attr]


@pytest.mark.azurite
def test_replaying_from_a_container_that_does_not_exist_names_it_in_one_line(app_settings: dict[str, str]) -> None:
    env = clean_env(**app_settings)
    line = one_line_error(chargeback("replay", "--capture", "no-such-capture/ns/hub", env=env))
    assert line.startswith("python -m chargeback replay: --capture names the container no-such-capture")


@pytest.mark.azurite
def test_storage_refusing_the_sign_in_names_the_roles_the_command_needs(
    app_settings: dict[str, str], azurite: Azurite
) -> None:
    wrong_key = azurite.connection_string.replace(azurite.connection_string.split("AccountKey=")[1][:8], "AAAAAAAA")
    env = clean_env(**{**app_settings, "ChargebackStorage": wrong_key})
    line = one_line_error(chargeback("redrive", "--dry-run", env=env))
    assert "storage answered 403" in line
    assert f"(redrive needs {cli.ROLES['redrive']})" in line


@pytest.mark.azurite
def test_while_the_llm_logs_bill_every_call_replay_refuses_in_one_line(app_settings: dict[str, str]) -> None:
    env = clean_env(**{**app_settings, "CHARGEBACK_LLM_LOG_SCOPE": "all"})
    line = one_line_error(chargeback("replay", "--capture", "capture", env=env))
    assert "CHARGEBACK_LLM_LOG_SCOPE is all" in line
    assert "nothing was replayed" in line


@pytest.mark.azurite
def test_settings_are_read_from_the_values_of_a_local_settings_file(
    app_settings: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letters().put([waiting("from-file")])
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": app_settings}))
    for name in app_settings:
        monkeypatch.delenv(name)
    code = cli.main(["redrive", "--dry-run", "--settings", str(path)])
    assert (code, examined(capsys.readouterr().out)) == (0, 1)


@pytest.mark.azurite
def test_the_files_values_win_over_the_environments(
    app_settings: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letters().put([waiting("from-file")])
    path = tmp_path / "local.settings.json"
    path.write_text(
        json.dumps({"Values": {"CHARGEBACK_DEAD_LETTER_TABLE": app_settings["CHARGEBACK_DEAD_LETTER_TABLE"]}})
    )
    monkeypatch.setenv("CHARGEBACK_DEAD_LETTER_TABLE", "emptytable" + app_settings["CHARGEBACK_LEDGER_TABLE"][-10:])
    code = cli.main(["redrive", "--dry-run", "--settings", str(path)])
    assert (code, examined(capsys.readouterr().out)) == (0, 1)
