"""The documentation's Python examples run and say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = DOCS.parent / "README.md"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("page", ["rollouts.md"])
def test_the_python_examples_of_each_guide_run(
    page: str, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = _python_blocks(DOCS / page)
    assert blocks, f"{page} has no python example"
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, f"docs/{page}", "exec"), namespace)
    assert "laptop-1 installed 1 None" in capsys.readouterr().out


def test_every_doc_page_is_linked_from_the_readme() -> None:
    readme = README.read_text()
    for page in sorted(DOCS.rglob("*.md")):
        assert str(page.relative_to(DOCS.parent)) in readme, f"README does not link {page.name}"


def test_the_spec_map_names_only_rows_guards_actions_timers_gates_and_tests_that_exist() -> None:
    import fnmatch

    import certflow as cf

    text = (DOCS / "spec-map.md").read_text()
    machines = cf.RULES.machines
    rows = {(r.source, r.trigger, r.dest) for m in machines for r in m.transitions}
    for source, trigger, dest in re.findall(r"`(\w+) --(\w+)--> (\w+)`", text):
        assert (source, trigger, dest) in rows, f"no row {source} --{trigger}--> {dest}"
    declared = {
        "guard": {g.name for m in machines for g in m.guards},
        "action": {a.name for m in machines for a in m.actions},
        "timer": {t.name for m in machines for t in m.timers},
    }
    named = 0
    for kind, names in re.findall(r"\b(guard|action|timer)s? ((?:`\w+`(?:, |,? and )?)+)", text):
        for name in re.findall(r"`(\w+)`", names):
            assert name in declared[kind], f"no {kind} {name!r}"
            named += 1
    assert named > 30
    gates = {
        (state.name, gate.trigger, gate.then)
        for state in cf.ROLLOUT_MACHINE.states
        for gate in state.gates
    }
    for state, trigger, then in re.findall(r"gate `(\w+): (\w+)(?: then (\w+))?`", text):
        assert (state, trigger, (then,) if then else ()) in gates, f"no gate {state}/{trigger}"
    tests_dir = DOCS.parent / "tests"
    for path, pattern in re.findall(r"`?((?:tests/core/)?test_\w+\.py)::(test_[\w*]+)", text):
        module = tests_dir / "core" / Path(path).name
        defined = re.findall(r"^def (test_\w+)", module.read_text(), flags=re.MULTILINE)
        assert fnmatch.filter(defined, pattern), f"{module.name} has no test {pattern}"
