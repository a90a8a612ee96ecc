#!/usr/bin/env python3
"""Verifies every DKIM signature of a mail with dkimpy, an independent verifier.

Usage: dkim_verify.py MAIL RECORDS_JSON
RECORDS_JSON maps DNS names (selector._domainkey.domain) to their TXT records; dkimpy
asks for them here instead of DNS. Prints one line per signature: `<selector> pass` or
`<selector> fail`, in the mail's order.
"""
import json
import sys

import dkim


def main():
    message = open(sys.argv[1], "rb").read()
    records = json.load(open(sys.argv[2]))

    def dns(name, timeout=5):
        return records.get(name.decode().rstrip("."), "").encode()

    headers, _ = dkim.rfc822_parse(message)
    signatures = [dkim.parse_tag_value(value) for name, value in headers if name.lower() == b"dkim-signature"]
    for index, tags in enumerate(signatures):
        ok = dkim.DKIM(message).verify(idx=index, dnsfunc=dns)
        print(tags[b"s"].decode(), "pass" if ok else "fail")
    if not signatures:
        print("unsigned")

main()
