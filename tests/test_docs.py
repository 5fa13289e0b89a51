"""The README is a front door that links to docs/, and every `make` target is documented."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_targets() -> list[str]:
    """The targets `make help` lists (the Makefile's `target:  ## help` lines)."""
    return re.findall(r"^([a-z-]+):.*## ", (REPO / "Makefile").read_text(), flags=re.M)


def test_every_make_target_is_documented():
    docs = "\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    missing = [t for t in make_targets() if not re.search(rf"make {re.escape(t)}\b", docs)]
    assert len(make_targets()) > 10
    assert not missing, f"make targets no page documents: {missing}"


def test_the_readme_is_short_and_its_links_resolve():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    assert "docs/instructors.md" in links and "docs/reference.md" in links
    assert not [link for link in links if not (REPO / link).exists()]


def test_docs_links_resolve():
    broken = []
    for page in (REPO / "docs").glob("*.md"):
        for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            if not (page.parent / link).exists():
                broken.append((page.name, link))
    assert not broken, broken
