"""Does a model read the teacher's context? Held-out Sokoban levels scored with and without it.

    python bench/context_probe.py --models smollm2-135m-sokoban-base,smollm2-135m-sokoban-base-ctx [--levels 64]

For each model and each prompt kind (plain; a solved-episode skill; the reference solution, both rendered exactly as
the trainer renders the teacher's context, see ``skill_sd_trl.models.warmstart.demonstration_prompt``) on the held-out test
levels of a Sokoban preset:

* the mean log-probability per token of the level's optimal answer (``<answer>...</answer>``): how much more the
  context makes the model expect the right moves (what a distillation teacher has to offer);
* greedy single-turn Acc.: the share of levels that the answer the model writes solves.

Both are one-turn measures: the RL episodes are multi-turn. Run on a quiet machine; it prints a Markdown table and
with ``--json`` writes every figure.
"""

import argparse
import json
import sys
import time


def prompt_token_ids(tokenizer, prompt) -> list[int]:
    """The chat prompt's token ids with the assistant's generation prompt, as the trainer tokenizes it."""
    ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
    return ids if isinstance(ids, list) else ids["input_ids"]


def answer_logps(model, prompt_ids: list[int], answer_ids: list[int]):
    """log p of each answer token after the prompt, one forward pass."""
    import torch

    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1 : -1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(answer_ids)[:, None])[:, 0]


def probe(model_name: str, levels, max_steps: int, prompt_style: str, kinds, max_new_tokens: int = 40):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from skill_sd_trl.envs.registry import load_environment
    from skill_sd_trl.envs.sokoban.dataset import build_prompt
    from skill_sd_trl.envs.sokoban.render import format_actions, parse_actions
    from skill_sd_trl.envs.sokoban.rules import apply_moves
    from skill_sd_trl.models import resolve_model
    from skill_sd_trl.models.warmstart import demonstration_prompt

    # the environment as the warm start plays it (its skills come from an episode of this environment)
    env_spec = load_environment("sokoban", {"prompt_style": prompt_style, "reward_mode": "success",
                                            "lenient_actions": True})

    def row(level):
        moves = format_actions(level.solution)
        return {"prompt": build_prompt(level, max_steps, prompt_style), "level": level.to_xsb(), "max_steps": max_steps,
                "ground_truth": moves, "answer": f"<answer>{moves}</answer>"}

    path = resolve_model(model_name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    out = {}
    for kind in kinds:
        logps, solved = [], 0
        for level in levels:
            prompt_ids = prompt_token_ids(tokenizer, demonstration_prompt(env_spec, row(level), kind))
            answer_ids = tokenizer(f"<answer>{format_actions(level.solution)}</answer>", add_special_tokens=False)["input_ids"]
            logps.append(answer_logps(model, prompt_ids, answer_ids).mean().item())
            with torch.no_grad():
                generated = model.generate(torch.tensor([prompt_ids]), max_new_tokens=max_new_tokens, do_sample=False,
                                           pad_token_id=tokenizer.eos_token_id)
            text = tokenizer.decode(generated[0, len(prompt_ids):], skip_special_tokens=True)
            moves = parse_actions(text)
            solved += int(moves is not None and apply_moves(level, moves).is_solved)
        out[kind] = {"answer_logp_per_token": sum(logps) / len(logps), "greedy_acc": solved / len(levels),
                     "solved": solved, "levels": len(levels)}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m-sokoban-base,smollm2-135m-sokoban-base-ctx")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--level-seed", type=int, default=0)
    parser.add_argument("--levels", type=int, default=64, help="the first N levels of the preset's test split")
    parser.add_argument("--prompt-style", default="compact")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import torch

    from skill_sd_trl.envs.sokoban.dataset import level_pool, resolve_preset

    torch.manual_seed(0)
    preset = resolve_preset(args.preset)
    levels = level_pool(preset, args.level_seed)[1][: args.levels]
    kinds = ("none", "skill", "ground_truth")
    results = {}
    for name in args.models.split(","):
        start = time.perf_counter()
        results[name] = probe(name, levels, preset.max_steps, args.prompt_style, kinds)
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print(f"{len(levels)} held-out test levels ({args.preset}, level seed {args.level_seed}), one turn, greedy\n")
    print("| model | context | answer log-prob / token | greedy Acc. |\n|---|---|---|---|")
    for name, by_kind in results.items():
        for kind, r in by_kind.items():
            print(f"| {name} | {kind} | {r['answer_logp_per_token']:.3f} | {100 * r['greedy_acc']:.1f} % "
                  f"({r['solved']}/{r['levels']}) |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"preset": args.preset, "level_seed": args.level_seed, "levels": len(levels),
                       "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
