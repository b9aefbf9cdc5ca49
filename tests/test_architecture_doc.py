"""docs/ARCHITECTURE.md tells the story of one run in at most eight hops, and every hop
(``file:function``) is where it says: the doc cannot rot silently."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "ARCHITECTURE.md"
SECTION = "## One run, hop by hop"
HOP = re.compile(r"^(\d+)\. ", re.MULTILINE)
REFERENCE = re.compile(r"`(customer_sync/[\w/]+\.py):([A-Za-z_][\w.]*)`")


def _section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(SECTION) + len(SECTION)
    end = text.find("\n## ", start)
    return text[start : end if end != -1 else None]


def _hops() -> list[str]:
    section = _section()
    starts = [match.start() for match in HOP.finditer(section)]
    return [section[a:b] for a, b in zip(starts, [*starts[1:], len(section)], strict=True)]


def _defined(path: Path) -> set[str]:
    """Top-level functions and classes of a module, and ``Class.method`` for methods."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    return names


def test_the_story_has_at_most_eight_numbered_hops_each_naming_a_function() -> None:
    hops = _hops()
    assert 1 <= len(hops) <= 8, f"{len(hops)} hops"
    assert [int(HOP.match(hop).group(1)) for hop in hops] == list(range(1, len(hops) + 1))  # type: ignore[union-attr]
    for hop in hops:
        assert REFERENCE.search(hop), f"a hop without a `file:function`: {hop[:80]!r}"


def test_every_hop_is_where_the_doc_says() -> None:
    references = [ref for hop in _hops() for ref in REFERENCE.findall(hop)]
    missing = []
    for file, name in references:
        path = REPO / file
        if not path.is_file() or name not in _defined(path):
            missing.append(f"{file}:{name}")
    assert not missing, f"ARCHITECTURE.md names what is not there: {missing}"


def test_the_checker_catches_a_moved_function(tmp_path: Path) -> None:
    """The check itself can fail: a name that is not defined in the file is not found."""
    module = tmp_path / "m.py"
    module.write_text(
        "def here():\n    pass\n\nclass Kept:\n    async def method(self):\n        pass\n"
    )
    assert _defined(module) == {"here", "Kept", "Kept.method"}
    assert "moved_away" not in _defined(module)
