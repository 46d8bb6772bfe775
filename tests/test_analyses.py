"""Analyses of finished runs (reports/): the Rippel §5.2 speed-up from two runs' histories,
and static DCT subsets derived from gate runs."""

import pytest
import torch

from reports import dct_subset_from_gate, speedup

pytestmark = pytest.mark.usefixtures("one_thread")


def test_speedup_from_histories(tmp_path):
    sp = speedup
    # spatial best 0.30 first at epoch 4; spectral reaches <= 0.30 at epoch 2 -> 2.0
    r = sp.speedup([0.6, 0.45, 0.35, 0.30, 0.31, 0.30], [0.5, 0.29, 0.28, 0.3])
    assert (r["epoch_best_spatial"], r["epoch_reached_spectral"], r["speedup"]) == (4, 2, 2.0)
    r = sp.speedup([0.6, 0.3], [0.5, 0.4, 0.35])                    # never reached: bound
    assert r["epoch_reached_spectral"] is None and r["speedup_bound"] == "<"
    assert r["speedup"] == pytest.approx(2 / 3)
    for name, errs in (("a", [0.5, 0.2]), ("b", [0.2, 0.1])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "history.csv").write_text(
            "epoch,val_acc\n" + "".join(f"{i + 1},{1 - e}\n" for i, e in enumerate(errs)))
    out = tmp_path / "s.csv"
    assert sp.main(["--spatial", str(tmp_path / "a"), "--spectral", str(tmp_path / "b"),
                    "--out", str(out)]) == 0
    import csv
    (row,) = list(csv.DictReader(out.open()))
    assert (row["epoch_best_spatial"], row["epoch_reached_spectral"]) == ("2", "1")
    assert float(row["speedup"]) == 2.0


def test_subset_derivation_from_gate_frequencies():
    """reports/dct_subset_from_gate.py keeps the most frequently selected channels; ties go
    to the lower component, then the lower u + v."""
    mod = dct_subset_from_gate
    freq = torch.zeros(48, dtype=torch.float64)
    freq[[0, 1, 4, 16, 32]] = 0.9                 # Y (0,0) (0,1) (1,0), Cb DC, Cr DC
    freq[7] = 0.95                                 # Y (1,3): on most often, breaks the down-set
    freq[[2, 5, 8]] = 0.5                          # a tie: Y (0,2) (1,1) (2,0)
    d6 = mod.derive(freq, 3, 4, 6)
    assert d6["channels"] == [0, 1, 4, 7, 16, 32] and not d6["down_set"]
    assert not d6["tied_at_cut"] and mod.derive(freq, 3, 4, 7)["tied_at_cut"]
    assert d6["per_component"] == [4, 1, 1]
    d8 = mod.derive(freq, 3, 4, 8)
    assert d8["channels"] == [0, 1, 2, 4, 5, 7, 16, 32]   # ties: (0,2) and (1,1) before (2,0)
    freq[7] = 0.0
    assert mod.derive(freq, 3, 4, 5)["down_set"]
    assert mod.derive(freq, 3, 4, 5)["subset"] == "0,1,4,16,32"
