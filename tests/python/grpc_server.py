"""The gRPC server of the end-to-end tests: grpcio with a generic handler (no generated code), messages
are raw bytes. Service `podtap.Test`:

- Unary: one message in, one out.
- Fail: answers NOT_FOUND (a trailers-only response, no message).
- Unavailable: answers UNAVAILABLE.
- ServerStream: one message in (a number N), N messages out.
- ClientStream: any number in, one out (how many came).
- Bidi: one message out for each message in.

Usage: grpc_server.py IP PORT (prints `ready` once it listens).
"""

import sys
from concurrent import futures

import grpc


def unary(request, context):
    return b"pong:" + request


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def unavailable(request, context):
    context.abort(grpc.StatusCode.UNAVAILABLE, "try later")


def server_stream(request, context):
    for i in range(int(request.decode() or "1")):
        yield b"item %d" % i


def client_stream(request_iterator, context):
    return b"got %d" % sum(1 for _ in request_iterator)


def bidi(request_iterator, context):
    for request in request_iterator:
        yield b"echo:" + request


def main():
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Unavailable": grpc.unary_unary_rpc_method_handler(unavailable),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("podtap.Test", handlers),)
    )
    server.add_insecure_port(f"{sys.argv[1]}:{sys.argv[2]}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
