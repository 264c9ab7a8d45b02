"""Lightning: `DreamlakeLogger` records a `lightning.Trainer` run in a dreamlake Session.

    logger = DreamlakeLogger(name="run-1", workspace="mnist", local_path=".dreamlake")
    trainer = lightning.Trainer(max_epochs=10, logger=logger)
    trainer.fit(model, train_loader, val_loader)

The `lightning` package, or else `pytorch_lightning`. The Trainer calls
`log_hyperparams()` with the module's `save_hyperparameters()` at fit start,
`log_metrics(metrics, step)` with what `self.log()` gathered (and `epoch`, which it
adds) every `log_every_n_steps` and at each epoch's end, `save()` after each
`log_metrics`, and `finalize("success" | "failed" | "finished")` at the end of each
`fit`, `validate`, `test` or `predict`.
"""

from __future__ import annotations

import os
import sys
from argparse import Namespace
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._identity import outcome as outcome_of
from .._session import Session
from ._common import _number, _set_params, _write_metrics

if TYPE_CHECKING:
    from lightning.fabric.loggers.logger import rank_zero_experiment
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    from lightning.pytorch.loggers.logger import Logger
else:
    try:
        from lightning.fabric.loggers.logger import rank_zero_experiment
        from lightning.fabric.utilities.rank_zero import rank_zero_only
        from lightning.pytorch.loggers.logger import Logger
    except ImportError as exc:
        try:  # the older standalone packages
            from lightning_fabric.loggers.logger import rank_zero_experiment
            from lightning_fabric.utilities.rank_zero import rank_zero_only
            from pytorch_lightning.loggers.logger import Logger
        except ImportError:
            msg = (
                "dreamlake.integrations.lightning needs Lightning: pip install lightning "
                f"(importing it failed: {exc})"
            )
            raise ImportError(msg) from exc

__all__ = ["DreamlakeLogger"]

STATUSES = {"success": "completed", "failed": "failed"}  # Lightning's words; any other is interrupted


