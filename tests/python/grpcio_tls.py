"""grpcio over TLS, both ends, for the end-to-end tests: grpcio links BoringSSL statically, without
symbols, so podtap sees only the ciphertext of these connections (and must report nothing).

Usage:
  grpcio_tls.py server IP PORT CERT KEY   (prints `ready` once it listens)
  grpcio_tls.py client IP:PORT CA N       (N unary calls to /podtap.Test/Unary on one channel, one
                                           line per reply)
"""

import sys
from concurrent import futures

import grpc


def unary(request, context):
    return b"pong:" + request


def serve(ip, port, cert, key):
    with open(cert, "rb") as c, open(key, "rb") as k:
        credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handlers = {"Unary": grpc.unary_unary_rpc_method_handler(unary)}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("podtap.Test", handlers),)
    )
    server.add_secure_port(f"{ip}:{port}", credentials)
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def call(target, ca, n):
    with open(ca, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    with grpc.secure_channel(target, credentials) as channel:
        method = channel.unary_unary("/podtap.Test/Unary")
        for i in range(n):
            print(method(b"ping %d" % i, timeout=20).decode(), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(*sys.argv[2:6])
    else:
        call(sys.argv[2], sys.argv[3], int(sys.argv[4]))
