"""Client side of the XDP tests, run inside the client namespace (ip netns exec).

    xdp_client.py VIP PORT --tcp N --udp-ports P1,P2,... [--udp-new N] [--timeout S]

Opens N TCP connections (each sends one line and reads "NAME line"), then one UDP flow per
listed source port (and --udp-new flows from kernel-chosen ports), each answered "NAME".
Meanwhile an AF_PACKET socket records every IPv4 frame to or from the VIP, so the caller can
compare what left the client with the balancer's counters and see which MACs answered.
Prints one JSON object.
"""

import argparse
import json
import socket
import struct
import threading
import time

ETH_P_ALL = 0x0003  # Outgoing frames reach only ETH_P_ALL sockets.


def sniff(vip, stop, out):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.settimeout(0.2)
    vip_bytes = socket.inet_aton(vip)
    while not stop.is_set():
        try:
            frame, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        ip = frame[14:]
        if len(ip) < 20 or frame[12:14] != b"\x08\x00":
            continue
        src, dst = ip[12:16], ip[16:20]
        if dst == vip_bytes and addr[2] == socket.PACKET_OUTGOING:
            out["sent_packets"] += 1
            out["sent_bytes"] += struct.unpack("!H", ip[2:4])[0]
        elif src == vip_bytes and addr[2] != socket.PACKET_OUTGOING:
            out["reply_macs"].add(frame[6:12].hex(":"))
    s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vip")
    ap.add_argument("port", type=int)
    ap.add_argument("--tcp", type=int, default=0)
    ap.add_argument("--udp-ports", default="")
    ap.add_argument("--udp-new", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=3.0)
    a = ap.parse_args()

    stats = {"sent_packets": 0, "sent_bytes": 0, "reply_macs": set()}
    stop = threading.Event()
    t = threading.Thread(target=sniff, args=(a.vip, stop, stats), daemon=True)
    t.start()
    time.sleep(0.3)

    result = {"tcp": [], "udp": [], "errors": []}
    for i in range(a.tcp):
        try:
            with socket.create_connection((a.vip, a.port), timeout=a.timeout) as c:
                c.sendall(f"hello{i}\n".encode())
                data = b""
                while not data.endswith(b"\n"):
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                name = data.decode().split(" ")[0]
                result["tcp"].append([c.getsockname()[1], name])
        except OSError as e:
            result["errors"].append(f"tcp {i}: {e}")

    ports = [int(p) for p in a.udp_ports.split(",") if p] + [0] * a.udp_new
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.settimeout(a.timeout)
        try:
            s.sendto(b"ping", (a.vip, a.port))
            data, _ = s.recvfrom(4096)
            result["udp"].append([s.getsockname()[1], data.decode().strip()])
        except OSError as e:
            result["errors"].append(f"udp {s.getsockname()[1]}: {e}")
        finally:
            s.close()

    time.sleep(0.5)  # Let the last FINs and ACKs pass the sniffer.
    stop.set()
    t.join()
    result["sent_packets"] = stats["sent_packets"]
    result["sent_bytes"] = stats["sent_bytes"]
    result["reply_macs"] = sorted(stats["reply_macs"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
