"""Fixtures of the worker's tests: the store's backends, the real SMTP and webhook
servers, an exec script, and configurations that use them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends import backend as backend  # the fixture: both backends, in turn
from tests.worker.servers import SmtpServer, WebhookServer

WEBHOOK_SECRET = "whk-7c1f9a-s3cret"


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "webhook-secret"
    path.write_text(WEBHOOK_SECRET + "\n")
    return path


@pytest.fixture
def sink_script(tmp_path: Path) -> Path:
    """An exec handler: appends its environment's effect id and kind, and the JSON it
    read, to sink.log beside it; exits 3 with an error when FAIL exists beside it."""
    script = tmp_path / "sink.py"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, os, pathlib, sys\n"
        "here = pathlib.Path(__file__).parent\n"
        "body = json.load(sys.stdin)\n"
        "if (here / 'FAIL').exists():\n"
        "    sys.stderr.write('mdm-push: cannot reach the MDM\\n' * 3)\n"
        "    sys.exit(3)\n"
        "line = [os.environ['CERTFLOW_EFFECT_ID'], os.environ['CERTFLOW_EFFECT_KIND'],\n"
        "        os.environ['CERTFLOW_ROLLOUT'], body]\n"
        "with open(here / 'sink.log', 'a') as out:\n"
        "    out.write(json.dumps(line) + '\\n')\n"
    )
    script.chmod(0o755)
    return script
