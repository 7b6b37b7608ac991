"""Download the real pretrained weights the notebooks' "The real thing" sections use (online, once).

    python tools/fetch_pretrained.py gpt2 bert-base-uncased mamba-130m   # or: all
    python tools/fetch_pretrained.py --list                               # what is pinned, what is here

Each model comes from its hub repository at the commit pinned in ``course_lib.pretrained.SOURCES``
(never a moving branch). Every file's SHA-256 is checked: against the digest pinned in the course
where there is one, else against the digest the hub publishes for that file at that commit (the
LFS SHA-256 of a large file, the git blob id of a small one). A file that does not match is
deleted and the command fails; nothing half-fetched is left where ``find_pretrained`` looks. The
files go to ``course_lib.pretrained.pretrained_dir()`` (``$COURSE_PRETRAINED_DIR``, else the
git-ignored ``data/pretrained``), with a manifest of the digests that were checked.
Tests and CI never call this: they build random-weight checkpoints in the same layout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib.pretrained import MANIFEST, SOURCES, find_pretrained, pretrained_dir  # noqa: E402


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_id(path: Path) -> str:
    """The id git (and so the hub) gives a small file: sha1 of "blob <size>\\0" + content."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def hub_digests(repo: str, revision: str, files) -> dict:
    """{file: ("sha256", hex) for LFS files, ("git", blob id) for small ones} at that commit."""
    from huggingface_hub import HfApi

    out = {}
    for info in HfApi().get_paths_info(repo, list(files), revision=revision):
        lfs = getattr(info, "lfs", None)
        if lfs is not None:
            out[info.path] = ("sha256", lfs["sha256"] if isinstance(lfs, dict) else lfs.sha256)
        else:
            out[info.path] = ("git", info.blob_id)
    return out


def hub_download(repo: str, filename: str, revision: str, folder: Path) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo, filename, revision=revision, local_dir=str(folder)))


def fetch(name: str, dest: Path | None = None, download=hub_download, digests=hub_digests) -> Path:
    """Fetch ``name`` into ``dest/name`` (default ``pretrained_dir()``); raise RuntimeError naming
    the file whose digest differs. Downloads go to a staging folder first and are moved into
    place only when every digest matched."""
    if name not in SOURCES:
        raise ValueError(f"unknown model {name!r}: expected one of {sorted(SOURCES)}")
    src = SOURCES[name]
    dest = pretrained_dir() if dest is None else Path(dest)
    staging, final = dest / f".{name}.partial", dest / name
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    remote = digests(src.repo, src.revision, [f for f in src.files if f not in src.sha256])
    checked = {}
    try:
        for filename in src.files:
            path = download(src.repo, filename, src.revision, staging)
            if filename in src.sha256:
                kind, want = "sha256", src.sha256[filename]
            elif filename in remote:
                kind, want = remote[filename]
            else:
                raise RuntimeError(f"{name}: the hub lists no digest for {filename} at {src.revision}")
            got = sha256(path) if kind == "sha256" else git_blob_id(path)
            if got != want:
                raise RuntimeError(
                    f"{name}: {filename} has {kind} {got}, expected {want} "
                    f"({src.repo}@{src.revision}); deleted"
                )
            checked[filename] = {"sha256": sha256(path), "checked_against": kind}
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (staging / MANIFEST).write_text(
        json.dumps({"repo": src.repo, "revision": src.revision, "files": checked}, indent=1, sort_keys=True)
    )
    shutil.rmtree(final, ignore_errors=True)
    for path in staging.iterdir():  # only the pinned files and the manifest
        if path.name in src.files or path.name == MANIFEST:
            final.mkdir(parents=True, exist_ok=True)
            path.replace(final / path.name)
    shutil.rmtree(staging, ignore_errors=True)
    return final


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"models to fetch: {', '.join(SOURCES)}, or all")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="target folder (default: $COURSE_PRETRAINED_DIR or data/pretrained)",
    )
    parser.add_argument("--list", action="store_true", help="show the pins and what is here")
    args = parser.parse_args(argv)
    if args.dir is not None:
        import os

        os.environ["COURSE_PRETRAINED_DIR"] = str(args.dir)
    if args.list or not args.names:
        for name, src in SOURCES.items():
            here = find_pretrained(name)
            print(
                f"{name:18s} {src.repo}@{src.revision[:12]}  "
                f"{'present: ' + str(here) if here else 'not fetched'}"
            )
        return 0
    names = list(SOURCES) if args.names == ["all"] else args.names
    status = 0
    for name in names:
        try:
            print(f"{name}: fetched into {fetch(name)}")
        except (RuntimeError, ValueError) as exc:
            print(f"{name}: FAILED: {exc}")
            status = 1
        except Exception as exc:  # noqa: BLE001 - offline, hub down, proxy: one clear line
            print(
                f"{name}: could not download ({type(exc).__name__}: {str(exc)[:200]}); "
                f"the notebooks skip its section until it is fetched"
            )
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
