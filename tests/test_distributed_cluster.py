"""Multi-node partitioned sampling on a simulated Ray cluster: two nodes on this machine."""

from __future__ import annotations

import polars as pl
import pytest

ray = pytest.importorskip("ray")

import synthkit as sk  # noqa: E402
from synthkit import distributed  # noqa: E402


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow  # a second raylet: about 25 s on 2 busy cores
def test_partitions_run_on_both_nodes_and_total_exactly_n(two_nodes, wage, tmp_path) -> None:
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    train, holdout = sk.split_holdout(wage.head(1200), fraction=0.2, seed=0)
    model = sk.create("tabular/copula", seed=0).fit(train).save(tmp_path / "model")
    res = distributed.sample(model, 8_003, out=tmp_path / "out", real=train, holdout=holdout,
                             partitions=4, seed=2, purpose="load testing", eval_rows=1_000)
    assert res.passed
    assert sum(pl.read_parquet(p).height for p in res.paths) == 8_003
    assert [s["rows"] for s in res.partition_stats] == [2001, 2001, 2001, 2000]
    assert len({s["node"] for s in res.partition_stats}) == 2  # both nodes wrote partitions
    assert res.fingerprint == distributed.fingerprint_partitions(res.out)
