"""How numbers read in the report's cells: counts with units, fractions over seeds (by the
rule of aggregate.CI_METHOD), p-values, probabilities and their intervals."""

from __future__ import annotations

import math

from reports import aggregate


def missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_num(x, digits=3) -> str:
    if missing(x):
        return "–"
    x = float(x)
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.{digits}g}{unit}" if x / div < 100 else f"{x / div:.1f}{unit}"
    return f"{x:.{digits}g}"


def fmt_fixed(x, digits: int) -> str:
    if missing(x):
        return "–"
    return f"{float(x):.{digits}f}"


def fmt_stat(st, signed: bool = False) -> str:
    """A fraction over seeds (aggregate.SeedStats or inference.Effect), in % (or pp when
    `signed`), by the rule of aggregate.CI_METHOD: n >= 3 'mean [low, high] (n=k)';
    n < 3 the values themselves, never an interval."""
    if st.n == 0:
        return "–"
    f = (lambda v: f"{100 * v:+.2f}") if signed else (lambda v: f"{100 * v:.2f}")
    unit = " pp" if signed else "%"
    if st.n < aggregate.MIN_N_INTERVAL:
        return f"{', '.join(f(v) for v in st.values)}{unit} (n={st.n})"
    return f"{f(st.mean)}{unit} [{f(st.low)}, {f(st.high)}] (n={st.n})"


def row_stats(r) -> aggregate.SeedStats:
    return aggregate.SeedStats(int(r["n"]), r["test_error_mean"], tuple(r["test_error_values"]),
                               r["test_error_low"], r["test_error_high"])


def fmt_size(n, subset) -> str:
    if missing(n):
        return "unrecorded"
    return f"{int(n):,}" + (" (subset)" if subset else "")


def fmt_p(p) -> str:
    if missing(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def fmt_effect_tests(e) -> dict:
    """The test columns of a paired effect (inference.Effect): p and Holm-adjusted p, the
    probability of improvement with its bootstrap interval, the minimum detectable difference."""
    if e.n == 0:
        return {"p (Holm)": "–", "P(improvement)": "–", "MDD (80%)": "–"}
    share = f"{e.pi:.2f}" + ("" if missing(e.pi_low) else f" [{e.pi_low:.2f}, {e.pi_high:.2f}]")
    return {"p (Holm)": "–" if missing(e.p) else f"{fmt_p(e.p)} ({fmt_p(e.p_holm)})",
            "P(improvement)": share,
            "MDD (80%)": "–" if missing(e.mdd) else f"{100 * e.mdd:.2f} pp"}
