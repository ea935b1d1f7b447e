"""The experiment report from synthetic records (no simulator): counts, aggregation over
seeds, paired comparisons, gaps, CSV / LaTeX / plots, partial cells."""

from __future__ import annotations

import csv
import re

import pytest

from para_bench.experiment.report import write_report
from para_bench.experiment.spec import parse_experiment
from para_bench.experiment.stages import expand
from para_bench.experiment.state import StageBook
from para_bench.metrics import mcnemar_exact, percent, stratified_bootstrap_rate, wilson_interval
from para_bench.results.store import RunStore
from para_bench.suites import get_suite
from para_bench.types import EpisodeRecord

N = 8
SPEC = {
    "name": "rep", "agents": ["para", "act"], "baselines": ["oracle"],
    "settings": ["in_dist", "pos_ood"], "demos": [5], "train_seeds": [0, 1], "episodes": N,
}


def outcome(agent: str, setting: str, seed: int | None, i: int) -> tuple[bool, str]:
    """(success, status) of episode i: a fixed pattern per row and setting."""
    if agent == "oracle":
        return (i != 3, "error" if i == 3 and setting == "pos_ood" else "ok")
    if agent == "para":
        return ((i + seed) % 2 == 0 if setting == "in_dist" else i % 4 == seed), "ok"
    if setting == "pos_ood":  # act: the last scene cannot take its perturbation
        return False, "infeasible" if i == N - 1 else "ok"
    return i % 3 == 0 and seed == 0, "ok"


def attempt_metrics(agent: str, i: int) -> dict:
    """Where episode i's first grasp attempt began: the oracle's records predate the
    metric; the others cycle none / on the object (1 cm) / away (10 cm)."""
    if agent == "oracle":
        return {}
    return [{"grasp_attempt_step": None, "grasp_attempt_m": None, "approached": False},
            {"grasp_attempt_step": 40, "grasp_attempt_m": 0.01, "approached": True},
            {"grasp_attempt_step": 40, "grasp_attempt_m": 0.10, "approached": False}][i % 3]


def _fill(root, stages, skip=(), unfinished=()):
    book = StageBook(root)
    for s in stages:
        if s.kind != "evaluate" or s.name in skip:
            continue
        m = s.meta
        plan = get_suite(m["setting"]).plan(m["split"], episodes=m["episodes"])
        store = RunStore(root / s.output)
        for i, spec in enumerate(plan):
            ok, status = outcome(m["agent"], m["setting"], m.get("train_seed"), i)
            store.append(EpisodeRecord(
                episode_id=spec.episode_id, spec=spec.to_dict(), task=spec.task,
                init_state=spec.init_state, perturbation=spec.perturbation,
                agent=m["agent"], status=status, success=ok and status == "ok", steps=10 + i,
                metrics={"jerk": 1.0 + i, "coverage": 0.5, "stage": "placed" if ok else "none",
                         **attempt_metrics(m["agent"], i),
                         **{f"spec_{k}": v for k, v in spec.extra.items()}}))
        if s.name not in unfinished:
            book.write_done(s, {"duration_s": 1.0, "finished": "t"})


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    spec = parse_experiment(SPEC)
    stages = expand(spec)
    _fill(root, stages)
    path = write_report(spec, stages, root)
    return root, path.read_text(), list(csv.DictReader(open(root / "report" / "cells.csv")))


def _expected(agent, setting, seeds=(0, 1)):
    per_seed = [[outcome(agent, setting, s, i) for i in range(N)] for s in seeds]
    return [[ok and st == "ok" for ok, st in seed if st != "infeasible"] for seed in per_seed]


def test_counts_per_cell_and_seed_match_the_records(report):
    root, md, rows = report
    for r in rows:
        if r["role"] != "test":
            continue
        seeds = (None,) if r["kind"] == "baseline" else \
            ((0, 1) if r["train_seed"] == "all" else (int(r["train_seed"]),))
        won = [w for seed in _expected(r["agent"], r["setting"], seeds) for w in seed]
        assert (int(r["k"]), int(r["n"])) == (sum(won), len(won)), r
    # aggregated rows: 2 agents x 2 settings x (test, held-out)
    assert len([r for r in rows if r["train_seed"] == "all"]) == 8
    heldout = [r for r in rows if r["role"] == "heldout" and r["train_seed"] == "0"
               and r["agent"] == "para"]
    assert {r["split"] for r in heldout} == {"val"} and {r["n"] for r in heldout} == {"20"}


