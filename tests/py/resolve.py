"""Resolves NAME with the system resolver (getaddrinfo) and prints each address, sorted.
Usage: resolve.py NAME"""
import socket
import sys

addrs = {ai[4][0] for ai in socket.getaddrinfo(sys.argv[1], 80, proto=socket.IPPROTO_TCP)}
print("\n".join(sorted(addrs)))
