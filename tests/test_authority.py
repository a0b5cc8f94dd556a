"""One authority: outside the core, no code works a rule of the rollout out again.

The core (``certflow/core``) decides which devices an import cuts off, whether a state
is running, what a state lets a device report and what an extension moves; every other
module asks it (:func:`certflow.preview`, ``Evaluator.allows``/``refusal``, the
overview, the declared flags ``RolloutState.running``/``terminal``,
``DeviceState.in_scope``/``trusts`` and the declared waits). This test reads every
module of the package outside the core, and the examples, and refuses the shapes a
copied rule takes:

* **state decisions**: a specific member of ``DeviceState`` or ``RolloutState``
  (``DeviceState.PUSHED``, ``RolloutState.EXTENDED.value``, or a state's value as a
  string literal compared with a ``.state``/``.value``) in a comparison or membership
  test (``is``, ``==``, ``in`` ...), a ``match`` case, or the condition of an ``if``,
  ``while``, conditional expression or comprehension, directly or through a name
  assigned from it (``failed = counts[DeviceState.FAILED]`` then ``if failed:``).
  Naming a member elsewhere is reading, not deciding: a count per state in a line of
  text, a chart's colour per state, a state passed to a query;
* **timeline arithmetic**: a span of the policy (``checkpoints``, ``notice_before``,
  ``manual_extension``, ``manual_extension_opens``, the policy's ``deadline``) added to
  or subtracted from anything: the instants are :mod:`certflow.core.timeline`'s, and what
  an extension moves is the preview's;
* **guard copies**: ``.retry_allowed`` (the ``kind_allows_retry`` guard's own fact): ask
  ``Evaluator.allows``/``refusal`` or the preview whether a retry would be taken.

The allowlist is for uses the test cannot tell from a decision; each entry names its
function and says why, and an entry that no longer matches anything fails the test.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from certflow.core.plan import DeviceState, RolloutState

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "certflow"

_ENUMS = {"DeviceState", "RolloutState"}
_STATE_VALUES = {s.value for s in (*DeviceState, *RolloutState)}
# The policy's spans that place the timeline's instants (what an extension moves).
_TIMELINE_SPANS = {"checkpoints", "notice_before", "manual_extension", "manual_extension_opens"}
_POLICY_SPANS = _TIMELINE_SPANS | {"deadline"}  # Policy.deadline: only as `policy.deadline`
_GUARD_COPIES = {"retry_allowed"}

# (package folder, function name, rule) -> why the use is allowed. The function is named
# without its module or class, so that an entry survives a module split. Empty: the store
# reads the declared wait (rules.device.awaiting) where it once named `pushed`.
ALLOWED: dict[tuple[str, str, str], str] = {}


def _scanned() -> list[Path]:
    core = PACKAGE / "core"
    files = [p for p in PACKAGE.rglob("*.py") if core not in p.parents]
    files += (ROOT / "examples").rglob("*.py")
    return sorted(files)


class _Scanner(ast.NodeVisitor):
    """Finds the forbidden shapes in one module: (line, function, rule, source)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tree = ast.parse(source)
        self.enums = set(_ENUMS)
        for node in ast.walk(self.tree):  # `from certflow... import DeviceState as DS`
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("certflow"):
                self.enums |= {a.asname for a in node.names if a.name in _ENUMS and a.asname}
        self.found: list[tuple[int, str, str, str]] = []
        self.scope: list[str] = []
        self.tainted: list[set[str]] = [self._taint(self.tree.body, set())]

    # --- what an expression names ---------------------------------------------------------

    def member(self, node: ast.AST) -> bool:
        """Whether ``node`` is a specific state: ``DeviceState.X``, ``cf.RolloutState.X``,
        with or without ``.value``."""
        if isinstance(node, ast.Attribute) and node.attr == "value":
            node = node.value
        if not (isinstance(node, ast.Attribute) and node.attr.isupper()):
            return False
        owner = node.value
        name = (
            owner.id
            if isinstance(owner, ast.Name)
            else owner.attr
            if isinstance(owner, ast.Attribute)
            else None
        )
        return name in self.enums

    def names_state(self, node: ast.AST, tainted: set[str]) -> bool:
        return any(
            self.member(sub) or (isinstance(sub, ast.Name) and sub.id in tainted)
            for sub in ast.walk(node)
        )

    def _taint(self, body: list[ast.stmt], inherited: set[str]) -> set[str]:
        """Names assigned, in this scope, from an expression naming a specific state."""
        tainted = set(inherited)
        assignments = [
            node
            for statement in body
            for node in _walk_scope(statement)
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.NamedExpr)
        ]
        while True:
            before = len(tainted)
            for node in assignments:
                if node.value is not None and self.names_state(node.value, tainted):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    tainted |= {name for target in targets for name in _bound(target)}
            if len(tainted) == before:
                return tainted

    # --- the rules ------------------------------------------------------------------------

    def report(self, node: ast.AST, rule: str) -> None:
        where = ".".join(self.scope) or "<module>"
        segment = ast.get_source_segment(self.source, node) or ""
        self.found.append((getattr(node, "lineno", 0), where, rule, " ".join(segment.split())))

    def decide(self, test: ast.AST) -> None:
        # A comparison inside the test that decides on a state is reported as such.
        compared = any(
            isinstance(sub, ast.Compare) and self.compares_states(sub) for sub in ast.walk(test)
        )
        if not compared and self.names_state(test, self.tainted[-1]):
            self.report(test, "state decision")

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        if isinstance(node, ast.ClassDef):
            self.generic_visit(node)
        else:
            self.tainted.append(self._taint(node.body, self.tainted[-1]))
            self.generic_visit(node)
            self.tainted.pop()
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _function

    def compares_states(self, node: ast.Compare) -> bool:
        operands = [node.left, *node.comparators]
        literal = any(_state_literal(o) for o in operands) and any(
            _reads_a_state(o) for o in operands
        )
        return literal or self.names_state(node, self.tainted[-1])

    def visit_Compare(self, node: ast.Compare) -> None:
        if self.compares_states(node):
            self.report(node, "state decision")
        else:
            self.generic_visit(node)

    def visit_If(self, node: ast.If | ast.While | ast.IfExp) -> None:
        self.decide(node.test)
        self.generic_visit(node)

    visit_While = visit_IfExp = visit_If

    def visit_comprehension(self, node: ast.comprehension) -> None:
        for test in node.ifs:
            self.decide(test)
        self.generic_visit(node)

    def visit_MatchValue(self, node: ast.MatchValue) -> None:
        if self.member(node.value) or _state_literal(node.value):
            self.report(node, "state decision")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Add | ast.Sub) and (
            _policy_span(node.left) or _policy_span(node.right)
        ):
            self.report(node, "timeline arithmetic")
        else:
            self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.op, ast.Add | ast.Sub) and _policy_span(node.value):
            self.report(node, "timeline arithmetic")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in _GUARD_COPIES:
            self.report(node, "guard copy")
        self.generic_visit(node)


