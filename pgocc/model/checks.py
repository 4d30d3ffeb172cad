"""Deferred checks: conditions evaluated on the device during a forward pass and read on the host once, later.

    PGOcc.forward        Checks.expect(count ≥ ΣQ, …), Checks.finite(head outputs of every stage) ─ Prediction.checks
    PGOccLoss.forward    the prediction's checks, then Checks.finite(every loss term)              ─ LossOutput.checks
    consumer             raise_if_failed() at its first host read (infer's copy of the labels, LossOutput.read_terms)

Recording a check launches one small reduction and reads nothing on the host, so the forward has no host sync on any
device; the message stays on the host, so the error names the tensor on the GPU too (a device-side assert such as
``torch._assert_async`` loses its message there and leaves the CUDA context unusable, pytorch issue 131491). The CPU
runs the same code, so the CPU tests exercise what the GPU does.

A failed check does not stop the forward: later code keeps computing on the bad values until the consumer reads the
record. If that later code raises first (a NaN turned into an index, say), :meth:`Checks.guard` reports the failed
check instead, with the exception as its cause.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch


class ModelCheckError(RuntimeError):
    """A recorded check failed; the message names the tensor or the count at fault."""


class Checks:
    """An ordered record of named conditions: messages on the host, one 0-d bool flag per check on the device."""

    def __init__(self) -> None:
        self._messages: list[str] = []
        self._flags: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self._flags)

    @property
    def messages(self) -> list[str]:
        """The failure message of every check, in recording order (the order failures are reported in)."""
        return list(self._messages)

    def expect(self, condition: torch.Tensor, message: str) -> None:
        """Record that every element of the bool tensor ``condition`` must be true; ``message`` says what failed."""
        self._messages.append(message)
        self._flags.append(condition.all())

    def finite(self, name: str, t: torch.Tensor) -> None:
        """Record that ``t`` holds no NaN or Inf; a failure reads ``non-finite values in <name>``."""
        self.expect(torch.isfinite(t), f"non-finite values in {name}")

    def finite_each(self, names: Sequence[str], values: torch.Tensor) -> None:
        """Record, for each row ``values[i]``, that it holds no NaN or Inf (a failure reads ``non-finite values in
        <names[i]>``): one check per row, from two launches for all of them.

        Args:
            names: [K] what each row is.
            values: [K, ...].
        """
        if len(names) != values.shape[0]:
            raise ValueError(f"Checks.finite_each: {len(names)} names for {values.shape[0]} rows")
        flags = torch.isfinite(values).flatten(1).all(1) if values.dim() > 1 else torch.isfinite(values)
        self._messages += [f"non-finite values in {name}" for name in names]
        self._flags += list(flags.unbind(0))

    def extend(self, other: Checks) -> None:
        """Append ``other``'s checks after this record's."""
        self._messages += other._messages
        self._flags += other._flags

    def copy(self) -> Checks:
        """A record with the same messages and copies of the flags (one launch): a CUDA graph's replay rewrites
        the flags it recorded in place."""
        other = Checks()
        other._messages = list(self._messages)
        if self._flags:
            other._flags = list(torch.stack(self._flags).unbind(0))
        return other

    @property
    def ok(self) -> torch.Tensor:
        """0-d bool on the checks' device: every check passed (no host sync, e.g. for a training step's
        ``torch._assert_async`` between two logging steps). True for an empty record."""
        if not self._flags:
            return torch.ones((), dtype=torch.bool)
        return torch.stack(self._flags).all()

    def first_failure(self) -> str | None:
        """The message of the first failed check in recording order, None if all passed; one host read (a sync)."""
        if not self._flags:
            return None
        passed = torch.stack(self._flags).tolist()
        return next((m for m, p in zip(self._messages, passed, strict=True) if not p), None)

    def raise_if_failed(self) -> None:
        """Raise :class:`ModelCheckError` with the first failed check's message; one host read (a sync)."""
        failure = self.first_failure()
        if failure is not None:
            raise ModelCheckError(failure)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Within: an exception raised while a recorded check has failed becomes that check's :class:`ModelCheckError`
        (the exception chained as its cause), since the bad values explain it. Costs nothing when nothing raises."""
        try:
            yield
        except ModelCheckError:
            raise
        except Exception as exc:
            failure = self.first_failure()
            if failure is None:
                raise
            raise ModelCheckError(failure) from exc
