"""How strong is the teacher's signal? ‖∇ λ·L_SDL‖ / ‖∇ L_GRPO‖ per SDL variant, on a recipe's real batches.

    python bench/grad_ratio.py --config recipes/sokoban/skill_sd_cpu.yaml \
        --bank bench/results/sokoban_cpu/cells/skill_sd/seed0-tasks0/skill_bank.json --steps 3
    python bench/grad_ratio.py --config recipes/appworld_offline/skill_sd_cpu.yaml --bank prefill \
        --answer '```python\n{ground_truth}\n```' --steps 2 [--model_name_or_path ... --env_args ...]

Each variant (``--variants reduction:estimator,...``; default: token_mean and sequence_sum, each with rho_k3 and
dense) trains ``--steps`` optimizer steps of the recipe at its λ in a subprocess of its own, with
``log_loss_grad_norms`` on (two extra backward passes per micro-batch, the update unchanged) and the teacher given
skills from step 1 (``--bank``: a skill bank file, e.g. one a finished experiment cell saved; ``prefill``: one skill
per training task written by the experience summarizer about an episode that plays the row's reference answer,
``--answer`` formatting the row's fields). Prints the mean over steps of ``self_distillation/grad_norm_ratio``,
the two norms and their cosine, and ``self_distillation/sdl``. Run on a quiet machine; the same seed for every
variant gives them the same first batch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

KEYS = ("self_distillation/grad_norm_ratio", "self_distillation/grad_norm", "self_distillation/grpo_grad_norm",
        "self_distillation/grad_cosine", "self_distillation/sdl", "skills/coverage")


def prefilled_bank(recipe_argv: list[str], answer: str, path: Path) -> None:
    """A bank holding, for every training task of the recipe, the skill of an episode that played its answer."""
    from skill_sd_trl.app.recipe import parse_train_args
    from skill_sd_trl.models.warmstart import solved_skill_entry
    from skill_sd_trl.skills.bank import SkillBank

    script, _, _, _ = parse_train_args(recipe_argv)
    spec = script.spec
    bank = SkillBank(capacity_per_task=script.bank_capacity)
    for row in script.train_tasks(spec.dataset(script.train_split or spec.train_split)):
        row = dict(row)
        bank.add(solved_skill_entry(spec, {**row, "answer": answer.format(**row)}, task_id=row["task_id"]))
    bank.save(path)


def run_variant(recipe_argv: list[str], reduction: str, estimator: str, bank: str, steps: int, out: Path) -> dict:
    argv = [sys.executable, "-m", "skill_sd_trl.cli", "train", *recipe_argv, "--bank_path", bank,
            "--log_loss_grad_norms", "true", "--max_steps", str(steps), "--evaluate_after_training", "false",
            "--summarizer_wait", "0", "--output_dir", str(out), "--save_strategy", "no",
            "--sdl_reduction", reduction, "--sdl_estimator", estimator]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1"})
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    rows = [h for h in history if "self_distillation/grad_norm_ratio" in h]
    return {k: sum(h[k] for h in rows if k in h) / max(1, sum(k in h for h in rows)) for k in KEYS} | {
        "steps_measured": len(rows)}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--bank", required=True, help="a skill bank JSON, or 'prefill'")
    p.add_argument("--answer", default="{ground_truth}", help="with --bank prefill: the answer turn, from row fields")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--variants", default="token_mean:rho_k3,sequence_sum:rho_k3,token_mean:dense,sequence_sum:dense")
    p.add_argument("--json")
    a, extra = p.parse_known_args(argv)
    recipe_argv = ["--config", a.config, *extra]
    with tempfile.TemporaryDirectory(prefix="grad-ratio-") as tmp:
        bank = a.bank
        if bank == "prefill":
            bank = str(Path(tmp) / "bank.json")
            prefilled_bank(recipe_argv, a.answer.encode().decode("unicode_escape"), Path(bank))
        results = {}
        for variant in a.variants.split(","):
            reduction, estimator = variant.split(":")
            results[variant] = run_variant(recipe_argv, reduction, estimator, bank, a.steps, Path(tmp) / variant)
            print(variant, json.dumps(results[variant]), flush=True)
    print("\n| reduction | estimator | ‖∇λL_SDL‖/‖∇L_GRPO‖ | ‖∇λL_SDL‖ | ‖∇L_GRPO‖ | cosine | L_SDL | coverage |")
    print("|---|---|---|---|---|---|---|---|")
    for variant, r in results.items():
        cells = [f"{r[k]:.4g}" for k in KEYS]
        print(f"| {' | '.join(variant.split(':'))} | {' | '.join(cells)} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"argv": argv, "results": results}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
