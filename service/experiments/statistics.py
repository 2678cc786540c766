"""Statistics of an experiment's arms, computed from sufficient statistics alone: pure functions, no I/O.

An arm's KPI is summarised as :class:`Moments` (count, sum, sum of squares and, for regression
adjustment, the sums of the signup covariates, of their outer products and of their products
with the KPI). An analysis snapshot stores these moments (:meth:`Moments.to_dict`), so every
figure below can be recomputed later from the snapshot, and every result carries a ``method``
string naming what ran.

Methods, each with its source:

- **Fixed-horizon comparison** (:func:`compare`): Welch's unequal-variance t statistic with the
  Welch–Satterthwaite degrees of freedom (Welch 1947, "The generalization of Student's problem
  when several different population variances are involved", Biometrika 34; Satterthwaite 1946),
  as GrowthBook's frequentist engine computes it (docs.growthbook.io/statistics/overview; the
  ``gbstats`` package): the relative lift uses the same degrees of freedom as the absolute one.
- **Relative lift** ``mean_t / mean_c - 1``: the delta method (Deng, Knoblich, Lu 2018,
  "Applying the Delta Method in Metric Analytics", KDD),
  ``Var ~ var_t / (n_t mean_c^2) + mean_t^2 var_c / (n_c mean_c^4)``.
- **Regression adjustment for brand-new users** (:func:`regression_adjustment`, ``adjust=True``):
  CUPED (Deng, Xu, Kohavi, Walker 2013, "Improving the sensitivity of online controlled
  experiments by utilizing pre-experiment data", WSDM) with covariates captured at signup
  instead of a pre-period, as Statsig's CURE does (docs.statsig.com, "CURE"), and the
  regression-adjustment analysis of Lin 2013 ("Agnostic notes on regression adjustments to
  experimental data", Annals of Applied Statistics 7) with slopes common to both arms. One
  ``theta`` for both arms, from the covariance pooled within the two arms; it makes the
  adjusted difference equal the treatment coefficient of OLS ``y ~ treat + x`` exactly.
- **Sequential testing** (``sequential=Sequential(...)``): the asymptotic confidence sequences
  of Waudby-Smith, Arbour, Sinha, Kennedy, Ramdas 2021 ("Time-uniform central limit theory and
  asymptotic confidence sequences", arXiv:2103.06476, eq. 9 with the tuning of eq. 161), in
  GrowthBook's parametrisation (docs.growthbook.io/statistics/sequential; ``gbstats``
  ``SequentialTwoSidedTTest``): tuned for an expected total sample size ``N*`` (default 5000).
  Its always-valid p-value is that paper's eq. 155.
- **One-sided sequential test for guardrails** (:func:`guardrail`): the one-sided normal-mixture
  boundary of Howard, Ramdas, McAuliffe, Sekhon 2021 ("Time-uniform, nonparametric,
  nonasymptotic confidence sequences", Annals of Statistics 49, Proposition 6 / eq. 14), in the
  form GrowthBook's Safe Rollouts use (docs.growthbook.io/features/safe-rollouts); derived in
  :func:`cs_halfwidth`.
- **Minimum detectable effect** (:func:`mde`, :func:`detectable`): the normal-approximation power
  formula ``(z_{1-alpha} + z_{power}) * se`` (e.g. Kohavi, Tang, Xu 2020, "Trustworthy Online
  Controlled Experiments", ch. 17), for a fixed-horizon test.
- **Sample-ratio mismatch** (:func:`srm`): Pearson's chi-square goodness-of-fit test of the
  arms' counts against their weights (Fabijan et al. 2019, "Diagnosing Sample Ratio Mismatch in
  Online Controlled Experiments", KDD), flagged below GrowthBook's default p of 0.001.
- **Multiple testing** (:func:`adjust_p_values`): Holm 1979 (family-wise error) and
  Benjamini–Hochberg 1995 (false discovery rate), applied across arms and goal KPIs, guardrails
  excluded, as GrowthBook does (docs.growthbook.io/statistics/multiple-corrections).

Distributions, the chi-square test and the corrections come from scipy and statsmodels. The
array kernels (:func:`lift`, :func:`welch_df`, :func:`cs_halfwidth`) take numpy arrays, so a
simulation evaluates thousands of experiments at once with the same code the service runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats  # type: ignore[import-untyped, unused-ignore]
from statsmodels.stats.multitest import multipletests  # type: ignore[import-untyped, unused-ignore]

from service.errors import InvalidInput

Floats = npt.NDArray[np.float64]
Side = Literal["greater", "less"]

DEFAULT_ALPHA = 0.05
DEFAULT_TUNING = 5000.0  # GrowthBook's sequential_tuning_parameter
SRM_THRESHOLD = 0.001  # GrowthBook's default p-value below which a sample-ratio mismatch is flagged
ARM_INTERVAL_METHOD = "normal interval of the mean (z, sample variance with ddof 1; Wald for a 0/1 KPI)"
# Singular values of the pooled covariate covariance below this share of the largest are treated
# as 0: one-hot columns that sum to one per unit are collinear once centred.
_RCOND = 1e-9


def _check_alpha(alpha: float, name: str = "alpha") -> None:
    if not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise InvalidInput(name, f"must lie strictly between 0 and 1, got {alpha!r}")


def _finite(value: object, name: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInput(name, f"must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidInput(name, f"must be finite, got {value!r}")
    return number


def _plain(value: object) -> object:
    """JSON-able form: tuples become lists, infinite or NaN floats become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of one arm for one KPI: ``n`` units, ``sum y``, ``sum y^2``.

    For regression adjustment, each unit also has ``k`` covariates ``x`` captured at signup
    (for instance one-hot indicators of role, industry, plan and channel): ``x_total`` is
    ``sum x`` (length k), ``xx_total`` is ``sum x x^T`` (k by k), ``xy_total`` is ``sum x y``.
    Lists are accepted and stored as tuples of floats.
    """

    n: int
    total: float
    total_sq: float
    x_total: tuple[float, ...] = ()
    xx_total: tuple[tuple[float, ...], ...] = ()
    xy_total: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int | np.integer):
            raise InvalidInput("n", f"must be a whole number of units, got {self.n!r}")
        if self.n < 0:
            raise InvalidInput("n", f"must be at least 0, got {self.n}")
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "total", _finite(self.total, "total"))
        object.__setattr__(self, "total_sq", _finite(self.total_sq, "total_sq"))
        if self.total_sq < 0:
            raise InvalidInput("total_sq", f"a sum of squares cannot be negative, got {self.total_sq}")
        if self.n == 0 and (self.total != 0 or self.total_sq != 0):
            raise InvalidInput("n", "an arm with 0 units has sums of 0")
        x_total = tuple(_finite(v, "x_total") for v in self.x_total)
        k = len(x_total)
        xy_total = tuple(_finite(v, "xy_total") for v in self.xy_total)
        if len(xy_total) != k:
            raise InvalidInput("xy_total", f"has {len(xy_total)} entries where x_total has {k}")
        try:
            rows = tuple(tuple(_finite(v, "xx_total") for v in row) for row in self.xx_total)
        except TypeError:
            raise InvalidInput("xx_total", "must be rows of numbers") from None
        if len(rows) != k or any(len(row) != k for row in rows):
            raise InvalidInput("xx_total", f"must be {k} by {k}, as x_total has {k} entries")
        object.__setattr__(self, "x_total", x_total)
        object.__setattr__(self, "xx_total", rows)
        object.__setattr__(self, "xy_total", xy_total)

    @classmethod
    def from_units(
        cls, y: Sequence[float] | npt.NDArray[Any], x: Sequence[Sequence[float]] | npt.NDArray[Any] | None = None
    ) -> Moments:
        """Sum the KPI values ``y`` of an arm's units and, when given, their covariate rows ``x``."""
        ys = np.asarray(y, dtype=np.float64)
        if ys.ndim != 1:
            raise InvalidInput("y", "must be one number per unit")
        if not np.all(np.isfinite(ys)):
            raise InvalidInput("y", "must be finite numbers")
        if x is None:
            return cls(n=len(ys), total=float(ys.sum()), total_sq=float(ys @ ys))
        try:
            xs = np.asarray(x, dtype=np.float64)
        except ValueError:
            raise InvalidInput("x", "every unit needs the same number of covariates") from None
        if xs.size == 0 and len(ys) == 0:
            xs = xs.reshape(0, xs.shape[1] if xs.ndim == 2 else 0)
        if xs.ndim != 2 or xs.shape[0] != len(ys):
            raise InvalidInput("x", f"needs one row of covariates per unit: {len(x)} rows for {len(ys)} units")
        if not np.all(np.isfinite(xs)):
            raise InvalidInput("x", "must be finite numbers")
        return cls(
            n=len(ys),
            total=float(ys.sum()),
            total_sq=float(ys @ ys),
            x_total=tuple(xs.sum(axis=0).tolist()),
            xx_total=tuple(tuple(row) for row in (xs.T @ xs).tolist()),
            xy_total=tuple((xs.T @ ys).tolist()),
        )

    @classmethod
    def from_cells(
        cls,
        n: npt.ArrayLike,
        total: npt.ArrayLike,
        total_sq: npt.ArrayLike,
        x: npt.ArrayLike | None = None,
    ) -> Moments:
        """Sum an arm's cells: ``n`` units per cell with the sums ``total`` and ``total_sq`` of their KPI values,
        all sharing the cell's covariate row (a row of ``x``), so ``sum x x^T`` is ``sum n x x^T`` and
        ``sum x y`` is ``sum total x`` exactly, as if summed unit by unit."""
        ns = np.asarray(n, dtype=np.float64).reshape(-1)
        ts = np.asarray(total, dtype=np.float64).reshape(-1)
        qs = np.asarray(total_sq, dtype=np.float64).reshape(-1)
        if not len(ns) == len(ts) == len(qs):
            raise InvalidInput("cells", f"n, total and total_sq differ in length ({len(ns)}, {len(ts)}, {len(qs)})")
        if np.any(ns < 0) or np.any(ns != np.round(ns)):
            raise InvalidInput("n", "a cell holds a whole number of units, at least 0")
        units = int(ns.sum())
        if x is None:
            return cls(n=units, total=float(ts.sum()), total_sq=float(qs.sum()))
        xs = np.asarray(x, dtype=np.float64)
        if xs.size == 0:
            xs = xs.reshape(len(ns), xs.shape[1] if xs.ndim == 2 else 0)
        if xs.ndim != 2 or xs.shape[0] != len(ns):
            raise InvalidInput("x", f"needs one row of covariates per cell: {xs.shape[0]} rows for {len(ns)} cells")
        if not np.all(np.isfinite(xs)):
            raise InvalidInput("x", "must be finite numbers")
        return cls(
            n=units,
            total=float(ts.sum()),
            total_sq=float(qs.sum()),
            x_total=tuple((xs.T @ ns).tolist()),
            xx_total=tuple(tuple(row) for row in ((xs * ns[:, None]).T @ xs).tolist()),
            xy_total=tuple((xs.T @ ts).tolist()),
        )

    @classmethod
    def binary(cls, n: int, successes: int) -> Moments:
        """Moments of a 0/1 KPI (activated or not): ``successes`` of ``n`` units, so sum = sum of squares."""
        if isinstance(successes, bool) or not isinstance(successes, int | np.integer):
            raise InvalidInput("successes", f"must be a whole number, got {successes!r}")
        if not 0 <= successes <= max(n, 0):
            raise InvalidInput("successes", f"must lie between 0 and n = {n}, got {successes}")
        return cls(n=n, total=float(successes), total_sq=float(successes))

    @property
    def k(self) -> int:
        """The number of covariates (0 when the arm carries none)."""
        return len(self.x_total)

    @property
    def mean(self) -> float:
        """The arm's mean KPI (0 for an empty arm)."""
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """The sample variance of the KPI, ddof 1 (0 for fewer than 2 units; never negative)."""
        if self.n < 2:
            return 0.0
        return max((self.total_sq - self.total * self.total / self.n) / (self.n - 1), 0.0)

    def _centred(self) -> tuple[Floats, Floats, float]:
        """Within-arm centred sums: ``sum (x - xbar)(x - xbar)^T``, ``sum (x - xbar)(y - ybar)``, ``sum (y - ybar)^2``."""
        x = np.asarray(self.x_total, dtype=np.float64)
        xx = np.asarray(self.xx_total, dtype=np.float64).reshape(self.k, self.k)
        xy = np.asarray(self.xy_total, dtype=np.float64)
        if self.n == 0:
            return np.zeros((self.k, self.k)), np.zeros(self.k), 0.0
        return (
            xx - np.outer(x, x) / self.n,
            xy - x * self.total / self.n,
            self.total_sq - self.total * self.total / self.n,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (lists of numbers), for a stored analysis snapshot."""
        return {
            "n": self.n,
            "total": self.total,
            "total_sq": self.total_sq,
            "x_total": list(self.x_total),
            "xx_total": [list(row) for row in self.xx_total],
            "xy_total": list(self.xy_total),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Moments:
        """Read :meth:`to_dict`'s form back (the covariate sums may be absent)."""
        for key in ("n", "total", "total_sq"):
            if key not in data:
                raise InvalidInput(key, "missing from the stored moments")
        try:
            return cls(
                n=data["n"],
                total=data["total"],
                total_sq=data["total_sq"],
                x_total=tuple(data.get("x_total") or ()),
                xx_total=tuple(tuple(row) for row in (data.get("xx_total") or ())),
                xy_total=tuple(data.get("xy_total") or ()),
            )
        except TypeError as err:
            raise InvalidInput("moments", f"not in the stored form: {err}") from None


@dataclass(frozen=True)
class Sequential:
    """Ask for a sequential test: an asymptotic confidence sequence tuned for ``tuning`` = N* total units."""

    tuning: float = DEFAULT_TUNING

    def __post_init__(self) -> None:
        tuning = _finite(self.tuning, "tuning")
        if tuning <= 0:
            raise InvalidInput("tuning", f"the expected sample size must be positive, got {self.tuning}")
        object.__setattr__(self, "tuning", tuning)


DEFAULT_SEQUENTIAL = Sequential()


# Array kernels: the formulas themselves, on numbers or numpy arrays of them.


def lift(
    mean_c: npt.ArrayLike,
    var_c: npt.ArrayLike,
    n_c: npt.ArrayLike,
    mean_t: npt.ArrayLike,
    var_t: npt.ArrayLike,
    n_t: npt.ArrayLike,
    *,
    relative: bool,
    base_c: npt.ArrayLike | None = None,
    base_t: npt.ArrayLike | None = None,
) -> tuple[Floats, Floats]:
    """Return the lift of treatment over control and its variance, elementwise.

    ``var_*`` are unit-level variances. Absolute: ``mean_t - mean_c`` with variance
    ``var_t / n_t + var_c / n_c``. Relative: ``(mean_t - mean_c) / base_c`` with the delta-method
    variance ``var_t / (n_t base_c^2) + base_t^2 var_c / (n_c base_c^4)``; the bases are the arms'
    unadjusted means (default: the means themselves, giving ``mean_t / mean_c - 1``). With
    regression adjustment the means and variances are the adjusted ones and the bases stay the
    unadjusted means, as GrowthBook's engine does. Where ``base_c`` is 0 the relative lift is NaN.
    """
    mc, vc, nc = (np.asarray(v, dtype=np.float64) for v in (mean_c, var_c, n_c))
    mt, vt, nt = (np.asarray(v, dtype=np.float64) for v in (mean_t, var_t, n_t))
    with np.errstate(divide="ignore", invalid="ignore"):
        if not relative:
            return mt - mc, vt / nt + vc / nc
        bc = mc if base_c is None else np.asarray(base_c, dtype=np.float64)
        bt = mt if base_t is None else np.asarray(base_t, dtype=np.float64)
        estimate = np.where(bc != 0, (mt - mc) / bc, np.nan)
        variance = np.where(bc != 0, vt / (nt * bc**2) + bt**2 * vc / (nc * bc**4), np.nan)
    return estimate, variance


def welch_df(var_c: npt.ArrayLike, n_c: npt.ArrayLike, var_t: npt.ArrayLike, n_t: npt.ArrayLike) -> Floats:
    """Welch–Satterthwaite degrees of freedom ``(a + b)^2 / (a^2 / (n_c - 1) + b^2 / (n_t - 1))``, ``a = var_c / n_c``."""
    a = np.asarray(var_c, dtype=np.float64) / np.asarray(n_c, dtype=np.float64)
    b = np.asarray(var_t, dtype=np.float64) / np.asarray(n_t, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray((a + b) ** 2 / (a**2 / (np.asarray(n_c) - 1.0) + b**2 / (np.asarray(n_t) - 1.0)))


def _rho_sq(alpha: float, tuning: float) -> float:
    """Mixture precision tuned so the boundary is tightest at ``tuning`` units (Waudby-Smith et al. eq. 161)."""
    return (-2.0 * math.log(alpha) + math.log(-2.0 * math.log(alpha) + 1.0)) / tuning


def cs_halfwidth(
    std_error: npt.ArrayLike,
    n_total: npt.ArrayLike,
    *,
    alpha: float = DEFAULT_ALPHA,
    tuning: float = DEFAULT_TUNING,
    one_sided: bool = False,
) -> Floats:
    """Half-width of an asymptotic confidence sequence for an estimate with standard error ``std_error``.

    Units, as GrowthBook takes them: ``N = n_c + n_t`` is the total number of units so far and
    the per-unit variance is ``s^2 = se^2 * N``; with ``t = N rho^2``:

    - two-sided, level ``alpha`` (Waudby-Smith et al. 2021, eq. 9): the Gaussian mixture
      ``lambda ~ N(0, rho^2)`` of the exponential martingales ``exp(lambda S - lambda^2 V / 2)`` of
      the standardised sum ``S`` with intrinsic time ``V = N``, bounded by Ville's inequality,
      ``half = se * sqrt(2 (t + 1) / t * ln(sqrt(t + 1) / alpha))``, ``rho^2`` from eq. 161 with
      ``alpha``: ``rho^2 = (-2 ln alpha + ln(1 - 2 ln alpha)) / N*``.
    - one-sided, level ``alpha`` (a bound on one side only, for "is the treatment worse?"): the
      half-normal mixture ``lambda ~ |N(0, rho^2)|`` gives the martingale
      ``M = 2 / sqrt(1 + t) * exp(x^2 / 2) * Phi(x)``, ``x = rho S / sqrt(1 + t)``; Ville's inequality
      makes ``{M >= 1 / alpha}`` happen at any time with probability at most ``alpha``. Solving
      ``M = 1 / alpha`` has no closed form; since ``1 - Phi(x) <= exp(-x^2 / 2) / 2`` for ``x >= 0``,
      ``exp(x^2 / 2) = 1 + sqrt(1 + t) / (2 alpha)`` already gives ``M >= 1 / alpha``, so the boundary
      ``half = se * sqrt(2 (t + 1) / t * ln(1 + sqrt(t + 1) / (2 alpha)))`` is conservative (Howard
      et al. 2021, Proposition 6, the form GrowthBook's one-sided sequential tests use). Because it
      is close to the two-sided boundary at ``2 alpha``, ``rho^2`` is tuned as for ``2 alpha``.
      Needs ``alpha < 0.5``.

    The bound is asymptotic: it replaces the unknown variance by its running estimate.
    """
    _check_alpha(alpha)
    if one_sided and alpha >= 0.5:
        raise InvalidInput("alpha", f"a one-sided confidence sequence needs alpha below 0.5, got {alpha}")
    se = np.asarray(std_error, dtype=np.float64)
    n = np.asarray(n_total, dtype=np.float64)
    t = n * _rho_sq(2 * alpha if one_sided else alpha, tuning)
    with np.errstate(divide="ignore", invalid="ignore"):
        if one_sided:
            log_term = np.log1p(np.sqrt(t + 1.0) / (2.0 * alpha))
        else:
            log_term = np.log(np.sqrt(t + 1.0) / alpha)
        return np.asarray(se * np.sqrt(2.0 * (t + 1.0) / t * log_term))


def always_valid_p_value(
    estimate: npt.ArrayLike,
    std_error: npt.ArrayLike,
    n_total: npt.ArrayLike,
    *,
    alpha: float = DEFAULT_ALPHA,
    tuning: float = DEFAULT_TUNING,
) -> Floats:
    """Two-sided always-valid p-value, ``min(1, 1 / E)`` with the mixture e-value of Waudby-Smith et al. eq. 155.

    ``E = exp(t z^2 / (2 (t + 1))) / sqrt(t + 1)``, ``z = estimate / se``, ``t = N rho^2`` with
    ``rho^2`` tuned as for the two-sided sequence at ``alpha``: it is below ``alpha`` exactly when
    that sequence excludes 0.
    """
    _check_alpha(alpha)
    z = np.asarray(estimate, dtype=np.float64) / np.asarray(std_error, dtype=np.float64)
    t = np.asarray(n_total, dtype=np.float64) * _rho_sq(alpha, tuning)
    evalue = np.exp(t * z**2 / (2.0 * (t + 1.0))) / np.sqrt(t + 1.0)
    return np.asarray(np.minimum(1.0 / evalue, 1.0))


# Regression adjustment.


@dataclass(frozen=True)
class Adjustment:
    """Regression-adjusted arm means with one ``theta`` for both arms (CUPED with signup covariates).

    ``control_mean``/``treatment_mean`` are ``ybar_a - theta^T (xbar_a - xbar_pooled)``;
    ``control_variance``/``treatment_variance`` are each arm's unit-level residual variance
    ``Var(y - theta^T x)`` within the arm (ddof 1), so each adjusted mean has variance
    ``variance / n_a``.
    """

    theta: tuple[float, ...]
    control_mean: float
    treatment_mean: float
    control_variance: float
    treatment_variance: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))  # type: ignore[return-value]


