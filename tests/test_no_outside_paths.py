"""Nothing in the repository reads a path outside it: a fresh clone runs as it is.

DESIGN.md §2: "The repository carries every file its tests, examples and harness read;
nothing reads a path outside it." This test scans every source, test, example, benchmark,
validation, plugin and script file (``.py``, ``.sh``, ``.toml``, ``.yaml``, ``.yml``,
``.cfg``, ``.ini``, ``.ci/run`` and other ``#!`` scripts) for:

- absolute paths (``/srv/...``, ``/home/...``, ``/data/...``) other than system and
  temporary locations (``/tmp``, ``/var/tmp``, ``/usr``, ``/bin``, ``/sbin``, ``/dev``,
  ``/proc``, ``/sys``, ``/etc``, and ``/nonexistent`` for "a path that is not there");
- relative paths that climb out (``../data``): in Python and shell code any string that
  starts with ``../`` (code runs from the repository root), in configuration files one
  that climbs above the repository root from the file's own folder;
- the home directory (``Path.home()``, ``~/...``, ``$HOME``), except ``~/.cache``: a
  cache is rebuilt on demand, data is not;
- ``Path(__file__)`` chains (``.parent``, ``.parents[k]``, ``os.path.dirname``, ``/ ".."``)
  that climb above the repository root given the file's own depth, also through a name
  assigned such a path (``ROOT = Path(__file__).resolve().parents[1]; ROOT.parent``).

Python files are read with ``ast``, so comments do not count and strings do.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS_FILE = Path("tests", "test_no_outside_paths.py")

SUFFIXES = {".py", ".sh", ".toml", ".yaml", ".yml", ".cfg", ".ini"}
CONFIG_SUFFIXES = {".toml", ".yaml", ".yml", ".cfg", ".ini"}
SKIP_DIRS = {
    ".git", "__pycache__", ".venv", "venv", ".ci-venv", ".ci-zipline-venv", "build", "dist",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "node_modules", "results",
    "demo_output", "ml4t_demo_output",
}  # fmt: skip
ALLOWED_ABSOLUTE = (
    "/tmp", "/var/tmp", "/usr", "/bin", "/sbin", "/dev", "/proc", "/sys", "/etc",
    "/nonexistent",
)  # fmt: skip

# "/top/more": an absolute path of two segments or more, not inside a word, URL or glob
_ABSOLUTE = re.compile(r"(?<![\w.~:/\\$}*)\]>-])/[A-Za-z_][\w.-]*/[\w.*{}-]+(?:/[\w.*{}-]+)*")
_CLIMB = re.compile(r"(?<![\w./])((?:\.\./)+)")
_HOME = re.compile(r"(?<![\w/])(~/|\$HOME\b|\$\{HOME\})(\.cache\b)?")


def scan(root: Path) -> list[str]:
    """Return ``path:line: problem`` for every reference to a path outside ``root``."""
    found: list[str] = []
    for path in _files(root):
        rel = path.relative_to(root)
        if rel == THIS_FILE:  # the checker's own test vectors
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".py":
            problems = _python_problems(text, len(rel.parts))
        else:
            climb_limit = len(rel.parts) - 1 if path.suffix in CONFIG_SUFFIXES else 0
            problems = _text_problems(text, 1, climb_limit)
        found += [f"{rel.as_posix()}:{line}: {what}" for line, what in problems]
    return found


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if any(p in SKIP_DIRS or p.endswith(".egg-info") for p in parts[:-1]):
            continue
        if not path.is_file():
            continue
        if path.suffix in SUFFIXES or (not path.suffix and _is_script(path)):
            yield path


def _is_script(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"#!"


def _text_problems(text: str, first_line: int, climb_limit: int) -> list[tuple[int, str]]:
    """Problems in plain text (a whole file, or one string literal of Python code).

    ``climb_limit``: how many ``../`` a relative path may start with (0 in code, which runs
    from the repository root; the file's depth in configuration files).
    """
    out: list[tuple[int, str]] = []
    for k, line in enumerate(text.splitlines() or [""]):
        at = first_line + k
        for m in _ABSOLUTE.finditer(line):
            path = m.group(0)
            if not any(path == a or path.startswith(a + "/") for a in ALLOWED_ABSOLUTE):
                out.append((at, f"absolute path outside the repository: {path}"))
        for m in _CLIMB.finditer(line):
            ups = m.group(1).count("..")
            if ups > climb_limit:
                out.append((at, f"relative path climbs out of the repository: {line.strip()}"))
        for m in _HOME.finditer(line):
            if m.group(2) is None:
                out.append((at, f"path in the home directory: {line.strip()}"))
    return out


def _python_problems(source: str, depth: int) -> list[tuple[int, str]]:
    """Problems in a Python file ``depth`` path parts below the root (``a/b.py``: 2)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        # a docstring is documentation, not a path the code reads
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out += [] if id(node) in docstrings else _text_problems(node.value, node.lineno, 0)
    out += _FileClimb(depth).problems(tree)
    out += _home_calls(tree)
    return sorted(set(out))


def _home_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """``Path.home()`` not followed by ``/ ".cache"``."""
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Div)
            and isinstance(node.right, ast.Constant)
            and isinstance(node.right.value, str)
            and node.right.value.startswith(".cache")
        ):
            allowed.add(id(node.left))
    return [
        (node.lineno, "path in the home directory: Path.home()")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "home"
        and _name_of(node.func.value) == "Path"
        and id(node) not in allowed
    ]