def _walk_scope(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk`` that does not enter nested functions or classes (their own scopes)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield from _walk_scope(child)


def _bound(target: ast.AST) -> Iterator[str]:
    """The names an assignment binds (``a``, ``a, b``), not the objects it writes into
    (``self.x``, ``d[k]``)."""
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List | ast.Starred):
        for element in target.elts if not isinstance(target, ast.Starred) else [target.value]:
            yield from _bound(element)


def _state_literal(node: ast.AST) -> bool:
    """A state's value as a string, or a tuple/list/set of them."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_state_literal(e) for e in node.elts)
    return isinstance(node, ast.Constant) and node.value in _STATE_VALUES


def _reads_a_state(node: ast.AST) -> bool:
    """``x.state``, ``x.value``, ``x.state()``, ``x.device_state(d)``."""
    if isinstance(node, ast.Call):
        node = node.func
    return isinstance(node, ast.Attribute) and node.attr in {"state", "value", "device_state"}


def _policy_span(node: ast.AST) -> bool:
    """Whether ``node`` reads one of the policy's timeline spans (``policy.checkpoints[1]``,
    ``plan.policy.manual_extension``, ``policy.deadline``)."""
    for sub in ast.walk(node):
        if not isinstance(sub, ast.Attribute):
            continue
        owner = sub.value
        of_policy = (isinstance(owner, ast.Name) and owner.id == "policy") or (
            isinstance(owner, ast.Attribute) and owner.attr == "policy"
        )
        if sub.attr in _TIMELINE_SPANS - {"checkpoints"} or (
            sub.attr in _POLICY_SPANS and of_policy
        ):
            return True
    return False


def scan(source: str) -> list[tuple[int, str, str, str]]:
    """Every forbidden shape in ``source``: (line, function, rule, the code)."""
    scanner = _Scanner(source)
    scanner.visit(scanner.tree)
    return scanner.found


def _offences() -> Iterator[tuple[str, int, str, str, str]]:
    for path in _scanned():
        relative = path.relative_to(ROOT).as_posix()
        for line, function, rule, code in scan(path.read_text(encoding="utf-8")):
            yield relative, line, function, rule, code


def _entry(path: str, function: str, rule: str) -> tuple[str, str, str]:
    return path.rpartition("/")[0], function.rpartition(".")[2], rule


def test_no_module_outside_the_core_works_a_rule_out_again() -> None:
    offences = [
        f"{path}:{line} in {function}: {rule}: {code}"
        for path, line, function, rule, code in _offences()
        if _entry(path, function, rule) not in ALLOWED
    ]
    assert offences == []


def test_every_allowlist_entry_still_matches_a_use() -> None:
    used = {_entry(path, function, rule) for path, _, function, rule, _ in _offences()}
    assert set(ALLOWED) - used == set()


# --- the rules themselves: each shape a copied rule takes is caught ---------------------------

CAUGHT = [
    "running = host.state() in (RolloutState.DISTRIBUTING, RolloutState.EXTENDED)",
    "if rollout.state not in (cf.RolloutState.DISTRIBUTING, cf.RolloutState.EXTENDED): pass",
    "stop = state is DeviceState.REMOVED",
    "skip = target != DeviceState.PUSHED.value",
    "cut = record.state.value == 'reenroll_required'",
    "stopped = host.state() in ('cancelled', 'forced')",
    "from certflow import DeviceState as DS\nx = s is DS.FAILED",
    "if summary.counts[DeviceState.FAILED]: retry()",
    "def f(summary):\n    failed = summary.counts[DeviceState.FAILED]\n    if failed > 0:\n"
    "        retry()",
    "waiting = [d for d in ids if counts[DeviceState.PUSHED]]",
    "shown = 'yes' if counts[RolloutState.FORCED] else 'no'",
    "match state:\n    case RolloutState.CANCELLED:\n        pass",
    "at += plan.policy.manual_extension",
    "deadline = t0 + policy.checkpoints[-1]",
    "opens = started + rollout.plan.policy.manual_extension_opens",
    "end = t0 + policy.deadline",
    "notice = checkpoint - notice_before_of.notice_before",
    "ok = rollout.plan.kind.retry_allowed",
]

NOT_CAUGHT = [
    # Reading a count per state for words or charts decides nothing.
    "line = f'{counts[DeviceState.INSTALLED]:,} trust the root'",
    "LAYERS = ((DeviceState.INSTALLED, '#4c9a2a'), (DeviceState.PUSHED, '#f2c14e'))",
    "for state, colour in LAYERS:\n    draw(counts.get(state, 0), colour)",
    "records = summary.devices(state=DeviceState.FAILED)",
    # The declared flags and the engine's answers are the way to ask.
    "if rollout.state.running and record.state.trusts: pass",
    "if preview(rollout, RetryAllFailed(), now).accepted: pass",
    # Instants the engine gave, compared or subtracted.
    "moved = after.deadline - before.deadline",
    "if chance.at > now: pass",
    "for chance in branch.checkpoints: print(chance)",
    "n = len(plan.policy.checkpoints)",
    # A word that happens to be a state's value, compared with something else.
    "if outcome == 'installed': pass",
]


@pytest.mark.parametrize("source", CAUGHT)
def test_the_rules_catch_a_copied_rule(source: str) -> None:
    assert scan(source), source


@pytest.mark.parametrize("source", NOT_CAUGHT)
def test_the_rules_let_reading_through(source: str) -> None:
    assert scan(source) == []
