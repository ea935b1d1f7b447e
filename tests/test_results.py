"""Record store, tables and plots on hand-built records (no simulator)."""

from __future__ import annotations

import json
import math

import pytest

from para_bench.results import ResultsFormatError, RunStore, find_runs
from para_bench.results.plots import plot_comparison
from para_bench.results.tables import (
    format_table,
    paired_comparison,
    records_frame,
    summary_table,
    to_markdown,
)
from para_bench.types import RECORD_FORMAT_VERSION, EpisodeRecord, EpisodeSpec


def make_record(
    agent: str,
    init_state: int,
    success: bool,
    status: str = "ok",
    suite: str = "pos_ood",
    split: str = "test",
    metrics: dict | None = None,
) -> EpisodeRecord:
    spec = EpisodeSpec(
        suite=suite,
        suite_version=1,
        split=split,
        benchmark="libero_spatial",
        task_id=0,
        init_state=init_state,
        seed=init_state,
    )
    return EpisodeRecord(
        episode_id=spec.episode_id,
        spec=spec.to_dict(),
        task=spec.task,
        init_state=init_state,
        perturbation=spec.perturbation,
        agent=agent,
        status=status,
        success=success and status == "ok",
        steps=100 + init_state,
        metrics=metrics if metrics is not None else {"jerk": 2.0, "coverage": 0.5},
        error="boom" if status == "error" else None,
        wall_time_s=1.5,
    )


# -- store ------------------------------------------------------------------------------------


def test_append_read_round_trip(tmp_path):
    store = RunStore(tmp_path / "run")
    recs = [make_record("para", i, i % 2 == 0) for i in range(3)]
    for r in recs:
        store.append(r)
    back = store.records()
    assert [r.episode_id for r in back] == [r.episode_id for r in recs]
    assert back[0] == recs[0]
    assert store.finished_ids() == {r.episode_id for r in recs}
    lines = store.episodes_path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x)["format"] == RECORD_FORMAT_VERSION for x in lines)


def test_missing_folder_reads_empty(tmp_path):
    store = RunStore(tmp_path / "nothing")
    assert store.records() == [] and store.read_manifest() is None
    assert not store.path.exists()


