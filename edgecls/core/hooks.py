"""`Hooks`: the one way every stage reports as it goes. Each stage function (`train`, `export`, `verify`,
`verify_platform`, `bench`, `pipeline.run`, `tune`) takes ``hooks=`` of this type and calls the methods of
its own stage; `pipeline.run` passes its one object through to every stage it runs. Every method is a
no-op here: a caller overrides the ones it wants (the CLI draws progress; a test records or interrupts —
raising `KeyboardInterrupt` from a hook is how Ctrl-C is simulated).

Sits in `core` (the bottom floor) so that every stage can import it; it imports nothing of edgecls, and
names the stages' result types in its docs only."""

from __future__ import annotations

from typing import Any


class Hooks:
    """What the stages report as they go, grouped by the stage that calls each method. No-ops here."""

    # -- any stage: a line worth showing as it happens (verify_platform's start line, tune's notes)
    def note(self, text: str) -> None:
        """A line for the user, as it happens."""

    # -- train (`edgecls.train.fit.train`)
    def start(self, info: dict) -> None:
        """What is about to be trained: dataset, split sizes, parameters, the plan, the architecture."""

    def epoch_start(self, epoch: int, steps: int) -> None:
        """Epoch `epoch` (1-based) of `steps` optimiser steps begins."""

    def batch(self, step: int) -> None:
        """Step `step` (1-based) of the current epoch is done."""

    def epoch_end(self, log: Any) -> None:
        """An epoch is done: `log` is its `edgecls.train.fitting.EpochLog` (losses, accuracies, seconds)."""

    def evaluating(self) -> None:
        """Fitting is over; the held-out evaluation and the bundle's writing begin."""

    # -- export (`edgecls.export.export`)
    def artifact(self, entry: dict | None, failure: dict | None) -> None:
        """One format x precision is done: its manifest `entry` (written), or its `failure` record."""

    # -- verify (`edgecls.verify.parity.verify`)
    def outputs(self, row: Any, probabilities: Any) -> None:
        """A file's `ParityRow` (judged, not yet finished) and its probabilities on the judging images."""

    def row(self, row: Any) -> None:
        """A file x runtime is judged: its finished `ParityRow`."""

    # -- bench (`edgecls.bench.measure.bench`)
    def measured(self, row: dict) -> None:
        """One measurement: a configuration's row (with ``round``/``rounds`` when measured in rounds)."""

    # -- pipeline (`edgecls.pipeline.run`)
    def stage(self, name: str, result: Any) -> None:
        """A stage is done: `name` ("train" or "import", "export", "verify", "bench", "report") and its result."""

    # -- tune (`edgecls.tune.search.tune`)
    def candidate(self, rung: str, name: str, done: int, left: int, line: str) -> None:
        """A candidate is done on `rung` ("screen", "short", "full"): `done` so far, `left` to go, what it gave."""

    def front(self, points: list) -> None:
        """The Pareto front (`edgecls.tune.select.Point`s) after the full rung."""
