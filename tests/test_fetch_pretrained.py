"""tools/fetch_pretrained.py with the hub replaced by a local fake: digests are checked, a bad
file is refused and nothing half-fetched is left where find_pretrained looks."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from course_lib import pretrained
from course_lib.pretrained import MANIFEST, Source, find_pretrained

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("fetch_pretrained", ROOT / "tools" / "fetch_pretrained.py")
fetch_tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fetch_tool)

CONTENT = {"config.json": b'{"n_layer": 1}', "model.safetensors": b"weights", "tokenizer.json": b"{}"}


def _fake(tmp_path, monkeypatch, content, pinned):
    monkeypatch.setenv("COURSE_PRETRAINED_DIR", str(tmp_path / "store"))
    monkeypatch.setitem(pretrained.SOURCES, "toy", Source("someone/toy", "a" * 40, sha256=pinned))
    monkeypatch.setattr(fetch_tool, "SOURCES", pretrained.SOURCES)

    def download(repo, filename, revision, folder):
        assert (repo, revision) == ("someone/toy", "a" * 40)
        path = Path(folder) / filename
        path.write_bytes(content[filename])
        return path

    def digests(repo, revision, files):  # the hub publishes digests of the true files
        return {
            f: ("sha256", hashlib.sha256(CONTENT[f]).hexdigest())
            if f == "model.safetensors"
            else ("git", hashlib.sha1(b"blob %d\0" % len(CONTENT[f]) + CONTENT[f]).hexdigest())
            for f in files
        }

    return download, digests


def test_fetch_checks_pinned_and_hub_digests_then_installs(tmp_path, monkeypatch):
    pinned = {"config.json": hashlib.sha256(CONTENT["config.json"]).hexdigest()}
    download, digests = _fake(tmp_path, monkeypatch, CONTENT, pinned)
    folder = fetch_tool.fetch("toy", download=download, digests=digests)
    assert folder == find_pretrained("toy")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["revision"] == "a" * 40
    assert {f: m["checked_against"] for f, m in manifest["files"].items()} == {
        "config.json": "sha256",
        "model.safetensors": "sha256",
        "tokenizer.json": "git",
    }


@pytest.mark.parametrize("bad_file", ["config.json", "model.safetensors", "tokenizer.json"])
def test_fetch_refuses_a_file_whose_digest_differs(tmp_path, monkeypatch, bad_file):
    pinned = {"config.json": hashlib.sha256(CONTENT["config.json"]).hexdigest()}
    download, digests = _fake(tmp_path, monkeypatch, {**CONTENT, bad_file: b"tampered"}, pinned)
    with pytest.raises(RuntimeError, match=rf"toy: {bad_file} has .* expected .*deleted"):
        fetch_tool.fetch("toy", download=download, digests=digests)
    assert find_pretrained("toy") is None
    assert not any((tmp_path / "store").iterdir())  # staging removed too


def test_offline_fetch_fails_with_one_clear_line(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setenv("COURSE_PRETRAINED_DIR", str(tmp_path))  # main(--dir) sets it; undone after
    monkeypatch.setattr(fetch_tool, "hub_digests", offline)
    monkeypatch.setattr(fetch_tool.fetch, "__defaults__", (None, fetch_tool.hub_download, offline))
    assert fetch_tool.main(["gpt2", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "could not download (OSError: Network is unreachable)" in out[0]
