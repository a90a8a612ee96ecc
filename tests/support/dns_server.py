#!/usr/bin/env python3
"""A DNS server on loopback (dnslib) answering TXT questions from a JSON file.

Usage: dns_server.py PORT ZONE_JSON
ZONE_JSON maps names (example.com, huiying._domainkey.example.com) to lists of TXT
values; a value longer than 255 characters is sent as several strings, as DNS requires.
The file is read at every question, so a test can change the zone while it runs.
Prints "ready" once it answers on UDP and TCP.
"""
import json
import os
import sys
import time

from dnslib import QTYPE, RR, TXT
from dnslib.server import BaseResolver, DNSServer


class ZoneResolver(BaseResolver):
    def __init__(self, path):
        self.path = path

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        if request.q.qtype == QTYPE.TXT:
            zone = {k.lower(): v for k, v in json.load(open(self.path)).items()}
            for value in zone.get(name, []):
                pieces = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
                reply.add_answer(RR(name, QTYPE.TXT, rdata=TXT(pieces), ttl=60))
        return reply


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    resolver = ZoneResolver(path)
    servers = [DNSServer(resolver, port=port, address="127.0.0.1", tcp=tcp) for tcp in (False, True)]
    for server in servers:
        server.start_thread()
    print("ready", flush=True)
    # dnslib logs every question to stdout, which the test stops reading after "ready".
    sys.stdout = open(os.devnull, "w")
    while all(server.isAlive() for server in servers):
        time.sleep(0.5)


main()