def _name_of(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


class _FileClimb:
    """Follow paths built from ``__file__`` and report those that climb above the root.

    A path's *level* is its number of parts below the repository root: the file itself is
    at ``depth``, its folder at ``depth - 1``, the root at 0. Below 0 is outside.
    """

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.names: dict[str, int] = {}

    def problems(self, tree: ast.AST) -> list[tuple[int, str]]:
        assigns = [n for n in ast.walk(tree) if isinstance(n, ast.Assign | ast.AnnAssign)]
        for node in sorted(assigns, key=lambda n: n.lineno):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            level = self.level(node.value) if node.value is not None else None
            for target in targets:
                if isinstance(target, ast.Name) and level is not None:
                    self.names[target.id] = level
        return [
            (node.lineno, f"Path(__file__) climbs {-level} level(s) above the repository root")
            for node in ast.walk(tree)
            if isinstance(node, ast.expr)
            and not isinstance(node, ast.Name)
            and (level := self.level(node)) is not None
            and level < 0
            and self._crosses(node)
        ]

    def _crosses(self, node: ast.expr) -> bool:
        """True where the path leaves the tree, not where an outside path is used again."""
        for child in ast.iter_child_nodes(node):
            inner = self.level(child) if isinstance(child, ast.expr) else None
            if inner is not None and inner < 0:
                return False
        return True

    def level(self, node: ast.expr) -> int | None:
        """Return the level of a path expression, or None when not built from __file__."""
        if isinstance(node, ast.Name):
            return self.depth if node.id == "__file__" else self.names.get(node.id)
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            inner = self.level(node.value)
            return None if inner is None else inner - 1
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parents"
            and isinstance(node.slice, ast.Constant)
        ):
            inner = self.level(node.value.value)
            k = node.slice.value
            if inner is None or not isinstance(k, int):
                return None
            return inner - 1 - k if k >= 0 else -1  # parents[-1] is "/"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            inner = self.level(node.left)
            if inner is None or not isinstance(node.right, ast.Constant):
                return inner
            return _descend(inner, str(node.right.value))
        if isinstance(node, ast.Call):
            return self._call_level(node)
        return None

    def _call_level(self, node: ast.Call) -> int | None:
        func = node.func
        name = _name_of(func)
        args = node.args
        if name in ("Path", "PurePath") and len(args) == 1:
            return self.level(args[0])
        if isinstance(func, ast.Attribute) and name in ("resolve", "absolute", "expanduser"):
            return self.level(func.value)
        if name in ("abspath", "realpath", "normpath") and len(args) == 1:
            return self.level(args[0])
        if name == "dirname" and len(args) == 1:
            inner = self.level(args[0])
            return None if inner is None else inner - 1
        if name == "join" and args:
            inner = self.level(args[0])
            for part in args[1:]:
                if inner is None or not isinstance(part, ast.Constant):
                    break
                inner = _descend(inner, str(part.value))
            return inner
        return None


