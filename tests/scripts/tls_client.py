"""A Python ssl client for tcpspy's --tls tests.

Usage: tls_client.py HOST PORT CAFILE SERVER_NAME REQUEST [split]

Connects, verifies the server against CAFILE for SERVER_NAME, sends REQUEST (a Python string
literal's escapes allowed: \\r\\n) and prints what comes back until the server closes. With
`split`, the handshake runs over a memory BIO and the ClientHello goes to the socket one byte
per write (TCP_NODELAY), so that tcpspy reads it in many pieces.
"""
import socket
import ssl
import sys


def main():
    host, port, cafile, name, request = sys.argv[1:6]
    split = len(sys.argv) > 6 and sys.argv[6] == "split"
    request = request.encode().decode("unicode_escape").encode("latin-1")
    ctx = ssl.create_default_context(cafile=cafile)
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not split:
        with ctx.wrap_socket(sock, server_hostname=name) as tls:
            tls.sendall(request)
            out = read_all(tls.recv)
        sys.stdout.buffer.write(out)
        return
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    first = True

    def flush():
        nonlocal first
        data = outgoing.read()
        if first and data:
            for i in range(len(data)):
                sock.sendall(data[i:i + 1])
            first = False
        elif data:
            sock.sendall(data)

    def pump(op):
        while True:
            try:
                result = op()
                flush()
                return result
            except ssl.SSLWantReadError:
                flush()
                chunk = sock.recv(65536)
                if not chunk:
                    incoming.write_eof()
                else:
                    incoming.write(chunk)

    pump(tls.do_handshake)
    pump(lambda: tls.write(request))
    out = b""
    while True:
        try:
            piece = pump(lambda: tls.read(65536))
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            break
        if not piece:
            break
        out += piece
    sys.stdout.buffer.write(out)


def read_all(recv):
    out = b""
    while True:
        try:
            piece = recv(65536)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            break
        if not piece:
            break
        out += piece
    return out


main()
