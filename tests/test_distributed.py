"""Multi-host start-up: `jax.distributed.initialize()` only where several hosts are named."""

import pytest

from dsplit_jax import distributed


@pytest.mark.parametrize("env, hosts", [
    ({}, 1),                                                     # a laptop, one GPU machine
    ({"TPU_ACCELERATOR_TYPE": "v2-8"}, 1),                       # Colab's TPU: one host
    ({"TPU_ACCELERATOR_TYPE": "v5litepod-8"}, 1),
    ({"TPU_ACCELERATOR_TYPE": "v4-32"}, 4),
    ({"TPU_WORKER_HOSTNAMES": "t1k-0"}, 1),
    ({"TPU_WORKER_HOSTNAMES": "t1k-0,t1k-1,t1k-2,t1k-3"}, 4),
    ({"SLURM_NTASKS": "1"}, 1),
    ({"SLURM_NTASKS": "2"}, 2),
    ({"OMPI_COMM_WORLD_SIZE": "16"}, 16),
    ({"DSPLIT_DISTRIBUTED": "1"}, 2),
    ({"DSPLIT_DISTRIBUTED": "0", "TPU_ACCELERATOR_TYPE": "v4-32"}, 1),  # turned off
])
def test_hosts_hint(env, hosts):
  assert distributed.hosts_hint(env)[0] == hosts


def test_initialize_is_called_only_for_several_hosts():
  calls, lines = [], []
  assert not distributed.maybe_initialize({"TPU_ACCELERATOR_TYPE": "v2-8"},
                                          initialize=lambda: calls.append(1))
  assert calls == [] and lines == []
  assert distributed.maybe_initialize({"TPU_ACCELERATOR_TYPE": "v4-32"},
                                      initialize=lambda: calls.append(1), printer=lines.append)
  assert calls == [1]
  assert lines == ["multi-host: TPU_ACCELERATOR_TYPE=v4-32 names 4 hosts; "
                   "calling jax.distributed.initialize()"]


def test_a_failed_initialize_is_one_line_naming_the_hint():
  def fail():
    raise ValueError("coordinator_address should be defined.")
  with pytest.raises(distributed.InitError, match=r"^jax.distributed.initialize\(\) failed "
                     r"\(DSPLIT_DISTRIBUTED=1 names several hosts; DSPLIT_DISTRIBUTED=0 turns "
                     r"this off\): coordinator_address should be defined.$"):
    distributed.maybe_initialize({"DSPLIT_DISTRIBUTED": "1"}, initialize=fail,
                                 printer=lambda line: None)