def regression_adjustment(control: Moments, treatment: Moments) -> Adjustment:
    """Adjust both arms' means for their covariates, from the moments alone.

    ``theta = S_xx^+ S_xy`` where ``S_xx = sum over arms of sum (x - xbar_a)(x - xbar_a)^T`` and
    ``S_xy`` likewise with ``y``: the covariance pooled within the two arms, so that the
    adjusted difference ``(ybar_t - ybar_c) - theta^T (xbar_t - xbar_c)`` is the treatment
    coefficient of OLS ``y ~ treat + x`` (Frisch–Waugh–Lovell). ``S_xx^+`` is a least-squares
    pseudo-inverse, so collinear covariates (a full set of one-hot columns) are fine: the
    adjustment ``theta^T x`` does not depend on which solution is taken.
    """
    if control.k == 0 or treatment.k == 0:
        raise InvalidInput("adjust", "regression adjustment needs covariate moments in both arms")
    if control.k != treatment.k:
        raise InvalidInput("adjust", f"the arms carry {control.k} and {treatment.k} covariates")
    for name, arm in (("control", control), ("treatment", treatment)):
        if arm.n < 2:
            raise InvalidInput(name, f"needs at least 2 units for regression adjustment, has {arm.n}")
    cxx_c, cxy_c, cyy_c = control._centred()
    cxx_t, cxy_t, cyy_t = treatment._centred()
    s_xx = cxx_c + cxx_t
    s_xy = cxy_c + cxy_t
    theta: Floats = np.zeros(control.k)
    if not np.all(s_xx == 0):
        theta = np.asarray(np.linalg.lstsq(s_xx, s_xy, rcond=_RCOND)[0], dtype=np.float64)
    x_c = np.asarray(control.x_total) / control.n
    x_t = np.asarray(treatment.x_total) / treatment.n
    x_pooled = (np.asarray(control.x_total) + np.asarray(treatment.x_total)) / (control.n + treatment.n)

    def residual_variance(cxx: Floats, cxy: Floats, cyy: float, n: int) -> float:
        return max(float(cyy - 2.0 * theta @ cxy + theta @ cxx @ theta) / (n - 1), 0.0)

    return Adjustment(
        theta=tuple(float(v) for v in theta),
        control_mean=control.mean - float(theta @ (x_c - x_pooled)),
        treatment_mean=treatment.mean - float(theta @ (x_t - x_pooled)),
        control_variance=residual_variance(cxx_c, cxy_c, cyy_c, control.n),
        treatment_variance=residual_variance(cxx_t, cxy_t, cyy_t, treatment.n),
        method=f"regression adjustment (CUPED/CURE, pooled within-arm theta, {control.k} covariates)",
    )


