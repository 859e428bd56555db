"""Downloads the benchmarks' original files, verified by SHA-256, into the data folder.

  python -m dsplit_jax.data.download mnist fashion_mnist cifar10

The command of `fetching` (the rules of where files go; the files, hosts and hashes are
each dataset's entry in `datasets.DATASETS`): `data.load` imports that module, never this one, so `python -m` runs this
module as its only copy.
"""

from __future__ import annotations

import argparse
import os
import sys

from dsplit_jax.data import datasets
from dsplit_jax.data import fetching
from dsplit_jax.data.errors import DataError


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="python -m dsplit_jax.data.download",
      description=f"Downloads datasets and verifies their SHA-256. Into "
                  f"${fetching.DIR_ENV}/<name> if set, else {fetching.cache_root()}/<name>; "
                  f"${fetching.MIRROR_ENV}=<base URL> fetches <base>/<name>/<file> instead "
                  "of the original hosts.")
  downloadable = datasets.names(downloadable=True)
  parser.add_argument("names", nargs="+", metavar="NAME", choices=downloadable + ("all",),
                      help=f"{', '.join(downloadable)} or all")
  parser.add_argument("--dir", help="download into DIR/<name> instead")
  args = parser.parse_args(argv)
  names = downloadable if "all" in args.names else dict.fromkeys(args.names)
  try:
    for name in names:
      directory = fetching.fetch(name, os.path.join(args.dir, name) if args.dir else None)
      print(f"{name}: {directory}")
  except DataError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


def run():
  """Entry point of the `dsplit-download` command."""
  sys.exit(main())


if __name__ == "__main__":
  run()
