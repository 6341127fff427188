"""docs/deploy.md names only files, parameters, settings and fragments that exist."""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.bicep_tree import (
    INFRA,
    bicep_files,
    extensions,
    identifiers,
    literal,
    params,
    properties,
    resources,
    root,
    strings,
    text,
    variables,
)
from tests.infra.setting_names import NOT_IN_AZURE, PLATFORM_VARIABLES, binding_setting_names, code_setting_names
from tests.support import ROOT

DOC = (ROOT / "docs" / "deploy.md").read_text()
MAIN = INFRA / "main.bicep"
SAMPLES = ROOT / "tests" / "fixtures" / "events"
SHAPES_TITLE = "Already on the GenAI gateway toolkit or the AI Hub Gateway"


def _section(title: str) -> str:
    start = DOC.index(f"\n## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end != -1 else None]


def _backticked(pattern: str, source: str = DOC) -> list[str]:
    return sorted({token for token in re.findall(r"`([^`\n]+)`", source) if re.fullmatch(pattern, token)})


def _sample_fields() -> set[str]:
    fields: set[str] = set()

    def collect(value: object) -> None:
        if isinstance(value, dict):
            fields.update(value)
            for inner in value.values():
                collect(inner)

    for sample in SAMPLES.glob("*.jsonl"):
        for line in sample.read_text().splitlines():
            if line.strip():
                collect(json.loads(line))
    return fields


def _placeholders() -> set[str]:
    document = json.loads((INFRA / "main.parameters.json").read_text())
    return {
        match
        for entry in document["parameters"].values()
        for match in re.findall(r"\$\{([A-Z_]+)", str(entry["value"]))
    }


def _outputs() -> set[str]:
    return {text(node.named_children[0]) for node in root(MAIN).named_children if node.type == "output_declaration"}


def _app_settings() -> set[str]:
    return set(properties(variables(INFRA / "app" / "api.bicep")["appSettings"]))


BICEP_NAMES = set().union(*(identifiers(path) | strings(path) for path in bicep_files()))
OUTSIDE_SHAPES = DOC.replace(_section(SHAPES_TITLE), "")
KNOWN_SETTINGS = (
    _outputs()
    | _placeholders()
    | _app_settings()
    | code_setting_names()
    | binding_setting_names()
    | set(NOT_IN_AZURE)
    | set(PLATFORM_VARIABLES)
)


@pytest.mark.parametrize("path", sorted(set(re.findall(r"\binfra/[\w./-]*\w/?", DOC))))
def test_every_infra_path_the_doc_names_exists(path: str) -> None:
    assert (ROOT / path).exists()


def test_the_doc_names_the_azd_project_file_that_exists() -> None:
    assert "`azure.yaml`" in DOC
    assert (ROOT / "azure.yaml").is_file()


def test_the_parameter_table_lists_exactly_the_parameters_of_main_bicep() -> None:
    rows = re.findall(r"^\| `(\w+)` \|", _section("Parameters"), re.MULTILINE)
    assert sorted(rows) == sorted(params(MAIN))


@pytest.mark.parametrize(
    ("parameter", "azd_value"),
    re.findall(r"^\| `(\w+)` \| `([A-Z_]+)` \|", _section("Parameters"), re.MULTILINE),
)
def test_the_azd_values_in_the_parameter_table_are_the_ones_the_parameter_file_maps(
    parameter: str, azd_value: str
) -> None:
    document = json.loads((INFRA / "main.parameters.json").read_text())
    assert str(document["parameters"][parameter]["value"]).startswith("${" + azd_value)


@pytest.mark.parametrize(
    ("parameter", "default"),
    re.findall(r"^\| `(\w+)` \| [^|]* \| `([^`]+)` \|", _section("Parameters"), re.MULTILINE),
)
def test_the_defaults_in_the_parameter_table_are_the_bicep_defaults(parameter: str, default: str) -> None:
    declared = params(MAIN)[parameter].default
    assert declared is not None
    assert (literal(declared) or text(declared)) == default


@pytest.mark.parametrize("name", _backticked(r"[a-z]+[A-Z][A-Za-z0-9]*", OUTSIDE_SHAPES))
def test_every_bicep_name_the_doc_mentions_exists_in_the_bicep(name: str) -> None:
    assert name in BICEP_NAMES


@pytest.mark.parametrize("name", _backticked(r"[A-Za-z]+[a-z][A-Z][A-Za-z]*|[A-Z][a-z]+", _section(SHAPES_TITLE)))
def test_every_event_field_the_shapes_section_cites_is_in_the_samples(name: str) -> None:
    assert name in _sample_fields() or name in params(MAIN)


@pytest.mark.parametrize("name", sorted(set(re.findall(r"(?m)(?<=[ `])([a-z][A-Za-z]+)=(?!\")", DOC))))
def test_every_parameter_the_doc_passes_on_the_command_line_exists(name: str) -> None:
    assert name in params(MAIN)


@pytest.mark.parametrize("name", sorted(set(re.findall(r"azd env set (\w+)", DOC))))
def test_every_azd_value_the_doc_sets_is_mapped_by_the_parameter_file(name: str) -> None:
    assert name in _placeholders()


@pytest.mark.parametrize("name", _backticked(r"[A-Z][A-Z0-9]*_[A-Z0-9_]+|[A-Za-z]+__[A-Za-z]+"))
def test_every_setting_or_output_the_doc_mentions_exists(name: str) -> None:
    assert name in KNOWN_SETTINGS


@pytest.mark.parametrize("name", _backticked(r"chargeback-[a-z-]+"))
def test_every_fragment_and_logger_the_doc_mentions_is_created_by_the_apim_module(name: str) -> None:
    apim = INFRA / "apim" / "apim.bicep"
    loggers = {literal(variables(apim)[name]) for name in ("loggerName", "insightsLoggerName")}
    created = {literal(r.props.get("name")) for r in resources(apim)} | loggers
    assert name in created


def test_the_doc_says_how_to_retry_when_captures_role_has_not_propagated() -> None:
    # Azure RBAC, "Troubleshoot Azure RBAC": a new role assignment can take minutes to apply, so
    # the first deployment with Capture may fail on the hub; the same deployment run again works.
    section = _section("Replaying usage")
    assert "infra/app/capture-access.bicep" in section
    assert "Run the same deployment again" in section
    assert "`azd provision`" in section
    assert "`az deployment sub create`" in section


@pytest.mark.parametrize(
    "title", ["Before you start", "Path 2: `az deployment sub create` and `func azure functionapp publish`"]
)
def test_the_doc_asks_for_the_bicep_the_graph_extension_needs(title: str) -> None:
    # The Microsoft Graph Bicep extension's 1.0.0 types need Bicep 0.36.1 or later; azd brings
    # its own Bicep, the Azure CLI path compiles with the CLI's (az bicep upgrade).
    assert "0.36.1 or later" in _section(title)


def test_the_non_azd_path_says_how_to_check_and_update_the_clis_bicep() -> None:
    section = _section("Path 2: `az deployment sub create` and `func azure functionapp publish`")
    assert "`az bicep version`" in section
    assert "`az bicep upgrade`" in section
    source = (INFRA / "app" / "entra-app.bicep").read_bytes()
    assert extensions(source) == ["br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0"]
