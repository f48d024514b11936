"""The README is a front door and docs/ holds the reference: every setting the code reads, every
make target, management command and benchmark is documented where the README sends readers,
and every link between the documents leads somewhere."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250
ENV_HELPERS = {"envbool", "envint", "envfloat", "envlist", "envurl"}
# The settings module reads the environment; the launcher and the development model server,
# which run before or without Django settings, read a few variables of their own.
ENV_READING_FILES = [
    ROOT / "agentops" / "settings.py",
    ROOT / "agentops" / "launcher.py",
    ROOT / "agentops" / "devmodel" / "server.py",
]


def documents() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def environment_names_read(path: Path) -> set[str]:
    """Names read through the settings helpers or `os.environ.get(...)` / `os.environ[...]`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        key: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            helper = isinstance(func, ast.Name) and func.id in ENV_HELPERS
            environ_get = (
                isinstance(func, ast.Attribute)
                and func.attr == "get"
                and isinstance(func.value, ast.Attribute)
                and func.value.attr == "environ"
            )
            if helper or environ_get:
                key = node.args[0]
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "environ"
        ):
            key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
    return names


def undocumented(names: set[str], text: str) -> list[str]:
    return sorted(name for name in names if f"`{name}`" not in text)


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for a Markdown file's headings (fenced code left out)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for line in re.sub(r"```.*?```", "", text, flags=re.S).splitlines():
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def broken_links(path: Path) -> list[str]:
    """Relative links of a document whose file or heading does not exist."""
    broken = []
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists() or (
            anchor
            and destination.suffix == ".md"
            and anchor not in heading_anchors(destination.read_text())
        ):
            broken.append(target)
    return broken


def test_readme_is_a_front_door() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the reference goes to docs/"


def test_every_environment_variable_is_in_the_configuration_document() -> None:
    names: set[str] = set()
    for path in ENV_READING_FILES:
        names |= environment_names_read(path)
    assert {"DATABASE_URL", "BREAKER_MIN_SESSIONS", "WORKER_PROCESSES"} <= names
    assert undocumented(names, (DOCS / "configuration.md").read_text()) == []


def test_every_make_target_is_in_the_operating_document() -> None:
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), flags=re.M)
    assert phony is not None
    targets = {f"make {target}" for target in phony.group(1).split()}
    assert "make run" in targets and "make test" in targets
    assert undocumented(targets, (DOCS / "operating.md").read_text()) == []


def test_every_management_command_is_in_the_operating_document() -> None:
    commands = {
        path.stem
        for path in ROOT.glob("*/**/management/commands/*.py")
        if not path.stem.startswith("_") and ".venv" not in path.parts
    }
    assert {"seed_demo", "reembed_memories", "widget_demo"} <= commands
    text = (DOCS / "operating.md").read_text()
    assert sorted(name for name in commands if f"manage.py {name}" not in text) == []


def test_every_benchmark_is_in_the_benchmarks_document() -> None:
    scripts = {
        f"bench/{p.name}" for p in (ROOT / "bench").glob("*.py") if not p.stem.startswith("_")
    }
    assert "bench/step_overhead.py" in scripts
    headings = {
        line.removeprefix("## ").strip("`")
        for line in (DOCS / "benchmarks.md").read_text().splitlines()
        if line.startswith("## `bench/")
    }
    assert sorted(scripts - headings) == []


def test_every_link_between_the_documents_resolves() -> None:
    assert {path: broken_links(path) for path in documents() if broken_links(path)} == {}


def test_the_checks_catch_what_is_missing(tmp_path: Path) -> None:
    assert undocumented({"SOME_SETTING", "DEBUG"}, "| `DEBUG` | `0` |") == ["SOME_SETTING"]
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [no heading](#nothing) [no file](missing.md)\n")
    assert broken_links(page) == ["#nothing", "missing.md"]
