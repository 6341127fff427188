"""The README stays true: its settings table and its two commands match the project."""

from __future__ import annotations

import re

from chargeback.app import settings
from tests.support import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def setting_names() -> set[str]:
    return {
        value
        for name, value in vars(settings).items()
        if name.isupper() and isinstance(value, str) and name != "DEFAULTS" and not value.startswith(("0 ", "config/"))
    }


def settings_table() -> str:
    return README.split("## Settings", 1)[1].split("\n## ", 1)[0]


def test_the_settings_table_names_every_setting_the_code_reads() -> None:
    table = settings_table()
    missing = sorted(name for name in setting_names() if f"`{name}`" not in table)
    assert missing == []


def test_the_settings_table_gives_each_default_the_code_uses() -> None:
    table = settings_table()
    for name, default in settings.DEFAULTS.items():
        row = next(line for line in table.splitlines() if f"`{name}`" in line)
        assert f"`{default}`" in row or default in row, (name, default)


def test_the_readme_gives_exactly_the_two_newcomer_commands_and_the_makefile_has_them() -> None:
    section = README.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    rows = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    assert re.findall(r"`(make \w+)`", rows) == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.MULTILINE)
    assert re.search(r"^test:", makefile, re.MULTILINE)
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def layout_block() -> str:
    section = README.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def test_the_layout_names_every_subpackage_of_the_app() -> None:
    named = set(re.findall(r"^  (\w+)/", layout_block(), re.MULTILINE))
    packages = {path.parent.name for path in (ROOT / "chargeback").glob("*/__init__.py")}
    assert named == packages


def test_every_top_level_entry_the_layout_names_exists() -> None:
    named = re.findall(r"^([\w.]+/?)\s", layout_block(), re.MULTILINE)
    assert named
    assert [name for name in named if not (ROOT / name.rstrip("/")).exists()] == []
