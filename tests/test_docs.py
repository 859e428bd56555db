"""The repository's files speak of the project: README's first commands work on a fresh
machine, and no tracked file carries work history (the dates and rounds of work, issue
numbers) or the paths of the machines it was developed on."""

import collections
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
THIS_FILE = pathlib.Path(__file__).resolve().relative_to(ROOT).as_posix()

# The word for a round of work, spelt in two parts so that this file does not hold it;
# as pytest's fixture scope it is pytest's word, not work history.
_WORD = "ses" "sion"
_PYTEST_SCOPE = re.compile(r"""scope=(["'])""" + _WORD + r"\1")
_WORK_ROUND = re.compile(_WORD, re.IGNORECASE)
# "issue 12", "issues 13, 14", "issue #15"; the paper's "section 3.1" or a colour such
# as "#1f77b4" are not issue numbers.
_ISSUE = re.compile(r"\bissues? ?#?\d+", re.IGNORECASE)
# Absolute paths of a development machine: its work folders and home folders, and
# scripts written to /tmp. A path inside a URL or a relative path ("shared/work/") is
# not one; nor are documented system locations (/usr/share/datasets/fashion-mnist) or
# a bare /tmp folder standing for any work dir in a test.
_MACHINE_PATH = re.compile(
    r"(?<![\w.~$/-])(?:/work/|/root/|/home/[\w.-]+/|"
    r"/tmp/[\w./-]*\.(?:py|sh|bash|ipynb|txt|log)\b)")
# Records the program writes (one JSON object per job) keep the absolute paths their
# runs read the data from (`data_files`): facts of the run, not prose; only the words
# are checked there.
_RECORDS = re.compile(r"(^|/)results\.jsonl$")


def offences(line: str, *, paths: bool = True) -> list[str]:
  """What in `line` speaks of work history or of a development machine."""
  found = [m.group(0) for m in _WORK_ROUND.finditer(_PYTEST_SCOPE.sub("", line))]
  found += [m.group(0) for m in _ISSUE.finditer(line)]
  if paths:
    found += [m.group(0) for m in _MACHINE_PATH.finditer(line)]
  return found


def _readme_commands() -> list[str]:
  """The lines of README.md's first fenced code block."""
  lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
  fences = [i for i, line in enumerate(lines) if line.lstrip().startswith("```")]
  assert len(fences) >= 2, "README.md has no fenced code block"
  return [line for line in lines[fences[0] + 1:fences[1]] if line.strip()]


def _tracked_files() -> list[str]:
  if shutil.which("git") is None or not (ROOT / ".git").exists():
    pytest.skip("not a git checkout: the tracked files are unknown")
  out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                       check=True).stdout.decode()
  return [p for p in out.split("\0") if p]


def test_readme_opens_with_the_main_job_then_the_tests():
  commands = _readme_commands()
  assert len(commands) == 2, f"README.md's first code block: {commands}"
  main_job, tests = commands
  # The main job: `python -m dsplit_jax.main ...` or the installed `dsplit` command.
  assert "pip install" in main_job, main_job
  assert re.search(r"dsplit_jax\.main|(^|&&|/)\s*dsplit\s", main_job), main_job
  assert "pip install" in tests and "pytest" in tests, tests
  for command in commands:
    # A folder that exists only beside this repository: the commands must work on a
    # fresh machine (the library downloads the data there).
    assert "../shared" not in command, command


def test_ci_runs_the_readmes_test_command():
  out = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--print-command"],
                       capture_output=True, text=True, check=True).stdout
  assert out.rstrip("\n") == _readme_commands()[1]


@pytest.mark.parametrize("line", [
    f"the tables before {_WORD} 12", f"{_WORD.title()}s 9-12", "(issue 15, item 3)",
    "after issues 13, 14 and 16", "see issue #16", "cd /work/main && make",
    "DSPLIT_DATA_DIR=/work/shared/datasets", "python /tmp/screen.sh",
    "cp /root/x .", "ls /home/alice/data"])
def test_offences_are_found(line):
  assert offences(line)


@pytest.mark.parametrize("line", [
    f'@pytest.fixture(scope="{_WORD}")', f"@pytest.fixture(scope='{_WORD}')",
    "the paper's section 3.1", 'color="#1f77b4"', "/usr/share/datasets/fashion-mnist",
    'a.replace("{WORKDIR}", "/tmp/w")', "https://example.org/work/x", "../shared/work/",
    "tissue 3"])
def test_project_words_are_not_offences(line):
  assert not offences(line)


def test_tracked_files_speak_of_the_project_alone():
  found = []
  for path in _tracked_files():
    if path == THIS_FILE:
      continue
    found += [f"{path} (file name): {o}" for o in offences(path, paths=False)]
    try:
      data = (ROOT / path).read_bytes()
    except FileNotFoundError:  # deleted in the work tree, not yet in the index
      continue
    if b"\0" in data[:8192]:
      continue  # binary (figures)
    try:
      text = data.decode("utf-8")
    except UnicodeDecodeError:
      continue
    check_paths = not _RECORDS.search(path)
    for number, line in enumerate(text.splitlines(), 1):
      if what := sorted(set(offences(line, paths=check_paths))):
        found.append(f"{path}:{number}: {', '.join(what)} in {line.strip()[:120]!r}")
  if found:
    per_file = collections.Counter(f.split(":")[0].split(" (")[0] for f in found)
    pytest.fail(f"work history or development-machine paths in {len(per_file)} tracked "
                "files (" + ", ".join(f"{p}: {n}" for p, n in per_file.items()) + "):\n"
                + "\n".join(found[:400]) + ("\n..." if len(found) > 400 else ""),
                pytrace=False)
