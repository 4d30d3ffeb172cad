"""Every document a tracked file points to exists in the repository, and so do the numbered sections it cites.

Catches references to design documents that a clone does not have (the project's documentation lives in ``docs/``)
and ``docs/<name>.md §N.M`` references to a file or section that is not there.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UPPER_DOC = re.compile(r"(?<![\w/.-])([A-Z][A-Z0-9_\-]*\.md)\b")
"""A document named in capitals (``README.md``, ``RESULTS.md``): every one a tracked file names must be tracked too.
(Lower-case ``.md`` names in the code are report files that scripts write.)"""
DOC_REF = re.compile(r"docs/([A-Za-z0-9_\-]+\.md)(?:\s+§\s?(\d+(?:\.\d+)?))?")
LINK_REF = re.compile(r"\]\(([A-Za-z0-9_\-]+\.md)\)(?:\s+§\s?(\d+(?:\.\d+)?))?")
"""A relative link between the documents of docs/, e.g. ``[model.md](model.md) §5.1``."""
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)?)[.\s]", re.MULTILINE)


def _tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = []
    for name in out.decode().split("\0"):
        path = ROOT / name
        if name and path.is_file() and path.suffix in {".py", ".md", ".sh", ".txt", ".toml", ".cfg", ""}:
            files.append(path)
    return files + sorted((ROOT / "docs").glob("*.md"))


def _sections(doc: Path) -> set[str]:
    return set(HEADING.findall(doc.read_text(encoding="utf-8")))


def test_no_reference_to_documents_outside_the_repository() -> None:
    files = _tracked_text_files()
    tracked = {path.name for path in files}
    hits = []
    for path in files:
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            hits += [f"{path.relative_to(ROOT)}:{lineno}: {name}" for name in UPPER_DOC.findall(line)
                     if name not in tracked]
    assert not hits, "references to documents that are not in the repository:\n" + "\n".join(hits)


def test_docs_references_name_existing_files_and_sections() -> None:
    sections: dict[str, set[str]] = {}
    bad = []
    for path in _tracked_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        matches = list(DOC_REF.finditer(text))
        if path.parent == ROOT / "docs":
            matches += list(LINK_REF.finditer(text))
        for m in matches:
            name, section = m.group(1), m.group(2)
            doc = ROOT / "docs" / name
            where = f"{path.relative_to(ROOT)}: docs/{name}" + (f" §{section}" if section else "")
            if not doc.is_file():
                bad.append(f"{where} (no such file)")
                continue
            if section and section not in sections.setdefault(name, _sections(doc)):
                bad.append(f"{where} (no heading numbered {section})")
    assert not bad, "broken documentation references:\n" + "\n".join(bad)


def test_docs_index_lists_every_document() -> None:
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    for doc in sorted((ROOT / "docs").glob("*.md")):
        if doc.name != "README.md":
            assert f"({doc.name})" in index, f"docs/README.md does not link {doc.name}"
