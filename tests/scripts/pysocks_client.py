"""PySocks through tcpspy: a SOCKS5 connection (the name resolved by the proxy, with and
without username/password) and an HTTP CONNECT tunnel, each sending one HTTP request to
the test's server. Prints one line per exchange: the response's last line."""
import sys

import socks

kind, proxy_port, target_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
user = sys.argv[4] if len(sys.argv) > 4 else None
password = sys.argv[5] if len(sys.argv) > 5 else None

s = socks.socksocket()
s.settimeout(10)
proxy_type = socks.SOCKS5 if kind == "socks5" else socks.HTTP
s.set_proxy(proxy_type, "127.0.0.1", proxy_port, rdns=True, username=user, password=password)
try:
    s.connect(("localhost", target_port))
except socks.ProxyError as e:
    print("refused:", e)
    sys.exit(0)
s.sendall(b"GET /python HTTP/1.1\r\nHost: localhost\r\n\r\n")
data = b""
while b"]" not in data:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode().splitlines()[-1])
