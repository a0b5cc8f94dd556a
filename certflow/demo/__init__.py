"""The demo: a seeded story of one realistic rollout, driven through the real evaluator.

``certflow simulate`` (``make demo``) runs :func:`run`, which distributes a new root to a simulated
fleet (10,000 devices by default), prints the timeline as it happens and ends with the
"view details" summary (:func:`format_summary`). The demo is an application on top of
the libraries, not part of them: randomness (``random.Random(seed)``) and the simulated
clock live here, and the rollout only ever sees commands and instants through
:func:`certflow.advance`, :func:`certflow.apply` and :func:`certflow.apply_all`, or
through a store.

How the simulation works
------------------------
Time moves in fixed steps (one hour by default) from a fixed, timezone-aware start.
At each step the host:

1. advances the rollout to the step's instant and prints what fell due (notices,
   checkpoints, the import);
2. delivers, in one :func:`certflow.apply_all` batch, every device report that arrived
   since the previous step and that the rollout would take (the engine says so: a
   preview of the report; a device cut off by the import re-enrols instead). A report
   is delivered at the first step at or after the instant it happened, as a server that
   ingests device reports periodically would; a report that arrives in the hour before
   a checkpoint is therefore seen after it;
3. performs the effects: each :class:`~certflow.PushRoot` schedules the pushed devices'
   answers, drawn from each device's behaviour profile;
4. acts as the administrator: reviews the summary every morning while the rollout is
   running, bulk-retries every few days when the retry's preview would push failed
   devices again, extends the rollout once when the day-6 notice comes and the summary
   offers it (saying what the extension moved, from the dates before and after), and
   restarts the server when the import asks for it.

Device profiles: most devices install within hours (log-normal delay); some are offline
for days and install when they come back; some fail with a realistic reason and
succeed on a later push with some probability; a few never answer; a few carry the
root already (device image). A few devices enrol or unenrol during the rollout. After
the import, devices that did not trust the root come back over the following week and
are re-enrolled (``Reenrolled``), except those that are gone for good.

Two hosts run the same story (:func:`run`): in memory (``store=None``: the pure
functions on a :class:`~certflow.Rollout` value), or through a
:class:`~certflow.store.SqliteStore` (``make demo``; or any store): every report batch, tick and
administrator's command is a transaction of the store, and every effect reaches the
simulation through the store's outbox (:func:`certflow.store.drain`), whose handlers
perform it: print the notice e-mail, push the root (schedule the devices' answers).
Both hosts print the same timeline for the same seed.

The package, by concern: ``_scenario`` (``Scenario``, ``SimulationResult``), ``_hosts``
(where the rollout lives: in memory or in a store), ``_pki`` (the certificate it rolls
out, made by a private root of its own), ``_answers`` (whether the rollout
would take a report), ``_simulation`` (the story and ``run``) and ``_text``
(``format_summary``).
"""

from certflow.demo._scenario import Scenario, SimulationResult
from certflow.demo._simulation import run
from certflow.demo._text import format_summary

__all__ = [
    "Scenario",
    "SimulationResult",
    "format_summary",
    "run",
]
