"""Hugging Face `transformers`: `DreamlakeCallback` records a `Trainer` run in a dreamlake Session.

    trainer = Trainer(model, args, train_dataset=train, eval_dataset=val,
                      callbacks=[DreamlakeCallback(name="run-1", workspace="glue")])
    trainer.train()

What the Trainer hands its callbacks, and what becomes of it:

- `on_train_begin`: the parameters, `args.to_dict()` under `args.` and the model's
  `model.config.to_dict()` under `model.`, nested mappings as dotted keys.
- `on_log(logs=...)`: a dict of floats. While training, every `logging_steps`:
  `loss`, `grad_norm`, `learning_rate`, `epoch`; once at the end: `train_runtime`,
  `train_samples_per_second`, `train_steps_per_second`, `total_flos`, `train_loss`,
  `epoch`; at each evaluation the metrics of `Trainer.evaluate()`, prefixed `eval_`
  (`eval_loss`, `eval_runtime`, `eval_samples_per_second`, `eval_steps_per_second`
  and what `compute_metrics` returns), with `epoch` added.
- `on_evaluate(metrics=...)`: right after that `on_log`, the same dict again.
- `on_predict(metrics=...)`: `Trainer.predict()`'s metrics, prefixed `test_`, never logged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .._encode import safe_str
from .._session import Session
from ._common import _set_params, _write_metrics

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as exc:
    msg = (
        "dreamlake.integrations.transformers needs Hugging Face transformers: pip install transformers "
        f"(importing it failed: {exc})"
    )
    raise ImportError(msg) from exc

__all__ = ["DreamlakeCallback"]

RENAMED = (("eval_", "eval/"), ("test_", "test/"))  # as the Trainer's own wandb callback names them
UNFINISHED = "TrainingNotFinished"
"""The error a run gets when its train() began and never ended (an exception caught by the
caller, a notebook cell): the exit records it failed, not completed."""


def _training(session: Session, going: bool) -> None:
    """Between on_train_begin and on_train_end, an exit ends the run as failed."""
    attempt = session._attempt
    if attempt is not None:
        attempt.failure = UNFINISHED if going else None


class DreamlakeCallback(TrainerCallback):
    """A `TrainerCallback` that records parameters and metrics in a dreamlake Session.

    `DreamlakeCallback(name="run-1", workspace="glue", local_path=...)` makes
    `Session(**session_kwargs)` now (a missing name or workspace is a TypeError here,
    not at train time), opens it at train begin and closes it at train end; an event
    after that (`trainer.evaluate()` after `trainer.train()`) opens it again, appending,
    and the interpreter's exit closes it. `DreamlakeCallback(session=session)` uses an
    open session of yours, and never closes it (it flushes it at train end).

    Recorded:

    - at train begin, `args.to_dict()` as parameters `args.*` and the model's config
      (`model.config.to_dict()`) as `model.*`, nested dicts as dotted keys. Keys that
      are not str (`id2label`'s 0, 1) are their text; a nested dict with a key that
      cannot be part of a name (empty, `"a."`) is stored whole as its text.
    - each numeric value (int or float, not bool) that `on_log` gets, as a point
      `{"value", "step": state.global_step, "epoch": state.epoch}` (no epoch while it is
      None) of the track of that name. Names are the Trainer's keys, except that the
      `eval_` and `test_` prefixes become `eval/` and `test/`, as in the Trainer's wandb
      callback: `loss`, `learning_rate`, `eval/loss`, `eval/accuracy`. The `epoch` key the
      Trainer adds to every log is the points' epoch, not a track.
    - non-numeric values (and those whose name cannot be a track's), in one `info`
      record `transformers log` with the step and epoch.
    - each evaluation's metrics once: the Trainer passes them to `on_log`, then the same
      dict to `on_evaluate`; `on_evaluate` records only what the `on_log` just before it,
      at the same step, did not (a Trainer subclass that skips `log()` still has them).
    - the metrics of `trainer.predict()` (`on_predict`; `test/loss`...), which no `on_log` has.

    Only the main process (`state.is_world_process_zero`) opens the session and writes;
    with `all_ranks=True`, every process does, into the same session.
    """

    def __init__(
        self, session: Session | None = None, *, all_ranks: bool = False, **session_kwargs: Any
    ) -> None:
        super().__init__()
        if session is not None:
            if not isinstance(session, Session):
                msg = (
                    f"session must be a dreamlake.Session, got {type(session).__name__} "
                    "(for a new session, give name= and workspace=)"
                )
                raise TypeError(msg)
            if session_kwargs:
                msg = (
                    f"DreamlakeCallback takes session= or the arguments of a new Session, not both "
                    f"(got session= and {', '.join(sorted(session_kwargs))}=)"
                )
                raise TypeError(msg)
            self._session, self._owned = session, False
        else:
            missing = [key for key in ("name", "workspace") if key not in session_kwargs]
            if missing:
                msg = (
                    f"DreamlakeCallback needs session= (an open dreamlake.Session), or name= and "
                    f"workspace= for a new one: {' and '.join(missing)} not given"
                )
                raise TypeError(msg)
            self._session, self._owned = Session(**session_kwargs), True
        self._all_ranks = bool(all_ranks)
        self._last_log: tuple[int, dict[str, Any]] | None = None  # on_evaluate's twin, at its step

    def __repr__(self) -> str:
        return f"DreamlakeCallback({self._session!r})"

    @property
    def session(self) -> Session:
        """The session the run is recorded in."""
        return self._session

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        if not self._writes(state):
            return
        session = self._ready()
        _training(session, True)
        arguments: Callable[[], dict[str, Any]] = args.to_dict  # not annotated in transformers
        params: dict[str, Any] = {"args": arguments()}
        to_dict = getattr(getattr(model, "config", None), "to_dict", None)
        if callable(to_dict):
            try:
                params["model"] = to_dict()
            except Exception as exc:  # noqa: BLE001 - a config that cannot be copied must not stop training
                session.log(
                    "transformers: the model's config could not be read; not stored as parameters",
                    level="warn",
                    metadata={"error": repr(exc)},
                )
        _set_params(session, params, "transformers")

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._writes(state):
            return
        self._last_log = None
        if logs:
            self._record(logs, state)
            self._last_log = (state.global_step, dict(logs))

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._writes(state):
            return
        last, self._last_log = self._last_log, None
        if not metrics:
            return
        if last is not None and last[0] == state.global_step:
            logged = last[1]
            metrics = {k: v for k, v in metrics.items() if not (k in logged and _same(logged[k], v))}
        if metrics:
            self._record(metrics, state)

    def on_predict(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if metrics and self._writes(state):
            self._record(metrics, state)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not self._writes(state) or not self._session.is_open:
            return
        _training(self._session, False)
        if self._owned:
            self._session.close()
        else:
            self._session.flush()

    def _writes(self, state: TrainerState) -> bool:
        return self._all_ranks or bool(state.is_world_process_zero)

    def _ready(self) -> Session:
        """The session, open: one of ours is opened (again) here."""
        if not self._session.is_open:
            if not self._owned:
                msg = (
                    f"the session given to DreamlakeCallback, {self._session!r}, is not open: open it "
                    "around the training (`with session: trainer.train()`)"
                )
                raise RuntimeError(msg)
            self._session.open()
        return self._session

    def _record(self, values: Mapping[str, Any], state: TrainerState) -> None:
        epoch = state.epoch
        named: dict[str, Any] = {}
        for key, value in values.items():
            if key == "epoch" and epoch is not None:
                continue  # the Trainer's copy of state.epoch: every point's epoch already
            named[track_name(key)] = value
        _write_metrics(self._ready(), named, state.global_step, epoch, "transformers log")


def track_name(key: object) -> str:
    """The track a Trainer log key goes to: `eval_loss` is `eval/loss`, `loss` stays `loss`."""
    name = key if isinstance(key, str) else safe_str(key)
    for prefix, renamed in RENAMED:
        if name.startswith(prefix):
            return renamed + name[len(prefix) :]
    return name


def _same(logged: object, value: object) -> bool:
    """Whether `value` is what on_log recorded (NaN included)."""
    if logged is value:
        return True
    if isinstance(logged, float) and isinstance(value, float) and math.isnan(logged) and math.isnan(value):
        return True
    try:
        return bool(logged == value)
    except Exception:  # noqa: BLE001 - an array's ambiguous truth: not the same, recorded again
        return False
