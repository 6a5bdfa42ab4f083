"""README.md is a short front page whose commands, links and file names are all real.

The Quick start commands are the ones ``.ci/run`` runs; every relative link points to a
file of the repository; every repository path the READMEs (README.md, cluster/README.md)
or the user guide name in inline code exists; and nothing links to README anchors, whose content moved to the
guide (docs/guide/).
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "guide"
MAX_LINES = 250
SETUP = 'python3 -m venv .venv && . .venv/bin/activate && pip install -q -e ".[test]"'

# A repository path inside inline code: starts at one of the top-level folders (not in the
# middle of another path such as ~/.raygrid/...) and ends with a file extension.
REPO_PATH = re.compile(
    r"(?<![\w/.~$-])((?:raygrid|tests|examples|benchmarks|cluster|docs)/[\w./*-]*\.[A-Za-z0-9]+)"
)
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _markdown_prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def _quick_start_commands() -> list[str]:
    section = README.read_text().split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert block, "README.md's Quick start has no bash block"
    return block.group(1).strip().splitlines()


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(markdown: Path) -> set[str]:
    if markdown.suffix != ".md":
        return set()
    headings = re.findall(r"^#+ (.+)$", _markdown_prose(markdown.read_text()), re.MULTILINE)
    return {_slug(heading) for heading in headings}


def _paths_in_inline_code(text: str, literal: re.Pattern) -> list[str]:
    return [path for code in literal.findall(text) for path in REPO_PATH.findall(code)]


def test_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines, at most {MAX_LINES}"


def test_quick_start_runs_the_example_and_what_ci_runs():
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert _quick_start_commands() == [
        f"{SETUP} && python examples/seed_grid_search.py",
        ci_command,
    ]
    assert ci_command == f"{SETUP} && python -m pytest -q"
    assert (ROOT / "examples" / "seed_grid_search.py").is_file()


def test_every_relative_link_in_readme_resolves():
    links = MARKDOWN_LINK.findall(_markdown_prose(README.read_text()))
    relative = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert relative, "README.md links to nothing in the repository"
    broken = []
    for link in relative:
        target, _, anchor = link.partition("#")
        path = (README.parent / target) if target else README
        if not path.exists() or (anchor and anchor not in _anchors(path)):
            broken.append(link)
    assert not broken, f"README.md links to what does not exist: {broken}"


def test_repository_paths_named_in_readme_and_guide_exist():
    md_literal = re.compile(r"`([^`]+)`")
    named = []
    for markdown in (README, ROOT / "cluster" / "README.md"):
        named += _paths_in_inline_code(_markdown_prose(markdown.read_text()), md_literal)
    rst_literal = re.compile(r"``(.+?)``", re.DOTALL)
    for page in sorted(GUIDE.glob("*.rst")):
        named += _paths_in_inline_code(page.read_text(), rst_literal)
    assert "raygrid/run/prefix.py" in named
    missing = sorted({path for path in named if not list(ROOT.glob(path))})
    assert not missing, f"named in the READMEs or docs/guide/ but not in the repository: {missing}"


def test_nothing_links_to_readme_anchors():
    anchor = "README" + ".md#"
    suffixes = {".py", ".md", ".rst", ".toml", ".yaml", ".yml", ".txt", ".sh", ".cfg"}
    skip = {".venv", ".git", "build", "_build", "node_modules"}
    found = [
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*")
        if path.suffix in suffixes
        and not skip & set(path.relative_to(ROOT).parts)
        and path.is_file()
        and anchor in path.read_text(errors="replace")
    ]
    assert not found, f"links to README anchors (the content is in docs/guide/): {found}"
