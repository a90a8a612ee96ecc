#!/usr/bin/env python3
"""A real SMTP server for huiying's tests, on loopback.

Serves STARTTLS (required before AUTH) on one port, implicit TLS on another, and
optionally a plain port that offers no STARTTLS at all. AUTH PLAIN/LOGIN accepts one
user. Each accepted mail is saved to the mail folder as <n>.eml, written atomically,
with an `X-Test-Session` header first that says how it arrived.

Recipients steer faults: `tempfail...@` gets `451` on its first RCPT and is accepted
after; `reject@` always gets `550 5.1.1` (no such user); `toofast...@` gets QQ's
`550 ... frequency limited` on its first RCPT, `451` on its second, and is accepted after. With `--pause-after N`, once N mails are saved every
RCPT waits until `--pause-seconds` have passed since the first paused one, once. While the
file `--busy-file` exists, every RCPT gets `451` (a server that is busy for a while).
"""
import asyncio
import time
import argparse
import itertools
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--starttls-port", type=int, required=True)
    parser.add_argument("--tls-port", type=int, required=True)
    parser.add_argument("--plain-port", type=int, default=0)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--pause-after", type=int, default=0)
    parser.add_argument("--pause-seconds", type=float, default=0)
    parser.add_argument("--busy-file", default="")
    args = parser.parse_args()

    counter = itertools.count(1)
    lock = threading.Lock()
    tempfail_seen = {}
    saved = [0]
    pause = {"until": None}

    class SaveMail:
        def __init__(self, mode):
            self.mode = mode

        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            local = address.split("@")[0].lower()
            if args.busy_file and os.path.exists(args.busy_file):
                return "451 4.3.2 Busy, try again later"
            if local == "reject":
                return "550 5.1.1 No such user here"
            # Refusals that pass: each address's n-th RCPT gets the n-th reply, then "250".
            passing = {
                "toofast": ["550 Mail sent too often, frequency limited", "451 4.7.1 Too many messages, slow down"],
                "tempfail": ["451 4.3.0 Try again later"],
            }
            for prefix, replies in passing.items():
                if local.startswith(prefix):
                    with lock:
                        seen = tempfail_seen.get(address, 0)
                        tempfail_seen[address] = seen + 1
                    if seen < len(replies):
                        return replies[seen]
            if args.pause_after and saved[0] >= args.pause_after:
                if pause["until"] is None:
                    pause["until"] = time.monotonic() + args.pause_seconds
                delay = pause["until"] - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            with lock:
                number = next(counter)
            note = "mode={}; auth={}; from={}; to={}".format(
                self.mode,
                (session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else "none"),
                envelope.mail_from,
                ",".join(envelope.rcpt_tos),
            )
            content = envelope.original_content
            # Time first: names stay unique and ordered across restarts of this server.
            target = os.path.join(args.maildir, "{}-{:05d}.eml".format(time.time_ns(), number))
            with open(target + ".tmp", "wb") as out:
                out.write(("X-Test-Session: " + note + "\r\n").encode())
                out.write(content)
            os.replace(target + ".tmp", target)
            with lock:
                saved[0] += 1
            return "250 OK: queued as {}".format(number)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == args.user.encode()
            and auth_data.password == args.password.encode()
        )
        # handled=False: aiosmtpd answers "535 5.7.8" itself (the default means "already answered").
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    os.makedirs(args.maildir, exist_ok=True)

    controllers = [
        Controller(
            SaveMail("starttls"),
            hostname=args.host,
            port=args.starttls_port,
            tls_context=context,
            require_starttls=True,
            authenticator=authenticate,
            auth_require_tls=True,
        ),
        Controller(
            SaveMail("tls"),
            hostname=args.host,
            port=args.tls_port,
            ssl_context=context,
            authenticator=authenticate,
            auth_require_tls=False,
        ),
    ]
    if args.plain_port:
        controllers.append(
            Controller(
                SaveMail("plain"),
                hostname=args.host,
                port=args.plain_port,
                authenticator=authenticate,
                auth_require_tls=False,
            )
        )
    for controller in controllers:
        controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for controller in controllers:
        controller.stop()


if __name__ == "__main__":
    main()
