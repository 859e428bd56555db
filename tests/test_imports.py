"""The package's modules import one way: no cycle, and none of the package's own
imports hides inside a function (where it would close a cycle unseen)."""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "dsplit_jax")
# main.py imports the command line after flag parsing (`--help` stays fast); __init__.py
# imports the API on first use of its top-level names.
DEFERRED_ALLOWED = ("main.py", "__init__.py")


def _modules():
  out = []
  for folder, _, files in os.walk(PACKAGE):
    for name in sorted(files):
      if name.endswith(".py"):
        rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-len(".py")]
        out.append(rel.replace(os.sep, ".").removesuffix(".__init__"))
  return sorted(out)


def _own_imports_not_at_top(path):
  """(line, text) of each import of dsplit_jax below the module's top level."""
  tree = ast.parse(open(path, encoding="utf-8").read(), path)
  top = set(map(id, tree.body))
  found = []
  for node in ast.walk(tree):
    if id(node) in top:
      continue
    names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
             [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
             else ["dsplit_jax"] if isinstance(node, ast.ImportFrom) else [])
    if any(n == "dsplit_jax" or n.startswith("dsplit_jax.") for n in names):
      found.append((node.lineno, ast.unparse(node)))
  return found


# The script a fresh interpreter runs: it loads the third-party libraries once (a cycle
# can only run through the package's own modules), then imports each module alone in a
# fork of itself, before which no module of the package has been imported.
_SCRIPT = """
import importlib, os, sys, traceback
import absl.flags, flax.linen, jax, matplotlib.figure, ml_collections, numpy, optax
import orbax.checkpoint, scipy.stats, skimage.feature, sklearn.ensemble, yaml
assert not [m for m in sys.modules if m.split(".")[0] == "dsplit_jax"]
bad = []
for m in sys.argv[1:]:
  r, w = os.pipe()
  pid = os.fork()
  if pid == 0:
    os.close(r)
    try:
      importlib.import_module(m)
      os._exit(0)
    except BaseException:
      os.write(w, traceback.format_exc().strip().splitlines()[-1].encode())
      os._exit(1)
  os.close(w)
  message = os.read(r, 4096).decode()
  os.close(r)
  if os.waitpid(pid, 0)[1]:
    bad.append(f"{m}: {message}")
print("\\n".join(bad))
"""


def test_every_module_imports_alone_in_a_fresh_interpreter():
  modules = _modules()
  assert "dsplit_jax.validation" in modules and "dsplit_jax.data.jobs" in modules
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", _SCRIPT, *modules], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=600)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "", out.stdout


def test_a_cycle_fails_the_fresh_import(tmp_path):
  for name, other in (("a", "b"), ("b", "a")):
    (tmp_path / f"{name}.py").write_text(f"from {other} import VALUE\nVALUE = 1\n")
  out = subprocess.run([sys.executable, "-c", _SCRIPT, "a"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(tmp_path), JAX_PLATFORMS="cpu"),
                       timeout=300)
  assert "a: ImportError: cannot import name 'VALUE'" in out.stdout, out


@pytest.mark.parametrize("module", _modules())
def test_own_imports_are_at_the_top(module):
  path = os.path.join(ROOT, *module.split(".")) + ".py"
  if not os.path.exists(path):
    path = os.path.join(ROOT, *module.split("."), "__init__.py")
  found = _own_imports_not_at_top(path)
  if os.path.basename(path) in DEFERRED_ALLOWED and os.path.dirname(path) == PACKAGE:
    return
  assert not found, f"{module} imports the package inside a block: {found}"


def test_the_walk_finds_a_deferred_import(tmp_path):
  path = tmp_path / "m.py"
  path.write_text("import os\n\ndef f():\n  from dsplit_jax import configs\n"
                  "  import dsplit_jax.data\n  from . import x\n")
  assert [line for line, _ in _own_imports_not_at_top(str(path))] == [4, 5, 6]


def test_the_package_imports_and_fits_without_tensorflow_datasets():
  """tensorflow-datasets (and TensorFlow) are the optional [tfds] extra: with both
  blocked, every module imports and a detector fits and scores."""
  code = """
import importlib, sys
class Block:
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
      raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
for m in sys.argv[1:]:
  importlib.import_module(m)
import numpy as np, dsplit_jax
x = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 1), dtype=np.uint8)
clf = dsplit_jax.OneClassClassifier("test", method="iforest", verbose=False).fit(x)
assert clf.score(x).shape == (20,)
bad = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets")]
assert not bad, bad
"""
  env = dict(os.environ, PYTHONPATH=ROOT)
  subprocess.run([sys.executable, "-c", code, *_modules()], check=True, timeout=300,
                 cwd=ROOT, env=env)