def test_where_failed_grasps_began_matches_the_records(report):
    root, md, _ = report
    section = md.split("### Where failed grasps began")[1].split("\n### ")[0]
    for agent in ("para", "act", "oracle"):
        line = next(x for x in section.splitlines() if x.startswith(f"| {agent} |"))
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        for setting, text in zip(SPEC["settings"], cells, strict=True):
            seeds = (None,) if agent == "oracle" else (0, 1)
            counts = {"none": 0, "on_object": 0, "away": 0}
            failed = 0
            for seed in seeds:
                for i in range(N):
                    ok, status = outcome(agent, setting, seed, i)
                    if ok or status != "ok":
                        continue
                    failed += 1
                    if agent != "oracle":
                        counts[("none", "on_object", "away")[i % 3]] += 1
            expect = f"{counts['on_object']} / {counts['away']} / {counts['none']}"
            if agent == "oracle":
                expect += f" ({failed} not recorded)" if failed else ""
            assert text == expect, (agent, setting, text)


def test_grasp_attempt_reads_the_record():
    from para_bench.experiment.cells import grasp_attempt

    assert grasp_attempt({}) is None  # an older record
    assert grasp_attempt({"grasp_attempt_step": None, "grasp_attempt_m": None,
                          "approached": False}) == "none"
    # a task without a tracked object never "attempts": not the same as no attempt
    assert grasp_attempt({"grasp_attempt_step": None, "grasp_attempt_m": None,
                          "approached": None}) is None
    m = {"approached": True}
    assert grasp_attempt({**m, "grasp_attempt_step": 3, "grasp_attempt_m": 0.005}) == "on_object"
    assert grasp_attempt({**m, "grasp_attempt_step": 3, "grasp_attempt_m": 0.05}) == "away"


def test_matrix_cells_read_k_n_rate_and_interval(report):
    root, md, _ = report
    matrix = md.split("## Success matrix")[1].split("###")[0]
    lines = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
             for ln in matrix.splitlines() if ln.startswith("| ") and "---" not in ln}
    # oracle, one stratum: Wilson
    k, n = 7, N
    lo, hi = wilson_interval(k, n)
    assert lines["oracle"][0] == f"{k}/{n}  {percent(k / n)}% [{percent(lo)}, {percent(hi)}]"
    assert lines["oracle"][1].startswith("7/8") and "(1 err)" in lines["oracle"][1]
    # para, two seeds: mean of per-seed rates, stratified bootstrap
    strata = _expected("para", "pos_ood")
    rate, lo, hi = stratified_bootstrap_rate(strata)
    # half-up: a bound of exactly 1/16 reads 6.3, not Python's 6.2
    assert lines["para"][1] == f"4/16  {percent(rate)}% [{percent(lo)}, {percent(hi)}]"
    assert lines["*PARA single-frame (seed 001, quoted)*"] == ["*~46%*", "*54%*"]
    assert lines["act"][1].startswith("0/14  0.0% [") and "(2 infeasible)" in lines["act"][1]
    held = md.split("### Held-out scenes")[1].split("###")[0]
    para = next(ln for ln in held.splitlines() if ln.startswith("| para |"))
    assert "| 10/40  25.0%" in para  # the pos_ood pattern on 20 val scenes x 2 seeds
    # all failures over two seeds: the bootstrap would collapse to [0, 0]; Wilson instead
    lo, hi = wilson_interval(0, 38)
    assert f"0/38  0.0% [{percent(lo)}, {percent(hi)}]" in held


