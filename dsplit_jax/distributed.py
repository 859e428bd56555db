"""Multi-host start-up: `jax.distributed.initialize()` when this process is one of several hosts.

A single host (a laptop, one GPU machine, Colab's TPU) needs nothing, and calling
`initialize` there would start a coordinator for nothing, so it is called only when the
environment says there are several hosts. Entry points (`dsplit`, `experiments.table1`)
call `maybe_initialize()` before their first JAX computation; on a multi-host slice
every host runs the same command, each sees all devices, the job axis is sharded over
all of them, and only process 0 writes (`records.writer`).

The hints are environment variables only (no metadata-server query, which would hang
off a cloud VM): those of the clusters JAX auto-detects (Cloud TPU / GKE, SLURM,
Open MPI), a multi-host TPU accelerator type, or `DSPLIT_DISTRIBUTED=1` (force; `0`
turns it off). A Cloud TPU VM slice that sets none of them needs `DSPLIT_DISTRIBUTED=1`.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Mapping

ENV_VAR = "DSPLIT_DISTRIBUTED"
# Every TPU host holds 8 cores (v2, v3) or up to 8 chips (v4 and later), so a slice
# named with more than 8 (v2-32, v4-16, v5litepod-16, ...) spans several hosts.
_TPU_PER_HOST = 8


class InitError(RuntimeError):
  """`jax.distributed.initialize()` failed where the environment names several hosts."""


def hosts_hint(environ: Mapping[str, str] | None = None) -> tuple[int, str]:
  """(number of hosts the environment names, the variable that says so); 1 when none."""
  env = os.environ if environ is None else environ
  forced = env.get(ENV_VAR, "").strip().lower()
  if forced in ("0", "false", "no"):
    return 1, f"{ENV_VAR}={env[ENV_VAR]}"
  for var in ("TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES"):
    hosts = [h for h in env.get(var, "").split(",") if h.strip()]
    if len(hosts) > 1:
      return len(hosts), var
  for var in ("TPU_ACCELERATOR_TYPE", "ACCELERATOR_TYPE"):
    match = re.fullmatch(r"v\w+-(\d+)", env.get(var, "").strip())
    if match and int(match.group(1)) > _TPU_PER_HOST:
      return -(-int(match.group(1)) // _TPU_PER_HOST), f"{var}={env[var]}"
  for var in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "JAX_NUM_PROCESSES"):
    if env.get(var, "").strip().isdigit() and int(env[var]) > 1:
      return int(env[var]), f"{var}={env[var]}"
  if forced in ("1", "true", "yes"):
    return 2, f"{ENV_VAR}={env[ENV_VAR]}"  # "several": JAX finds out how many
  return 1, ""


def maybe_initialize(environ: Mapping[str, str] | None = None,
                     initialize: Callable[[], None] | None = None,
                     printer: Callable[[str], None] = print) -> bool:
  """Calls `jax.distributed.initialize()` once when the environment names several hosts."""
  import jax  # pylint: disable=g-import-not-at-top  (keeps `hosts_hint` free of JAX)
  hosts, why = hosts_hint(environ)
  if hosts < 2 or jax.distributed.is_initialized():
    return False
  printer(f"multi-host: {why} names {hosts if hosts > 2 or ENV_VAR not in why else 'several'} "
          "hosts; calling jax.distributed.initialize()")
  try:
    (initialize or jax.distributed.initialize)()
  except Exception as e:  # JAX raises ValueError, RuntimeError, its own errors
    raise InitError(f"jax.distributed.initialize() failed ({why} names several hosts; "
                    f"{ENV_VAR}=0 turns this off): {' '.join(str(e).split())}") from e
  return True
