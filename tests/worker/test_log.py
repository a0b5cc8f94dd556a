"""The worker's log lines (certflow/worker/_log.py): JSON or text, secrets replaced."""

from __future__ import annotations

import io
import json

from certflow.worker import EventLog


def test_a_json_line_carries_the_event_and_its_fields() -> None:
    out = io.StringIO()
    log = EventLog("json", secrets=["k3y"], stream=out, name="test.json")
    log.event("delivery", effect="r:2:0", handler="webhook", outcome="failed",
              duration_ms=1.5, error="bad k3y", attempt=None)  # fmt: skip
    line = json.loads(out.getvalue())
    assert line["event"] == "delivery"
    assert line["level"] == "info"
    assert line["time"].endswith("Z")
    assert (line["effect"], line["handler"], line["outcome"]) == ("r:2:0", "webhook", "failed")
    assert line["duration_ms"] == 1.5
    assert line["error"] == "bad ***"
    assert "attempt" not in line


def test_a_text_line_quotes_what_has_spaces_and_hides_secrets() -> None:
    out = io.StringIO()
    log = EventLog("text", secrets=["k3y", ""], stream=out, name="test.text")
    log.event("delivery", effect="r:2:0", error="answered 500: k3y wrong")
    line = out.getvalue().strip()
    assert line.endswith('info    delivery effect=r:2:0 error="answered 500: *** wrong"')
    assert log.redact("k3yk3y") == "******"
