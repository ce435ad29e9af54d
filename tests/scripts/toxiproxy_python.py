"""Drives tcpspy's control API with Toxiproxy's own Python client (toxiproxy-python), as a
test suite would drive Toxiproxy. Run by tests/it/control.rs:
    python3 toxiproxy_python.py API_PORT UPSTREAM
Prints "ok" and exits 0 when every step went as it goes with Toxiproxy."""

import socket
import sys
import time

from toxiproxy import Toxiproxy
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

api_port, upstream = int(sys.argv[1]), sys.argv[2]
server = Toxiproxy()
server.update_api_consumer("127.0.0.1", api_port)
assert server.running(), "the API answers"
assert b"tcpspy" in server.version(), server.version()

proxy = server.create(upstream=upstream, name="echo", listen="127.0.0.1:0")
host, port = proxy.listen.rsplit(":", 1)
port = int(port)
assert port != 0, proxy.listen
assert "echo" in server.proxies()


def round_trip(conn):
    start = time.monotonic()
    conn.sendall(b"ping")
    got = b""
    while len(got) < 4:
        part = conn.recv(4 - len(got))
        assert part, "closed early"
        got += part
    assert got == b"ping", got
    return time.monotonic() - start


def connect():
    c = socket.create_connection((host, port), timeout=30)
    return c


# A toxic on a connection already open, as Toxiproxy's toxics are live on existing links.
open_conn = connect()
round_trip(open_conn)
proxy.add_toxic(type="latency", attributes={"latency": 200})
assert "latency_downstream" in proxy.toxics()
assert proxy.toxics()["latency_downstream"].attributes["latency"] == 200
assert round_trip(open_conn) >= 0.2, "the open connection got the latency"
fresh = connect()
assert round_trip(fresh) >= 0.2, "so does a new one"
proxy.destroy_toxic("latency_downstream")
assert proxy.toxics() == {}
fresh.close()

# Refusals, with Toxiproxy's codes (the client raises on 400, 404, 409), and nothing changed.
for bad in ({"type": "nope"}, {"type": "latency", "attributes": {"latency": "soon"}}):
    try:
        proxy.add_toxic(**bad)
        raise SystemExit("accepted %r" % bad)
    except InvalidToxic:
        pass
assert proxy.toxics() == {}
try:
    server.create(upstream=upstream, name="echo")
    raise SystemExit("a second proxy of the same name")
except ProxyExists:
    pass
try:
    proxy.destroy_toxic("never")
    raise SystemExit("removed a toxic that is not there")
except NotFound:
    pass

# reset_peer: the client sees ECONNRESET.
proxy.add_toxic(type="reset_peer", attributes={"timeout": 0})
c = connect()
try:
    c.sendall(b"ping")
    c.recv(4)
    c.recv(4)
    raise SystemExit("no reset")
except ConnectionResetError:
    pass
c.close()
open_conn.close()
server.reset()
assert proxy.toxics() == {}

# Down: the listener closes, connections are refused; up again afterwards.
with proxy.down():
    try:
        socket.create_connection((host, port), timeout=5)
        raise SystemExit("connected to a disabled proxy")
    except ConnectionRefusedError:
        pass
c = connect()
assert round_trip(c) < 30
c.close()

server.destroy(proxy)
assert "echo" not in server.proxies()
print("ok")
