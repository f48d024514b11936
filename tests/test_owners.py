"""One owner for each concept, where a grep can tell: every RQ job is sent by
`tracing.platform.enqueue.queue_job_on_commit`, and the environment is read by the settings module
(and the programs that run before settings exist), by nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agentops", "tracing", "memory", "tools")
ENQUEUE_OWNER = ROOT / "tracing" / "platform" / "enqueue.py"
ENQUEUE_METHODS = {"enqueue", "enqueue_call", "enqueue_many", "enqueue_at", "enqueue_in"}
# Who may read os.environ: the settings module; the launcher, the embedded services and
# manage.py/asgi.py, which run before settings exist; the development model server, a program
# of its own run without Django; and the test tools.
ENVIRON_READERS = [
    ROOT / "agentops" / "settings.py",
    ROOT / "agentops" / "launcher.py",
    ROOT / "agentops" / "embedded.py",
    ROOT / "agentops" / "asgi.py",
    ROOT / "agentops" / "devmodel",
    ROOT / "agentops" / "testing",
    ROOT / "manage.py",
]


def production_files() -> list[Path]:
    files = [ROOT / "manage.py"]
    for package in PACKAGES:
        files += [p for p in sorted((ROOT / package).rglob("*.py")) if "migrations" not in p.parts]
    return files


def _is_self(node: ast.expr) -> bool:
    # A WebSocket consumer's own `self.enqueue(event)` is its send queue, not RQ.
    if isinstance(node, ast.Name):
        return node.id == "self"
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"
    )


def test_it_sends_every_job_through_the_one_enqueue_owner():
    wrong = []
    for path in production_files():
        if path == ENQUEUE_OWNER:
            continue
        source = path.read_text()
        for node in ast.walk(ast.parse(source, str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            name = node.func.attr
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if name in ENQUEUE_METHODS and not _is_self(node.func.value):
                wrong.append(
                    f"{where} calls .{name}(): use tracing.platform.enqueue.queue_job_on_commit"
                )
            # The owner waits for the commit itself; wrapping it again hides which it is.
            if name == "on_commit" and "enqueue" in (ast.get_source_segment(source, node) or ""):
                wrong.append(f"{where} enqueues inside on_commit: the owner already waits")
    assert wrong == []


def test_it_reads_the_environment_only_in_the_settings_module():
    wrong = []
    for path in production_files():
        if any(path == allowed or allowed in path.parents for allowed in ENVIRON_READERS):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            reads = (
                isinstance(node, ast.Attribute)
                and node.attr in {"environ", "getenv", "environb"}
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ) or (
                isinstance(node, ast.ImportFrom)
                and node.module == "os"
                and any(alias.name in {"environ", "getenv"} for alias in node.names)
            )
            if reads:
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: read django.conf.settings")
    assert wrong == []


BEARER_OWNER = ROOT / "agentops" / "auth.py"
# No doors: the development model server stands in for a provider and checks its own key;
# the tool clients read back the token they themselves sent to a tool (an OAuth refresh).
BEARER_EXEMPT = [
    ROOT / "agentops" / "devmodel",
    ROOT / "tools" / "http_executor.py",
    ROOT / "tools" / "mcp_client.py",
]


def _names_bearer(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.strip().lower().startswith("bearer")
    if isinstance(node, ast.JoinedStr):  # f"Bearer {key}"
        return any(_names_bearer(part) for part in node.values)
    return False


def test_it_reads_the_bearer_header_only_in_its_owner():
    """`Authorization: Bearer <key>` is read by agentops.auth.bearer_token alone; the doors
    (API, metrics, SSE, WebSocket, /v1/, /mcp/) call it. Saying "Bearer" (a challenge, a
    header sent to a provider) is fine; comparing with it is parsing."""
    wrong = []
    for path in production_files():
        if path == BEARER_OWNER or any(e == path or e in path.parents for e in BEARER_EXEMPT):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            compared = isinstance(node, ast.Compare) and any(
                _names_bearer(operand) for operand in [node.left, *node.comparators]
            )
            prefix = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"startswith", "removeprefix", "partition", "split"}
                and any(_names_bearer(arg) for arg in node.args)
            )
            if compared or prefix:
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: use auth.bearer_token")
    assert wrong == []


TEAM_OWNER = ROOT / "agentops" / "people" / "selectors.py"


def _on_teams(node: ast.expr) -> bool:
    """`Team.objects…`, or `get_object_or_404(Team, …)`."""
    while isinstance(node, ast.Call | ast.Attribute):
        node = node.func if isinstance(node, ast.Call) else node.value
    return isinstance(node, ast.Name) and node.id == "Team"


def test_it_reads_teams_by_slug_only_in_the_selectors():
    """A team named by its slug is read by agentops.people.selectors.team_get, and the teams to pick
    from by teams_all (slug order); nothing else queries Team by slug."""
    wrong = []
    for path in production_files():
        if path == TEAM_OWNER:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            by_slug = any(k.arg == "slug" for k in node.keywords)
            method = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            # All of them in slug order (a filtered report may sort as it likes).
            ordered = (
                method == "order_by"
                and ast.unparse(node.func.value) == "Team.objects"
                and any(isinstance(a, ast.Constant) and a.value == "slug" for a in node.args)
            )
            on_teams = isinstance(node.func, ast.Attribute) and _on_teams(node.func.value)
            fetched = (
                isinstance(node.func, ast.Name)
                and node.func.id == "get_object_or_404"
                and bool(node.args)
                and _on_teams(node.args[0])
            )
            if (on_teams and (by_slug or ordered)) or (fetched and by_slug):
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                wrong.append(f"{where}: use selectors.team_get / teams_all")
    assert wrong == []


# A try block that only parses (these calls, nothing else) may catch ValueError: that is how
# Python says "not a number" or "not a UUID", and the handler says so about its own input.
PARSERS = {
    *("int", "float", "str", "max", "min", "UUID", "ip_address", "ZoneInfo", "fromisoformat"),
    *("loads", "dumps", "json_parse", "encode", "decode", "strip", "get"),
    "parsedate_to_datetime",
}
# Other handlers of ValueError, each with why it is not a service's refusal being mapped.
VALUE_ERROR_ALLOWED = {
    ("agentops/experiments/scoring.py", "check_score"): "_json_in parses the answer as JSON",
    ("agentops/middleware.py", "process_view"): "rq's validate_job_id parses a job id",
    ("agentops/openai_compat/app.py", "post"): "/v1/'s own wire format (OpenAI's error shape)",
    ("tools/schemas.py", "_refs"): "resolving a JSON Schema $ref (the referencing library's)",
    ("tools/schemas.py", "schema_refusal"): "the same $ref resolution, said about the schema",
}
REFUSALS = {"ApplicationError", "Invalid", "Conflict", "Forbidden", "NotFound", "BadRequest"}
FORM_HELPER = ROOT / "tracing" / "platform" / "forms.py"


def _caught(handler: ast.ExceptHandler) -> set[str]:
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return {
        t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else ""
        for t in types
        if t is not None
    }


def _called(nodes: list[ast.stmt]) -> set[str]:
    return {
        c.func.id if isinstance(c.func, ast.Name) else getattr(c.func, "attr", "?")
        for node in nodes
        for c in ast.walk(node)
        if isinstance(c, ast.Call)
    }


def _try_blocks(tree: ast.AST) -> list[tuple[str, ast.Try]]:
    """Every try block with the name of the function it is in."""
    found: list[tuple[str, ast.Try]] = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.Try):
            found.append((function, node))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, "<module>")
    return found


def test_it_maps_a_service_refusal_in_one_place_only() -> None:
    """Services refuse with ApplicationError (its status and field on it); no caller catches
    ValueError or PermissionError to guess a status or a form error, pages place a refusal
    with tracing.platform.forms, and the API maps it in one handler for every router."""
    wrong = []
    for path in production_files():
        name = str(path.relative_to(ROOT))
        for function, block in _try_blocks(ast.parse(path.read_text(), name)):
            for handler in block.handlers:
                caught = _caught(handler) if handler.type is not None else set()
                where = f"{name}:{handler.lineno} ({function})"
                if "PermissionError" in caught:
                    wrong.append(f"{where} catches PermissionError: services raise Forbidden")
                parsing = _called(block.body) <= PARSERS
                allowed = parsing or (name, function) in VALUE_ERROR_ALLOWED
                if "ValueError" in caught and not allowed:
                    wrong.append(f"{where} catches ValueError around a service call")
                refusal = caught & (REFUSALS | {"ValidationError"}) and path != FORM_HELPER
                if refusal and "add_error" in _called(handler.body):
                    wrong.append(f"{where} maps a refusal by hand: use form_errors_from")
    assert wrong == []


def test_the_api_maps_application_error_in_exactly_one_handler() -> None:
    from ninja import NinjaAPI

    from agentops.api import api
    from tracing.platform.errors import ApplicationError

    apis = [
        str(path.relative_to(ROOT))
        for path in production_files()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "NinjaAPI"
    ]
    assert apis == ["agentops/api.py"], "one NinjaAPI: every router shares its handlers"
    assert isinstance(api, NinjaAPI)
    refusals = [
        exc
        for exc in api._exception_handlers
        if isinstance(exc, type) and issubclass(exc, ApplicationError)
    ]
    assert refusals == [ApplicationError]


ROLE_OWNER = ROOT / "agentops" / "auth.py"
# The Django admin's own user form edits `is_superuser` (its fields and filters name it).
ROLE_EXEMPT = {ROOT / "agentops" / "admin.py": "the Django admin's user form sets the flag"}
REFUSAL_TYPES = {"PermissionDenied", "PermissionError", "Forbidden", "HttpError"}
GROUP_READS = {"all", "filter", "exclude", "values", "values_list", "exists", "get", "first"}


def _asks_role(node: ast.expr) -> bool:
    return any(
        isinstance(c, ast.Call) and ast.unparse(c.func).split(".")[-1] in {"has_role", "user_role"}
        for c in ast.walk(node)
    )


def _raised(body: list[ast.stmt]) -> set[str]:
    names = set()
    for node in body:
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            names.add(ast.unparse(node.exc.func).split(".")[-1])
    return names


def role_checks_elsewhere(files: list[Path], root: Path = ROOT) -> list[str]:
    """Every role check written by hand outside agentops.auth: a 403 raised by hand, a role
    asked then refused (`if not has_role(...): raise ...`), the role groups or the superuser
    flag read, the API's old `require`."""
    wrong = []
    for path in files:
        if path == root / "agentops" / "auth.py" or path in ROLE_EXEMPT:
            continue
        name = str(path.relative_to(root))
        for node in ast.walk(ast.parse(path.read_text(), name)):
            where = f"{name}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                first = node.args[0] if node.args else None
                if (
                    func.endswith("HttpError")
                    and isinstance(first, ast.Constant)
                    and first.value == 403
                ):
                    wrong.append(f"{where}: HttpError(403): raise Forbidden / role_require")
                if func == "require":
                    wrong.append(f"{where}: require(): call auth.role_require")
                parts = func.split(".")
                if len(parts) >= 3 and parts[-2] == "groups" and parts[-1] in GROUP_READS:
                    wrong.append(f"{where}: reads role groups: ask auth (has_role, role_holders)")
                for keyword in node.keywords:
                    if keyword.arg and (
                        keyword.arg.startswith("groups__name") or keyword.arg == "is_superuser"
                    ):
                        wrong.append(f"{where}: {keyword.arg}=: filter with auth.role_holders")
            elif isinstance(node, ast.Attribute) and node.attr == "is_superuser":
                wrong.append(f"{where}: reads is_superuser: ask auth (has_role, user_role)")
            elif (
                isinstance(node, ast.If)
                and _asks_role(node.test)
                and _raised(node.body) & REFUSAL_TYPES
            ):
                wrong.append(f"{where}: a role asked, then refused: call auth.role_require")
    return sorted(set(wrong))


