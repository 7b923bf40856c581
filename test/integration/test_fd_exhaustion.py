"""Out of file descriptors: Fulcrum closes the clients it cannot serve at once, does not
spin, keeps the descriptors it reserves for this case, and serves again once fds free up."""

import os
import resource
import socket
import time

from backends import Backend, fd_count, recv_line, tcp_config, wait_fds
from fulcrum_it import Fulcrum, run_tests

CLIENTS = 60
EPISODES = 5


def echo_lines(conn, backend):
    try:
        while True:
            line = recv_line(conn)
            if not line:
                return
            conn.sendall(b"ok " + line)
    except OSError:
        return


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_episode(addr, pid):
    """Opens CLIENTS at once; each must be served or closed within 3 s, never left hanging."""
    clients = []
    for _ in range(CLIENTS):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(3.0)
        s.connect(addr)
        s.sendall(b"hello\n")
        clients.append(s)

    served = closed = 0
    hung = []
    for i, s in enumerate(clients):
        try:
            line = recv_line(s)
            if line == b"ok hello\n":
                served += 1
            else:
                closed += 1
        except ConnectionResetError:
            closed += 1
        except socket.timeout:
            hung.append(i)

    # Hold what was served while measuring CPU: a spinning accept loop shows up here.
    cpu_before = cpu_seconds(pid)
    time.sleep(1.5)
    cpu_used = cpu_seconds(pid) - cpu_before

    for s in clients:
        s.close()
    return served, closed, hung, cpu_used


def test_out_of_fds_sheds_clients_without_spinning():
    backend = Backend(echo_lines, name="echo")
    fulcrum = Fulcrum(tcp_config([backend], workers=2))
    pid = fulcrum.proc.pid
    addr = fulcrum.addr("front")

    baseline = fd_count(pid)
    # Room for about 20 sessions (two descriptors each), well below CLIENTS. Only the soft
    # limit is lowered, so it can be raised again without CAP_SYS_RESOURCE.
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    limit = baseline + 40
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))

    for episode in range(EPISODES):
        served, closed, hung, cpu_used = one_episode(addr, pid)
        print(f"  episode {episode + 1}: served={served} closed={closed} hung={len(hung)} "
              f"cpu={cpu_used:.2f}s fds_after={fd_count(pid)}")
        assert not hung, (f"episode {episode + 1}: clients {hung} got neither an answer nor a "
                          f"close within 3 s\n" + fulcrum.log()[-3000:])
        assert served >= 5, f"episode {episode + 1}: only {served} clients served"
        assert closed >= 1, f"episode {episode + 1}: no client was shed at the fd limit"
        assert cpu_used < 0.5, (f"episode {episode + 1}: fulcrum used {cpu_used:.2f} s of CPU "
                                f"in 1.5 s while out of fds (spinning)")
        assert wait_fds(pid, baseline), (f"episode {episode + 1}: fds {fd_count(pid)} did not "
                                         f"return to the baseline {baseline} (a lost spare "
                                         f"or a leak)")

    # Descriptors free again: everything is served.
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    served, closed, hung, _ = one_episode(addr, pid)
    assert (served, closed, hung) == (CLIENTS, 0, []), (served, closed, hung)

    # Per-connection failures are rate-limited in the log, not one line per client.
    noisy = fulcrum.count_log(r"out_of_file_descriptors|backend socket failed")
    assert noisy <= 4 * EPISODES, f"{noisy} fd-exhaustion log lines for {EPISODES} episodes"
    assert fulcrum.stop() == 0
    assert fulcrum.proc.poll() == 0


run_tests(globals())
