"""`stylefinder index` straight into the embedded store: progress, resumability, failures named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.settings import Settings
from services.store import VectorStore


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_index_a_catalogue_then_resume(tiny_env: dict[str, str], catalogue_dir: Path, settings: Settings) -> None:
    (catalogue_dir / "products.csv").open("a").write("broken,img/missing.jpg,x,Caps,red,Men,acme,1,true,Summer\n")
    first = run(tiny_env, "index", str(catalogue_dir))
    assert first.returncode == 0, first.stderr
    assert "12 indexed, 0 unchanged, 1 failed" in first.stdout
    assert "failed broken: no such file" in first.stderr
    assert "100%" in first.stderr  # the progress bar ran to the end
    second = run(tiny_env, "index", str(catalogue_dir / "products.csv"))
    assert "0 indexed, 12 unchanged, 1 failed" in second.stdout
    store = VectorStore.open(settings.store_path)
    try:
        assert store.count("tiny") == 12
    finally:
        store.close()


def test_index_a_folder_of_photos(tiny_env: dict[str, str], catalogue_dir: Path) -> None:
    result = run(tiny_env, "index", str(catalogue_dir / "img"), "--variant", "tiny")
    assert "12 indexed" in result.stdout


def test_unusable_variant_is_a_clear_error(tiny_env: dict[str, str], catalogue_dir: Path) -> None:
    result = run(tiny_env, "index", str(catalogue_dir), "--variant", "ViT-B-16/openai")
    assert result.returncode != 0 and "are not on this machine" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_unusable_index_variant_before_starting(tiny_env: dict[str, str], catalogue_dir: Path) -> None:
    result = run(tiny_env, "serve", "--port", "8765", "--index", str(catalogue_dir), "--variant", "RN50/openai")
    assert result.returncode != 0 and "are not on this machine" in result.stderr
    assert "Traceback" not in result.stderr and "Uvicorn running" not in result.stderr
