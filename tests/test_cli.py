"""The command line: eval (side-by-side table, JSON/CSV), report (PNG curves), show-bank, and clear errors."""

import csv
import json
from pathlib import Path

import pytest

from skill_sd_trl.cli import main
from skill_sd_trl.app.evaluation import EvalResult, format_table, results_table, summarize

RECIPE = str(Path(__file__).resolve().parent.parent / "recipes" / "sokoban" / "skill_sd_cpu.yaml")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_path):
    out = tmp_path_factory.mktemp("run")
    code = main(["train", "--config", RECIPE, "--tiny_model", "true", "--output_dir",
                 str(out), "--max_steps", "2", "--max_train_samples", "1", "--max_turns", "2",
                 "--max_new_tokens_per_turn", "4", "--evaluate_after_training", "false",
                 "--per_device_train_batch_size", "4", "--num_generations", "4",
                 "--summarizer_wait", "30"])  # step 2 sees step 1's skills: the SDL curves exist
    assert code == 0
    return out


def test_an_eval_only_run_prints_where_it_saved(tmp_path, capsys):
    out = tmp_path / "base"
    assert main(["train", "--config", RECIPE, "--tiny_model", "true", "--eval_only", "true", "--output_dir", str(out),
                 "--max_eval_samples", "2", "--max_turns", "1", "--max_new_tokens_per_turn", "4"]) == 0
    printed = capsys.readouterr().out
    assert f"Saved to {out}: eval_results.json." in printed and "evaluate again" not in printed
    assert (out / "eval_results.json").exists()