def test_torn_last_line_skipped_then_repaired(tmp_path):
    store = RunStore(tmp_path)
    store.append(make_record("para", 0, True))
    full = make_record("para", 1, True).to_json()
    with open(store.episodes_path, "a") as f:
        f.write(full[: len(full) // 2])  # killed mid-write
    assert [r.init_state for r in store.records()] == [0]

    RunStore(tmp_path).append(make_record("para", 2, False))
    text = store.episodes_path.read_text()
    assert text.endswith("\n")
    assert [json.loads(x)["init_state"] for x in text.splitlines()] == [0, 2]
    assert [r.init_state for r in store.records()] == [0, 2]


def test_repair_keeps_complete_line_without_newline(tmp_path):
    store = RunStore(tmp_path)
    store.episodes_path.write_text(make_record("para", 0, True).to_json())
    assert store.repair() == 0
    store.append(make_record("para", 1, True))
    assert [r.init_state for r in store.records()] == [0, 1]


def test_corrupt_middle_line_raises(tmp_path):
    store = RunStore(tmp_path)
    good = make_record("para", 0, True).to_json()
    store.episodes_path.write_text(good + "\n{not json\n" + good + "\n")
    with pytest.raises(ResultsFormatError, match="line 2"):
        store.records()


def test_record_format_mismatch_raises(tmp_path):
    store = RunStore(tmp_path)
    d = json.loads(make_record("para", 0, True).to_json())
    d["format"] = RECORD_FORMAT_VERSION + 1
    store.episodes_path.write_text(json.dumps(d) + "\n" + make_record("a", 1, True).to_json())
    with pytest.raises(ResultsFormatError, match="episodes.jsonl"):
        store.records()


def test_a_later_record_of_an_episode_replaces_the_earlier(tmp_path):
    store = RunStore(tmp_path)  # an errored episode re-run with --retry-errors
    store.append(make_record("para", 0, False))
    store.append(make_record("para", 1, False))
    store.append(make_record("para", 0, True))
    recs = store.records()
    assert len(recs) == 2 and recs[0].success is True and recs[0].episode_id < "~"
    assert [r.episode_id for r in recs] == [make_record("para", i, False).episode_id
                                            for i in (0, 1)]


def test_manifest_checks(tmp_path):
    store = RunStore(tmp_path / "run")
    manifest = {"plan_hash": "abc", "format": RECORD_FORMAT_VERSION, "command": "para-bench run"}
    store.check_manifest(manifest)  # nothing stored yet
    store.write_manifest(manifest)
    assert store.read_manifest() == manifest
    assert store.manifest_path.read_text().startswith("{\n")
    store.check_manifest(dict(manifest))

    with pytest.raises(ResultsFormatError, match="different episode plan.*another --out"):
        store.check_manifest({**manifest, "plan_hash": "xyz"})

    store.write_manifest({**manifest, "format": RECORD_FORMAT_VERSION + 1})
    with pytest.raises(ResultsFormatError, match="newer para-bench"):
        store.check_manifest(manifest)
    store.write_manifest({**manifest, "format": 0})
    with pytest.raises(ResultsFormatError, match="older para-bench"):
        store.check_manifest(manifest)


def test_find_runs(tmp_path):
    for name in ("b/run2", "a/run1"):
        RunStore(tmp_path / name).append(make_record("para", 0, True))
    (tmp_path / "empty").mkdir()
    assert find_runs(tmp_path) == [tmp_path / "a/run1", tmp_path / "b/run2"]
    assert find_runs(tmp_path / "a/run1") == [tmp_path / "a/run1"]
    assert find_runs(tmp_path / "missing") == []


# -- tables -----------------------------------------------------------------------------------


@pytest.fixture
def two_agents(tmp_path):
    """para: 17/20 ok successes. act: 10/20 successes, 2 errors, on the same 20 episodes."""
    para, act = RunStore(tmp_path / "para"), RunStore(tmp_path / "act")
    for i in range(20):
        para.append(make_record("para", i, i < 17, metrics={"jerk": 1.0, "latency": {"ms": 5}}))
        status = "error" if i >= 18 else "ok"
        act.append(make_record("act", i, i < 10, status=status, metrics={"jerk": 3.0}))
    return tmp_path


def test_records_frame_columns(two_agents):
    df = records_frame([two_agents / "para", two_agents / "act"])
    assert len(df) == 40
    for col in ("run", "agent", "suite", "split", "task", "episode_id", "status", "success"):
        assert col in df.columns
    for col in ("steps", "jerk", "accel_mean", "coverage", "coverage_3d", "path_length"):
        assert col in df.columns
    assert "latency.ms" in df.columns
    row = df[df["agent"] == "para"].iloc[0]
    assert (row["suite"], row["split"], row["task"]) == ("pos_ood", "test", "libero_spatial/0")
    assert math.isnan(row["coverage"]) and row["latency.ms"] == 5.0
    assert len(records_frame(two_agents)) == 40  # a root folder is expanded with find_runs


def test_summary_counts_errors_as_failures(two_agents):
    summary = summary_table(records_frame(two_agents)).set_index("agent")
    para, act = summary.loc["para"], summary.loc["act"]
    assert (para["k"], para["n"], para["errors"]) == (17, 20, 0)
    assert para["success_pct"] == pytest.approx(85.0)
    assert para["ci_low_pct"] == pytest.approx(63.9575, abs=1e-3)
    assert (act["k"], act["n"], act["errors"]) == (10, 20, 2)
    assert act["success_pct"] == pytest.approx(50.0)
    assert act["jerk"] == pytest.approx(3.0)
    assert act["steps"] == pytest.approx(sum(100 + i for i in range(18)) / 18)  # ok only


def test_format_table_and_markdown(two_agents):
    summary = summary_table(records_frame(two_agents))
    text = format_table(summary)
    assert "17/20  85.0% [64.0, 94.8]" in text
    assert "10/20  50.0%" in text
    lines = text.splitlines()
    assert lines[0].startswith("agent") and "errors" in lines[0]
    md = to_markdown(summary)
    assert md.splitlines()[1].startswith("|---") and "17/20" in md


def test_paired_comparison(two_agents):
    df = records_frame(two_agents)
    res = paired_comparison(df, "act", "para")
    assert res["n_pairs"] == 20 and res["only_a"] == res["only_b"] == 0
    assert (res["k_a"], res["k_b"]) == (10, 17)
    assert res["diff"] == pytest.approx(0.35)
    assert res["ci_low"] <= 0.35 <= res["ci_high"]
    # a fails, b succeeds on episodes 10..16 -> b01 = 7, b10 = 0: p = 2 / 2^7.
    assert (res["b01"], res["b10"]) == (7, 0)
    assert res["p_value"] == pytest.approx(2 / 128)
    assert paired_comparison(df, "act", "para", suite="other")["n_pairs"] == 0


# -- plots ------------------------------------------------------------------------------------


def test_plot_comparison_writes_png(two_agents, tmp_path):
    summary = summary_table(records_frame(two_agents))
    out = plot_comparison(summary, tmp_path / "plots" / "cmp.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_single_agent_single_suite(tmp_path):
    store = RunStore(tmp_path / "run")
    store.append(make_record("para", 0, True))
    out = plot_comparison(summary_table(records_frame([store.path])), tmp_path / "one.png")
    assert out.stat().st_size > 1000


def test_rows_are_keyed_by_identity_not_file_names(tmp_path):
    base = {"control": "servo", "max_steps": 600, "action_scale": 1.0, "image_size": 128}
    runs = [("a", "x/ckpt.pt", "aaaa1111", base, None),
            ("b", "y/ckpt.pt", "bbbb2222", base, None),  # same file name, other weights
            ("c", "x/ckpt.pt", "aaaa1111", {**base, "control": "teleport"}, None),
            ("d", "x/ckpt.pt", "aaaa1111", {**base, "max_steps": 300}, None),
            ("e", "x/ckpt.pt", "aaaa1111", base, {"servo": 3, "teleport": 1})]
    for folder, ckpt, sha, identity, modes in runs:
        store = RunStore(tmp_path / folder)
        store.write_manifest({"format": RECORD_FORMAT_VERSION, "identity": identity})
        rec = make_record("para", 0 if folder != "e" else 1, True,
                          metrics={"control_modes": modes} if modes else None)
        rec.checkpoint, rec.checkpoint_sha = ckpt, sha
        store.append(rec)
    labels = sorted(summary_table(records_frame(tmp_path))["agent"])
    assert labels == ["para[ckpt@aaaa1111]", "para[ckpt@aaaa1111] (max_steps=300)",
                      "para[ckpt@aaaa1111] (servo+teleport)", "para[ckpt@aaaa1111] (teleport)",
                      "para[ckpt@bbbb2222]"]


def test_compare_refuses_runs_of_other_settings(tmp_path):
    for folder, agent, steps in [("a", "para", 600), ("b", "act", 300)]:
        store = RunStore(tmp_path / folder)
        store.write_manifest({"format": RECORD_FORMAT_VERSION,
                              "identity": {"control": "servo", "max_steps": steps}})
        for i in range(3):
            store.append(make_record(agent, i, True))
    df = records_frame(tmp_path)
    with pytest.raises(ValueError, match="different settings.*max_steps 600 vs 300"):
        paired_comparison(df, "para", "act (max_steps=300)")
