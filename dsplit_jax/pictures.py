"""A picture of a scored folder: its most and least abnormal images, and the scores.

    pictures.save_scores_picture("scores.png", names, scores, "incoming",
                                 threshold=clf.threshold_, image_size=28, channels=1)

Row one holds the k highest-scored images (most abnormal), row two the k lowest, each
titled with its score and file name; below them a histogram of all scores with the
threshold marked. Only those 2k images are read again, so the folder's size does not
matter. Drawn on matplotlib's Agg canvas (no pyplot state, no display needed).
"""

from __future__ import annotations

import os

import numpy as np

from dsplit_jax import data


def picture_path(scores_csv: str) -> str:
  """Where the picture of a scores CSV goes: beside it, `.png` for `.csv`."""
  return os.path.splitext(scores_csv)[0] + ".png"


def extremes(scores, k: int) -> tuple[np.ndarray, np.ndarray]:
  """(indices of the k highest scores, highest first; of the k lowest, lowest first);
  ties keep the files' order. With fewer than 2k scores the rows share images."""
  order = np.argsort(np.asarray(scores, np.float64), kind="stable")
  k = min(k, len(order))
  return order[::-1][:k], order[:k]


def draw(images_high, titles_high, images_low, titles_low, scores, threshold, *,
         title: str = ""):
  """The figure (matplotlib's): two rows of images (uint8 [k, S, S, C]) with their titles, and the
  histogram of `scores` with a line at `threshold` (None: no line)."""
  k = max(len(images_high), len(images_low), 1)
  # matplotlib on first drawing: the API and the command line import this module, and
  # most of their commands draw nothing (a first import of matplotlib also builds and
  # logs its font cache).
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(max(1.6 * k, 6.0), 6.4), layout="constrained")
  grid = fig.add_gridspec(3, k, height_ratios=(1, 1, 1.4))
  for row, (images, titles, label) in enumerate(
      ((images_high, titles_high, "most abnormal"), (images_low, titles_low, "least abnormal"))):
    for col in range(k):
      ax = fig.add_subplot(grid[row, col])
      ax.set_xticks([]), ax.set_yticks([])
      if col < len(images):
        im = images[col]
        ax.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray", vmin=0, vmax=255)
        ax.set_title(titles[col], fontsize=7)
      else:
        ax.set_axis_off()
      if col == 0:
        ax.set_ylabel(label, fontsize=8)
  ax = fig.add_subplot(grid[2, :])
  scores = np.asarray(scores, np.float64)
  ax.hist(scores, bins=min(50, max(10, len(scores) // 5)), color="0.6")
  if threshold is not None:
    above = int(np.sum(scores > threshold))
    ax.axvline(threshold, color="C3",
               label=f"threshold {threshold:.4g}: {above} of {len(scores)} above")
    ax.legend(fontsize=8)
  ax.set_xlabel("anomaly score (higher = more abnormal)")
  ax.set_ylabel("images")
  if title:
    fig.suptitle(title, fontsize=9)
  return fig


def save_scores_picture(out_png: str, names, scores, score_dir, *, threshold, image_size: int,
                        channels: int, k: int = 8, title: str = "") -> str:
  """Draws `draw` for a scored folder and writes it to `out_png`; returns that path.

  names, scores: one per image, as in the scores CSV (names relative to `score_dir`).
  The 2k extreme images are read from `score_dir` at the detector's `image_size` and
  `channels`, as they were scored.
  """
  if len(names) != len(scores) or not len(names):
    raise ValueError(f"need one score per name, and at least one: got {len(names)} names "
                     f"and {len(scores)} scores")
  high, low = extremes(scores, k)

  def read(rows):
    paths = [os.path.join(os.fspath(score_dir), names[i]) for i in rows]
    return data.load_image_files(paths, image_size, channels=channels)[0]

  def titles(rows):
    return [f"{float(scores[i]):.4g}\n{_short(names[i])}" for i in rows]

  fig = draw(read(high), titles(high), read(low), titles(low), scores, threshold, title=title)
  os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
  from matplotlib.backends import backend_agg  # pylint: disable=g-import-not-at-top
  backend_agg.FigureCanvasAgg(fig).print_png(out_png)
  return out_png


def _short(name: str, width: int = 18) -> str:
  """A file name as a short title a font can draw: bytes that are not UTF-8 and
  control characters as \\xNN (as in the scores CSV), the end kept."""
  name = os.fsencode(os.path.basename(name)).decode("utf-8", "backslashreplace")
  name = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in name)
  return name if len(name) <= width else "…" + name[-(width - 1):]


def picture_of_scores_csv(clf, scores_csv: str, score_dir, *, k: int = 8,
                          out_png: str | None = None) -> str:
  """The picture of a scores CSV (`scoring.write_scores_csv`: file, score, label) that
  detector `clf` wrote for `score_dir`, saved beside it (`picture_path`) unless
  `out_png` says where; returns its path."""
  import csv  # pylint: disable=g-import-not-at-top
  with open(scores_csv, newline="") as f:
    rows = list(csv.DictReader(f))
  return picture_beside_csv(clf, scores_csv, [r["file"] for r in rows],
                            np.array([float(r["score"]) for r in rows]), score_dir, k=k,
                            out_png=out_png)


def picture_beside_csv(clf, scores_csv: str, names, scores, score_dir, *, k: int = 8,
                       out_png: str | None = None) -> str:
  """The picture of the images `names` of `score_dir` with their `scores`, titled by the
  folder, the count and the method, saved beside `scores_csv` unless `out_png` says
  where; returns its path."""
  title = (f"{os.path.basename(os.path.normpath(os.fspath(score_dir)))}: {len(names)} "
           f"images scored by {clf.config_.method}")
  return clf.save_scores_picture(out_png or picture_path(scores_csv), names, scores,
                                 score_dir, k=k, title=title)
