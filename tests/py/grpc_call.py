"""Calls /demo.Echo/Unary on TARGET with grpcio (C-core) and prints the reply's message. The
messages are encoded by hand (field 1, a short string), so no generated code is needed.
grpcio reads grpc_proxy/https_proxy/http_proxy from the environment.
Usage: grpc_call.py TARGET MESSAGE"""
import sys

import grpc

target, message = sys.argv[1], sys.argv[2].encode()
with grpc.insecure_channel(target) as channel:
    call = channel.unary_unary("/demo.Echo/Unary")
    reply = call(b"\x0a" + bytes([len(message)]) + message, timeout=10)
    assert reply[0] == 0x0A, reply
    print(reply[2 : 2 + reply[1]].decode())
