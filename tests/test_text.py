"""harness/text.py: counts with their nouns, notices said once."""

from harness import text
from harness.runner import execute, summary_line
from harness.suite import make_spec


def test_plural():
    assert text.plural(1, "seed") == "1 seed" and text.plural(0, "seed") == "0 seeds"
    assert text.plural(2, "paired seed") == "2 paired seeds" and text.plural(1, "hour") == "1 hour"
    assert text.plural(12000, "run") == "12,000 runs"


def test_duration():
    assert [text.duration(s) for s in (4.4, 89, 600, 7200)] == ["4 s", "89 s", "10 min", "2.0 h"]


def test_subset_notice_once_per_process(tmp_path, capsys, monkeypatch):
    """Two runs on one --subset say it once (before: once per run, 31 times in `check`),
    and a one-epoch run's summary says '1 epoch' (before: '1 epochs')."""
    monkeypatch.setattr(text, "_SAID", set())      # as in a fresh process
    for seed in (0, 1):
        record = execute(make_spec("cnn", None, "synthetic", epochs=1, subset=200, seed=seed,
                                   batch_size=50), results_dir=tmp_path, progress=False)
    err = capsys.readouterr().err
    assert err.count("notice: --subset 200") == 1, err
    assert "after 1 epoch;" in summary_line(record)
