"""A WebSocket echo server (websockets, asyncio API): answers every message with
`<path> <message>`. Prints `ready` once listening. Usage: ws_echo_server.py HOST PORT"""
import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    async for msg in ws:
        await ws.send(f"{ws.request.path} {msg}")


async def main():
    async with serve(echo, sys.argv[1], int(sys.argv[2])):
        print("ready", flush=True)
        await asyncio.get_running_loop().create_future()


asyncio.run(main())
