"""Every script in tools/ answers --help, and the ones no other test runs do one tiny real run on
the small demo corpus (in this process: the scripts' main() read sys.argv)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from tests.conftest import small_overrides

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def run_main(monkeypatch, name: str, *args: str):
    """The tool's main() with `args` as its command line; its return value (None or an exit code)."""
    main = importlib.import_module(f"tools.{name}").main
    monkeypatch.setattr(sys, "argv", [f"tools/{name}.py", *args])
    return main(list(args)) if main.__code__.co_argcount else main()


@pytest.mark.parametrize("name", sorted(p.stem for p in TOOLS.glob("*.py")))
def test_help(name, monkeypatch, capsys):
    with pytest.raises(SystemExit) as done:
        run_main(monkeypatch, name, "--help")
    out = capsys.readouterr().out
    assert done.value.code == 0 and out.startswith("usage:") and "--help" in out, out


def corpus(demo_root: Path) -> list[str]:
    return [o for o in small_overrides(demo_root) if not o.startswith("run_dir=")]
