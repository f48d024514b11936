"""The house rules no import checker sees: lower apps know nothing of the apps above them
(not by import, not through the app registry, not by a lazy "app.Model" reference), the
production code never loads the test tools, and templates link by URL name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What each package may import of ours (besides itself). `agentops.auth` is the one import
# of the top app allowed below it: the views' role check.
ALLOWED = {
    "tracing": set(),
    "memory": {"tracing"},
    "tools": {"tracing"},
}
OURS = {"agentops", "tracing", "memory", "tools"}
VIEW_EXCEPTION = "agentops.auth"


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_it_keeps_lower_apps_from_importing_the_apps_above():
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in python_files(package):
            for line, module in imports(path):
                top = module.split(".")[0]
                if top not in OURS or top == package or top in allowed:
                    continue
                if module == VIEW_EXCEPTION and path.name == "views.py":
                    continue
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert wrong == []


def test_it_keeps_the_platform_floor_free_of_everything_above_it():
    wrong = []
    for path in sorted((ROOT / "tracing" / "platform").rglob("*.py")):
        for line, module in imports(path):
            if module.split(".")[0] in OURS and not module.startswith("tracing.platform"):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert wrong == []


# `apps.get_model("agentops", ...)`, `"agentops.Agent"` (a lazy relation or get_model
# argument) and the like: doors to an upper app's tables that no import shows.
HIDDEN_DOOR = re.compile(r"""get_model\(\s*["'](?P<app>\w+)["']|["'](?P<lazy>\w+)\.[A-Z]\w*["']""")


def test_it_keeps_lower_apps_from_reaching_upper_tables_by_name():
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in python_files(package):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                for match in HIDDEN_DOOR.finditer(line):
                    app = match.group("app") or match.group("lazy")
                    if app in OURS and app != package and app not in allowed:
                        wrong.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert wrong == []


def test_it_keeps_the_test_tools_off_the_production_path():
    wrong = []
    for package in ("agentops", "tracing", "memory", "tools"):
        for path in python_files(package):
            if path.is_relative_to(ROOT / "agentops" / "testing"):
                continue
            text = path.read_text()
            for needle in ("agentops.testing", "AGENTOPS_TESTING_TOOLS"):
                if needle in text:
                    wrong.append(f"{path.relative_to(ROOT)} mentions {needle}")
    assert wrong == []


# href="/runs/{{ id }}/" and the like: a path written by hand instead of {% url %}.
HAND_WRITTEN_PATH = re.compile(r"""\b(?:href|action|src|hx-(?:get|post|put|patch|delete))="/""")


def test_it_links_by_url_name_in_templates():
    wrong = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if HAND_WRITTEN_PATH.search(line):
                wrong.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert wrong == []


def test_it_gives_lower_models_no_relation_to_upper_tables():
    from django.apps import apps

    wrong = []
    for package, allowed in ALLOWED.items():
        for model in apps.get_app_config(package).get_models():
            for field in model._meta.get_fields(include_hidden=False):
                other = field.related_model
                if not isinstance(other, type):
                    continue
                app = other._meta.app_label
                if app in OURS and app != package and app not in allowed:
                    wrong.append(f"{model.__name__}.{field.name} -> {app}.{other.__name__}")
    assert wrong == []
