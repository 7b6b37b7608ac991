"""Fetch bertviz's JavaScript dependencies from the npm registry, for the browser test.

    python tests/browser/vendor.py        # -> artifacts/vendor/{require.min.js,d3.min.js,jquery.min.js}

bertviz's views load require.js, d3 and jQuery from a CDN (cdnjs). The browser test routes those
requests to these local copies so the view can be checked offline. They come from the npm
registry with ``npm pack`` (run at install time by `make browser-deps`, which .ci/run calls) and
are kept in the git-ignored artifacts/ folder. jQuery 2.0.0, which bertviz names, is not on npm:
2.1.0 (same API) stands in for it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "artifacts" / "vendor"

# CDN file name (last part of the URL bertviz loads) -> (npm package spec, file inside the tarball)
PACKAGES = {
    "require.min.js": ("requirejs@2.3.6", "package/require.js"),
    "d3.min.js": ("d3@5.7.0", "package/dist/d3.min.js"),
    "jquery.min.js": ("jquery@2.1.0", "package/dist/jquery.min.js"),
}


def missing() -> list[str]:
    return [name for name in PACKAGES if not (VENDOR / name).is_file()]


def fetch() -> Path:
    """npm pack each package into a temp folder and copy out the one file bertviz needs."""
    if not missing():
        return VENDOR
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: cannot fetch bertviz's JavaScript dependencies")
    VENDOR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (spec, member) in PACKAGES.items():
            out = subprocess.run(
                [npm, "pack", spec, "--silent", "--pack-destination", tmp],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if out.returncode:
                raise RuntimeError(f"npm pack {spec} failed: {out.stderr.strip()[-300:]}")
            tarball = Path(tmp) / out.stdout.strip().splitlines()[-1]
            with tarfile.open(tarball) as tar:
                data = tar.extractfile(member).read()
            (VENDOR / name).write_bytes(data)
    return VENDOR


if __name__ == "__main__":
    try:
        print(
            f"bertviz JavaScript dependencies in {fetch().relative_to(ROOT)}: {', '.join(sorted(PACKAGES))}"
        )
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"could not fetch bertviz's JavaScript dependencies: {exc}", file=sys.stderr)
        sys.exit(1)
