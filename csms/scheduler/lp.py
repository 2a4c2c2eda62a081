"""Sparse building blocks for the charging linear programs (online and offline).

Variables are currents r[car, slot] in A, one per slot a car is present in. Rows:
- per phase and slot, the currents of the cars on that phase add up to at most its capacity;
- per car, the energy (current x volts x phases x time in the slot) is at most its need.
Only the (car, slot) pairs that exist become variables, so a month of sessions stays a
sparse problem that HiGHS solves in seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linprog
from scipy.sparse import coo_array

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class SlotVariables:
    """The (car, slot) pairs that are variables, and the energy each delivers per ampere."""

    car: IntArray
    slot: IntArray
    energy_wh_per_a: FloatArray
    n_slots: int


def slot_variables(
    starts_s: FloatArray, ends_s: FloatArray, boundaries_s: FloatArray, power_per_a_w: FloatArray
) -> SlotVariables:
    """One variable per slot that overlaps [start, end) of a car, weighted by the overlap."""
    b = boundaries_s
    n_slots = len(b) - 1
    first = np.clip(np.searchsorted(b, starts_s, side="right") - 1, 0, n_slots)
    last = np.clip(np.searchsorted(b, ends_s, side="left") - 1, -1, n_slots - 1)
    count = np.maximum(last - first + 1, 0)
    car = np.repeat(np.arange(len(starts_s), dtype=np.int64), count)
    offsets = np.cumsum(count) - count
    slot = (
        np.arange(int(count.sum()), dtype=np.int64)
        - np.repeat(offsets, count)
        + np.repeat(first, count)
    )
    overlap = np.minimum(b[slot + 1], ends_s[car]) - np.maximum(b[slot], starts_s[car])
    keep = overlap > 1e-9
    car, slot, overlap = car[keep], slot[keep], overlap[keep]
    energy = power_per_a_w[car] * overlap / 3600.0
    return SlotVariables(car=car, slot=slot, energy_wh_per_a=energy, n_slots=n_slots)


@dataclass(slots=True)
class RowBuilder:
    """Collects sparse ``A_ub x <= b_ub`` rows as COO triplets."""

    rows: list[IntArray]
    cols: list[IntArray]
    vals: list[FloatArray]
    rhs: list[FloatArray]
    n_rows: int = 0

    @classmethod
    def empty(cls) -> RowBuilder:
        return cls([], [], [], [])

    def add(self, rows: IntArray, cols: IntArray, vals: FloatArray, rhs: FloatArray) -> None:
        """Add ``len(rhs)`` rows; ``rows`` index into them from 0."""
        self.rows.append(rows + self.n_rows)
        self.cols.append(cols)
        self.vals.append(vals)
        self.rhs.append(rhs)
        self.n_rows += len(rhs)

    def matrix(self, n_cols: int) -> tuple[coo_array, FloatArray]:
        data = np.concatenate(self.vals) if self.vals else np.zeros(0)
        rows = np.concatenate(self.rows) if self.rows else np.zeros(0, dtype=np.int64)
        cols = np.concatenate(self.cols) if self.cols else np.zeros(0, dtype=np.int64)
        a = coo_array((data, (rows, cols)), shape=(self.n_rows, n_cols))
        b = np.concatenate(self.rhs) if self.rhs else np.zeros(0)
        return a, b


def add_capacity_rows(
    builder: RowBuilder,
    v: SlotVariables,
    phase_mask: NDArray[np.bool_],
    capacity_a: tuple[float, float, float],
) -> None:
    """Per phase and slot: the sum of the currents of the cars on that phase <= capacity."""
    index = np.arange(len(v.car), dtype=np.int64)
    for p in range(3):
        on_p = phase_mask[v.car, p]
        builder.add(
            v.slot[on_p],
            index[on_p],
            np.ones(int(on_p.sum())),
            np.full(v.n_slots, capacity_a[p]),
        )


def add_need_rows(builder: RowBuilder, v: SlotVariables, need_wh: FloatArray) -> None:
    """Per car: energy over all its slots <= what it still needs."""
    builder.add(v.car, np.arange(len(v.car), dtype=np.int64), v.energy_wh_per_a, need_wh)


@dataclass(frozen=True, slots=True)
class LpResult:
    x: FloatArray | None  # None when no usable solution was found
    status: int
    message: str
    solve_s: float


def solve_max(
    gain: FloatArray,
    builder: RowBuilder,
    upper: FloatArray,
    *,
    time_limit_s: float | None = None,
) -> LpResult:
    """Maximise ``gain @ x`` subject to the rows and ``0 <= x <= upper`` with HiGHS."""
    a, b = builder.matrix(len(gain))
    options: dict[str, float | bool] = {"presolve": True}
    if time_limit_s is not None:
        options["time_limit"] = max(time_limit_s, 1e-6)
    t0 = time.perf_counter()
    res = linprog(
        -gain,
        A_ub=a.tocsr(),
        b_ub=b,
        bounds=np.column_stack((np.zeros(len(gain)), upper)),
        method="highs",
        options=options,
    )
    solve_s = time.perf_counter() - t0
    x = np.asarray(res.x, dtype=np.float64) if res.status == 0 and res.x is not None else None
    return LpResult(x=x, status=int(res.status), message=str(res.message), solve_s=solve_s)
