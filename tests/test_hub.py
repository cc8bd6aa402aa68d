"""push_to_hub uploads the adapter, the skill bank, the recipe and a model card (against a local-folder Hub)."""

import fnmatch
import shutil
from pathlib import Path

import transformers.trainer

from skill_sd_trl.cli import main

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "sokoban" / "skill_sd_cpu.yaml"


class LocalHub:
    """Stands in for `huggingface_hub.HfApi`: repos are folders; `upload_folder` copies like the real call would."""

    def __init__(self, root: Path):
        self.root = root
        self.created, self.uploads = [], []

    def create_repo(self, repo_id, token=None, private=None, exist_ok=False, **kwargs):
        self.created.append(repo_id)
        (self.root / repo_id).mkdir(parents=True, exist_ok=True)
        from huggingface_hub import RepoUrl

        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, repo_id, folder_path, ignore_patterns=(), **kwargs):
        self.uploads.append(repo_id)
        dest = self.root / repo_id
        for path in Path(folder_path).rglob("*"):
            rel = path.relative_to(folder_path).as_posix()
            if path.is_file() and not any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel.split("/")[0], p)
                                          for p in ignore_patterns):
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest / rel)


def test_push_to_hub_uploads_adapter_bank_recipe_and_card(tmp_path, monkeypatch):
    hub = LocalHub(tmp_path / "hub")
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: hub)
    out = tmp_path / "run"
    code = main(["train", "--config", str(RECIPE), "--tiny_model", "true", "--output_dir", str(out), "--max_steps", "2",
                 "--max_train_samples", "1", "--max_turns", "2", "--max_new_tokens_per_turn", "4",
                 "--evaluate_after_training", "false", "--push_to_hub", "true",
                 "--per_device_train_batch_size", "4", "--num_generations", "4", "--hub_model_id", "me/skill-sd-sokoban"])
    assert code == 0
    assert hub.created == ["me/skill-sd-sokoban"] and hub.uploads[-1] == "me/skill-sd-sokoban"
    repo = tmp_path / "hub" / "me" / "skill-sd-sokoban"
    files = {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()}
    for name in ("adapter_model.safetensors", "adapter_config.json", "skill_bank.json", "recipe.yaml", "README.md",
                 "tokenizer.json"):
        assert name in files, name
    assert not any(f.startswith("teacher/") for f in files)  # one model in the repo; the teacher travels separately
    assert (repo / "recipe.yaml").read_text() == RECIPE.read_text()
    card = (repo / "README.md").read_text()
    assert "Skill-SD training" in card and "| λ (`sdl_coef`) | 0.001 |" in card and "sokoban" in card
    assert "2604.10674" in card  # citation
    assert "skill-sd" in card  # tag
