"""The training job's source bundle: deterministic, the entry point at its root, its imports beside it."""

from __future__ import annotations

import ast
import gzip
import subprocess
import sys
import tarfile
from pathlib import Path

from shared import archive, source_bundle, training


def test_the_bundle_holds_the_entry_point_and_every_project_module_it_imports(tmp_path):
    path = source_bundle.build_source_bundle(tmp_path)
    assert path == tmp_path / training.SOURCE_BUNDLE_NAME
    with tarfile.open(path) as tar:
        files = {member.name for member in tar.getmembers() if member.isfile()}
        entry = tar.extractfile(training.ENTRY_POINT)
        assert entry is not None
        assert entry.read() == (source_bundle.ROOT / "model" / "sagemaker_train.py").read_bytes()
    assert files == {
        training.ENTRY_POINT,
        "model/__init__.py",
        "model/data.py",
        "model/inference.py",
        "model/schema.py",
        "model/train.py",
        "shared/__init__.py",
        "shared/archive.py",
        "shared/model_parameters.py",
        "shared/training.py",
    }
    assert "requirements.txt" not in files  # network isolation: the container's pip install would fail


def test_the_bundle_is_deterministic_and_changes_with_the_code(tmp_path):
    first = source_bundle.build_source_bundle(tmp_path / "a").read_bytes()
    second = source_bundle.build_source_bundle(tmp_path / "b").read_bytes()
    assert first == second
    with tarfile.open(tmp_path / "a" / training.SOURCE_BUNDLE_NAME) as tar:
        assert {member.mtime for member in tar.getmembers()} == {archive.ARCHIVE_MTIME}
        assert {(member.uid, member.gid, member.uname, member.gname) for member in tar.getmembers()} == {
            (0, 0, "", "")
        }
    assert gzip.decompress(first)  # a plain gzip stream; header mtime 0
    assert first[4:8] == b"\0\0\0\0"
    copy = tmp_path / "root"
    for source in source_bundle.bundle_sources().values():
        (copy / source).parent.mkdir(parents=True, exist_ok=True)
        (copy / source).write_bytes((source_bundle.ROOT / source).read_bytes())
    assert source_bundle.build_source_bundle(tmp_path / "c", root=copy).read_bytes() == first
    (copy / "shared" / "training.py").write_text(
        (copy / "shared" / "training.py").read_text() + "# changed\n"
    )
    assert source_bundle.build_source_bundle(tmp_path / "d", root=copy).read_bytes() != first


def test_the_extracted_bundle_runs_on_its_own_modules(tmp_path):
    with tarfile.open(source_bundle.build_source_bundle(tmp_path)) as tar:
        tar.extractall(tmp_path / "code", filter="data")
    code = tmp_path / "code"
    # what the entry point imports comes from the bundle (the directory comes first on sys.path)
    probe = "import model.train, shared.archive; print(model.train.__file__); print(shared.archive.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=code, capture_output=True, text=True, check=True, timeout=60
    )
    assert all(Path(line).is_relative_to(code) for line in result.stdout.split())


def test_every_bundled_file_parses_as_the_images_python_3_10():
    for name, source in source_bundle.bundle_sources().items():
        ast.parse((source_bundle.ROOT / source).read_text(), filename=name, feature_version=(3, 10))
