"""Acc./Comp. of an offline app-world evaluation per difficulty and per template.

    skill-sd-trl eval --config recipes/appworld_offline/experiments/base_probe.yaml --model smollm2-135m-appworld-base \
        --eval_output_dir outputs/appworld_probe
    python bench/appworld_by_difficulty.py outputs/appworld_probe/eval_results.json [--json out.json]

The offline app world's templates have difficulty 1-3 (the AppWorld paper's levels); a task id names its template
(``<template>-<split>-<index>[-s<seed>]``), so every episode of ``eval_results.json`` is attributed to both.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def breakdown(results_path: str) -> dict:
    from skill_sd_trl.envs.appworld.offline.tasks import TEMPLATES, parse_task_id

    out = {}
    for result in json.load(open(results_path, encoding="utf-8"))["results"]:
        by_level, by_template = defaultdict(list), defaultdict(list)
        for episode in result["episodes"]:
            template = parse_task_id(episode["task_id"])[0]
            by_level[TEMPLATES[template].difficulty].append(episode)
            by_template[template].append(episode)

        def score(episodes):
            n = len(episodes)
            return {"n": n, "acc": 100.0 * sum(bool(e["success"]) for e in episodes) / n,
                    "comp": 100.0 * sum(float(e["completion"]) for e in episodes) / n}

        out[result["model"]] = {"split": result["split"], "all": score(result["episodes"]),
                                "difficulty": {level: score(e) for level, e in sorted(by_level.items())},
                                "template": {name: score(e) for name, e in sorted(by_template.items())}}
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    table = breakdown(argv[0])
    for model, r in table.items():
        print(f"\n{model} on {r['split']}: Acc. {r['all']['acc']:.1f} Comp. {r['all']['comp']:.1f} "
              f"({r['all']['n']} tasks)\n\n| difficulty | tasks | Acc. | Comp. |\n|---|---|---|---|")
        for level, s in r["difficulty"].items():
            print(f"| {level} | {s['n']} | {s['acc']:.1f} | {s['comp']:.1f} |")
        print("\n| template | tasks | Acc. | Comp. |\n|---|---|---|---|")
        for name, s in r["template"].items():
            print(f"| {name} | {s['n']} | {s['acc']:.1f} | {s['comp']:.1f} |")
    if "--json" in argv:
        with open(argv[argv.index("--json") + 1], "w", encoding="utf-8") as f:
            json.dump(table, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