def _descend(level: int, relative: str) -> int:
    """Return the level after joining ``relative`` (``".."`` climbs, names descend)."""
    lowest = level
    for part in relative.split("/"):
        if part == "..":
            level -= 1
        elif part not in ("", "."):
            level += 1
        lowest = min(lowest, level)
    return lowest if lowest < 0 else level


# --- the repository ---------------------------------------------------------------------------


def test_repository_reads_no_path_outside_itself() -> None:
    problems = scan(ROOT)
    assert not problems, "paths outside the repository:\n" + "\n".join(problems)


def test_real_data_files_are_in_the_repository() -> None:
    names = sorted(p.name for p in (ROOT / "validation" / "real_data").glob("*.csv"))
    assert names == [
        "eurostoxx50_daily_2006.csv",
        "eurostoxx50_fut_1min_2006.csv",
        "nvda_daily_yahoo.csv",
        "orcl_daily_yahoo.csv",
        "yhoo_daily_yahoo.csv",
    ]
    assert (ROOT / "validation" / "real_data" / "README.md").is_file()


def test_source_distribution_carries_the_real_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    sdist = config["tool"]["hatch"]["build"]["targets"]["sdist"]
    assert "validation" in sdist["include"]
    assert not [p for p in sdist.get("exclude", []) if "validation" in p or "csv" in p]


def test_gitignore_keeps_the_real_data() -> None:
    ignore = (ROOT / ".gitignore").read_text().split()
    assert not [p for p in ignore if p.endswith(".csv") or "real_data" in p or p == "*.csv"]


# --- the checker itself, on a synthetic tree ---------------------------------------------------

# Built from pieces so that this file's own strings are not violations.
_WORK = "/".join(["", "work", "shared", "data", "real"])
_UP = "/".join(["..", "shared", "data", "real"])
_TILDE = "/".join(["~", "data", "prices.csv"])


