"""What the repository holds: tools that import the package like any user code, docs that hold results
(tables, a few plots) rather than run dumps, and references that point at files inside it."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEXT_DIRS = ("bljust", "tools", "tests", "docs", "recipes", "conf")
TEXT_SUFFIXES = {".py", ".md", ".sh", ".yaml", ".txt"}


def text_files() -> list[Path]:
    files = [p for d in TEXT_DIRS for p in (REPO / d).rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES]
    return [*files, REPO / "README.md", REPO / "Makefile", REPO / "pyproject.toml"]


def test_no_tool_edits_sys_path_or_imports_another_tool_by_file():
    """A tool runs as `python tools/x.py` against the installed package; a sys.path edit hides a
    missing install and imports the checkout's copy instead of the installed one."""
    tools = sorted((REPO / "tools").glob("*.py"))
    names = {p.stem for p in tools}
    assert len(tools) >= 10
    for path in tools:
        text = path.read_text()
        assert not re.search(r"sys\.path\s*(\.\s*(insert|append|extend)\s*\(|\+?=)", text), f"{path.name} edits sys.path"
        imported = set(re.findall(r"^\s*(?:from|import)\s+(\w+)", text, re.M))
        assert not imported & names, f"{path.name} imports {imported & names} as top-level modules"


def test_docs_hold_no_run_dumps_or_generated_reports():
    """Run folders (metrics.jsonl, configs) and HTML reports are rebuilt by commands, not committed."""
    dumps = sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*")
                   if p.suffix in {".jsonl", ".html"} or p.name in {"metrics.jsonl", "config.yaml", "wer.json"})
    assert dumps == []


def test_references_point_inside_the_repository():
    """No comment or doc names a file this repository does not ship (design notes kept elsewhere)."""
    outside = re.compile(r"DESIGN\.md|DEMO_CORPUS\.md|STYLE\.md|\.\./shared|\bthe issue\b", re.I)
    hits = [f"{p.relative_to(REPO)}:{n}" for p in text_files() if p != Path(__file__)
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if outside.search(line)]
    assert hits == []


def test_paths_named_in_the_docs_exist():
    """Markdown links and `docs/...` paths in backticks, in the README, docs and recipes' READMEs."""
    pages = [REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "recipes").rglob("*.md")]
    missing = []
    for page in pages:
        text = page.read_text()
        links = [(page.parent / t) for t in re.findall(r"\]\(([^)#\s]+)\)", text) if "://" not in t]
        named = [REPO / t for t in re.findall(r"`(docs/[^`\s{}*<>]+)`", text)]
        missing += [f"{page.relative_to(REPO)} -> {p}" for p in [*links, *named] if not p.exists()]
    assert missing == []