def test_it_checks_a_role_only_through_its_owner() -> None:
    """agentops.auth owns the role check: `has_role` asks, `role_require` refuses (Forbidden,
    a 403 from the API's handler and from the pages), `role_required` guards a page,
    `role_holders` filters people. Streams ask `has_role` and answer in their own wire format
    (a close code, an SSE error, /v1/'s error), so only refusals raised by hand count."""
    assert role_checks_elsewhere(production_files()) == []


def test_the_role_check_finds_a_check_written_by_hand(tmp_path: Path) -> None:
    (tmp_path / "agentops").mkdir()
    probe = tmp_path / "agentops" / "probe.py"
    probe.write_text(
        "def view(request):\n"
        "    if not has_role(request.user, 'admin'):\n"
        "        raise PermissionDenied('no')\n"
        "    if request.user.is_superuser:\n"
        "        raise HttpError(403, 'no')\n"
        "    request.user.groups.filter(name='admin').exists()\n"
        "    User.objects.filter(groups__name__in=['admin'])\n"
        "    require(request, 'viewer')\n"
    )
    assert role_checks_elsewhere([probe], tmp_path) == [
        "agentops/probe.py:2: a role asked, then refused: call auth.role_require",
        "agentops/probe.py:4: reads is_superuser: ask auth (has_role, user_role)",
        "agentops/probe.py:5: HttpError(403): raise Forbidden / role_require",
        "agentops/probe.py:6: reads role groups: ask auth (has_role, role_holders)",
        "agentops/probe.py:7: groups__name__in=: filter with auth.role_holders",
        "agentops/probe.py:8: require(): call auth.role_require",
    ]