@pytest.mark.parametrize(
    ("rel", "source", "problem"),
    [
        ("tests/test_a.py", f'DATA = "{_WORK}"\n', "absolute path"),
        ("tests/test_a.py", f'import os\nDATA = os.path.join("x", "{_WORK}/a.csv")\n', "absolute"),
        ("tests/test_a.py", f'F = f"{_WORK}/{{name}}.csv"\n', "absolute path"),
        ("validation/data.py", f'DATA = "{_UP}"\n', "climbs out"),
        ("tests/test_a.py", f'open("{_TILDE}")\n', "home directory"),
        ("tests/test_a.py", "from pathlib import Path\nD = Path.home() / 'data'\n", "home"),
        (
            "validation/data.py",
            "from pathlib import Path\nROOT = Path(__file__).resolve().parent.parent\n"
            "DATA = ROOT.parent / 'shared'\n",
            "climbs 1 level",
        ),
        (
            "tests/integration/test_a.py",
            "from pathlib import Path\nD = Path(__file__).resolve().parents[3] / 'x'\n",
            "climbs 1 level",
        ),
        (
            "examples/01_x/run.py",
            "from pathlib import Path\nHERE = Path(__file__).resolve().parent\n"
            "D = HERE.parents[1].parent / 'shared'\n",
            "climbs 1 level",
        ),
        (
            "benchmarks/w.py",
            "import os\nD = os.path.dirname(os.path.dirname(os.path.dirname("
            "os.path.abspath(__file__))))\n",
            "climbs 1 level",
        ),
        (
            "tests/test_a.py",
            "from pathlib import Path\nD = Path(__file__).parent / '..' / '..' / 'shared'\n",
            "climbs 1 level",
        ),
        ("scripts/fetch.sh", f"#!/bin/sh\ncp {_WORK}/x.csv data/\n", "absolute path"),
        ("scripts/fetch.sh", f"#!/bin/sh\ncp {_UP}/x.csv data/\n", "climbs out"),
        ("scripts/fetch.sh", "#!/bin/sh\ncp $HOME/data/x.csv data/\n", "home directory"),
        (".ci/run", f"#!/usr/bin/env bash\nexport DATA={_WORK}\n", "absolute path"),
        ("plugins/p/pyproject.toml", 'extend = "../../../pyproject.toml"\n', "climbs out"),
        ("validation/cfg.yaml", f"data: {{path: {_WORK}/a.parquet}}\n", "absolute path"),
        ("setup.cfg", f"[tool]\ndata = {_WORK}\n", "absolute path"),
    ],
)
def test_checker_flags_a_path_outside_the_tree(
    tmp_path: Path, rel: str, source: str, problem: str
) -> None:
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_text(source)
    (tmp_path / "tests" / "test_clean.py").parent.mkdir(exist_ok=True)
    (tmp_path / "tests" / "test_clean.py").write_text("X = 1\n")
    problems = scan(tmp_path)
    assert len(problems) >= 1
    assert all(p.startswith(f"{rel}:") for p in problems), problems
    assert problem in problems[0]


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        ("tests/test_a.py", 'import tempfile\nD = "/tmp/ml4t-example"\nV = "/var/tmp/x/y"\n'),
        ("tests/test_a.py", 'PY = "/usr/bin/python3"\nSTATUS = "/proc/self/status"\n'),
        ("tests/test_a.py", 'MISSING = "/nonexistent/python"\n'),
        ("tests/test_a.py", 'URL = "https://github.com/mementum/backtrader/tree/master"\n'),
        ("tests/test_a.py", 'RATE = f"{rate}/yr per {n}/share"\nG = "*/src/**/*.py"\n'),
        ("tests/test_a.py", "# comments may say /srv/outside/data/real\nX = 1\n"),
        (
            "tests/integration/test_a.py",
            "from pathlib import Path\nREPO = Path(__file__).resolve().parents[2]\n"
            "D = REPO / 'validation' / 'real_data'\n",
        ),
        (
            "examples/01_x/run.py",
            "from pathlib import Path\nHERE = Path(__file__).resolve().parent\n"
            "D = HERE.parents[1] / 'validation/real_data/nvda_daily_yahoo.csv'\n",
        ),
        (
            "validation/runners/zipline.py",
            "from pathlib import Path\nV = Path.home() / '.cache' / 'ml4t' / 'venv'\n",
        ),
        ("tests/test_a.py", 'CACHE = "~/.cache/ml4t"\n'),
        ("plugins/p/pyproject.toml", 'extend = "../../pyproject.toml"\n'),
        (".ci/run", '#!/usr/bin/env bash\ncd "$(dirname "$0")/.."\n'),
    ],
)
def test_checker_accepts_paths_inside_the_tree_and_system_paths(
    tmp_path: Path, rel: str, source: str
) -> None:
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_text(source)
    assert scan(tmp_path) == []


def test_checker_skips_virtual_environments_and_other_file_types(tmp_path: Path) -> None:
    for rel in (".ci-venv/lib/site.py", ".git/hooks/pre-commit.py", "docs/notes.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f'D = "{_WORK}"\n')
    assert scan(tmp_path) == []


def test_checker_reports_a_violation_added_to_a_copy_of_a_real_file(tmp_path: Path) -> None:
    target = tmp_path / "validation" / "data.py"
    target.parent.mkdir()
    original = (ROOT / "validation" / "data.py").read_text()
    target.write_text(original)
    assert scan(tmp_path) == []
    target.write_text(original + f'\nOLD = _REAL_DATA.parent.parent.parent / "{_UP}"\n')
    problems = scan(tmp_path)
    assert problems and all(p.startswith("validation/data.py:") for p in problems)
