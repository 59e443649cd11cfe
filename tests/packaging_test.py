"""The install files agree with each other and with the README."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
  with open(os.path.join(ROOT, name), encoding="utf-8") as f:
    return f.read()


def _canonical(name):
  return re.sub(r"[-_.]+", "-", name).lower()


def _entries(text):
  """(line number, text without comment) of every non-blank line."""
  for n, line in enumerate(text.splitlines(), 1):
    line = line.split("#", 1)[0].strip()
    if line:
      yield n, line


def _requirement_names(text):
  return {_canonical(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line).group(0))
          for _, line in _entries(text)}


def _pins(text):
  pins = {}
  for n, line in _entries(text):
    m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
    assert m, f"constraints.txt line {n}: {line!r} is not NAME==VERSION"
    pins[_canonical(m.group(1))] = m.group(2)
  return pins


def test_requirement_names_parse():
  assert _requirement_names("jax[cuda12]>=0.4.30; sys_platform == 'linux'\n# c\nopencv_x>=1\n") == {
      "jax", "opencv-x"}
  assert _pins("A_b==1.0\n# note\nc==2.0.post1\n") == {"a-b": "1.0", "c": "2.0.post1"}


def test_constraints_pin_every_requirement():
  pins = _pins(_read("constraints.txt"))
  missing = sorted(_requirement_names(_read("requirements.txt")) - set(pins))
  assert not missing, f"constraints.txt pins no version of {missing}"
  # jax and jaxlib move together; the CUDA plugin must match them.
  assert pins["jax"] == pins["jaxlib"] == pins["jax-cuda12-plugin"] == pins["jax-cuda12-pjrt"]


def test_ci_runs_the_readme_test_command():
  ci = [l for l in _read(".ci/run").splitlines() if l.strip() and not l.startswith(("#", "set ", "cd "))]
  assert len(ci) == 1, ci
  readme = _read("README.md")
  blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
  assert ci[0] in blocks and "pytest" in ci[0]
