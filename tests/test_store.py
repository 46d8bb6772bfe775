"""The run folder and the record: run ids name the directories, RunDir spells the files,
RunRecord reads every record of schema v1 (optional fields tolerated), one lock helper."""

import pytest

from harness import store
from harness.errors import UserError


def test_run_dir_is_derived_from_run_id(tmp_path):
    from harness.spec import RunSpec
    a = RunSpec("cnn", "lenet5", "mnist", seed=1)
    b = RunSpec("cnn", "lenet5", "mnist", seed=2)
    assert store.run_dir(tmp_path, a).name == a.run_id and a.run_id.endswith("-s1")
    assert a.config_hash() == b.config_hash() and a.run_id != b.run_id
    assert RunSpec("cnn", "lenet5", "mnist", lr=0.1).config_hash() != a.config_hash()
    assert store.run_dir(tmp_path, RunSpec("cnn", "lenet5", "/x/my data.npz")).parts[-3] == "npz-my_data"


def test_run_dir_spells_the_files_once(tmp_path):
    from harness.spec import RunSpec
    rd = store.RunDir.of(tmp_path, RunSpec("cnn", "lenet5", "mnist", seed=3))
    assert rd.path == store.run_dir(tmp_path, RunSpec("cnn", "lenet5", "mnist", seed=3))
    assert [p.name for p in (rd.result, rd.history, rd.checkpoint, rd.attempts)] == \
        ["result.json", "history.csv", "checkpoint.pt", "attempts.jsonl"]
    assert rd.staging.path == rd.path / ".staging" and store.RUN_FILES[-1] == "result.json"
    assert rd.read() is None and rd.record() is None and not rd.is_finished()
    rd.write({"status": "complete", "metrics": {"test_acc": 0.5}}, history=[{"epoch": 1}])
    with pytest.raises(UserError, match="says complete but lacks metrics.test_error"):
        rd.is_finished()          # a "complete" record without its numbers is not whole
    whole = {"status": "complete", "metrics": {"test_acc": 0.5, "test_error": 0.5, "epochs_done": 1},
             "timing": {"train_s": 1.0, "train_s_per_epoch": 1.0, "throughput_img_s": 9.0}}
    rd.write(whole, history=[{"epoch": 1}])
    assert rd.history.read_text() == "epoch\n1\n" and rd.is_finished()
    assert rd.record().test_acc == 0.5 and store.read_record(rd.path)["status"] == "complete"


def test_run_record_reads_every_v1_record():
    """Every field but the status is optional; a missing or malformed section reads empty."""
    bare = store.RunRecord.from_json({"status": "failed"})
    assert (bare.spec, bare.metrics, bare.ops, bare.reason, bare.params) == ({}, {}, {}, "", None)
    assert not bare.is_finished and bare.threads is None and not bare.unreliable
    old = store.RunRecord.from_json({"status": "complete", "spec": {"threads": 0},
                                     "environment": {"threads": 2}, "contention": None,
                                     "ops": None, "reason": None})
    assert old.is_complete and old.threads == 2 and old.ops == {} and old.reason is None
    new = store.RunRecord.from_json({"status": "diverged", "schema_version": 1,
                                     "contention": {"threads": 1, "unreliable": True,
                                                    "reasons": ["load"]}})
    assert new.is_finished and not new.is_complete and new.threads == 1
    assert new.unreliable and new.unreliable_reasons == ["load"] and new.raw["schema_version"] == 1
    with pytest.raises(ValueError):
        store.RunRecord.from_json([1, 2])


def test_one_lock_helper_for_runs_and_suites(tmp_path):
    run, suite = tmp_path / "run", tmp_path / "suite"
    with store.RunDir(run).lock() as created:
        assert created == [run] and (run / ".lock").exists()
        with pytest.raises(store.RunLocked, match="running elsewhere"):
            with store.RunDir(run).lock():
                pass
        store.RunDir(run).clear(created)          # only the lock in it: removed again
    assert not run.exists()
    (suite / ".manifest.json.x.tmp").parent.mkdir()
    (suite / ".manifest.json.x.tmp").write_text("{")      # a killed writer's file
    with store.locked(suite, wait=True):
        assert not (suite / ".manifest.json.x.tmp").exists()

