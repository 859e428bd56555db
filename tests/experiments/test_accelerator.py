"""The accelerator script's CPU rehearsal (experiments/accelerator.py --tiny) on real data."""

import io
import json
import os
import tarfile
import types

import numpy as np
import pytest

from dsplit_jax.data import cifar
from dsplit_jax.data import cifar_jpeg
from experiments import accelerator


def _run(out, mnist_dir, *extra):
  return accelerator.main([f"--out={out}", "--tiny", "--datasets=mnist", "--classes=0",
                           "--methods=dsplit", "--max_seeds=2", "--calibrate_s=1",
                           f"--mnist_dir={mnist_dir}", *extra])


@pytest.mark.long
def test_rehearsal_writes_records_and_summary_then_skips_what_does_not_fit(tmp_path,
                                                                          mnist_dir):
  out = tmp_path / "out"
  assert _run(out, mnist_dir, "--budget_s=600", "--max_items=1") == 0
  summary = json.loads((out / "summary.json").read_text())
  (cal,) = summary["calibration"].values()
  assert cal["phases"]["autoencoder"]["steps_per_s"] > 0
  assert cal["phases"]["dsplit"]["steps_per_s"] > 0
  assert cal["phases"]["dsplit"]["flops_per_job_step"] > 0
  item = summary["items"]["mnist test seed 0"]
  assert item["plan"]["flops"] > 0 and item["plan"]["predicted_s"] > 0
  cell = item["cells"]["dsplit"]
  assert not cell["failed"] and cell["records"] == 1 and 0 < cell["mean_auc"] <= 1
  assert set(cell["phases_wall_s"]) == {"autoencoder", "dsplit"}
  assert sum(cell["phases_wall_s"].values()) < cell["wall_s"]
  records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
  assert [(r["dataset"], r["method"], r["normal_class"], r["seed"]) for r in records] == [
      ("mnist", "dsplit", 0, 0)]
  # Again with the same folder and a budget that nothing new fits: the finished item
  # is recognised, each later one is skipped by its prediction (the overhead the
  # first cell showed is in it) or by its calibration, and no record is added.
  assert _run(out, mnist_dir, "--budget_s=20") == 0
  log = (out / "accelerator.log").read_text()
  assert "[done] mnist test seed 0: records already there" in log
  later = [i.name for i in accelerator.items(types.SimpleNamespace(
      preset="test", methods=["dsplit"], tiny=True, datasets=["mnist"], seed=0,
      max_seeds=2))][1:]
  for name in later:
    assert f"[skip] {name}" in log or f"[done] {name}" in log, name
  assert "[skip] mnist test seed 1" in log
  assert len((out / "results.jsonl").read_text().splitlines()) == 1


def _tiny_tar(path, images, labels, per_split):
  """train|test/<class>/NNNN.jpg of real images, JPEG-encoded as the carried tarball."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with tarfile.open(path, "w:gz") as tar:
    for split, rows in per_split.items():
      for i in rows:
        blob = io.BytesIO()
        Image.fromarray(images[i]).save(blob, format="JPEG", quality=95)
        info = tarfile.TarInfo(f"{split}/{cifar_jpeg.CLASSES[labels[i]]}/{i:04d}.jpg")
        info.size = blob.tell()
        blob.seek(0)
        tar.addfile(info, blob)


def test_cifar_tarball_becomes_the_binary_batches(tmp_path, datasets_dir):
  batch = datasets_dir / "cifar10" / cifar.BIN_DIR / "test_batch.bin"
  if not batch.is_file():
    pytest.skip(f"{batch} is absent (CIFAR-10 binary under DSPLIT_DATA_DIR)")
  images, labels = cifar.parse_bin_batch(batch.read_bytes()[:60 * 3073], str(batch))
  train, test = range(0, 40), range(40, 60)
  _tiny_tar(tmp_path / "cifar10-jpeg.tar.gz", images, labels, {"train": train, "test": test})
  args = types.SimpleNamespace(cifar10_tar=str(tmp_path / "cifar10-jpeg.tar.gz"),
                               mnist_dir=None, fashion_mnist_dir=None, data_dir=None,
                               workdir=str(tmp_path / "work"))
  lines = []
  built = accelerator.prepare_data(args, lines.append)
  dest = os.path.join(built, "cifar10", cifar.BIN_DIR)
  assert cifar.find(os.path.join(built, "cifar10")) == ("bin_dir", dest)

  def read(name):
    with open(os.path.join(dest, name), "rb") as f:
      return cifar.parse_bin_batch(f.read(), name)
  got_test = read("test_batch.bin")
  # Test records in member-name order (the indices here), labels from the folders.
  order = sorted(test, key=lambda i: (cifar_jpeg.CLASSES[labels[i]], i))
  np.testing.assert_array_equal(got_test[1], labels[order])
  # Pixels are the images' through one JPEG round trip: close, not equal.
  assert np.abs(got_test[0].astype(int) - images[order].astype(int)).mean() < 4
  batches = [read(f"data_batch_{i}.bin") for i in range(1, 6)]
  assert [len(b[1]) for b in batches] == [8] * 5
  assert sorted(np.concatenate([b[1] for b in batches])) == sorted(labels[list(train)])
  # Once converted, a second call leaves the batches alone.
  before = os.path.getmtime(os.path.join(dest, "data_batch_1.bin"))
  accelerator.prepare_data(args, lines.append)
  assert "already converted" in lines[-1]
  assert os.path.getmtime(os.path.join(dest, "data_batch_1.bin")) == before
