"""Tests over seeds: equivalence with a published number, paired effects, Holm, power.

Equivalence with a published number (`compare_to_published`). The difference is
d = (our mean over n seeds) − (the published value), judged against a margin m declared
in reports/published.toml before any run:

- a published single number is one run from the same distribution as ours, so its
  variance is one run's: SE = s·√(1/n + 1), df = n − 1 (the prediction-interval form;
  exactly scipy's pooled two-sample t-test with a second sample of one);
- when the paper states its own n and spread, Welch's test: SE = √(s²/n + s_p²/n_p);
- *reproduced*: equivalent within ±m by two one-sided tests at 5% (TOST), i.e. the 90%
  interval of d lies inside (−m, m);
- *different*: d ≠ 0 at 5% (two-sided) and |d| > m;
- *inconclusive*: neither. `seeds` is then the number of seeds that would decide it with
  80% power if the true difference and spread were the observed ones (`None` when no
  number of seeds does: with one published run, SE never falls below s);
- n < 3: no interval at all, inconclusive.

Paired effects (`paired_effect`, `with_holm`): differences paired by seed, the 95%
t-interval, the two-sided paired t-test p-value, Holm-adjusted within a family, the
probability of improvement (the share of seeds on which the change is for the better,
ties counting half) with its percentile-bootstrap 95% interval, and the minimum
detectable difference (80% power, two-sided 5%, at the observed spread of the pairs).

Power comes from the noncentral t distribution: exact for one t-test; for TOST and for
"significant and beyond the margin" it is the lower bound P(A) + P(B) − 1 of the two
events' joint probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8
MIN_N = 3
MAX_SEEDS = 10_000          # seeds_to_decide looks no further
N_BOOT = 2000
BOOT_SEED = 0
REPRODUCED, DIFFERENT, INCONCLUSIVE = "reproduced", "different", "inconclusive"


def _finite(values) -> np.ndarray:
    return np.asarray([float(x) for x in values if x is not None and np.isfinite(x)], float)


# --------------------------------------------------------------------------- equivalence

@dataclass(frozen=True)
class Equivalence:
    """Our seeds against one published number (all differences as fractions)."""
    n: int
    diff: float                 # our mean − published
    margin: float
    se: float = math.nan
    df: float = math.nan
    low: float = math.nan       # 90% interval of diff (the TOST interval)
    high: float = math.nan
    p_diff: float = math.nan    # two-sided, H0: diff = 0
    p_tost: float = math.nan    # the larger of the two one-sided p-values
    word: str = INCONCLUSIVE
    seeds: int | None = None    # seeds that would decide an inconclusive result (80% power)
    spread: float = math.nan    # s, the standard deviation of our seeds
    model: str = "one run"      # "one run" or "Welch (the paper's n and spread)"


def _se_df(s: float, n, paper_n: int | None, paper_sd: float | None):
    """SE and df of (our mean − published) for n seeds (n may be an array)."""
    n = np.asarray(n, float)
    if paper_n:
        a, b = s ** 2 / n, paper_sd ** 2 / paper_n
        df = (a + b) ** 2 / (a ** 2 / (n - 1) + (b ** 2 / (paper_n - 1) if paper_n > 1 else 0.0))
        return np.sqrt(a + b), df
    return s * np.sqrt(1 / n + 1), n - 1


def compare_to_published(values, paper: float, margin: float, paper_n: int | None = None,
                         paper_sd: float | None = None) -> Equivalence:
    """TOST at ALPHA and the two-sided test of our seeds against a published number."""
    v = _finite(values)
    n = len(v)
    welch = bool(paper_n) and paper_sd is not None
    model = "Welch (the paper's n and spread)" if welch else "one run"
    if n < MIN_N:
        return Equivalence(n, float(v.mean() - paper) if n else math.nan, margin, model=model)
    s = float(v.std(ddof=1))
    d = float(v.mean() - paper)
    se, df = (float(x) for x in _se_df(s, n, paper_n if welch else None, paper_sd))
    if se == 0:                        # every seed alike: the difference is exact
        low = high = d
        p_diff = 0.0 if d else 1.0
        p_tost = 0.0 if abs(d) < margin else 1.0
    else:
        t90 = stats.t.ppf(1 - ALPHA, df)
        low, high = float(d - t90 * se), float(d + t90 * se)
        p_diff = float(2 * stats.t.sf(abs(d) / se, df))
        p_tost = float(max(stats.t.sf((d + margin) / se, df), stats.t.cdf((d - margin) / se, df)))
    if p_tost < ALPHA:
        word = REPRODUCED
    elif p_diff < ALPHA and abs(d) > margin:
        word = DIFFERENT
    else:
        word = INCONCLUSIVE
    eq = Equivalence(n, d, margin, se, df, low, high, p_diff, p_tost, word, spread=s, model=model)
    if word == INCONCLUSIVE:
        eq = replace(eq, seeds=seeds_to_decide(d, s, margin, paper_n if welch else None, paper_sd))
    return eq


def _below(t, df, nc):
    """P(T < −t) for T ~ noncentral t(df, nc), as P(T > t) at −nc (scipy's cdf gives NaN
    far in the lower tail)."""
    return stats.nct.sf(t, df, -np.asarray(nc))


def decision_power(n, diff: float, s: float, margin: float, paper_n: int | None = None,
                   paper_sd: float | None = None) -> np.ndarray:
    """Power at n seeds to reach the verdict the true difference `diff` calls for:
    equivalence when |diff| < margin, 'different' otherwise (spread s)."""
    n = np.atleast_1d(np.asarray(n, float))
    se, df = _se_df(s, n, paper_n, paper_sd)
    if abs(diff) < margin:
        t = stats.t.ppf(1 - ALPHA, df)
        p = stats.nct.sf(t, df, (diff + margin) / se) + _below(t, df, (diff - margin) / se) - 1
    else:
        t = stats.t.ppf(1 - ALPHA / 2, df)
        nc = abs(diff) / se
        significant = stats.nct.sf(t, df, nc) + _below(t, df, nc)
        beyond = stats.norm.sf((margin - abs(diff)) / se)       # |our mean − published| > margin
        p = significant + beyond - 1
    return np.clip(p, 0.0, 1.0)


def seeds_to_decide(diff: float, s: float, margin: float, paper_n: int | None = None,
                    paper_sd: float | None = None) -> int | None:
    """The fewest seeds (>= 3) with POWER to decide; None if not even MAX_SEEDS do."""
    if not s > 0:
        return None
    n = np.arange(MIN_N, MAX_SEEDS + 1)
    ok = np.nonzero(decision_power(n, diff, s, margin, paper_n, paper_sd) >= POWER)[0]
    return int(n[ok[0]]) if len(ok) else None


# --------------------------------------------------------------------------- paired effects

@dataclass(frozen=True)
class Effect:
    """Differences paired by seed (fractions): the mean, its 95% t-interval, the paired
    t-test, the probability of improvement and the minimum detectable difference."""
    n: int
    mean: float
    values: tuple[float, ...]
    low: float = math.nan
    high: float = math.nan
    p: float = math.nan              # two-sided paired t-test, H0: mean difference 0
    p_holm: float = math.nan         # Holm-adjusted within its family (with_holm)
    pi: float = math.nan             # share of seeds where the change is for the better
    pi_low: float = math.nan
    pi_high: float = math.nan
    mdd: float = math.nan            # detectable with 80% power at 5%, two-sided


def probability_of_improvement(diffs, better: int) -> float:
    """Share of pairs whose difference has the sign `better` (+1 or -1); ties count half."""
    d = np.asarray(diffs, float)
    return float(((np.sign(d) == better) + 0.5 * (d == 0)).mean())


def min_detectable(s: float, n: int) -> float:
    """The smallest true mean difference a two-sided paired t-test at ALPHA finds with
    POWER, for n pairs of spread s."""
    if n < 2:
        return math.nan
    if s == 0:
        return 0.0
    df = n - 1
    t = stats.t.ppf(1 - ALPHA / 2, df)

    def power(nc):           # nc = delta·√n / s, the noncentrality of the t statistic
        return stats.nct.sf(t, df, nc) + _below(t, df, nc) - POWER
    return float(optimize.brentq(power, 0.0, t + 10, xtol=1e-12)) * s / math.sqrt(n)


def paired_effect(diffs, better: int, bounds=(-1.0, 1.0)) -> Effect:
    """`diffs` paired by seed; `better` is the sign of a change for the better (-1 when
    a lower value is better, as for method − baseline test error)."""
    d = np.sort(_finite(diffs))
    n = len(d)
    if n == 0:
        return Effect(0, math.nan, ())
    mean = float(d.mean())
    pi = probability_of_improvement(d, better)
    if n < MIN_N:
        return Effect(n, mean, tuple(map(float, d)), pi=pi)
    s = float(d.std(ddof=1))
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1) * s / math.sqrt(n))
    p = float(2 * stats.t.sf(abs(mean) / (s / math.sqrt(n)), n - 1)) if s > 0 else float(mean == 0)
    rng = np.random.default_rng(BOOT_SEED)
    boot = d[rng.integers(0, n, size=(N_BOOT, n))]
    shares = ((np.sign(boot) == better) + 0.5 * (boot == 0)).mean(axis=1)
    return Effect(n, mean, tuple(map(float, d)), max(bounds[0], mean - half),
                  min(bounds[1], mean + half), p, math.nan, pi,
                  float(np.percentile(shares, 100 * ALPHA / 2)),
                  float(np.percentile(shares, 100 * (1 - ALPHA / 2))), min_detectable(s, n))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment; NaN p-values (untested comparisons) stay NaN and do
    not count in the family."""
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, math.nan)
    tested = np.nonzero(~np.isnan(p))[0]
    m, running = len(tested), 0.0
    for rank, i in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def with_holm(effects: list[Effect]) -> list[Effect]:
    """The effects of one family, each with its Holm-adjusted p-value."""
    adjusted = holm([e.p for e in effects])
    return [replace(e, p_holm=float(a)) for e, a in zip(effects, adjusted)]
