"""A WebSocket client (websockets, asyncio API): sends `hello` and `mesh` to URI and prints each
answer, or `status N` and the body if the handshake is refused. With HOST PORT, the TCP
connection goes there instead of where the URI points (the Host header still names the URI's
host). Proxy variables are not read (proxy=None).
Usage: ws_client.py URI [HOST PORT]"""
import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus


async def main():
    kwargs = {}
    if len(sys.argv) > 3:
        kwargs = {"host": sys.argv[2], "port": int(sys.argv[3])}
    try:
        async with connect(sys.argv[1], proxy=None, open_timeout=10, **kwargs) as ws:
            for msg in ["hello", "mesh"]:
                await ws.send(msg)
                print(await asyncio.wait_for(ws.recv(), 10), flush=True)
    except InvalidStatus as e:
        print(f"status {e.response.status_code}")
        print(e.response.body.decode(errors="replace"))


asyncio.run(main())