def test_eval_puts_several_checkpoints_side_by_side(trained_run, tiny_model_path, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--model", tiny_model_path, str(trained_run), "--label", "base", "trained",
                 "--env_name", "sokoban", "--env_args", "preset=tiny", "--max_eval_samples", "3", "--max_turns", "2",
                 "--max_new_tokens_per_turn", "4", "--eval_output_dir", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| model | sokoban Acc. | sokoban Comp. | Avg. Acc. | Avg. Comp. |" in printed
    assert "| base |" in printed and "| trained |" in printed
    data = json.loads((out / "eval_results.json").read_text())
    assert [r["model"] for r in data["results"]] == ["base", "trained"]
    assert all(r["num_episodes"] == 3 and len(r["episodes"]) == 3 for r in data["results"])
    with open(out / "eval_results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["base", "trained"] and "sokoban Acc." in rows[0]


def test_eval_with_a_train_recipe_uses_its_environment_levels_and_limits(monkeypatch, tiny_model_path, capsys):
    from skill_sd_trl.app import evaluation

    calls = []

    def spy(label, spec, **kwargs):  # records what eval would play, plays nothing
        calls.append((label, spec, kwargs))
        return EvalResult(label, spec.name, "test", 0, acc=0.0, comp=0.0, mean_reward=0.0)

    monkeypatch.setattr(evaluation, "evaluate", spy)
    assert main(["eval", "--config", RECIPE, "--model", tiny_model_path, "--max_turns", "2"]) == 0
    (label, spec, kw), = calls
    assert label == tiny_model_path and spec.name == "sokoban"
    # the recipe's environment (recipes/sokoban/skill_sd_cpu.yaml), the flag over the recipe
    import yaml

    recipe = yaml.safe_load(open(RECIPE, encoding="utf-8"))
    assert recipe["env_args"] == {"preset": "small", "lenient_actions": True, "prompt_style": "compact"}
    from skill_sd_trl.envs.sokoban import make_sokoban_dataset

    assert spec.dataset("test")["prompt"] == make_sokoban_dataset("small", "test", prompt_style="compact")["prompt"]
    env = spec.make_env()
    assert (env.lenient_actions, env.prompt_style) == (True, "compact")
    assert (kw["limits"].max_turns, kw["limits"].max_new_tokens_per_turn) == (2, recipe["max_new_tokens_per_turn"])
    assert (kw["max_samples"], kw["completion_budget"]) == (recipe["max_eval_samples"], recipe["max_completion_length"])


@pytest.mark.parametrize("argv, message", [
    (["--model", "a", "b", "--label", "x"], "error: label has 1 names for 2 models; give one label per model"),
    ([], "error: model is required: give --model"),
])
def test_eval_bad_input_is_one_line_naming_the_field(argv, message):
    with pytest.raises(SystemExit) as e:
        main(["eval", *argv])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_eval_unknown_environment_is_one_line_listing_the_known_ones():
    with pytest.raises(SystemExit) as e:
        main(["eval", "--model", "m", "--env_name", "chess"])
    message = str(e.value)
    assert message.startswith("error: env_name='chess' is not an installed environment")
    assert "appworld, appworld_offline, sokoban" in message and "\n" not in message


def test_eval_refuses_a_recipe_key_no_command_knows(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("env_name: sokoban\nenv_argz: {preset: tiny}\n")
    with pytest.raises(SystemExit, match="unknown recipe key 'env_argz'.*Did you mean 'env_args'"):
        main(["eval", "--config", str(recipe), "--model", "m"])
    recipe.write_text("env_name: sokoban\nenv_preset: tiny\n")  # a recipe of an earlier version
    with pytest.raises(SystemExit, match=r"^error: recipe key 'env_preset' in .* is now an option of the environment: "
                                         r"write `env_args: \{preset: 'tiny'\}` instead"):
        main(["eval", "--config", str(recipe), "--model", "m"])
    recipe.write_text("env_name: sokoban\nenv_args: {presett: tiny}\n")
    with pytest.raises(SystemExit, match=r"^error: env_args.presett: sokoban has no option 'presett' \(did you mean "
                                         r"'preset'\?\). sokoban's options: preset='small', seed=0"):
        main(["eval", "--config", str(recipe), "--model", "m"])


def test_train_help_is_short_grouped_and_leads_with_config(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert len(lines) <= 100 and lines[0] == "usage: skill-sd-trl train --config RECIPE.yaml [--field value ...]"
    for needle in ("Skill-SD (SkillSDConfig):", "--sdl_coef", "--teacher_sync_mode", "Environment (EnvArguments",
                   "--env_args", "--summarizer_wait", "--model_name_or_path", "--help-all"):
        assert needle in text
    assert main(["train", "--help-all"]) == 0
    full = capsys.readouterr().out
    assert full.startswith("usage: skill-sd-trl train") and "--gradient_accumulation_steps" in full


@pytest.mark.parametrize("argv, message", [
    (["--sdl_coeff", "0.1"], "error: unknown flag --sdl_coeff. Did you mean --sdl_coef?"),
    (["--reward", "money"], "error: argument --reward: invalid choice: 'money' (choose from 'env'"),
    (["--teacher_sync_mode", "sometimes"], "error: argument --teacher_sync_mode/--teacher-sync-mode: invalid choice"),
    (["--sdl_coef", "-1"], "error: sdl_coef"),
])
def test_train_bad_flags_and_values_are_one_line(argv, message):
    with pytest.raises(SystemExit) as e:
        main(["train", "--config", RECIPE, *argv])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


@pytest.mark.parametrize("command", ["train", "eval"])
def test_a_model_that_cannot_be_found_offline_is_one_line_without_network_retries(command, tmp_path):
    argv = (["train", "--config", RECIPE, "--model_name_or_path", "someone/not-a-model", "--output_dir",
             str(tmp_path)] if command == "train" else ["eval", "--config", RECIPE, "--model", "someone/not-a-model"])
    with pytest.raises(SystemExit) as e:
        main(argv)  # the suite runs with HF_HUB_OFFLINE=1, as a machine without network
    message = str(e.value)
    assert message.startswith("error: model 'someone/not-a-model' is not a folder or an alias and is not in the local")
    assert "HF_HUB_OFFLINE" in message and "embedded alias 'smollm2-135m-instruct'" in message and "\n" not in message


def test_table_numbers_are_percentages_and_averages():
    records = [{"success": True, "completion": 1.0, "reward": 10.0, "stop_reason": "solved"},
               {"success": False, "completion": 0.5, "reward": -1.0, "stop_reason": "max_turns"}]
    a = summarize("m", "sokoban", "test", records)
    assert (a.acc, a.comp, a.mean_reward) == (50.0, 75.0, 4.5)
    assert a.stop_reasons == {"solved": 0.5, "max_turns": 0.5}
    b = EvalResult("m", "appworld_offline", "dev", 1, acc=10.0, comp=20.0, mean_reward=0.2)
    (row,) = results_table([a, b])
    assert row["Avg. Acc."] == pytest.approx(30.0) and row["Avg. Comp."] == pytest.approx(47.5)
    assert "| m | 50.0 | 75.0 | 10.0 | 20.0 | 30.0 | 47.5 |" in format_table([a, b])


def test_report_writes_curves_as_png(trained_run, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(trained_run), "--output-dir", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"reward.png", "accuracy.png", "completion.png", "sdl.png", "teacher_gap.png", "skills.png"} <= names
    assert all((out / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)


def test_report_panels_are_legible_with_integer_steps_and_the_evaluation_bars(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skill_sd_trl.app.report import plot_evaluation, plot_panel, write_report

    fig, ax = plt.subplots()
    same = ([1, 2, 3], [0.5, 0.5, 0.5])  # two runs that overlap exactly must still both be visible
    plot_panel(ax, "t", {"grpo": same, "skill_sd": same})
    styles = {(line.get_linestyle(), line.get_marker()) for line in ax.get_lines()}
    assert len(styles) == 2 and list(ax.get_xticks()) == [1, 2, 3]
    fig, ax = plt.subplots()
    plot_evaluation(ax, [{"model": "base model", "env": "sokoban", "split": "test", "num_episodes": 16, "acc": 6.25,
                          "comp": 6.25},
                         {"model": "trained", "env": "sokoban", "split": "test", "num_episodes": 16, "acc": 12.5,
                          "comp": 18.0}])
    assert sorted(round(p.get_height(), 2) for p in ax.patches) == [6.25, 6.25, 12.5, 18.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["base model", "trained"]
    plt.close("all")
    run = tmp_path / "run"
    run.mkdir()
    (run / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": 1, "reward": 1.0}]}))
    (run / "eval_results.json").write_text(json.dumps({"results": [
        {"model": "base model", "env": "sokoban", "split": "test", "num_episodes": 2, "acc": 50.0, "comp": 50.0}]}))
    assert sorted(Path(p).name for p in write_report(run)) == ["evaluation.png", "reward.png"]


def test_paper_scale_recipes_report_to_trackio_and_a_run_can_log_to_tensorboard(trained_run, tmp_path):
    import yaml

    recipes = Path(RECIPE).parent.parent
    for recipe in recipes.glob("*/*.yaml"):
        if recipe.parent.name == "accelerate":
            continue
        expected = "none" if recipe.stem.endswith("_cpu") else "trackio"
        assert yaml.safe_load(recipe.read_text())["report_to"] == expected, recipe
    pytest.importorskip("tensorboard")
    out = tmp_path / "tb"
    assert main(["train", "--config", RECIPE, "--tiny_model", "true", "--output_dir", str(out), "--max_steps", "1",
                 "--max_train_samples", "1", "--max_turns", "1", "--max_new_tokens_per_turn", "4",
                 "--evaluate_after_training", "false", "--report_to", "tensorboard",
                 "--per_device_train_batch_size", "4", "--num_generations", "4"]) == 0
    events = list(out.rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_show_bank_prints_the_run_bank(trained_run, capsys):
    assert main(["show-bank", str(trained_run / "skill_bank.json")]) == 0
    out = capsys.readouterr().out
    assert "skill(s) over" in out and "sokoban-small-train-" in out


def test_a_training_set_smaller_than_one_step_is_refused_naming_the_fields(tmp_path):
    with pytest.raises(SystemExit, match=r"max_train_samples: 1 training task\(s\), but one optimizer step takes 2 "
                                          r"\(per_device_train_batch_size 16 .* num_generations 8\)\. Raise"):
        main(["train", "--config", RECIPE, "--tiny_model", "true", "--output_dir", str(tmp_path / "run"),
              "--max_steps", "1", "--max_train_samples", "1"])
    assert not (tmp_path / "run" / "adapter_model.safetensors").exists()


def test_train_warns_about_bfloat16_on_a_cpu_without_its_kernels(tmp_path, monkeypatch, caplog):
    from skill_sd_trl import models

    real = models.half_precision_cpu_warning
    monkeypatch.setattr(models, "half_precision_cpu_warning",
                        lambda dtype: real(dtype, cpuinfo="flags : fpu avx2\n"))  # an AVX2-only CPU
    args = ["train", "--config", RECIPE, "--tiny_model", "true", "--output_dir", str(tmp_path / "run"),
            "--max_steps", "1", "--max_train_samples", "1"]  # stops at the (later) training-set check
    with caplog.at_level("WARNING", logger="skill_sd_trl.app.train"), pytest.raises(SystemExit, match="max_train_samples"):
        main(args + ["--dtype", "bfloat16"])
    assert "dtype: bfloat16 on a CPU without avx512_bf16 or amx_bf16" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="skill_sd_trl.app.train"), pytest.raises(SystemExit, match="max_train_samples"):
        main(args)  # the recipe's float32: no warning
    assert "on a CPU without" not in caplog.text


def test_summarizer_prompt_override_from_recipe_reaches_the_llm_summarizer(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    from skill_sd_trl.app.script_args import SkillSDScriptArguments
    from skill_sd_trl.app.train import _make_summarizer

    template = tmp_path / "prompt.txt"
    template.write_text("Summarize these episodes as JSON with the three keys:\n{trajectories}")
    script = SkillSDScriptArguments(summarizer="openai", summarizer_model="m", summarizer_base_url="http://127.0.0.1:9",
                                    summarizer_prompt=str(template))
    summarizer = _make_summarizer(script, "unused")
    from skill_sd_trl.skills.trajectory import Trajectory, Turn

    messages = summarizer.build_messages([Trajectory("t", "sokoban", "task", [Turn("Up", "board")], reward=1.0)])
    assert messages[-1]["content"].startswith("Summarize these episodes as JSON with the three keys:")
    with pytest.raises(ValueError, match="summarizer_base_url"):
        SkillSDScriptArguments(summarizer="openai")
