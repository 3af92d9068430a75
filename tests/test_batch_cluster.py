"""`whisper-eas batch --ray` on a simulated two-node cluster (`ray.cluster_utils.Cluster`, both
nodes on this machine): a head node with no CPUs for work (as a driver's machine often is) and a
worker node with two, so every actor runs on the other node and must read the inputs and write the
outputs there. About 35 s (two nodes started, one actor pool). Skipped without the [ray] extra."""

from __future__ import annotations

import json
import logging
import socket

import pytest
import soundfile as sf

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    # The nodes take this machine's IP, as Ray gives every node: a loopback node IP would not do, as
    # ray.init() replaces a loopback address with that IP and then finds no server there.
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0, include_dashboard=False))
    try:
        worker = cluster.add_node(num_cpus=2)
        # ray.init() waits for an unreachable GCS for ever: try the address it will dial, and fail in seconds
        dialled = ray._private.services.canonicalize_bootstrap_address(cluster.address)
        host, _, port = dialled.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError as e:
            pytest.fail(f"the head node's GCS ({cluster.address}) is unreachable at {dialled}: {e}")
        ray.init(address=cluster.address, logging_level="warning")
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # as in test_batch_ray.py
        yield cluster.head_node.node_id, worker.node_id
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_on_two_nodes_the_actors_run_on_the_worker_node_and_every_file_is_done(cli, two_nodes, jfk, tmp_path):
    head, worker = two_nodes
    audio, rate = sf.read(jfk)
    (tmp_path / "in").mkdir()
    for k in range(3):
        sf.write(tmp_path / "in" / f"in{k}.flac", audio[k * rate * 3:(k + 1) * rate * 3], rate)
    code, _, err = cli("batch", tmp_path / "in", "-o", tmp_path / "out", "--ray", "-f", "txt")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["in0", "in1", "in2"] and all(r["text"] for r in rows)
    assert {r["worker"].rsplit("@", 1)[1] for r in rows} == {worker[:8]} != {head[:8]}
    assert sorted(p.name for p in (tmp_path / "out").glob("*.txt")) == ["in0.txt", "in1.txt", "in2.txt"]
