"""Reproduction verdicts, ablation effects and cost (reports/reproduction.py)."""

import math

import pandas as pd
import pytest

from reports import aggregate, reproduction
from reports.render import PUBLISHED


def stats(values):
    return aggregate.seed_stats(values)


def verdict(paper, values, *, comparable=True, subset=False, epochs=10, paper_epochs=800):
    return reproduction.test_error_verdict(paper, paper_epochs, comparable, "their setting",
                                           stats(values), subset, epochs)


def test_inside_the_interval_is_reproduced_and_names_the_budget():
    v = verdict(0.0072, [0.0068, 0.0072, 0.0076])
    assert v.startswith("reproduced: ") and "at 10 epochs; the paper trained 800" in v


def test_just_outside_is_reproduced_within_the_stated_tolerance():
    st = stats([0.0080, 0.0081, 0.0082])
    assert st.low > 0.0072 and st.low - 0.0072 <= reproduction.TOLERANCE
    assert verdict(0.0072, [0.0080, 0.0081, 0.0082]).startswith("reproduced within the 0.10 pp")


def test_far_off_is_not_reproduced_with_direction_and_size():
    v = verdict(0.0067, [0.0120, 0.0125, 0.0130])
    assert v.startswith("not reproduced: ours is higher by")
    assert verdict(0.05, [0.0120, 0.0125, 0.0130]).startswith("not reproduced: ours is lower by")


@pytest.mark.parametrize("kw, reason", [({"comparable": False}, "their setting"),
                                        ({"subset": True}, "subset")])
def test_not_comparable_says_why(kw, reason):
    v = verdict(0.0072, [0.007, 0.007, 0.007], **kw)
    assert v.startswith("not comparable") and reason in v


def test_two_seeds_get_no_verdict():
    assert "needs 3" in verdict(0.0072, [0.007, 0.008])


def test_macs_in_the_paper_convention():
    assert reproduction.macs_verdict(692000, 692160, True, "x").startswith("reproduced")
    assert reproduction.macs_verdict(692000, 900000, True, "x").startswith("not reproduced")
    assert reproduction.macs_verdict(368000, None, False, "paper's own").startswith("not comparable")


def runs_frame(errors: dict) -> pd.DataFrame:
    rows = [{"method": m, "arch": "lenet5", "dataset": "mnist", "cohort": "c", "seed": s,
             "status": "complete", "test_error": e} for (m, s), e in errors.items()]
    return pd.DataFrame(rows)


def test_ablation_pairs_by_seed_and_says_whether_removal_hurts():
    abl = [a for a in reproduction.load_ablations(PUBLISHED) if a["without"] == "cemnet-no-dropout"]
    # seed effects are large, the paired effect small but consistent: pairing finds it
    errs = {("cemnet", 0): 0.0060, ("cemnet", 1): 0.0090, ("cemnet", 2): 0.0120,
            ("cemnet-no-dropout", 0): 0.0070, ("cemnet-no-dropout", 1): 0.0101,
            ("cemnet-no-dropout", 2): 0.0129}
    (e,) = [r for _, r in reproduction.ablation_effects(runs_frame(errs), abl).iterrows()]
    assert e["n_pairs"] == 3 and e["diff"].low > 0 and e["verdict"].startswith("removing it hurts")
    assert e["paper_diff"] == pytest.approx(0.0024)
    flat = {k: (0.0070 if k[0] == "cemnet" else v) for k, v in errs.items()}
    flat[("cemnet-no-dropout", 1)] = 0.0060
    (e,) = [r for _, r in reproduction.ablation_effects(runs_frame(flat), abl).iterrows()]
    assert e["verdict"].startswith("no detectable effect")


def test_cost_per_run_and_projection():
    runs = pd.DataFrame([{"method": "cnn", "arch": "lenet5", "variant": "", "cohort": "c",
                          "status": "complete", "epochs_done": 10, "wall_s": 600.0 + 60 * s,
                          "data_load_s": 3.0, "test_eval_s": 1.0, "device": "cpu",
                          "unreliable": False} for s in range(3)])
    cost = reproduction.cost_table(runs, pd.DataFrame())
    (r,) = [r for _, r in cost.iterrows()]
    assert r["runs"] == 3 and r["min_per_run"] == pytest.approx((604 + 664 + 724) / 3 / 60)
    assert r["hours_at_paper_budget"] == pytest.approx(r["min_per_epoch"] * 800 / 60)
    step = pd.DataFrame([{"method": "cnn", "arch": "vgg-small", "batch": 100, "train_ms": 50.0,
                          "train_graph_ms": math.nan, "infer_ms": 10.0, "device_name": "cpu"}])
    (p,) = [p for _, p in reproduction.step_projection(step, 45000, 5000, 800).iterrows()]
    assert p["step"] == "eager"
    assert p["hours_per_run"] == pytest.approx((450 * 50 + 50 * 10) / 1000 * 800 / 3600)
