"""requirements.txt (pip, make) and environment.yml (conda) describe the same environment."""
import re

from kdcourse.paths import REPO_ROOT


def pip_lines(text: str) -> set[str]:
    return {line.split("#")[0].strip() for line in text.splitlines()
            if line.split("#")[0].strip()}


def test_requirements_and_environment_yml_list_the_same_packages():
    requirements = pip_lines((REPO_ROOT / "requirements.txt").read_text())
    yml = (REPO_ROOT / "environment.yml").read_text()
    conda_pip = {m.group(1).strip() for m in re.finditer(r"^ {6}- (\S+)\s*$", yml, re.M)}
    assert requirements == conda_pip, (
        f"only in requirements.txt: {sorted(requirements - conda_pip)}; "
        f"only in environment.yml: {sorted(conda_pip - requirements)}")


def test_every_pinned_requirement_is_installed():
    from importlib.metadata import version
    for line in pip_lines((REPO_ROOT / "requirements.txt").read_text()):
        if "==" in line:
            name, pinned = line.split("==")
            assert version(name).split("+")[0] == pinned, f"{name}: installed {version(name)}, pinned {pinned}"

