"""A third-party HTTP/3 origin for blockprobe's QUIC lab test: aioquic (PyPI), answering every
GET with 200 and a small page. Prints {"port": N} on stdout once it listens.

    python3 h3_server.py --cert cert.pem --key key.pem [--host 127.0.0.1] [--port 0]
"""

import argparse
import asyncio
import json

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated


class H3Origin(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._h3 = None

    def quic_event_received(self, event):
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self._h3 = H3Connection(self._quic)
        if self._h3 is None:
            return
        for ev in self._h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                path = dict(ev.headers).get(b":path", b"/").decode(errors="replace")
                body = (
                    "<html><head><title>Home</title></head>"
                    f"<body>aioquic origin: {path}</body></html>"
                ).encode()
                self._h3.send_headers(
                    ev.stream_id,
                    [
                        (b":status", b"200"),
                        (b"server", b"aioquic"),
                        (b"content-type", b"text/html"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                )
                self._h3.send_data(ev.stream_id, body, end_stream=True)
                self.transmit()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    cfg = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    cfg.load_cert_chain(a.cert, a.key)
    server = await serve(a.host, a.port, configuration=cfg, create_protocol=H3Origin)
    port = server._transport.get_extra_info("sockname")[1]
    print(json.dumps({"port": port}), flush=True)
    await asyncio.Future()


asyncio.run(main())
