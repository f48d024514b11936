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
    # Knowledge embeds through memory's embedders (one owner) and knows nothing above.
    "knowledge": {"tracing", "memory"},
}
OURS = {"agentops", "tracing", "memory", "tools", "knowledge"}
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


def all_imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """Every module `path` imports, at the top or inside a function, relative imports
    resolved; `from a import b` counts as `a.b` too (b may be a module)."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


# The house's layers (docs/architecture.md, "The house as it should stand"): what these
# modules must never import, not even inside a function.
RUNTIME = [
    "agentops/runtime/loop.py",
    "agentops/runtime/services.py",
    "agentops/runtime/checkpoint.py",
    "agentops/runtime/tooling.py",
    "agentops/jobs.py",
    "agentops/cron.py",
]
CORE = [
    "agentops/models.py",
    "agentops/selectors.py",
    "agentops/auth.py",
    "agentops/events.py",
    "agentops/agents/services.py",
    "agentops/agents/selectors.py",
    "agentops/hooks.py",
    "agentops/health.py",
    # People (users, teams, invitations) belong to the core: a team's change is announced.
    *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "agentops" / "people").rglob("*.py"))),
]
INBOX = "agentops.operators"
WEBHOOKS = "agentops.webhooks"
EXPERIMENTS = "agentops.experiments"
FORBIDDEN = {
    **{path: (INBOX, WEBHOOKS, EXPERIMENTS) for path in RUNTIME},
    **{
        path: (
            "agentops.runtime",
            "agentops.jobs",
            "agentops.cron",
            "agentops.worker",
            INBOX,
            WEBHOOKS,
            EXPERIMENTS,
        )
        for path in CORE
    },
    **{str(p.relative_to(ROOT)): (WEBHOOKS,) for p in python_files("agentops/operators")},
}


def forbidden_imports(rules: dict[str, tuple[str, ...]], root: Path = ROOT) -> list[str]:
    wrong = []
    for name, forbidden in rules.items():
        path = root / name
        for line, module in all_imports(path, root):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                wrong.append(f"{name}:{line} imports {module}")
    return sorted(set(wrong))


def test_the_runtime_and_the_core_import_nothing_of_the_features_above_them():
    """The runtime announces (a run ended, a handoff opened, the user wrote) and the inbox,
    the webhooks and the experiments react (agentops.hooks); the core knows neither them nor
    the runtime; the inbox knows no webhooks."""
    for name in FORBIDDEN:
        assert (ROOT / name).is_file(), name
    assert forbidden_imports(FORBIDDEN) == []


def test_the_layer_check_sees_an_import_inside_a_function(tmp_path):
    """The check reads imports inside functions and relative ones too (it can fail)."""
    (tmp_path / "agentops" / "runtime").mkdir(parents=True)
    (tmp_path / "agentops" / "runtime" / "probe.py").write_text(
        "def f():\n    from agentops.operators.assignment.services import handoff_assign\n"
        "def g():\n    from ..webhooks import services\n"
    )
    rules = {"agentops/runtime/probe.py": (INBOX, WEBHOOKS)}
    assert forbidden_imports(rules, tmp_path) == [
        "agentops/runtime/probe.py:2 imports agentops.operators.assignment.services",
        "agentops/runtime/probe.py:2 imports agentops.operators.assignment.services.handoff_assign",
        "agentops/runtime/probe.py:4 imports agentops.webhooks",
        "agentops/runtime/probe.py:4 imports agentops.webhooks.services",
    ]


# The inbox's features with services of their own (agentops/operators/<feature>/services.py).
INBOX_FEATURES = (
    "assignment",
    "canned",
    "labels",
    "presence",
    "queue",
    "ratings",
    "takeover",
    "work",
)


def service_modules() -> dict[str, Path]:
    found = {}
    for package in ("agentops", "tracing", "memory", "tools"):
        for path in python_files(package):
            if path.name == "services.py":
                found[".".join(path.relative_to(ROOT).with_suffix("").parts)] = path
    return found


def service_import_cycle(modules: dict[str, Path], root: Path = ROOT) -> list[str]:
    """A circle of service modules importing one another (any import, in a function too),
    as the list of modules around it; [] when there is none."""
    graph = {
        name: sorted(
            {
                target
                for _, module in all_imports(path, root)
                for target in modules
                if target != name and (module == target or module.startswith(target + "."))
            }
        )
        for name, path in modules.items()
    }
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> list[str]:
        if name in trail:
            return [*trail[trail.index(name) :], name]
        if name in done:
            return []
        for target in graph[name]:
            cycle = visit(target, [*trail, name])
            if cycle:
                return cycle
        done.add(name)
        return []

    for name in sorted(graph):
        cycle = visit(name, [])
        if cycle:
            return cycle
    return []


def test_no_service_modules_import_each_other_in_a_circle():
    modules = service_modules()
    inbox = {name for name in modules if name.startswith("agentops.operators.")}
    assert inbox == {f"agentops.operators.{feature}.services" for feature in INBOX_FEATURES}
    assert "agentops.runtime.services" in modules
    assert service_import_cycle(modules) == []


def test_the_cycle_check_finds_a_circle(tmp_path):
    """Three service modules around a circle, one link inside a function (it can fail)."""
    for name, text in {
        "a": "from pkg.b.services import f\n",
        "b": "def f():\n    from pkg.c import services\n",
        "c": "from pkg.a.services import g\n",
    }.items():
        (tmp_path / "pkg" / name).mkdir(parents=True)
        (tmp_path / "pkg" / name / "services.py").write_text(text)
    modules = {f"pkg.{n}.services": tmp_path / "pkg" / n / "services.py" for n in "abc"}
    assert service_import_cycle(modules, tmp_path) == [
        "pkg.a.services",
        "pkg.b.services",
        "pkg.c.services",
        "pkg.a.services",
    ]


def test_each_feature_app_loads_its_own_models():
    """One rule for where a feature's models live: in its package, loaded by its own app
    (INSTALLED_APPS), with the tables its migrations made (app_label "agentops"); no model
    module imports another's at the bottom."""
    from django.apps import apps
    from django.conf import settings

    for feature, model in (("agentops.operators", "Label"), ("agentops.webhooks", "WebhookEvent")):
        assert feature in settings.INSTALLED_APPS
        config = apps.get_containing_app_config(f"{feature}.models")
        assert config is not None and config.name == feature
        assert apps.get_model("agentops", model).__module__ == f"{feature}.models"
    assert [
        module
        for _, module in all_imports(ROOT / "agentops" / "models.py")
        if module.startswith("agentops.") and ".models" in module
    ] == []
