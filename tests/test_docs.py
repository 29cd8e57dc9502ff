"""The documentation: built as CI builds it, its references complete, its commands working as written."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx
import pytest

from dlrq.cli import main
from dlrq.core.errors import CODES
from dlrq.core.settings import Settings
from tests.support.processes import ROOT, dlrq_env, eventually, spawn

MKDOCS = str(Path(sys.executable).parent / "mkdocs")
# Where an error code is written in the code: the exceptions that carry one, and the answers made from one.
CODE_USES = re.compile(r'(?:InvalidReceipt|InvalidSend|Unauthorized|UnknownMessage|Conflict|BodyTooLarge|'
                       r'UnsupportedMediaType|Unappliable)\("([a-z_]+)"|(?:error|refusal|_refuse|_stop_parsing)\('
                       r'(?:[0-9]+|exc\.http_status), "([a-z_]+)"')


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mkdocs build --strict`, as .ci/run runs it: a broken link or a missing page fails it."""
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([MKDOCS, "build", "--strict", "--site-dir", str(out)], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text()


def test_every_setting_is_in_the_configuration_reference(site):
    text = page(site, "configuration")
    missing = [f"DLRQ_{name.upper()}" for name in Settings.model_fields if f"DLRQ_{name.upper()}" not in text]
    assert not missing, f"settings missing from the built docs: {missing}"
    undescribed = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not undescribed, f"settings without a description: {undescribed}"


def test_every_command_is_in_the_cli_reference(site):
    text = page(site, "cli")
    names = [f"dlrq {name}" for name in main.commands]
    for name, command in main.commands.items():
        if isinstance(command, click.Group):
            names += [f"dlrq {name} {sub}" for sub in command.commands]
    missing = [name for name in names if name not in text]
    assert not missing, f"commands missing from the built docs: {missing}"


def test_every_error_code_is_in_the_http_reference(site):
    text = page(site, "http-api")
    missing = [code for code in CODES if f"<code>{code}</code>" not in text]
    assert not missing, f"error codes missing from the built docs: {missing}"


def test_every_error_code_the_code_answers_is_in_the_one_list():
    used = set()
    for path in [*(ROOT / "dlrq").rglob("*.py"), *(ROOT / "ingest").rglob("*.py"), *(ROOT / "workers").rglob("*.py")]:
        for match in CODE_USES.finditer(path.read_text()):
            used.add(match.group(1) or match.group(2))
    assert used, "the pattern finds the codes"
    assert used - set(CODES) == set(), f"codes answered but not in dlrq/core/errors.py: {used - set(CODES)}"


def test_no_link_leaves_the_repository_but_to_public_sites():
    for path in [ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")]:
        text = path.read_text()
        assert "../shared" not in text, path
        for target in re.findall(r"\]\(([^)]+)\)", text):
            if target.startswith(("http://", "https://")):
                assert not re.match(r"https?://(127\.|localhost|10\.|192\.168\.)", target) or "console" in target, target
            else:
                assert (path.parent / target.split("#")[0]).exists(), f"{path.name}: {target}"


def test_no_document_tells_a_run_by_its_clock_time():
    """Per-run stories belong to the notes and bench/results; the docs say what holds."""
    clock = re.compile(r"\b(?:run|runs) of \d{1,2}:\d{2}\b|\bthe \d{1,2}:\d{2} run\b|\bseeds? \d{3,4}\b")
    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        assert not clock.search(path.read_text()), f"{path.name}: {clock.search(path.read_text()).group(0)}"


def shell_blocks(path: Path, heading: str | None = None) -> list[str]:
    """The ```sh blocks of a document (of one section), each as the commands it holds."""
    text = path.read_text()
    if heading:
        text = text[text.index(heading):]
        following = re.search(r"\n## ", text[len(heading):])
        text = text[: len(heading) + following.start()] if following else text
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def commands(block: str) -> list[str]:
    """Each command of a block: comments dropped, continued lines joined, `dlrq up` left to the test."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    pending = ""
    for line in joined.splitlines():
        line = line.split("  # ")[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        pending = f"{pending}\n{line}" if pending else line
        if pending.count("'") % 2 == 0:  # a quoted JSON body spans lines
            out.append(pending)
            pending = ""
    return [c for c in out if "dlrq up" not in c and "pip install" not in c]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("document, heading, token", [("README.md", "## Try it", None),
                                                      ("docs/getting-started.md", None, "change-me-to-a-long-random-string")])
def test_the_commands_of_the_try_it_and_the_getting_started_work_as_written(tmp_path, document, heading, token):
    """`dlrq up` as the document starts it, on the ports it names (3000, 3001), then each command as written,
    from the repository's root: each must exit 0, each curl of them answer 2xx."""
    # Its data where the commands look for it, as ./.dlrq would be for a newcomer in a fresh clone.
    env = dlrq_env(None, DLRQ_DATA_DIR=str(tmp_path / "data"), **({"DLRQ_API_TOKEN": token} if token else {}))
    up = spawn("up", env, cwd=ROOT)
    try:
        eventually(lambda: _answers("http://127.0.0.1:3000/readyz") and _answers("http://127.0.0.1:3001/readyz"), 30,
                   "dlrq up to listen on 3000 and 3001")
        for block in shell_blocks(ROOT / document, heading):
            for command in commands(block):
                _run_as_written(command, env)
    finally:
        up.terminate()
        up.wait(30)


def _run_as_written(command: str, env: dict[str, str]) -> None:
    """Reads (`dlrq show`, a GET of /messages) are tried again for a few seconds: the worker applies
    what was just sent within milliseconds, a person typing never notices."""
    reads = re.search(r"dlrq show|/messages/", command) is not None
    deadline = time.monotonic() + 10
    while True:
        result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True)
        ok = result.returncode == 0 and (not command.startswith("curl -si") or re.search(r"HTTP/1.1 2\d\d", result.stdout))
        # What the documents say a read shows: the message delivered, once the worker has applied it.
        ok = ok and (not reads or re.search(r'"status": ?"delivered"', result.stdout) is not None)
        if ok or time.monotonic() > deadline or not reads:
            break
        time.sleep(0.5)
    assert ok, f"{command}\n{result.stdout}\n{result.stderr}"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_the_version_is_the_packages():
    from importlib.metadata import version

    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and version("dlrq") in result.output
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{version("dlrq")}"' in pyproject
    assert f"## {version('dlrq')} - " in (ROOT / "CHANGELOG.md").read_text(), "the changelog has this release"