# Comparisons.


@dataclass(frozen=True)
class Comparison:
    """A treatment arm against control for one KPI.

    ``estimate`` is the lift (relative ``mean_t / mean_c - 1`` or absolute ``mean_t - mean_c``),
    ``lower``/``upper`` its interval (infinite on the open side of a one-sided test; ``to_dict``
    writes those as None). ``p_value`` is the fixed-horizon p-value, None for sequential tests,
    which report ``always_valid_p_value`` (two-sided only) and are read through the interval and
    :meth:`decision`. ``df`` is the Welch–Satterthwaite degrees of freedom of a t test, None for
    the (normal) confidence sequences. ``control_mean``/``treatment_mean`` are the arms'
    unadjusted means; with ``adjust`` the adjusted ones are in ``adjusted_*_mean``. When the data
    cannot support a comparison (fewer than 2 units in an arm, a relative lift over a control
    mean of 0, no variance at all), ``note`` says why and the estimate and interval are 0, as
    GrowthBook reports such cases.
    """

    estimate: float
    lower: float
    upper: float
    p_value: float | None
    method: str
    control_mean: float
    treatment_mean: float
    std_error: float
    df: float | None
    alpha: float
    relative: bool
    adjusted: bool
    one_sided: Side | None
    sequential_tuning: float | None
    n_control: int
    n_treatment: int
    always_valid_p_value: float | None = None
    adjusted_control_mean: float | None = None
    adjusted_treatment_mean: float | None = None
    note: str | None = None

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0 (for a two-sided t test: ``p_value < alpha``)."""
        return self.note is None and (self.lower > 0 or self.upper < 0)

    def decision(self, higher_is_better: bool = True) -> Literal["better", "worse", "inconclusive"]:
        """Read the interval: "better" or "worse" once it excludes 0 on one side, else "inconclusive".

        For a sequential test this may be read at every look: the confidence sequence holds at all
        sample sizes at once, so stopping at the first decisive look keeps the error rate.
        """
        if self.note is not None:
            return "inconclusive"
        if self.lower > 0:
            return "better" if higher_is_better else "worse"
        if self.upper < 0:
            return "worse" if higher_is_better else "better"
        return "inconclusive"

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))  # type: ignore[return-value]


def _method_name(*, relative: bool, adjust: bool, k: int, sequential: Sequential | None, one_sided: Side | None) -> str:
    if sequential is None:
        test = "welch t (welch-satterthwaite df), fixed horizon"
    elif one_sided is None:
        test = f"asymptotic confidence sequence (gaussian mixture, waudby-smith et al. 2021, N*={sequential.tuning:g})"
    else:
        test = f"one-sided asymptotic confidence sequence (half-normal mixture, howard et al. 2021, N*={sequential.tuning:g})"
    parts = [
        test,
        "relative lift (delta method)" if relative else "absolute difference",
        "two-sided" if one_sided is None else f"one-sided (treatment {one_sided})",
    ]
    if adjust:
        parts.append(f"regression-adjusted (pooled within-arm theta, {k} covariates)")
    return "; ".join(parts)


def compare(
    control: Moments,
    treatment: Moments,
    *,
    alpha: float = DEFAULT_ALPHA,
    relative: bool = True,
    adjust: bool = False,
    sequential: Sequential | None = None,
    one_sided: Side | None = None,
) -> Comparison:
    """Compare a treatment arm with control on one KPI.

    Fixed horizon (``sequential=None``): ``t = estimate / se`` against Student's t with the
    Welch–Satterthwaite degrees of freedom of the two arms' (adjusted) variances, also for the
    relative lift, as GrowthBook does; two-sided interval ``estimate +- t_{1-alpha/2, df} se``,
    one-sided ``estimate -+ t_{1-alpha, df} se`` on one side. ``one_sided="greater"`` tests
    "treatment above control" (interval ``[lower, inf)``), ``"less"`` tests "treatment below
    control" (interval ``(-inf, upper]``).

    Sequential: the same estimate and standard error with the confidence-sequence half-width of
    :func:`cs_halfwidth` (normal, no degrees of freedom), two- or one-sided.

    ``adjust=True`` uses :func:`regression_adjustment` (both arms need the same covariates).

    Variances are the arms' sample variances (ddof 1, :attr:`Moments.variance`), also for a 0/1
    KPI, where GrowthBook's proportion statistic takes ``p (1 - p)`` (ddof 0): on the same counts
    the intervals here are wider by a factor of about ``sqrt(n / (n - 1))``.
    """
    _check_alpha(alpha)
    if one_sided not in (None, "greater", "less"):
        raise InvalidInput("one_sided", f"must be None, 'greater' or 'less', got {one_sided!r}")
    if sequential is not None and one_sided is not None and alpha >= 0.5:
        raise InvalidInput("alpha", f"a one-sided confidence sequence needs alpha below 0.5, got {alpha}")
    if adjust and (control.k == 0 or treatment.k == 0 or control.k != treatment.k):
        raise InvalidInput("adjust", "regression adjustment needs the same covariate moments in both arms")
    common: dict[str, Any] = {
        "method": _method_name(
            relative=relative, adjust=adjust, k=control.k, sequential=sequential, one_sided=one_sided
        ),
        "control_mean": control.mean,
        "treatment_mean": treatment.mean,
        "alpha": alpha,
        "relative": relative,
        "adjusted": adjust,
        "one_sided": one_sided,
        "sequential_tuning": None if sequential is None else sequential.tuning,
        "n_control": control.n,
        "n_treatment": treatment.n,
    }

    def inconclusive(note: str) -> Comparison:
        return Comparison(
            estimate=0.0,
            lower=0.0,
            upper=0.0,
            p_value=None if sequential is not None else 1.0,
            std_error=0.0,
            df=None,
            note=note,
            **common,
        )

    if control.n < 2 or treatment.n < 2:
        return inconclusive("each arm needs at least 2 units")
    if relative and control.mean == 0:
        return inconclusive("the control mean is 0: a relative lift is undefined")
    mean_c, var_c, mean_t, var_t = control.mean, control.variance, treatment.mean, treatment.variance
    if adjust:
        adjustment = regression_adjustment(control, treatment)
        mean_c, mean_t = adjustment.control_mean, adjustment.treatment_mean
        var_c, var_t = adjustment.control_variance, adjustment.treatment_variance
        common["adjusted_control_mean"] = mean_c
        common["adjusted_treatment_mean"] = mean_t
    est_arr, var_arr = lift(
        mean_c,
        var_c,
        control.n,
        mean_t,
        var_t,
        treatment.n,
        relative=relative,
        base_c=control.mean,
        base_t=treatment.mean,
    )
    estimate, variance = float(est_arr), float(var_arr)
    if not (math.isfinite(variance) and variance > 0):
        return inconclusive("neither arm's KPI varies: no standard error")
    se = math.sqrt(variance)
    lower, upper = -math.inf, math.inf
    if sequential is None:
        df = float(welch_df(var_c, control.n, var_t, treatment.n))
        t_stat = estimate / se
        if one_sided is None:
            width = float(stats.t.ppf(1 - alpha / 2, df)) * se
            lower, upper = estimate - width, estimate + width
            p_value = float(2 * stats.t.sf(abs(t_stat), df))
        elif one_sided == "greater":
            lower = estimate - float(stats.t.ppf(1 - alpha, df)) * se
            p_value = float(stats.t.sf(t_stat, df))
        else:
            upper = estimate + float(stats.t.ppf(1 - alpha, df)) * se
            p_value = float(stats.t.cdf(t_stat, df))
        return Comparison(estimate=estimate, lower=lower, upper=upper, p_value=p_value, std_error=se, df=df, **common)
    n_total = control.n + treatment.n
    half = float(cs_halfwidth(se, n_total, alpha=alpha, tuning=sequential.tuning, one_sided=one_sided is not None))
    avp: float | None = None
    if one_sided is None:
        lower, upper = estimate - half, estimate + half
        avp = float(always_valid_p_value(estimate, se, n_total, alpha=alpha, tuning=sequential.tuning))
    elif one_sided == "greater":
        lower = estimate - half
    else:
        upper = estimate + half
    return Comparison(
        estimate=estimate,
        lower=lower,
        upper=upper,
        p_value=None,
        std_error=se,
        df=None,
        always_valid_p_value=avp,
        **common,
    )


def arm_interval(m: Moments, alpha: float = DEFAULT_ALPHA) -> tuple[float, float, float]:
    """Return ``(estimate, lower, upper)`` for an arm's own KPI level, e.g. its activation share.

    The normal interval ``mean +- z_{1-alpha/2} sqrt(s^2 / n)`` with the sample variance (ddof 1):
    for a 0/1 KPI this is the Wald interval of the share, fine at the sizes arms reach and not
    clipped to [0, 1] (:data:`ARM_INTERVAL_METHOD`). An empty arm gives ``(0, 0, 0)``; a single
    unit gives its value three times (no variance can be estimated from one unit).
    """
    _check_alpha(alpha)
    if m.n == 0:
        return 0.0, 0.0, 0.0
    half = float(stats.norm.ppf(1 - alpha / 2)) * math.sqrt(m.variance / m.n)
    return m.mean, m.mean - half, m.mean + half


# Guardrails.


@dataclass(frozen=True)
class GuardrailVerdict:
    """Whether a guardrail KPI shows harm beyond its pre-registered threshold.

    ``state`` is "harm" when the one-sided bound of the relative lift lies beyond ``threshold``
    on the bad side: ``bound`` is the upper bound for a higher-is-better KPI (harm when
    ``bound < threshold = -max_relative_drop``), the lower bound for a lower-is-better one (harm
    when ``bound > threshold = +max_relative_drop``). Otherwise "ok" (which includes "too little
    data to say", then with a ``note``).
    """

    state: Literal["ok", "harm"]
    estimate: float
    bound: float
    threshold: float
    higher_is_better: bool
    alpha: float
    method: str
    n_control: int
    n_treatment: int
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))  # type: ignore[return-value]


def _check_drop(max_relative_drop: float) -> float:
    drop = _finite(max_relative_drop, "max_relative_drop")
    if drop < 0:
        raise InvalidInput("max_relative_drop", f"is a tolerated relative change, 0 or more, got {max_relative_drop}")
    return drop


def guardrail(
    control: Moments,
    treatment: Moments,
    *,
    max_relative_drop: float,
    alpha: float = DEFAULT_ALPHA,
    sequential: Sequential | None = DEFAULT_SEQUENTIAL,
    higher_is_better: bool = True,
    adjust: bool = False,
) -> GuardrailVerdict:
    """Is the treatment worse than control by more than ``max_relative_drop`` (a relative change)?

    A one-sided test of the relative lift toward harm at level ``alpha``: by default the
    one-sided confidence sequence of :func:`cs_halfwidth` (valid at every look, so the check
    may run after every batch of users), with ``sequential=None`` the one-sided Welch t test.
    For a lower-is-better KPI (an error rate) harm is a relative rise beyond ``max_relative_drop``.
    """
    drop = _check_drop(max_relative_drop)
    result = compare(
        control,
        treatment,
        alpha=alpha,
        relative=True,
        adjust=adjust,
        sequential=sequential,
        one_sided="less" if higher_is_better else "greater",
    )
    bound = result.upper if higher_is_better else result.lower
    threshold = 0.0 - drop if higher_is_better else drop  # 0.0 - 0.0 is 0.0, not -0.0
    harm = result.note is None and (bound < threshold if higher_is_better else bound > threshold)
    return GuardrailVerdict(
        state="harm" if harm else "ok",
        estimate=result.estimate,
        bound=bound,
        threshold=threshold,
        higher_is_better=higher_is_better,
        alpha=alpha,
        method=f"guardrail, {'higher' if higher_is_better else 'lower'} is better: {result.method}",
        n_control=result.n_control,
        n_treatment=result.n_treatment,
        note=result.note,
    )


def mde(
    control: Moments,
    treatment: Moments,
    *,
    alpha: float = DEFAULT_ALPHA,
    power: float = 0.8,
    one_sided: bool = True,
) -> float:
    """The smallest relative effect a fixed-horizon test at the current sample sizes detects with ``power``.

    ``mde = (z_{1-alpha} + z_{power}) * sqrt(var_c / n_c + var_t / n_t) / |mean_c|`` (``z_{1-alpha/2}``
    when two-sided): the standard error of the relative lift near no effect, from the arms'
    observed variances, times the normal quantiles (scipy ``norm.ppf``). Infinite when it cannot
    be estimated (fewer than 2 units in an arm, a control mean of 0, or no variance yet).
    """
    _check_alpha(alpha)
    _check_alpha(power, "power")
    if control.n < 2 or treatment.n < 2 or control.mean == 0:
        return math.inf
    variance = control.variance / control.n + treatment.variance / treatment.n
    if variance <= 0:
        return math.inf
    z_alpha = float(stats.norm.ppf(1 - alpha if one_sided else 1 - alpha / 2))
    return (z_alpha + float(stats.norm.ppf(power))) * math.sqrt(variance) / abs(control.mean)


def detectable(
    control: Moments,
    treatment: Moments,
    *,
    max_relative_drop: float,
    alpha: float = DEFAULT_ALPHA,
    power: float = 0.8,
) -> bool:
    """Whether the pre-registered harm ``max_relative_drop`` is at least the one-sided :func:`mde` at this n.

    For a ramp: "ok" from :func:`guardrail` means little while this is False.
    """
    drop = _check_drop(max_relative_drop)
    return mde(control, treatment, alpha=alpha, power=power, one_sided=True) <= drop


# Sample-ratio mismatch and multiple testing.


def srm(observed: Sequence[int], weights: Sequence[float]) -> float:
    """P-value of the chi-square test of the arms' unit counts against their configured weights.

    Weights are normalised (they need not sum to 1). A p-value below :data:`SRM_THRESHOLD`
    flags a sample-ratio mismatch. No units at all gives 1.0; units in an arm of weight 0 give 0.0.
    """
    counts = list(observed)
    if len(counts) < 2:
        raise InvalidInput("observed", f"needs the counts of at least 2 arms, got {len(counts)}")
    if len(weights) != len(counts):
        raise InvalidInput("weights", f"has {len(weights)} entries for {len(counts)} arms")
    for c in counts:
        if isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 0:
            raise InvalidInput("observed", f"counts must be whole numbers of 0 or more, got {c!r}")
    w = [_finite(v, "weights") for v in weights]
    if any(v < 0 for v in w) or sum(w) <= 0:
        raise InvalidInput("weights", "must be 0 or more and sum to a positive number")
    total = sum(int(c) for c in counts)
    if total == 0:
        return 1.0
    if any(c > 0 and v == 0 for c, v in zip(counts, w, strict=True)):
        return 0.0
    kept = [(int(c), v) for c, v in zip(counts, w, strict=True) if v > 0]
    if len(kept) < 2:
        return 1.0
    obs = np.array([c for c, _ in kept], dtype=np.float64)
    share = np.array([v for _, v in kept], dtype=np.float64)
    expected = total * share / share.sum()
    return float(stats.chisquare(obs, expected).pvalue)


def adjust_p_values(p: Sequence[float], method: Literal["holm", "bh"]) -> list[float]:
    """Adjusted p-values across arms and goal KPIs (not guardrails): Holm or Benjamini–Hochberg."""
    names = {"holm": "holm", "bh": "fdr_bh"}
    if method not in names:
        raise InvalidInput("method", f"must be 'holm' or 'bh', got {method!r}")
    values = [_finite(v, "p") for v in p]
    if any(not 0 <= v <= 1 for v in values):
        raise InvalidInput("p", "p-values lie between 0 and 1")
    if not values:
        return []
    if method == "holm":
        # Holm's step-down (Holm 1979): the i-th smallest of m p-values times (m - i + 1), made monotone and
        # capped at 1. Written out because statsmodels' Holm branch runs a full gc.collect() on every call,
        # 0.1 s in a service process with a large heap; tests check it against statsmodels' multipletests.
        order = np.argsort(values, kind="stable")
        m = len(values)
        stepped = np.maximum.accumulate(np.asarray(values)[order] * np.arange(m, 0, -1))
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(stepped, 1.0)
        return [float(v) for v in adjusted]
    return [float(v) for v in multipletests(values, alpha=DEFAULT_ALPHA, method=names[method])[1]]


__all__ = [
    "ARM_INTERVAL_METHOD",
    "DEFAULT_ALPHA",
    "DEFAULT_SEQUENTIAL",
    "DEFAULT_TUNING",
    "SRM_THRESHOLD",
    "Adjustment",
    "Comparison",
    "GuardrailVerdict",
    "Moments",
    "Sequential",
    "adjust_p_values",
    "always_valid_p_value",
    "arm_interval",
    "compare",
    "cs_halfwidth",
    "detectable",
    "guardrail",
    "lift",
    "mde",
    "regression_adjustment",
    "srm",
    "welch_df",
]
