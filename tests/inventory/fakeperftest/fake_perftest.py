#!/usr/bin/env python3
"""Stand-in for perftest's ib_write_bw / ib_write_lat (no RDMA NIC exists where the tests run).

Server (no peer address): listens on -p PORT like perftest's out-of-band TCP exchange and
exits after one client. Client (last argument a peer address): connects to it and prints
the tool's real output sample (tests/inventory/samples/rdma). Which tool: the program name.
"""

import socket
import sys
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "rdma"
args = sys.argv[1:]
port = int(args[args.index("-p") + 1])
peer = args[-1] if "." in args[-1] else None
if peer is None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(5)
    while True:
        conn, _ = server.accept()
        got = conn.recv(10)
        conn.close()
        if got:
            break
else:
    conn = socket.create_connection((peer, port))
    conn.send(b"go")
    conn.close()
    name = "ib_write_bw-roce-report_gbits.txt" if "bw" in Path(sys.argv[0]).name else "ib_write_lat-roce.txt"
    sys.stdout.write((SAMPLES / name).read_text())
