"""What a careless user types, and the one line each mistake ends in: no traceback, and no model loaded where the
mistake can be seen before (every `train` row here is caught before the model loads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skill_sd_trl.cli import main

ROOT = Path(__file__).resolve().parent.parent
RECIPE = str(ROOT / "recipes" / "sokoban" / "skill_sd_cpu.yaml")
TRAIN = ["train", "--config", RECIPE, "--tiny_model", "true"]

# (argv with {tmp} for a scratch folder, files to write there first, the one line it must end in (a substring))
MISTAKES = [
    (["trian"], {}, "error: unknown command 'trian'. Did you mean 'train'? Commands: train, eval"),
    (["train", "--config", "{tmp}/nope.yaml"], {}, "error: recipe file '{tmp}/nope.yaml' not found."),
    (["train", "--config", "{tmp}/broken.yaml"], {"broken.yaml": "sdl_coef: [0.1\nlearning_rate: 1e-5\n"},
     "error: recipe '{tmp}/broken.yaml' is not valid YAML (line 2, column 14): expected ',' or ']'"),
    (["train", "--config", "{tmp}/typo.yaml"], {"typo.yaml": "sdl_coeff: 0.1\n"},
     "error: unknown recipe key 'sdl_coeff' in {tmp}/typo.yaml. Did you mean 'sdl_coef'?"),
    (["train", "--config", "{tmp}/old.yaml"], {"old.yaml": "env_name: sokoban\nenv_preset: tiny\n"},
     "is now an option of the environment: write `env_args: {preset: 'tiny'}` instead"),
    ([*TRAIN, "--sdl_coeff", "0.1"], {}, "error: unknown flag --sdl_coeff. Did you mean --sdl_coef?"),
    ([*TRAIN, "--reward", "money"], {}, "error: argument --reward: invalid choice: 'money'"),
    ([*TRAIN, "--sdl_coef", "-1"], {}, "error: sdl_coef must be ≥ 0, got -1.0. Use 0 for plain GRPO."),
    ([*TRAIN, "--num_generations", "0"], {}, "num_generations"),
    ([*TRAIN, "--env_preset", "huge"], {}, "error: --env_preset is now an option of the environment: write "
                                           "--env_args preset=<value>"),
    ([*TRAIN, "--env_args", "preset=huge"], {}, "error: env_args for sokoban: preset='huge': choose one of "
                                                "paper, small, short, tiny"),
    ([*TRAIN, "--env_args", "presett=tiny"], {}, "error: env_args.presett: sokoban has no option 'presett' "
                                                 "(did you mean 'preset'?)"),
    ([*TRAIN, "--env_args", "{oops"], {}, "error: env_args='{oops' is not a JSON object"),
    ([*TRAIN, "--env_name", "chess"], {}, "error: env_name='chess' is not an installed environment."),
    ([*TRAIN, "--method", "skill_sdd"], {}, "error: method='skill_sdd' is not a method (did you mean 'skill_sd'?)"),
    (["train", "--config", RECIPE, "--model_name_or_path", "nobody/no-such-model"], {},
     "error: model 'nobody/no-such-model' is not a folder or an alias and is not in the local Hub cache"),
    ([*TRAIN, "--resume_from_checkpoint", "{tmp}/checkpoint-9"], {},
     "error: resume_from_checkpoint='{tmp}/checkpoint-9': no such folder"),
    ([*TRAIN, "--max_train_samples", "1"], {}, "error: max_train_samples: 1 training task(s), but one optimizer step "
                                               "takes 2"),
    ([*TRAIN, "--bank_path", "{tmp}/bank.json"], {}, "error: bank_path='{tmp}/bank.json' does not exist"),
    (["eval", "--model", "a", "b", "--label", "x"], {}, "error: label has 1 names for 2 models"),
    (["eval"], {}, "error: model is required: give --model"),
    (["eval", "--model", "no-such-model"], {}, "error: model 'no-such-model' is neither a folder"),
    (["report", "{tmp}/missing"], {}, "error: run folder '{tmp}/missing' not found. Give a training output folder"),
    (["show-bank", "{tmp}/bank.json"], {}, "error: no skill bank at {tmp}/bank.json"),
    (["experiment", "--config", "{tmp}/nope.yaml"], {}, "error: experiment config '{tmp}/nope.yaml' not found."),
]


@pytest.fixture
def no_model_loads(monkeypatch):
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the mistake was reported")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


@pytest.mark.parametrize("argv, files, expected", MISTAKES, ids=[" ".join(m[0][:1] + m[0][4:6]) or m[0][0]
                                                                  for m in MISTAKES])
def test_each_mistake_ends_in_one_line(argv, files, expected, tmp_path, capsys, no_model_loads):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = main(argv)
        message = capsys.readouterr().err.strip()
    except SystemExit as stop:
        code, message = 2, str(stop.code)
    assert code != 0
    assert "\n" not in message and "Traceback" not in message, message
    assert expected.replace("{tmp}", str(tmp_path)) in message, message
    assert message.startswith("error: "), message


def test_a_second_ctrl_c_aborts_in_one_line(monkeypatch, capsys):
    """The first Ctrl-C asks for a checkpoint at the end of the step; the second aborts at once: one line, exit 130."""
    from skill_sd_trl.app import train
    from skill_sd_trl.app.interrupt import GracefulInterrupt

    def interrupted_twice(*args, **kwargs):
        interrupt = GracefulInterrupt()
        interrupt._handle(2, None)  # first Ctrl-C: a flag, training goes on
        interrupt._handle(2, None)  # second Ctrl-C: KeyboardInterrupt, wherever training is

    monkeypatch.setattr(train, "run_train", interrupted_twice)
    assert main(TRAIN) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "aborted: nothing saved since the last checkpoint." and "Traceback" not in "\n".join(err)