def test_paired_comparison_against_para_matches_a_direct_computation(report):
    _, md, _ = report
    section = md.split("### Paired comparison")[1].split("### Generalisation")[0]
    in_dist = section.split("**in_dist**")[1].split("**pos_ood**")[0]
    act_row = next(ln for ln in in_dist.splitlines() if ln.startswith("| act"))
    para = [w for s in _expected("para", "in_dist") for w in s]
    act = [w for s in _expected("act", "in_dist") for w in s]  # paired by seed and episode
    test = mcnemar_exact(para, act)
    cells = [c.strip() for c in act_row.split("|")[1:-1]]
    assert cells[1] == f"{sum(para)}/16" and cells[2] == f"{sum(act)}/16"
    assert cells[3].startswith(f"{100 * (sum(act) - sum(para)) / 16:+.1f} [")
    assert (int(cells[4]), int(cells[5])) == (test["b01"], test["b10"])
    assert float(cells[6]) == pytest.approx(test["p_value"], rel=1e-3)
    # the baseline pairs each of its episodes with both of para's seeds
    oracle_row = next(ln for ln in in_dist.splitlines() if ln.startswith("| oracle"))
    oracle = [w for w in _expected("oracle", "in_dist", (None,))[0]] * 2
    t2 = mcnemar_exact(para, oracle)
    cells = [c.strip() for c in oracle_row.split("|")[1:-1]]
    assert (int(cells[4]), int(cells[5])) == (t2["b01"], t2["b10"])


def test_gap_spread_plain_reading_and_files(report):
    root, md, _ = report
    gap = md.split("### Generalisation gap")[1].split("###")[0]
    act_gap = next(ln for ln in gap.splitlines() if ln.startswith("| act"))
    act_in = sum(w for s in _expected("act", "in_dist") for w in s) / 16  # seed means equal
    assert f"{100 * (0 - act_in):+.1f} [" in act_gap
    spread = md.split("### Per-seed spread")[1].split("##")[0]
    assert "s0 2/8, s1 2/8" in spread
    reading = md.split("### Plain reading")[1].split("###")[0]
    assert "Oracle on `in_dist`: 7/8: 1 test scene(s) not shown solvable -- below the 95%" \
        in reading
    assert "Cells with errors: oracle on pos_ood" in reading
    assert "Every learned model is at 0%" not in reading  # para solves some
    tex = (root / "report" / "matrix.tex").read_text()
    assert "\\toprule" in tex and "4/16" in tex and "$\\sim$46\\%" in tex
    for png in ("matrix", "bars", "perturbation"):
        assert (root / "report" / f"{png}.png").stat().st_size > 5000
        assert f"![{png}]({png}.png)" in md


def test_unfinished_stages_are_marked_partial(tmp_path):
    spec = parse_experiment({**SPEC, "train_seeds": [0]})
    stages = expand(spec)
    skip = {s.name for s in stages if s.kind == "evaluate" and s.meta["agent"] == "act"
            and s.meta["setting"] == "pos_ood"}
    _fill(tmp_path, stages, skip=skip)
    md = write_report(spec, stages, tmp_path).read_text()
    act = next(ln for ln in md.split("## Success matrix")[1].splitlines()
               if ln.startswith("| act"))
    assert re.search(r"\| - \* \|$", act), act  # no records yet, stage not done
    assert "Every learned model is at 0%" not in md
    assert "not done" in md.split("### Wall time per stage")[1]


def test_an_unfinished_oracle_row_proves_nothing_yet(tmp_path):
    spec = parse_experiment({**SPEC, "train_seeds": [0]})
    stages = expand(spec)
    oracle = {s.name for s in stages if s.meta.get("agent") == "oracle"}
    _fill(tmp_path, stages, unfinished=oracle)
    reading = write_report(spec, stages, tmp_path).read_text().split("### Plain reading")[1]
    assert "so far (unfinished)" in reading and "solvable" not in reading.split("###")[0]


def test_stratified_bootstrap_and_independent_difference():
    from para_bench.metrics import bootstrap_rate_diff

    strata = [[1, 1, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]]  # 50% and 12.5%: unequal sizes
    rate, lo, hi = stratified_bootstrap_rate(strata)
    assert rate == pytest.approx((0.5 + 0.125) / 2)  # mean of seeds, not pooled 3/12
    assert lo < rate < hi and (lo, hi) == stratified_bootstrap_rate(strata)[1:]
    assert stratified_bootstrap_rate([[1, 1, 1]]) == (1.0, 1.0, 1.0)
    diff, lo, hi = bootstrap_rate_diff([[1] * 9 + [0]], [[0] * 10])
    assert diff == pytest.approx(-0.9) and lo <= -0.7 and hi <= -0.6
