"""Effects read as one line each (``str``), for logs and notebooks; ``repr`` stays exact."""

from __future__ import annotations

import certflow as cf
from tests.core.strategies import T0, day


def test_each_effect_reads_as_one_line_with_its_instant() -> None:
    lines = [
        str(cf.PushRoot(("a", "b", "c", "d"), 2, T0)),
        str(cf.PushRoot(("a",), 1, T0)),
        str(cf.Notify(1, day(7), False, day(6))),
        str(cf.Notify(3, day(21), True, day(20))),
        str(cf.ImportPostponed(1, day(14), day(7))),
        str(cf.ImportCertificate(False, day(7))),
        str(cf.ImportCertificate(True, day(21))),
        str(cf.RestartRequired(day(21))),
        str(cf.ReenrollmentRequired(("x", "y"), day(21))),
        str(cf.AcknowledgementTimedOut(("p", "q", "r"), day(2))),
    ]
    assert lines == [
        "2026-07-01 09:00 UTC  push the root (attempt 2) to 4 devices: a, b, c, ...",
        "2026-07-01 09:00 UTC  push the root (attempt 1) to 1 device: a",
        "2026-07-07 09:00 UTC  notice: checkpoint 1 on 2026-07-08 09:00 UTC (import if ready)",
        "2026-07-21 09:00 UTC  notice: checkpoint 3 on 2026-07-22 09:00 UTC "
        "(the deadline: import whatever the fleet's state)",
        "2026-07-08 09:00 UTC  checkpoint 1: import postponed to 2026-07-15 09:00 UTC",
        "2026-07-08 09:00 UTC  import of the new certificate",
        "2026-07-22 09:00 UTC  FORCED import (some devices are cut off) of the new certificate",
        "2026-07-22 09:00 UTC  restart required: the server must load the new certificate",
        "2026-07-22 09:00 UTC  re-enrolment required for 2 devices: x, y",
        "2026-07-03 09:00 UTC  no answer in time, now failed: 3 devices: p, q, r",
    ]
    assert repr(cf.RestartRequired(T0)).startswith("RestartRequired(due_at=datetime.datetime(")
