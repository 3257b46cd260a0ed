"""node run's pure parts: the restart backoff and the node lock."""

import os
import subprocess
import sys
import time

from mdtool.node import BACKOFF_FREE, BACKOFF_MAX, Backoff


def test_backoff_is_free_for_a_few_restarts_then_doubles_up_to_a_ceiling():
    b = Backoff()
    delays = [b.record(100.0 + i) for i in range(BACKOFF_FREE + 8)]
    assert delays[:BACKOFF_FREE] == [0.0] * BACKOFF_FREE
    assert delays[BACKOFF_FREE:BACKOFF_FREE + 4] == [1.0, 2.0, 4.0, 8.0]
    assert max(delays) == BACKOFF_MAX
    assert b.not_before == 100.0 + BACKOFF_FREE + 7 + BACKOFF_MAX
    assert b.record(10_000.0) == 0.0  # a process that stayed up a while starts fresh


def test_node_lock_makes_a_second_holder_wait(tmp_path):
    from mdtool.files import locked
    lock = tmp_path / "node.lock"
    code = ("import sys, time; from mdtool.files import locked\n"
            f"with locked({str(lock)!r}):\n    print('in', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"in\n"
        t0 = time.monotonic()
        import threading
        threading.Timer(0.3, holder.kill).start()
        with locked(lock):  # waits until the holder dies: the kernel drops its lock
            waited = time.monotonic() - t0
        assert waited >= 0.25
        assert os.stat(lock).st_mode & 0o777 == 0o600
    finally:
        holder.kill()
        holder.wait()


class _Registry:
    """What NodeRunner reads: a revision and every network with its ports and hosts."""

    def __init__(self, nets):
        self.rev, self.nets = 1, nets

    def networks_with_ports(self):
        import copy
        return self.rev, copy.deepcopy(self.nets)

    def revision(self):
        return self.rev


def test_a_change_converges_only_the_networks_whose_view_changed(tmp_path):
    from mdtool import model
    from mdtool.config import Config
    from mdtool.node import NodeRunner
    nets = [model.Network(id=i, name=i, bridge="br" + i, mtu=1500, hosts=h)
            for i, h in (("a", ["n1"]), ("b", ["n1", "n2"]), ("c", ["n2"]))]
    reg = _Registry(nets)
    runner = NodeRunner(Config(state_dir=str(tmp_path), environ={"MDTOOL_HOST": "n1"}), reg)
    calls = []
    runner.converge = lambda nl, net, revision, reason: calls.append((net.id, reason)) or True
    runner.release = lambda nl, nid: calls.append((nid, "release"))
    runner.watch_all = lambda: None
    runner.revision, runner.served = runner._read()
    assert set(runner.served) == {"a", "b"}
    runner.follow_changes(None)          # the revision did not move: nothing at all
    assert calls == []
    nets[1].ports.append(model.Port(id="p", name="", network_id="b", mac_address="fa:16:3e:00:00:01"))
    nets[2].ports.append(model.Port(id="q", name="", network_id="c", mac_address="fa:16:3e:00:00:02"))
    reg.rev += 1
    runner.follow_changes(None)          # c changed too, but this node does not serve it
    assert calls == [("b", "change")]
    calls.clear()
    nets[2].hosts.append("n1")       # enable on this node recorded c
    nets[0].hosts.remove("n1")       # disable recorded a
    reg.rev += 1
    runner.follow_changes(None)
    assert calls == [("c", "served"), ("a", "release")]
    assert set(runner.served) == {"b", "c"}
