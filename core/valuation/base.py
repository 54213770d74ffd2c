"""The valuation interface: `Split` in, `Values` out, one plain function per method.

Every method has the signature ``method(train: Split, *, valid: Split, seed: int | None = None,
on_progress: ProgressFn | None = None, **options) -> Values``. Higher values are more helpful, values below 0
are harmful, and values are never rescaled.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
from numpy.typing import NDArray

from core.errors import DataError, OptionError


@dataclass(frozen=True)
class Split:
    """Rows to value or to score against: uids (n,), features X (n, d) float, integer labels y (n,)."""

    uids: NDArray[np.str_]
    X: NDArray[np.floating]
    y: NDArray[np.int64]

    def __post_init__(self) -> None:
        n = len(self.uids)
        if self.X.ndim != 2 or self.X.shape[0] != n or self.y.shape != (n,):
            raise TypeError(f"Split shapes disagree: uids {n}, X {self.X.shape}, y {self.y.shape}")

    def __len__(self) -> int:
        return len(self.uids)

    def take(self, idx: NDArray[np.integer] | slice) -> Split:
        return Split(self.uids[idx], self.X[idx], self.y[idx])


@dataclass(frozen=True)
class Values:
    """One valuation run's result, aligned with `uids`."""

    uids: NDArray[np.str_]  # (n,)
    values: NDArray[np.float64]  # (n,) higher = more helpful; < 0 = harmful. Never rescaled.
    stderr: NDArray[np.float64]  # (n,) nan where counts < 2
    counts: NDArray[np.int64]  # (n,) estimates behind each value
    method: str  # registry key, e.g. "ts_dshapley"
    params: dict[str, Any] = field(default_factory=dict)  # options actually used (JSON-safe)
    seconds: float = 0.0
    extra: dict[str, NDArray[Any]] = field(default_factory=dict)  # per-row extras, e.g. consensus member ranks

    def __len__(self) -> int:
        return len(self.uids)

    def merge(self, other: Values) -> Values:
        """Count-weighted mean and pooled variance of two estimates over the same uids (order may differ)."""
        pos = {u: i for i, u in enumerate(self.uids)}
        idx = np.array([pos[u] for u in other.uids])
        n1 = self.counts.astype(float).copy()
        m1 = self.values.copy()
        v1 = np.where(n1 >= 2, (self.stderr**2) * n1, 0.0)  # variance of the samples
        v1 = np.nan_to_num(v1)
        n2 = np.zeros_like(n1)
        m2 = np.zeros_like(m1)
        v2 = np.zeros_like(m1)
        n2[idx] = other.counts
        m2[idx] = other.values
        v2[idx] = np.nan_to_num(np.where(other.counts >= 2, (other.stderr**2) * other.counts, 0.0))
        n = n1 + n2
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, (n1 * m1 + n2 * m2) / n, 0.0)
            # pooled population variance of the union of both sample sets
            var = np.where(n > 0, (n1 * (v1 + (m1 - mean) ** 2) + n2 * (v2 + (m2 - mean) ** 2)) / n, 0.0)
            se = np.where(n >= 2, np.sqrt(var / n), np.nan)
        return replace(self, values=mean, stderr=se, counts=n.astype(np.int64),
                       seconds=self.seconds + other.seconds)

    def to_frame(self):  # -> pandas.DataFrame
        """The saved form: columns `COLUMNS` (uid, value, stderr, count), then one column per extra."""
        import pandas as pd

        df = pd.DataFrame({"uid": self.uids, "value": self.values, "stderr": self.stderr, "count": self.counts})
        for k, v in self.extra.items():
            df[k] = v
        return df

    @classmethod
    def from_frame(cls, df: Any, *, method: str = "", params: dict[str, Any] | None = None, seconds: float = 0.0,
                   source: str = "values") -> Values:
        """Values from a frame with columns uid and value (any case); stderr (default NaN) and count (default 1)
        when present; every other column is an extra. DataError naming `source` when a column is missing, not
        numeric, or a uid repeats."""
        cols = {str(c).lower(): c for c in df.columns}
        if "uid" not in cols or "value" not in cols:
            raise DataError(f"{source} needs columns uid and value (found: {', '.join(map(str, df.columns))})")
        uids = df[cols["uid"]].astype(str).to_numpy()
        if len(set(uids.tolist())) != len(uids):
            raise DataError(f"{source} repeats uids; one value per uid")
        n = len(uids)
        try:
            values = np.asarray(df[cols["value"]], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise DataError(f"{source}: the value column is not numeric ({e})") from None
        stderr = np.asarray(df[cols["stderr"]], dtype=np.float64) if "stderr" in cols else np.full(n, np.nan)
        count = cols.get("count", cols.get("counts"))  # "counts": frames written before the schema was one
        counts = np.asarray(df[count], dtype=np.int64) if count is not None else np.ones(n, dtype=np.int64)
        known = {cols[c] for c in ("uid", "value", "stderr", "count", "counts") if c in cols}
        extra = {str(c): df[c].to_numpy() for c in df.columns if c not in known}
        return cls(uids=uids, values=values, stderr=stderr, counts=counts, method=method, params=dict(params or {}),
                   seconds=float(seconds), extra=extra)


COLUMNS = ("uid", "value", "stderr", "count")
"""The column schema of saved values (`Values.to_frame`, the CLI's --out, run frames), extras after these."""


def normalised_rank(values: NDArray[np.floating]) -> NDArray[np.float64]:
    """Average-tie ranks scaled to [0, 1] (0: the lowest value); NaN, and every row of fewer than two, sit at 0.5."""
    from scipy.stats import rankdata

    v = np.asarray(values, dtype=np.float64)
    out = np.full(len(v), 0.5)
    ok = ~np.isnan(v)
    m = int(ok.sum())
    if m > 1:
        out[ok] = (rankdata(v[ok], method="average") - 1.0) / (m - 1)
    return out


ProgressFn = Callable[[float, str, "Values | None"], None]
"""on_progress(fraction in [0, 1], message, partial Values or None)."""


def values_from_samples(uids: NDArray[np.str_], sums: NDArray[np.float64], sumsq: NDArray[np.float64],
                        counts: NDArray[np.int64], *, method: str, params: dict[str, Any],
                        seconds: float = 0.0) -> Values:
    """Mean and standard error from running sums of per-row estimates."""
    counts = counts.astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        var = np.where(counts > 1, (sumsq - counts * mean**2) / np.maximum(counts - 1, 1), np.nan)
        se = np.where(counts > 1, np.sqrt(np.maximum(var, 0.0) / np.maximum(counts, 1)), np.nan)
    return Values(uids=np.asarray(uids), values=mean, stderr=se, counts=counts, method=method,
                  params=params, seconds=seconds)


# ------------------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Option:
    """One user-facing keyword option of a method: its type, range and help; the default is the function's own.

    `low`/`high` bound numbers (inclusive; None: unbounded), `choices` bounds strings, `none_ok` lets None through
    (the method then picks, e.g. `truncation=None`). `checked` fills `default` from the signature.
    """

    name: str
    type: type
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    none_ok: bool = False
    label: str = ""  # the Value page shows a widget with this label (empty: CLI and API only)
    default: Any = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        """The allowed values in words, scikit-learn style: "an int in the range [1, 1000]"."""
        if self.choices:
            text = "a str among {" + ", ".join(repr(c) for c in self.choices) + "}"
        elif self.type is bool:
            text = "a bool"
        else:
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            text = f"{'an int' if self.type is int else 'a float'} in the range [{lo}, {hi}]"
        return text + (" or None" if self.none_ok else "")

    def check(self, value: Any, owner: str) -> Any:
        """`value` converted to the option's type; OptionError naming the option, the range and what was given."""
        if value is None and self.none_ok:
            return None
        ok = True
        if self.type is bool:
            ok = isinstance(value, (bool, np.bool_))
        elif self.type is str:
            ok = isinstance(value, str) and (self.choices is None or value in self.choices)
        elif self.type is int:
            ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        else:
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            ok = ok and bool(np.isfinite(value))
        if ok and self.type in (int, float):
            ok = (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
        if not ok:
            raise OptionError(f"the {self.name!r} option ({self.flag}) of {owner} must be {self.allowed()}; "
                              f"got {value!r}")
        return self.type(value)


def checked(*options: Option) -> Callable[[Callable[..., Values]], Callable[..., Values]]:
    """Decorate a method so that every call checks the declared options (whoever the caller), and attach them,
    with their defaults from the signature, as `fn.options`."""
    import functools
    import inspect

    def wrap(fn: Callable[..., Values]) -> Callable[..., Values]:
        params = inspect.signature(fn).parameters
        for o in options:
            if o.name not in params:
                raise TypeError(f"{fn.__name__} has no parameter {o.name!r}")
        opts = tuple(replace(o, default=params[o.name].default) for o in options)

        @functools.wraps(fn)
        def method(*args: Any, **kwargs: Any) -> Values:
            for o in opts:
                if o.name in kwargs:
                    kwargs[o.name] = o.check(kwargs[o.name], fn.__name__)
            return fn(*args, **kwargs)

        method.options = opts  # type: ignore[attr-defined]
        return method
    return wrap