class DreamlakeLogger(Logger):
    """A Lightning `Logger` that records hyperparameters and metrics in a dreamlake Session.

    `DreamlakeLogger(name="run-1", workspace="mnist", local_path=...)` makes
    `Session(name, workspace, local_path, **session_kwargs)` now (bad arguments fail
    here), opens it at its first use and closes it at `finalize()`, recording the run's
    outcome: "success" as completed, "failed" as failed (with the exception's type;
    Ctrl-C as interrupted), anything else ("finished": SLURM's requeue) as interrupted.
    A later `trainer.test()` opens it again, appending. `DreamlakeLogger(session=session)`
    uses an open session of yours and never closes it (`finalize()` flushes it).

    - `name` is the workspace, `version` the session's name, `experiment` the Session.
    - `log_hyperparams(params)`: a dict or `argparse.Namespace`, as parameters, nested
      mappings as dotted keys, keys that are not str as their text.
    - `log_metrics(metrics, step)`: each numeric value (tensors by `.item()`) as a point
      `{"value", "step", "epoch"}` of the track of its name; the `epoch` Lightning adds
      is the points' epoch, not a track. Other values go to one `info` record.
    - `save()`: nothing to do: Lightning calls it after every `log_metrics`, and the writer
      writes within `write_interval` anyway; `finalize()` flushes and fsyncs.

    Only global rank zero writes (Lightning's `rank_zero_only`, as its own loggers).
    """

    def __init__(
        self,
        name: str | None = None,
        workspace: str | None = None,
        local_path: str | os.PathLike[str] | None = None,
        *,
        session: Session | None = None,
        **session_kwargs: Any,
    ) -> None:
        super().__init__()
        if session is not None:
            if not isinstance(session, Session):
                msg = f"session must be a dreamlake.Session, got {type(session).__name__}"
                raise TypeError(msg)
            named = (("name", name), ("workspace", workspace), ("local_path", local_path))
            given = [key for key, value in named if value is not None] + sorted(session_kwargs)
            if given:
                msg = (
                    f"DreamlakeLogger takes session= or the arguments of a new Session, not both "
                    f"(got session= and {', '.join(f'{key}=' for key in given)})"
                )
                raise TypeError(msg)
            self._arguments: dict[str, Any] | None = None
        else:
            if isinstance(name, Session):
                msg = "DreamlakeLogger takes an open session as session=, not as its first argument"
                raise TypeError(msg)
            missing = [key for key, value in (("name", name), ("workspace", workspace)) if value is None]
            if missing:
                msg = (
                    f"DreamlakeLogger needs session= (an open dreamlake.Session), or name= and "
                    f"workspace= for a new one: {' and '.join(missing)} not given"
                )
                raise TypeError(msg)
            self._arguments = {
                "name": name,
                "workspace": workspace,
                "local_path": local_path,
                **session_kwargs,
            }
            session = Session(**self._arguments)
            self._arguments["local_path"] = session.local_path  # a copy in another process: the same folder
        self._session: Session | None = session

    def __repr__(self) -> str:
        return f"DreamlakeLogger({self._session!r})"

    def __getstate__(self) -> dict[str, Any]:
        """A copy for another process (`ddp_spawn`): a session of ours is made anew there."""
        if self._arguments is None:
            msg = "a DreamlakeLogger given session= cannot go to another process: give name= and workspace="
            raise TypeError(msg)
        state = self.__dict__.copy()
        state["_session"] = None
        state["_arguments"] = {**self._arguments, "resume": "allow"}  # the run the parent began
        return state

    @property
    def name(self) -> str:
        """The workspace."""
        return self._get_session().workspace

    @property
    def version(self) -> str:
        """The session's name."""
        return self._get_session().name

    @property
    def save_dir(self) -> str:
        """The session's local_path: Lightning puts checkpoints in `{save_dir}/{name}/{version}`,
        the session folder."""
        return str(self._get_session().local_path)

    @property
    def log_dir(self) -> str:
        """The session folder (where a profiler's report or a CLI's config goes)."""
        return str(self._get_session().path)

    @property
    @rank_zero_experiment
    def experiment(self) -> Session:
        """The Session, open (Lightning's dummy experiment on other ranks)."""
        return self._ready()

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        if isinstance(params, Namespace):
            params = vars(params)
        if not isinstance(params, Mapping):
            msg = f"hyperparameters must be a dict or argparse.Namespace, got {type(params).__name__}"
            raise TypeError(msg)
        _set_params(self._ready(), params, "lightning")

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        metrics = dict(metrics)
        epoch = _number(metrics.get("epoch"))
        if epoch is not None:  # the points' epoch; one that is no number stays a value, recorded
            del metrics["epoch"]
        _write_metrics(self._ready(), metrics, step, epoch, "lightning log_metrics")

    def save(self) -> None:
        """Nothing: the points are written within `write_interval` without being asked, and
        an fsync after every `log_metrics` would cost the loop; `finalize()` makes them durable."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        session = self._session
        if session is None or not session.is_open:
            return
        if self._arguments is None:  # the caller's session: theirs to close
            session.flush()
            return
        outcome, error = STATUSES.get(status, "interrupted"), None
        if outcome == "failed":  # Lightning calls this while handling the exception
            raised = sys.exc_info()[1]
            if type(raised).__name__ == "SIGTERMException":  # Lightning's own, graceful SIGTERM
                outcome = "interrupted"
            elif raised is not None:
                outcome, error = outcome_of(type(raised))
        session._end(outcome, error)

    def _get_session(self) -> Session:
        if self._session is None:  # unpickled in another process
            assert self._arguments is not None
            self._session = Session(**self._arguments)
        return self._session

    def _ready(self) -> Session:
        """The session, open: one of ours is opened (again) here."""
        session = self._get_session()
        if not session.is_open:
            if self._arguments is None:
                msg = (
                    f"the session given to DreamlakeLogger, {session!r}, is not open: open it around "
                    "the training (`with session: trainer.fit(...)`)"
                )
                raise RuntimeError(msg)
            session.open()
        return session
