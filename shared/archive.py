"""Deterministic ``.tar.gz`` archives: the bytes depend only on the members' names and contents.

Used for the model archive (``model/train.py``, ``model/sagemaker_train.py``) and the training job's
source bundle (``shared/source_bundle.py``), and by the local stage's training-job emulation when it
tars a job's model directory. Members are sorted, directories get entries of their own, every mtime
is :data:`ARCHIVE_MTIME` (1980-01-01: ZIP-based tools such as the container's ``pip install`` reject
earlier timestamps), uid/gid 0 with no user or group names, and the gzip header has mtime 0 and no
file name. Plain Python (standard library only), so the training container can import it.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Mapping
from pathlib import Path

ARCHIVE_MTIME = 315532800  # 1980-01-01T00:00:00Z


def deterministic_tar_gz(members: Mapping[str, bytes]) -> bytes:
    """A gzipped tar of ``members`` (archive path -> bytes) whose bytes depend only on the members."""
    raw = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.USTAR_FORMAT) as tar,
    ):
        directories = {str(parent) for name in members for parent in Path(name).parents} - {"."}
        for directory in sorted(directories):
            tar.addfile(_tar_info(directory, tarfile.DIRTYPE, 0o755))
        for name in sorted(members):
            info = _tar_info(name, tarfile.REGTYPE, 0o644)
            info.size = len(members[name])
            tar.addfile(info, io.BytesIO(members[name]))
    return raw.getvalue()


def directory_members(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` by its POSIX path relative to ``root``."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _tar_info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = ARCHIVE_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
