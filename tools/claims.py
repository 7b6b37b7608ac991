"""The claims check: every number in a notebook's prose is one the notebook shows, or is cited.

    python tools/claims.py                 # every notebooks/NN_*.ipynb
    python tools/claims.py 04 07           # some of them

A number in a markdown cell passes when

* it appears, with the same digits (the same rounding), as a number in the notebook's stored
  text outputs (stdout, text/plain, text/html) or in its code (a hyper-parameter the code sets);
* or its sentence cites a source with a year in parentheses, e.g.
  "(Gu & Dao, 2023, Table 1)" or "(Vaswani et al., 2017)": a published figure, not ours;
* or it is not a claim: inside LaTeX math (``$...$``) or inline code, a link target or HTML tag,
  a heading's or list item's number, a section sign (``§5``), a notebook number (``notebook 03``,
  ``(04)``, ``01_attention``: the course writes notebooks, and only them, with a leading zero),
  an arXiv id.

Matching ignores signs and thousands separators ("1,200" = "1200"); "97.5" matches only
"97.5" (not "97.50" or "97.52"). ``check`` of tools/notebooks.py runs this and fails on any
unmatched number; the message names the notebook, the cell and the sentence.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

NUMBER = re.compile(r"(?<![\w.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?!\d|[.,]\d)")
CITATION = re.compile(r"\([^()]*\b(?:19|20)\d\d[a-z]?\b[^()]*\)")
ABBREVIATIONS = re.compile(r"\b(?:et al|e\.g|i\.e|vs|Fig|Eq|Sec|cf|approx)\.")

NOT_CLAIMS = [
    re.compile(r"\$\$.*?\$\$", re.S),  # display math
    re.compile(r"(?<!\\)\$[^$\n]+?(?<!\\)\$"),  # inline math
    re.compile(r"```.*?```", re.S),  # code blocks
    re.compile(r"`[^`\n]*`"),  # inline code
    re.compile(r"\]\([^)\s]*\)"),  # link targets
    re.compile(r"https?://\S+"),  # bare URLs
    re.compile(r"<[^>\n]*>"),  # HTML tags and comments
    re.compile(r"^\s*#+\s*[\d.]+", re.M),  # heading numbers
    re.compile(r"^\s*(?:[-*]\s+)?\d+[.)]\s", re.M),  # list enumerators
    re.compile(r"§\s*\d+(?:\.\d+)*"),  # section references
    re.compile(r"\b[Nn]otebooks?\s+\d\d(?:\s*(?:,|and|or|–|-)\s*\d\d)*"),
    re.compile(r"\b\d\d_[a-z_]+"),  # notebook file stems
    re.compile(r"(?<![\w.,])0\d(?![\w.,]\d?)"),  # "(04)", "[07 · Mamba]": notebooks
    re.compile(r"arXiv:\s*\d+\.\d+"),
]


def normalize(token: str) -> str:
    return token.replace(",", "")


def numbers_in(text: str) -> set[str]:
    return {normalize(m.group()) for m in NUMBER.finditer(text)}


def shown_numbers(nb: dict) -> set[str]:
    """Every number in the stored text outputs and in the code of a notebook."""
    found: set[str] = set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        found |= numbers_in("".join(cell["source"]))
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                found |= numbers_in("".join(out["text"]))
            elif out["output_type"] in ("execute_result", "display_data"):
                for kind in ("text/plain", "text/html", "text/markdown"):
                    if kind in out.get("data", {}):
                        found |= numbers_in("".join(out["data"][kind]))
    return found


def strip_non_claims(text: str) -> str:
    for pattern in NOT_CLAIMS:
        text = pattern.sub(" ", text)
    return text


def sentences(text: str) -> list[str]:
    """Split prose into sentences (abbreviations such as 'et al.' do not end one)."""
    protected = ABBREVIATIONS.sub(lambda m: m.group().replace(".", "\0"), text)
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z*(\"'])|\n\s*\n", protected)
    return [p.replace("\0", ".") for p in parts]


def unmatched_claims(nb: dict) -> list[tuple[int, str, str]]:
    """(cell index, number, sentence) for every number the prose states but nothing shows."""
    shown = shown_numbers(nb)
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        for sentence in sentences(strip_non_claims("".join(cell["source"]))):
            if CITATION.search(sentence):
                continue
            for m in NUMBER.finditer(sentence):
                if normalize(m.group()) not in shown:
                    problems.append((i, m.group(), " ".join(sentence.split())[:160]))
    return problems


def check(paths: list[Path]) -> list[str]:
    """One message per unmatched number in the given notebooks."""
    messages = []
    for path in paths:
        nb = json.loads(path.read_text())
        for i, number, sentence in unmatched_claims(nb):
            messages.append(
                f"{path.name} cell {i}: {number!r} is neither shown by the notebook nor cited: {sentence}"
            )
    return messages


def main(argv: list[str]) -> int:
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if argv:
        paths = [p for p in paths if any(p.stem.startswith(n) for n in argv)]
    messages = check(paths)
    print("\n".join(messages))
    print(f"claims check: {len(messages)} unmatched number(s) in {len(paths)} notebook(s)")
    return 1 if messages else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
