"""`skill-sd-trl experiment`: a methods × seeds matrix on the tiny model, resume, --cell, aggregation, bad configs."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import yaml

from skill_sd_trl import experiment as ex
from skill_sd_trl.experiment import cell
from skill_sd_trl.experiment.results import read_cell
from skill_sd_trl.cli import main

ROOT = Path(__file__).resolve().parent.parent
BASE_RECIPE = ROOT / "recipes" / "sokoban" / "skill_sd_cpu.yaml"
SHIPPED = ROOT / "recipes" / "sokoban" / "experiments" / "experiment_cpu.yaml"
PNG = b"\x89PNG\r\n\x1a\n"
METHODS, SEEDS = ("grpo", "skill_sd"), (0, 1)


def tiny_config(folder: Path, model: str, **changes) -> Path:
    """Two methods, two seeds, two steps evaluated after each on 3 test levels and the 1 training task."""
    data = {
        "base_recipe": str(BASE_RECIPE),
        "overrides": {"model_name_or_path": model, "env_args": {"preset": "tiny"}, "max_train_samples": 1,
                      "max_turns": 2,
                      "max_new_tokens_per_turn": 4, "per_device_train_batch_size": 4, "num_generations": 4},
        "methods": {"grpo": None, "skill_sd": None},  # the methods as skill_sd_trl/app/methods.py defines them
        "seeds": list(SEEDS), "task_sets": [0], "max_steps": 2, "eval_every": 1,
        "eval": {"test_tasks": 3, "train_tasks": 1}, "summarizer_wait": 30, "output_dir": str(folder / "out"),
    }
    data.update(changes)
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def events(out: Path) -> list[dict]:
    path = out / ex.EVENTS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def ran(new_events: list[dict]) -> list[tuple[str, int]]:
    return [(e["method"], e["seed"]) for e in new_events if e["event"] == "run"]


def result(out: Path, method: str, seed: int) -> dict:
    return json.loads((out / "cells" / method / f"seed{seed}-tasks0" / ex.RESULT_FILE).read_text())


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, tiny_model_path):
    """``--cell grpo:0`` on a fresh folder, then the whole matrix (which must skip that cell)."""
    folder = tmp_path_factory.mktemp("experiment")
    config = tiny_config(folder, tiny_model_path)
    out = folder / "out"
    assert main(["experiment", "--config", str(config), "--cell", "grpo:0"]) == 0
    after_cell = events(out)
    assert main(["experiment", "--config", str(config)]) == 0
    return {"config": config, "out": out, "after_cell": after_cell, "after_matrix": events(out)[len(after_cell):]}


def test_cell_runs_one_cell_alone(matrix):
    assert ran(matrix["after_cell"]) == [("grpo", 0)]
    # (before the matrix ran, only that cell had a result: the matrix then ran exactly the three others)
    assert ("grpo", 0) not in ran(matrix["after_matrix"])


def test_matrix_skips_finished_cells_and_runs_the_rest(matrix):
    new = matrix["after_matrix"]
    assert [(e["method"], e["seed"]) for e in new if e["event"] == "skip"] == [("grpo", 0)]
    assert sorted(ran(new)) == [("grpo", 1), ("skill_sd", 0), ("skill_sd", 1)]
    assert not [e for e in new if e["event"] == "fail"]


def test_each_cell_records_curves_timing_memory_and_trainer_logs(matrix):
    for method in METHODS:
        for seed in SEEDS:
            r = result(matrix["out"], method, seed)
            assert (r["method"], r["seed"], r["task_set"], r["max_steps"]) == (method, seed, 0, 2)
            assert r["recipe"]["seed"] == seed and r["recipe"]["env_args"]["seed"] == 0
            assert r["recipe"]["summarizer_wait"] == 30
            assert [e["step"] for e in r["evals"]] == [0, 1, 2]  # step 0 = the base model, then every K=1 steps
            assert all(e["test_episodes"] == 3 and e["train_episodes"] == 1 for e in r["evals"])
            assert all(0.0 <= e["test_acc"] <= 100.0 and 0.0 <= e["test_comp"] <= 100.0 for e in r["evals"])
            for e in r["evals"]:  # how the greedy episodes ended (test_evaluation_rows_say_how_the_episodes_ended)
                for split in ("test", "train"):
                    env = e[f"{split}_env"]
                    assert sum(v for k, v in env.items() if k.startswith("env/sokoban/stop/")) == pytest.approx(1.0)
                    assert 1 <= env["env/sokoban/turns"] <= 2
            assert [s["step"] for s in r["steps"]] == [1, 2] and all(s["seconds"] > 0 for s in r["steps"])
            # training time excludes evaluation: the sum of the step times, and less than the cell's wall clock
            assert r["train_seconds"] == pytest.approx(sum(s["seconds"] for s in r["steps"]))
            assert r["evals"][-1]["train_seconds"] == pytest.approx(r["train_seconds"])
            assert r["train_seconds"] + r["eval_seconds"] < r["wall_seconds"]
            assert r["mean_step_seconds"] == pytest.approx(r["train_seconds"] / 2)
            assert r["peak_rss_mb"] > 50 and r["peak_memory_mb"] == r["peak_rss_mb"] and r["memory_kind"] == "rss"
            assert r["final"] == {k: r["evals"][-1][k] for k in r["final"]}
            assert all("loss" in s["log"] for s in r["steps"])
            assert r["machine"] == cell.machine_info()  # what the timings depend on (all cells ran here)
    sd = result(matrix["out"], "skill_sd", 0)
    # step 1 waited for its skills (summarizer_wait): step 2's teacher had one, so the diagnostics were logged
    assert sd["steps"][1]["log"]["skills/coverage"] > 0 and "teacher/logp_gap" in sd["steps"][1]["log"]
    assert "self_distillation/sdl" in sd["steps"][1]["log"]
    assert "self_distillation/sdl" not in result(matrix["out"], "grpo", 0)["steps"][1]["log"]
    assert (matrix["out"] / "cells" / "skill_sd" / "seed0-tasks0" / "skill_bank.json").exists()


def test_the_base_model_is_evaluated_once_and_its_result_shared_by_every_cell(matrix):
    out = matrix["out"]
    files = list((out / ex.BASE_EVALS_DIR).glob("*.json"))
    assert len(files) == 1  # one base model, one task set, one evaluation setting
    stored = json.loads(files[0].read_text())
    first = result(out, "grpo", 0)["evals"][0]  # the first cell that ran evaluated the base model itself
    assert "shared" not in first and first["eval_seconds"] > 0
    assert {k: first[k] for k in stored} == stored
    for method, seed in [("grpo", 1), ("skill_sd", 0), ("skill_sd", 1)]:
        base = result(out, method, seed)["evals"][0]
        assert base["shared"] is True and base["eval_seconds"] == 0.0
        for key in ("step", "test_acc", "test_comp", "test_reward", "test_episodes", "train_acc", "train_episodes"):
            assert base[key] == stored[key]


def test_cells_share_a_base_evaluation_only_when_it_is_the_same_evaluation(tmp_path, tiny_model_path):
    exp = ex.load_experiment(tiny_config(tmp_path, tiny_model_path))
    path = ex.base_eval_path(exp, "grpo", 0, 0)
    assert path == ex.base_eval_path(exp, "skill_sd", 1, 0)  # method and seed do not change the step-0 model
    assert path != ex.base_eval_path(exp, "grpo", 0, 1)  # another task set
    other = ex.load_experiment(tiny_config(tmp_path, tiny_model_path, eval={"test_tasks": 2, "train_tasks": 1}))
    assert ex.base_eval_path(other, "grpo", 0, 0) != path
    moved = ex.load_experiment(tiny_config(tmp_path, tiny_model_path, methods={
        "grpo": {"sdl_coef": 0.0}, "skill_sd": {"sdl_coef": 0.001, "max_turns": 1}}))
    assert ex.base_eval_path(moved, "grpo", 0, 0) != ex.base_eval_path(moved, "skill_sd", 0, 0)  # a rollout limit
    sdl = ex.load_experiment(tiny_config(tmp_path, tiny_model_path, methods={
        "grpo": None, "dense": {"method": "skill_sd", "sdl_estimator": "dense", "sdl_reduction": "sequence_sum"}}))
    assert ex.base_eval_path(sdl, "grpo", 0, 0) == ex.base_eval_path(sdl, "dense", 0, 0)  # the loss only
    split = ex.load_experiment(tiny_config(tmp_path, tiny_model_path, methods={
        "grpo": None, "skill_sd": {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2}}))
    assert ex.base_eval_path(split, "grpo", 0, 0) == ex.base_eval_path(split, "skill_sd", 0, 0)  # micro-batches only
    sampled = ex.load_experiment(tiny_config(tmp_path, tiny_model_path, eval={"greedy": False}))
    assert ex.base_eval_path(sampled, "grpo", 0, 0) is None
    # the app world's demonstration bank changes the teacher only: its cells share the committed base evaluation
    app = ex.load_experiment(Path(__file__).resolve().parent.parent / "recipes" / "appworld_offline" / "experiments"
                             / "experiment_cpu.yaml")
    (shared,) = {ex.base_eval_path(app, m, 0, 0) for m in ("grpo", "skill_sd_demo_bank", "skill_sd_demo_bank_dense")}
    assert shared.name == "tasks0-554645950fe5281d.json" and shared.is_file()  # the committed one


def _rows(table: str) -> dict[str, list[str]]:
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _fmt(values: list[float]) -> str:
    mean = statistics.mean(values)
    return f"{mean:.1f}" if len(values) < 2 else f"{mean:.1f} ± {statistics.stdev(values):.1f}"


def test_table_equals_statistics_of_the_cell_files(matrix):
    out = matrix["out"]
    table = (out / ex.TABLE_FILE).read_text()
    assert table.startswith("| method | n | test Acc. | test Comp. | Δ Acc. vs base | Δ Acc. vs grpo, paired | "
                            "train Acc. | steps to grpo's final test Acc. | step time ×grpo | peak memory ×grpo |")
    rows = _rows(table.split("\n\n")[0])
    summary = json.loads((out / ex.RESULTS_FILE).read_text())["summary"]
    cells = {m: [result(out, m, s) for s in SEEDS] for m in METHODS}
    ref_step = statistics.mean(c["mean_step_seconds"] for c in cells["grpo"])
    ref_mem = statistics.mean(c["peak_memory_mb"] for c in cells["grpo"])
    for m in METHODS:
        row, mine = rows[m], cells[m]
        assert row[0] == "2"
        assert row[1] == _fmt([c["final"]["test_acc"] for c in mine])
        assert row[2] == _fmt([c["final"]["test_comp"] for c in mine])
        assert row[5] == _fmt([c["final"]["train_acc"] for c in mine])
        step = statistics.mean(c["mean_step_seconds"] for c in mine)
        mem = statistics.mean(c["peak_memory_mb"] for c in mine)
        assert row[7] == f"{step / ref_step:.2f}" and row[8] == f"{mem / ref_mem:.2f}"
        s = summary["methods"][m]
        assert s["test_acc_std"] == pytest.approx(statistics.stdev(c["final"]["test_acc"] for c in mine))
        assert s["step_time_ratio"] == pytest.approx(step / ref_step)
        assert s["peak_memory_ratio"] == pytest.approx(mem / ref_mem)
    assert rows["grpo"][7] == "1.00" and rows["grpo"][8] == "1.00" and rows["grpo"][4] == "–"
    base = [c["evals"][0]["test_acc"] for m in METHODS for c in cells[m]]
    assert rows["base model (step 0)"][:2] == ["4", _fmt(base)]
    assert "sample standard deviation (ddof=1)" in (out / ex.TABLE_FILE).read_text()
    assert f"- Machine: {cell.machine_info()['cpu']}" in table


def test_table_notes_say_when_cells_ran_on_different_machines(matrix):
    exp = ex.load_experiment(matrix["config"])
    cells = [result(matrix["out"], m, s) for m in METHODS for s in SEEDS]
    summary = ex.summarize(exp, cells, METHODS)
    cells[0]["machine"] = dict(cells[0]["machine"], cpu="Other CPU", cpu_capability="AVX512")
    notes = ex.table_notes(exp, summary, cells, [])
    assert "ran on 2 different machines" in notes and "Other CPU, " in notes and "kernels AVX512" in notes
    assert "- Machine:" not in notes


def test_table_notes_say_when_methods_ran_on_different_seeds(matrix):
    exp = ex.load_experiment(matrix["config"])
    cells = [result(matrix["out"], m, s) for m in METHODS for s in SEEDS]
    notes = ex.table_notes(exp, ex.summarize(exp, cells, METHODS), cells, [])
    assert "different seeds" not in notes  # the full matrix: every method on the same seeds
    partial = [c for c in cells if not (c["method"] == METHODS[1] and c["seed"] == SEEDS[1])]
    notes = ex.table_notes(exp, ex.summarize(exp, partial, METHODS), partial, [])
    assert (f"different seeds (seed:task set — {METHODS[0]}: {SEEDS[0]}:0, {SEEDS[1]}:0; {METHODS[1]}: {SEEDS[0]}:0)"
            in notes)


def test_curves_are_png(matrix):
    for name in (ex.CURVE_STEP_FILE, ex.CURVE_TIME_FILE, ex.DIAGNOSTICS_FILE):
        assert (matrix["out"] / name).read_bytes()[:8] == PNG, name


def test_a_deleted_or_killed_cell_is_rerun_alone(matrix, capsys):
    out = matrix["out"]
    victim = out / "cells" / "skill_sd" / "seed1-tasks0"
    (victim / ex.RESULT_FILE).unlink()  # what a killed cell leaves: its folder and log, no result
    others = {(m, s): (out / "cells" / m / f"seed{s}-tasks0" / ex.RESULT_FILE).stat().st_mtime_ns
              for m in METHODS for s in SEEDS if (m, s) != ("skill_sd", 1)}
    before = len(events(out))
    assert main(["experiment", "--config", str(matrix["config"])]) == 0
    assert ran(events(out)[before:]) == [("skill_sd", 1)]
    assert (victim / ex.RESULT_FILE).exists()
    assert others == {(m, s): (out / "cells" / m / f"seed{s}-tasks0" / ex.RESULT_FILE).stat().st_mtime_ns
                      for (m, s) in others}
    assert "finished earlier, skipped" in capsys.readouterr().out
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temporaries


def test_finished_cells_of_another_configuration_are_refused(matrix):
    with pytest.raises(SystemExit, match=r"finished under another configuration \(differs in: max_steps\)"):
        main(["experiment", "--config", str(matrix["config"]), "--max-steps", "3"])


def _fake_cell(exp: ex.Experiment, method: str, seed: int, accs: list[float], step_s: float, mem: float) -> dict:
    evals = [{"step": i, "test_acc": a, "test_comp": a / 2, "train_acc": a + 10, "train_comp": 0.0,
              "train_seconds": i * step_s} for i, a in enumerate(accs)]
    cell = {"method": method, "seed": seed, "task_set": 0, "label": method, "evals": evals,
            "steps": [{"step": i, "seconds": step_s, "log": {"teacher/logp_gap": -0.1 * seed}} for i in (1, 2)],
            "final": {k: evals[-1][k] for k in ("step", "test_acc", "test_comp", "train_acc", "train_comp")},
            "mean_step_seconds": step_s, "peak_memory_mb": mem, "memory_kind": "rss", "train_seconds": 2 * step_s,
            "fingerprint": ex.cell_fingerprint(exp, method, seed, 0)}
    path = exp.cell_dir(method, seed, 0) / ex.RESULT_FILE
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(cell))
    return cell


def test_ratios_compare_cells_only_with_reference_cells_on_the_same_machine():
    def cell(machine, step, mem):
        return {"machine": {"cpu": machine, "cpu_capability": "AVX2", "cpus": 2, "gpu": None},
                "mean_step_seconds": step, "peak_memory_mb": mem}
    ref = [cell("A", 10.0, 100.0), cell("A", 30.0, 100.0), cell("B", 50.0, 200.0)]
    mine = [cell("A", 30.0, 150.0), cell("B", 100.0, 200.0), cell("C", 1.0, 1.0)]  # C: no reference cell there
    # A: 30 / mean(10, 30) = 1.5; B: 100 / 50 = 2.0; C left out. Pooled across machines it would be 131/90 = 1.46.
    assert ex.same_machine_ratio(mine, ref, "mean_step_seconds") == pytest.approx((1.5 + 2.0) / 2)
    assert ex.same_machine_ratio(mine, ref, "peak_memory_mb") == pytest.approx((1.5 + 1.0) / 2)
    assert ex.same_machine_ratio([cell("C", 1.0, 1.0)], ref, "mean_step_seconds") is None


def test_aggregation_math_on_known_cells(tmp_path, tiny_model_path, capsys):
    """Hand-made results with distinct numbers: means, sample stds, Δ, steps-to-reach and ratios are exact."""
    config = tiny_config(tmp_path, tiny_model_path, seeds=[0, 1, 2])
    exp = ex.load_experiment(config)
    grpo = [[10, 20, 30], [10, 30, 50], [10, 10, 40]]  # final 30, 50, 40: mean 40, sd 10
    sd = [[10, 40, 60], [10, 50, 70], [10, 30, 20]]  # final 60, 70, 20: mean 50; mean curve 10, 40, 50: reaches 40 at 1
    for seed in range(3):
        _fake_cell(exp, "grpo", seed, grpo[seed], step_s=2.0 + seed, mem=100.0)
        _fake_cell(exp, "skill_sd", seed, sd[seed], step_s=4.5, mem=150.0 + seed)
    assert main(["experiment", "--config", str(config), "--aggregate-only"]) == 0
    printed = capsys.readouterr().out
    rows = _rows((tmp_path / "out" / ex.TABLE_FILE).read_text().split("\n\n")[0])
    assert rows["grpo"] == ["3", "40.0 ± 10.0", "20.0 ± 5.0", "+30.0", "–", "50.0 ± 10.0", "2", "1.00", "1.00"]
    sd_std = statistics.stdev([60, 70, 20])
    # paired on each seed: 60 - 30, 70 - 50, 20 - 40 = +30, +20, -20: mean +10, sd sqrt(700); two above, one below
    assert rows["skill_sd"] == ["3", f"50.0 ± {sd_std:.1f}", f"25.0 ± {sd_std / 2:.1f}", "+40.0",
                                f"+10.0 ± {math.sqrt(700.0):.1f} (2↑ 1↓ of 3)",
                                f"60.0 ± {sd_std:.1f}", "1", f"{4.5 / 3.0:.2f}", f"{151.0 / 100.0:.2f}"]
    assert rows["base model (step 0)"][:2] == ["6", "10.0 ± 0.0"]
    assert "| skill_sd | 3 |" in printed
    summary = json.loads((tmp_path / "out" / ex.RESULTS_FILE).read_text())["summary"]
    assert summary["methods"]["skill_sd"]["test_acc_std"] == pytest.approx(math.sqrt(700.0))
    assert [r["mean"] for r in summary["methods"]["skill_sd"]["test_acc_curve"]] == pytest.approx([10, 40, 50])
    assert summary["methods"]["skill_sd"]["final_diagnostics"]["teacher/logp_gap"]["mean"] == pytest.approx(-0.1)
    # Diagnostics table: each cell's mean over the steps that logged the key, then mean ± sd over cells. The fake
    # cells log teacher/logp_gap = -0.1 * seed on both steps: cell values 0, -0.1, -0.2 -> -0.100 ± 0.100.
    diagnostics = (tmp_path / "out" / ex.TABLE_FILE).read_text().split("Trainer diagnostics")[1]
    assert "| method | gap, all | steps with teacher signal |" in diagnostics  # only the columns some cell logged
    assert "| skill_sd | -0.100 ± 0.100 | 2.0 ± 0.0 |" in diagnostics
    assert summary["methods"]["skill_sd"]["run_diagnostics"]["gap, all"]["value"] == pytest.approx(-0.1)

    # One seed only: no ± (n = 1), and a method that never reaches the reference's final Acc. says so.
    assert main(["experiment", "--config", str(config), "--aggregate-only", "--seeds", "2"]) == 0
    rows = _rows((tmp_path / "out" / ex.TABLE_FILE).read_text().split("\n\n")[0])
    assert rows["grpo"][:2] == ["1", "40.0"] and rows["skill_sd"][:2] == ["1", "20.0"]
    assert rows["skill_sd"][4] == "-20.0 (0↑ 1↓ of 1)"  # one pair: no ±
    assert rows["skill_sd"][6] == "not reached in 2"


@pytest.mark.parametrize("change, argv, field", [
    ({}, ["--methods", "grpo,sft"], "--methods: unknown method 'sft'"),
    ({"default_methods": ["grpo", "nope"]}, [], "default_methods: unknown method 'nope'"),
    ({"base_recipe": "recipes/sokoban/missing.yaml"}, [],
     "base_recipe: recipe file 'recipes/sokoban/missing.yaml' not found"),
    ({"seeds": [0, "a"]}, [], "seeds: must be a non-empty list of non-negative integers"),
    ({"seeds": []}, [], "seeds: must be a non-empty list"),
    ({"task_sets": [0, 0]}, [], "task_sets: has duplicates"),
    ({"level_seeds": [0]}, [], "level_seeds: is now task_sets"),
    ({"eval": {"test_levels": 3}}, [], "eval.test_levels: is now eval.test_tasks"),
    ({"methods": {"mine": {"sdl_coef": 0.1}}}, [], "methods.mine: say which method it is (method: one of grpo,"),
    ({"methods": {"mine": {"method": "skill_sdd"}}}, [], "methods.mine.method: 'skill_sdd' is not a method (did you "
                                                          "mean 'skill_sd'?)"),
    ({"overrides": {"env_args": {"preset": "tiny", "seed": 1}}}, [], "overrides.env_args.seed: is the task set"),
    ({"overrides": {"env_args": {"preset": "huge"}}}, [], "base_recipe: env_args for sokoban: preset='huge': choose"),
    ({}, ["--seeds", "0,x"], "--seeds: expected a comma-separated list of integers"),
    ({"max_step": 2}, [], "max_step: unknown experiment key (did you mean 'max_steps'?)"),
    ({"methods": {"grpo": {"sdl_coeff": 0.0}}}, [],
     "methods.grpo.sdl_coeff: unknown recipe option (did you mean 'sdl_coef'?)"),
    ({"methods": {"grpo": {"seed": 3}}}, [], "methods.grpo.seed: is set by the experiment"),
    ({"methods": {"grpo": {"model_name_or_path": "x"}}}, [], "methods.grpo.model_name_or_path: every method starts"),
    ({"methods": {"grpo": {"teacher_sync_mode": "sometimes"}}}, [], "methods.grpo: "),
    ({"eval_every": 0}, [], "eval_every: must be a positive integer"),
    ({"eval": {"extra_splits": ["unseen"]}}, [], "eval.extra_splits: split='unseen': Sokoban's splits are train, test"),
    ({}, ["--cell", "grpo"], "--cell: expected METHOD:SEED"),
])
def test_bad_configs_fail_with_one_line_naming_the_field(tmp_path, tiny_model_path, change, argv, field):
    config = tiny_config(tmp_path, tiny_model_path, **change)
    with pytest.raises(SystemExit) as error:
        main(["experiment", "--config", str(config), *argv])
    message = str(error.value.code)
    assert message.startswith("error: ") and "\n" not in message
    assert field in message
    assert not (tmp_path / "out" / "cells").exists()  # nothing trained


def test_an_experiment_extends_another(tmp_path, tiny_model_path):
    """``extends``: every key of the parent the child does not set, ``overrides`` merged (the child's win), the
    parent's base_recipe resolved from the parent's folder, ``output_dir`` never inherited; loops and missing parents
    fail in one line."""
    parent = tiny_config(tmp_path, tiny_model_path, seeds=[0, 1, 2], default_methods=["grpo"])
    (tmp_path / "variants").mkdir()
    child = tmp_path / "variants" / "child.yaml"
    child.write_text(yaml.safe_dump({"extends": str(parent), "overrides": {"learning_rate": 1.0e-5, "max_turns": 1},
                                     "seeds": [4]}), encoding="utf-8")
    a, b = ex.load_experiment(parent), ex.load_experiment(child)
    assert b.overrides == {**a.overrides, "learning_rate": 1.0e-5, "max_turns": 1}
    assert b.seeds == [4] and a.seeds == [0, 1, 2]
    assert (b.methods, b.default_methods, b.max_steps, b.eval, b.base_recipe) == (
        a.methods, a.default_methods, a.max_steps, a.eval, a.base_recipe)
    assert b.output_dir == Path("outputs/experiments/child") != a.output_dir
    grandchild = tmp_path / "variants" / "grandchild.yaml"
    grandchild.write_text(yaml.safe_dump({"extends": "child.yaml", "overrides": {"max_turns": 3}}), encoding="utf-8")
    c = ex.load_experiment(grandchild)  # resolved from its own folder; merges down the chain
    assert c.overrides == {**a.overrides, "learning_rate": 1.0e-5, "max_turns": 3} and c.seeds == [4]
    child.write_text(yaml.safe_dump({"extends": "grandchild.yaml"}), encoding="utf-8")
    with pytest.raises(ex.ExperimentConfigError, match=r"extends: .*grandchild.yaml' extends itself"):
        ex.load_experiment(grandchild)
    child.write_text(yaml.safe_dump({"extends": "nowhere.yaml"}), encoding="utf-8")
    with pytest.raises(ex.ExperimentConfigError, match=r"nowhere.yaml' not found"):
        ex.load_experiment(child)


def test_shipped_cpu_experiment_defines_the_paper_rows_and_every_method_parses():
    exp = ex.load_experiment(SHIPPED)
    assert exp.base_recipe == (ROOT / "recipes" / "sokoban" / "skill_sd_cpu.yaml").resolve()
    assert exp.default_methods == ["grpo", "skill_sd", "skill_sd_sequence_sum", "skill_sd_dense"]
    assert exp.reference_method == "grpo" and exp.task_sets == [0, 1]  # two level sets
    paper_rows = {"grpo", "skill_sd", "skill_augmented_grpo", "vanilla_opd", "frozen_teacher", "off_policy"}
    assert paper_rows <= set(exp.methods)
    sweep = {m["sdl_coef"] for n, m in exp.methods.items() if n.startswith("skill_sd_lambda")}
    assert sweep >= {0.0005, 0.001, 0.005, 0.01}  # the paper's sweep, plus values beyond it
    assert len(exp.seeds) >= 3 and exp.max_steps > exp.eval_every >= 1 and exp.eval.greedy
    ex.validate_cells(exp, list(exp.methods), exp.seeds, exp.task_sets)  # TrlParser accepts every cell recipe
    m = exp.methods
    assert m["grpo"]["sdl_coef"] == 0 and m["skill_sd"]["sdl_coef"] == 0.001
    assert m["skill_augmented_grpo"]["skills_in_student_prompt"] and m["skill_augmented_grpo"]["sdl_coef"] == 0
    assert m["vanilla_opd"]["teacher_context"] == "ground_truth" and m["vanilla_opd"]["grpo_coef"] == 0
    assert m["frozen_teacher"]["teacher_sync_mode"] == "frozen" and m["off_policy"]["rollout_policy"] == "teacher"
    # every cell: the same base model, the experiment's seeds and steps, a reproducible skill wait
    recipes = [ex.cell_recipe(exp, name, 1, 0, Path("x")) for name in exp.methods]
    assert len({r["model_name_or_path"] for r in recipes}) == 1
    assert all(r["seed"] == 1 and r["max_steps"] == exp.max_steps and r["summarizer_wait"] > 0 for r in recipes)


def test_cli_lists_the_experiment_command(capsys):
    assert main(["--help"]) == 0
    assert "experiment" in capsys.readouterr().out


def test_fingerprint_ignores_what_a_cell_never_uses(tmp_path):
    from skill_sd_trl.experiment import ExperimentConfigError, cell_fingerprint, check_fingerprint, load_experiment

    exp = load_experiment(SHIPPED_DROPOUT)
    stored = cell_fingerprint(exp, "grpo", 0, 0)
    stored["recipe"]["max_eval_samples"] = 3  # the train command's final evaluation: a cell never runs it
    stored["recipe"]["eval_batch_size"] = 5
    check_fingerprint(exp, "grpo", 0, 0, stored)
    assert stored["recipe"]["lora_dropout"] == 0.05  # the shipped experiment writes trl's default out ...
    del stored["recipe"]["lora_dropout"]  # ... which a cell stored before it did ran with, unwritten
    check_fingerprint(exp, "grpo", 0, 0, stored)
    stored["recipe"]["lora_dropout"] = 0.0  # not the default: another cell
    with pytest.raises(ExperimentConfigError, match="differs in: lora_dropout"):
        check_fingerprint(exp, "grpo", 0, 0, stored)
    stored["recipe"]["lora_dropout"] = 0.05
    stored["recipe"]["learning_rate"] = 1.0  # this one changes the result
    with pytest.raises(ExperimentConfigError, match="differs in: learning_rate"):
        check_fingerprint(exp, "grpo", 0, 0, stored)


def test_jobs_run_cells_at_once_and_they_share_one_base_evaluation(tmp_path, tiny_model_path):
    config = tiny_config(tmp_path, tiny_model_path, seeds=[0])
    out = tmp_path / "out"
    assert main(["experiment", "--config", str(config), "--jobs", "2"]) == 0
    starts = [e for e in events(out) if e["event"] == "run"]
    finishes = [e for e in events(out) if e["event"] == "done"]
    assert len(starts) == len(finishes) == 2
    assert max(e["time"] for e in starts) < min(e["time"] for e in finishes)  # both started before either ended
    bases = [result(out, m, 0)["evals"][0] for m in METHODS]
    assert sorted(bool(b.get("shared")) for b in bases) == [False, True]  # one evaluated, the other waited and read
    assert bases[0]["test_acc"] == bases[1]["test_acc"]
    assert len(list((out / ex.BASE_EVALS_DIR).glob("*.json"))) == 1


def test_cell_threads_split_the_cores_unless_the_thread_count_is_set():
    assert ex.cell_threads(1, environ={}, cpus=2) is None
    assert ex.cell_threads(2, environ={}, cpus=2) == 1
    assert ex.cell_threads(3, environ={}, cpus=8) == 2
    assert ex.cell_threads(4, environ={}, cpus=2) == 1
    assert ex.cell_threads(2, environ={"OMP_NUM_THREADS": "1"}, cpus=8) is None
    with pytest.raises(SystemExit, match="--jobs: must be a positive integer"):
        main(["experiment", "--config", str(SHIPPED), "--jobs", "0", "--aggregate-only"])


SHIPPED_CTX = SHIPPED.with_name("experiment_cpu_ctx.yaml")
SHIPPED_DROPOUT = SHIPPED.with_name("experiment_cpu_dropout0.05.yaml")
SHIPPED_HARDER = SHIPPED.with_name("experiment_cpu_harder.yaml")
SHIPPED_APPWORLD = ROOT / "recipes" / "appworld_offline" / "experiments" / "experiment_cpu.yaml"
SHIPPED_APPWORLD_BASE256 = SHIPPED_APPWORLD.with_name("experiment_cpu_base256.yaml")


@pytest.mark.parametrize("config, folder", [(SHIPPED, "sokoban_cpu"), (SHIPPED_DROPOUT, "sokoban_cpu_dropout0.05"),
                                            (SHIPPED_CTX, "sokoban_cpu_ctx"),
                                            (SHIPPED_HARDER, "sokoban_cpu_harder"),
                                            (SHIPPED_APPWORLD, "appworld_offline_cpu"),
                                            (SHIPPED_APPWORLD_BASE256, "appworld_offline_cpu_base256")])
def test_committed_cells_match_the_shipped_experiment(config, folder):
    """bench/results holds finished cells of the shipped CPU experiments: changing an experiment must not leave them
    silently stale (the runner would refuse them; this says so at once, in CI)."""
    exp = ex.load_experiment(config)
    results = sorted((ROOT / "bench" / "results" / folder / "cells").glob("*/*/result.json"))
    assert exp.output_dir == Path("bench/results") / folder  # relative to the repository root
    if config in (SHIPPED, SHIPPED_DROPOUT, SHIPPED_APPWORLD, SHIPPED_APPWORLD_BASE256):
        assert results
    for path in results:
        r = read_cell(path)  # cells of an earlier version (level_seed, test_levels) read as today's
        ex.check_fingerprint(exp, r["method"], r["seed"], r["task_set"], r["fingerprint"])
        assert r["final"]["step"] == exp.max_steps and r["machine"]["cpus"] >= 1


@pytest.mark.parametrize("base, variant, changed, task_sets", [
    (SHIPPED, SHIPPED_DROPOUT, {"lora_dropout": (0.0, 0.05)}, [0]),
    (SHIPPED, SHIPPED_HARDER, {"skip_train_samples": (None, 32)}, [0]),
    (SHIPPED_DROPOUT, SHIPPED_CTX, {"model_name_or_path": ("smollm2-135m-sokoban-base",
                                                           "smollm2-135m-sokoban-base-ctx")}, [0]),
    (SHIPPED_APPWORLD, SHIPPED_APPWORLD_BASE256, {"model_name_or_path": ("smollm2-135m-appworld-base",
                                                                         "smollm2-135m-appworld-base-256")}, [0, 1]),
])
def test_each_shipped_variant_changes_one_setting(base, variant, changed, task_sets):
    """experiment_cpu_dropout0.05.yaml is experiment_cpu.yaml as its committed cells ran (LoRA dropout 0.05);
    experiment_cpu_harder.yaml trains on harder levels; experiment_cpu_ctx.yaml starts from another base, as the app
    world's experiment_cpu_base256.yaml does. Every cell they share with the file they come from trains the same
    recipe but for that one setting, and every other setting of the experiment is the same."""
    a_exp, b_exp = ex.load_experiment(base), ex.load_experiment(variant)
    assert set(b_exp.methods) == set(a_exp.methods) and {"grpo", "skill_sd"} <= set(b_exp.methods)  # inherited
    for method in b_exp.methods:
        a = ex.cell_recipe(a_exp, method, 0, 0, Path("."))
        b = ex.cell_recipe(b_exp, method, 0, 0, Path("."))
        for key, (before, after) in changed.items():
            assert (a.pop(key, None), b.pop(key, None)) == (before, after), key
        a.pop("output_dir"), b.pop("output_dir")
        assert a == b, method
    for field in ("seeds", "max_steps", "eval_every", "eval", "reference_method", "summarizer_wait"):
        assert getattr(a_exp, field) == getattr(b_exp, field), field
    assert b_exp.task_sets == task_sets  # the Sokoban variants ran on the first level set only


def _episode(success: bool, turns_valid: list[bool], stop: str) -> dict:
    return {"env_name": "sokoban", "success": success, "completion": float(success), "reward": 1.0 if success else -0.5,
            "info": {"num_turns": len(turns_valid)}, "turns": [{"valid": v} for v in turns_valid], "stop_reason": stop}


def test_evaluation_rows_say_how_the_episodes_ended(monkeypatch):
    """Each evaluation row carries the test and train episodes' env/<name>/... metrics, each from its own episodes."""
    from types import SimpleNamespace

    import torch

    from skill_sd_trl.app import evaluation
    from skill_sd_trl.envs.arguments import EnvArguments

    test_eps = [_episode(True, [True, True], "solved"), _episode(False, [False], "invalid_output"),
                _episode(False, [True, False, True], "max_turns"), _episode(False, [True], "max_turns")]
    train_eps = [_episode(True, [True], "solved"), _episode(True, [True, True], "solved")]
    calls = []

    def fake_evaluate(name, split, model, max_samples=None, **kwargs):  # stands in for greedy episodes of a model
        calls.append((split, max_samples, kwargs.get("skip_samples", 0)))
        episodes = {"test": test_eps, "train": train_eps}.get(split, test_eps[:2])
        return evaluation.summarize(name, "sokoban", split, episodes)

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    script = EnvArguments(env_name="sokoban", env_args={"preset": "tiny"}, max_train_samples=2, skip_train_samples=3)
    trainer = SimpleNamespace(accelerator=SimpleNamespace(unwrap_model=lambda m: m), model=torch.nn.Linear(1, 1),
                              args=SimpleNamespace(max_completion_length=64), processing_class=None)
    spec = {"eval": {"test_tasks": 4, "train_tasks": None, "batch_size": 4, "greedy": True, "temperature": 1.0,
                     "extra_splits": ["unseen"]},
            "eval_every": 5, "max_steps": 10}
    callback = cell.LearningCurveCallback(trainer, cell.curve_evaluator(trainer, script, spec["eval"]),
                                          spec["eval_every"], spec["max_steps"], cell_start=0.0)
    callback._evaluate(5)
    row = callback.evals[-1]
    # train Acc. on the tasks trained on (2 after the first 3); a further held-out split scored whole
    assert calls == [("test", 4, 0), ("train", 2, 3), ("unseen", None, 0)]
    assert (row["unseen_acc"], row["unseen_comp"], row["unseen_episodes"]) == (50.0, 50.0, 2)
    assert row["test_acc"] == 25.0 and row["train_acc"] == 100.0
    test_env, train_env = row["test_env"], row["train_env"]
    assert test_env["env/sokoban/acc"] == 0.25 and train_env["env/sokoban/acc"] == 1.0
    assert test_env["env/sokoban/turns"] == pytest.approx(7 / 4) and train_env["env/sokoban/turns"] == 1.5
    assert test_env["env/sokoban/invalid_actions"] == pytest.approx(2 / 4)
    assert train_env["env/sokoban/invalid_actions"] == 0
    assert test_env["env/sokoban/stop/invalid_output"] == 0.25 and test_env["env/sokoban/stop/max_turns"] == 0.5
    assert train_env["env/sokoban/stop/solved"] == 1.0 and train_env["env/sokoban/stop/max_turns"] == 0
    assert test_env["env/sokoban/reward"] == pytest.approx(row["test_reward"]) == pytest.approx((1 - 1.5) / 4)
