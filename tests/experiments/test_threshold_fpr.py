"""The threshold study's records and table (experiments/threshold_fpr*.py) on real MNIST."""

import csv

from experiments import threshold_fpr
from experiments import threshold_fpr_table


def test_unseen_images_are_withheld_scored_and_a_rerun_adds_nothing(mnist_dir, tmp_path,
                                                                    monkeypatch, capsys):
  monkeypatch.setenv("DSPLIT_DATA_DIR", str(mnist_dir.parent))
  out = tmp_path / "fpr.csv"
  args = ["--methods=iforest", "--datasets=mnist", "--classes=0,1", "--max_train=300",
          "--unseen=100", "--holdouts=0.2", "--same_fit", f"--out={out}"]
  threshold_fpr.main(args)
  rows = list(csv.DictReader(open(out)))
  # 2 classes x 2 sets of normal images x 2 rules x 2 contaminations.
  assert len(rows) == 16
  for r in rows:
    unseen = r["evaluated_on"] == "train_unseen"
    assert int(r["n_test"]) == 100 if unseen else int(r["n_test"]) > 900  # test digits
    # The fit sees the 200 images not withheld; PyOD's rule its 160 fitted ones.
    assert r["n_train"] == ("160" if float(r["holdout"]) == 0 else "200")
    assert 0 <= float(r["observed_fpr"]) <= 1
  assert {r["evaluated_on"] for r in rows} == {"test", "train_unseen"}
  threshold_fpr.main(args)
  assert list(csv.DictReader(open(out))) == rows
  capsys.readouterr()
  threshold_fpr_table.main([str(out)])
  table = capsys.readouterr().out.splitlines()
  assert len(table) == 2 + 8  # header, rule, 2 sets x 2 rules x 2 contaminations
  assert any("| unseen training | held-out 0.2 | 10% |" in line for line in table)
