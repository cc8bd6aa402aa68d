"""Evaluate a model or checkpoint on an environment split and print the paper-style table (Acc. / Comp.)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write, atomic_write_json
from ..envs.base import EnvSpec
from ..envs.registry import task_window
from ..rollout.multi_turn import ModelBackend, RolloutLimits, play_episodes


@dataclass
class EvalArguments:
    """The ``eval`` command's own fields; the environment comes from :class:`~skill_sd_trl.envs.arguments.EnvArguments`
    (the same class ``train`` parses, so ``--config <train recipe>`` evaluates on the recipe's environment)."""

    model: list[str] | None = field(
        default=None,
        metadata={"help": "Models or checkpoints (Hub id, embedded alias, folder, LoRA checkpoint); several give a "
                          "side-by-side table."},
    )
    label: list[str] | None = field(default=None, metadata={"help": "Display name per model (same order)."})
    max_completion_length: int = field(default=1024, metadata={"help": "Token budget of a whole episode."})
    eval_output_dir: str | None = field(
        default=None, metadata={"help": "Write eval_results.json and eval_results.csv here."}
    )

    def __post_init__(self):
        if not self.model:
            raise ValueError("model is required: give --model <name or folder> [<another> ...].")
        if self.label and len(self.label) != len(self.model):
            raise ValueError(f"label has {len(self.label)} names for {len(self.model)} models; give one label per "
                             "model or none.")


@dataclass
class EvalResult:
    """Aggregate scores of one model on one environment split (percentages, as in the paper)."""

    model: str
    env: str
    split: str
    num_episodes: int
    acc: float  # % of episodes fully solved
    comp: float  # mean partial completion, %
    mean_reward: float
    stop_reasons: dict[str, float] = field(default_factory=dict)
    episodes: list[dict[str, Any]] = field(default_factory=list, repr=False)


@contextlib.contextmanager
def evaluation_mode(trainer):
    """The trainer's model, unwrapped from its accelerator wrapper and in eval mode (no dropout); its mode restored
    afterwards, so evaluating in the middle of training leaves training as it was."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def load_for_eval(name_or_path: str, dtype: str = "float32"):
    """(model, tokenizer) from a Hub id, the embedded alias, a full-model folder or a LoRA adapter checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models import offline_equivalent, resolve_model

    path = resolve_model(name_or_path)
    torch_dtype = getattr(torch, dtype)
    adapter_config = Path(path) / "adapter_config.json"
    if adapter_config.exists():
        from peft import PeftModel

        base = resolve_model(offline_equivalent(json.loads(adapter_config.read_text())["base_model_name_or_path"]))
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
        model = PeftModel.from_pretrained(model, path).merge_and_unload()
        tokenizer_path = path if (Path(path) / "tokenizer_config.json").exists() else base
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        tokenizer_path = path
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def evaluate(
    model_name_or_path: str,
    spec: EnvSpec,
    split: str | None = None,
    max_samples: int | None = None,
    skip_samples: int = 0,
    batch_size: int = 8,
    limits: RolloutLimits | None = None,
    completion_budget: int = 1024,
    do_sample: bool = False,
    temperature: float = 1.0,
    model=None,
    tokenizer=None,
    progress: bool = True,
) -> EvalResult:
    """Play one episode per task of the environment's ``split`` (default: its held-out split; greedy by default) and
    score Acc./Comp.: the ``max_samples`` tasks after the first ``skip_samples`` (all of them by default)."""
    split = split or spec.eval_split
    dataset = task_window(spec.dataset(split), skip_samples, max_samples)
    if model is None:
        model, tokenizer = load_for_eval(model_name_or_path)
    backend = ModelBackend(model, tokenizer, do_sample=do_sample, temperature=temperature)
    limits = limits or spec.limits()
    records: list[dict] = []
    batches = range(0, len(dataset), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"eval {spec.name}/{split}", unit="batch")
    for start in batches:
        rows = [dict(dataset[i]) for i in range(start, min(start + batch_size, len(dataset)))]
        _, recs = play_episodes([r["prompt"] for r in rows], rows, backend, spec.make_env, limits,
                                completion_budget, env_name=spec.name)
        records += recs
    return summarize(model_name_or_path, spec.name, split, records)


def summarize(model: str, env: str, split: str, records: Sequence[Mapping[str, Any]]) -> EvalResult:
    n = len(records)
    reasons: dict[str, float] = {}
    for r in records:
        reasons[r["stop_reason"]] = reasons.get(r["stop_reason"], 0.0) + 1.0 / n
    return EvalResult(
        model=model, env=env, split=split, num_episodes=n,
        acc=100.0 * sum(bool(r["success"]) for r in records) / max(n, 1),
        comp=100.0 * sum(float(r["completion"]) for r in records) / max(n, 1),
        mean_reward=sum(float(r["reward"]) for r in records) / max(n, 1),
        stop_reasons=reasons, episodes=list(records),
    )


def results_table(results: Sequence[EvalResult]) -> list[dict[str, Any]]:
    """One row per model: Acc./Comp. per benchmark and their average (the paper's main-table shape)."""
    envs = list(dict.fromkeys(r.env for r in results))
    rows = []
    for model in dict.fromkeys(r.model for r in results):
        row: dict[str, Any] = {"model": model}
        mine = {r.env: r for r in results if r.model == model}
        for env in envs:
            row[f"{env} Acc."] = mine[env].acc if env in mine else None
            row[f"{env} Comp."] = mine[env].comp if env in mine else None
        accs = [mine[e].acc for e in envs if e in mine]
        comps = [mine[e].comp for e in envs if e in mine]
        row["Avg. Acc."] = sum(accs) / len(accs)
        row["Avg. Comp."] = sum(comps) / len(comps)
        rows.append(row)
    return rows


def format_table(results: Sequence[EvalResult]) -> str:
    """A Markdown table, e.g. ``| model | sokoban Acc. | sokoban Comp. | Avg. Acc. | Avg. Comp. |``."""
    rows = results_table(results)
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    for row in rows:
        cells = [row["model"]] + ["–" if row[h] is None else f"{row[h]:.1f}" for h in headers[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(results: Sequence[EvalResult], output_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``eval_results.json`` (aggregates + episodes) and ``eval_results.csv`` (the table), written atomically."""
    output_dir = Path(output_dir)
    json_path, csv_path = output_dir / "eval_results.json", output_dir / "eval_results.csv"
    atomic_write_json(json_path, {"table": results_table(results), "results": [asdict(r) for r in results]})
    rows = results_table(results)

    def write_csv(f):
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(csv_path, write_csv)
    return json_path, csv_path
