"""How many JetStream writes, API calls and messages one job costs, by stream.

    cargo build --release && python3 benches/jetstream_ops.py [jobs]

(`HUIYING_BIN=target/debug/huiying` counts the same with a debug build: counts do not
depend on speed.)

Starts a nats-server of its own (JetStream, monitoring on, `sync_interval: always` as in
nats.conf), runs `huiying up` against it in a temporary folder (placeholder model, mail to
the outbox), submits the jobs, waits until every one has its mail, and reads the server's
monitoring endpoints. Every stored message is a write, and with `sync_interval: always`
an fsync. Not a test: CI does not run it.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 200


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def wait(what, check, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def main():
    nats_bin = os.environ.get("NATS_SERVER_BIN") or str(ROOT / ".huiying/bin/nats-server")
    huiying = os.environ.get("HUIYING_BIN") or str(ROOT / "target/release/huiying")
    work = Path(tempfile.mkdtemp(prefix="huiying-ops-"))
    nats_port, monitor, http_port = free_port(), free_port(), free_port()
    (work / "nats.conf").write_text(
        f"listen: 127.0.0.1:{nats_port}\nhttp: 127.0.0.1:{monitor}\n"
        f"jetstream {{ store_dir: {work / 'js'}\n sync_interval: always }}\n"
    )
    (work / "config.toml").write_text(
        f'[server]\nport = {http_port}\n[nats]\nurl = "nats://127.0.0.1:{nats_port}"\n'
    )
    nats = subprocess.Popen([nats_bin, "-c", str(work / "nats.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{http_port}"
    up = None
    try:
        wait("nats-server", lambda: get(f"http://127.0.0.1:{monitor}/healthz")["status"] == "ok")
        up = subprocess.Popen([huiying, "up"], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait("huiying", lambda: get(f"{base}/health")["status"] == "ok")
        before = snapshot(monitor)
        ids = []
        for n in range(JOBS):
            request = urllib.request.Request(
                f"{base}/generate-image",
                data=json.dumps({"prompt": f"a lighthouse at dawn {n}"}).encode(),
                headers={"Content-Type": "application/json", "Prefer": "respond-async"},
            )
            with urllib.request.urlopen(request) as answer:
                ids.append(json.load(answer)["id"])
        outbox = work / "outbox"
        wait("every mail", lambda: len(list(outbox.glob("*.eml"))) >= JOBS)
        time.sleep(2)  # let the last acks land
        after = snapshot(monitor)
        report(before, after)
    finally:
        for process in (up, nats):
            if process:
                process.terminate()
                process.wait()
        shutil.rmtree(work, ignore_errors=True)


def snapshot(monitor):
    jsz = get(f"http://127.0.0.1:{monitor}/jsz?streams=true&consumers=true")
    varz = get(f"http://127.0.0.1:{monitor}/varz")
    streams = {}
    for account in jsz.get("account_details", []):
        for stream in account.get("stream_detail", []):
            streams[stream["name"]] = stream["state"]["last_seq"]
    return {"api": jsz["api"]["total"], "in_msgs": varz["in_msgs"], "out_msgs": varz["out_msgs"], "streams": streams}


def report(before, after):
    print(f"{JOBS} jobs (placeholder model, mail to the outbox, sync_interval: always)")
    print("| per job | count |")
    print("|---|---|")
    total = 0
    for name in sorted(after["streams"]):
        writes = (after["streams"][name] - before["streams"].get(name, 0)) / JOBS
        total += writes
        print(f"| writes to {name} | {writes:.2f} |")
    print(f"| **writes (fsyncs) in all** | **{total:.2f}** |")
    print(f"| JetStream API calls | {(after['api'] - before['api']) / JOBS:.2f} |")
    print(f"| messages into the server | {(after['in_msgs'] - before['in_msgs']) / JOBS:.2f} |")
    print(f"| messages out of the server | {(after['out_msgs'] - before['out_msgs']) / JOBS:.2f} |")


if __name__ == "__main__":
    main()
