"""How many JetStream writes, API calls and messages one job costs, by stream; on a
cluster, how many Raft rounds, by stream and consumer.

    cargo build --release && python3 benches/jetstream_ops.py [jobs] [--cluster]

(`HUIYING_BIN=target/debug/huiying` counts the same with a debug build: counts do not
depend on speed.)

Starts a nats-server of its own (JetStream, monitoring on, `sync_interval: always` as in
nats.conf), runs `huiying up` against it in a temporary folder (placeholder model, mail to
the outbox), submits the jobs, waits until every one has its mail, and reads the server's
monitoring endpoints. Every stored message is a write, and with `sync_interval: always`
an fsync. Not a test: CI does not run it.

With `--cluster` it starts three nodes instead (three replicas of everything) and also
reads each Raft group's commit index from `/raftz` on the node that leads it: each commit
is one replicated round (an append to the log on every node, fsynced there), whether it
carries a stored message, a consumer's delivery or its acknowledgements.
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
ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
JOBS = int(ARGS[0]) if ARGS else 200
CLUSTER = "--cluster" in sys.argv


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
    http_port = free_port()
    nodes = [(f"node-{n}", free_port(), free_port(), free_port()) for n in "abc"[: 3 if CLUSTER else 1]]
    routes = ", ".join(f"nats-route://127.0.0.1:{route}" for _, _, _, route in nodes)
    servers = []
    for name, port, monitor, route in nodes:
        conf = work / f"{name}.conf"
        conf.write_text(
            f"server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n"
            f"jetstream {{ store_dir: {work / name}\n sync_interval: always }}\n"
            + (f"cluster {{ name: huiying, listen: 127.0.0.1:{route}, routes: [{routes}] }}\n" if CLUSTER else "")
        )
        servers.append(subprocess.Popen([nats_bin, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    urls = ",".join(f"nats://127.0.0.1:{port}" for _, port, _, _ in nodes)
    (work / "config.toml").write_text(
        f'[server]\nport = {http_port}\n[smtp]\noutbox_dir = "outbox"\n[nats]\nurl = "{urls}"\nreplicas = {len(nodes)}\n'
    )
    monitors = [monitor for _, _, monitor, _ in nodes]
    base = f"http://127.0.0.1:{http_port}"
    up = None
    try:
        for monitor in monitors:
            wait("nats-server", lambda: get(f"http://127.0.0.1:{monitor}/healthz")["status"] == "ok")
        up = subprocess.Popen([huiying, "up"], cwd=work, stdout=open(work / "up.log", "w"), stderr=subprocess.STDOUT)
        wait("huiying", lambda: get(f"{base}/health")["status"] == "ok")
        before = snapshot(monitors)
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
        after = snapshot(monitors)
        report(before, after)
    finally:
        for process in [up, *servers]:
            if process:
                process.terminate()
                process.wait()
        if not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept", work)


def snapshot(monitors):
    """Stream sequences, API calls and messages (summed over the nodes), and each Raft
    group's commit index as its leader has it, named by what it replicates."""
    streams, groups, named = {}, {}, {}
    api = in_msgs = out_msgs = 0
    for monitor in monitors:
        jsz = get(f"http://127.0.0.1:{monitor}/jsz?streams=true&consumers=true&config=true&raft=true")
        varz = get(f"http://127.0.0.1:{monitor}/varz")
        api += jsz["api"]["total"]
        in_msgs += varz["in_msgs"]
        out_msgs += varz["out_msgs"]
        for account in jsz.get("account_details", []):
            for stream in account.get("stream_detail", []):
                streams[stream["name"]] = max(streams.get(stream["name"], 0), stream["state"]["last_seq"])
                if stream.get("stream_raft_group"):
                    named[stream["stream_raft_group"]] = f"stream {stream['name']}"
                in_memory = {
                    c["name"] for c in stream.get("consumer_detail") or [] if c.get("config", {}).get("mem_storage")
                }
                for consumer in stream.get("consumer_raft_groups") or []:
                    where = " (in memory)" if consumer["name"] in in_memory else ""
                    named[consumer["raft_group"]] = f"consumer {stream['name']} > {consumer['name']}{where}"
        if CLUSTER:
            for account in ("%24SYS", "%24G"):
                for account_groups in get(f"http://127.0.0.1:{monitor}/raftz?acc={account}").values():
                    for group, state in account_groups.items():
                        groups[group] = max(groups.get(group, 0), state["committed"])
    rounds = {}
    for group, committed in groups.items():
        name = named.get(group, "the meta group (streams and consumers made)" if group == "_meta_" else group)
        rounds[name] = rounds.get(name, 0) + committed
    return {"api": api, "in_msgs": in_msgs, "out_msgs": out_msgs, "streams": streams, "rounds": rounds}


def report(before, after):
    where = "a three-node cluster, 3 replicas" if CLUSTER else "one nats-server"
    print(f"{JOBS} jobs on {where} (placeholder model, mail to the outbox, sync_interval: always)")
    print("| per job | count |")
    print("|---|---|")
    total = 0
    for name in sorted(after["streams"]):
        writes = (after["streams"][name] - before["streams"].get(name, 0)) / JOBS
        total += writes
        print(f"| writes to {name} | {writes:.2f} |")
    print(f"| **writes in all** | **{total:.2f}** |")
    if CLUSTER:
        total = 0
        for name in sorted(after["rounds"]):
            rounds = (after["rounds"][name] - before["rounds"].get(name, 0)) / JOBS
            total += rounds
            if rounds >= 0.005:
                print(f"| Raft rounds of {name} | {rounds:.2f} |")
        print(f"| **Raft rounds in all** (each an append on every node, fsynced unless in memory) | **{total:.2f}** |")
    print(f"| JetStream API calls | {(after['api'] - before['api']) / JOBS:.2f} |")
    print(f"| messages into the servers | {(after['in_msgs'] - before['in_msgs']) / JOBS:.2f} |")
    print(f"| messages out of the servers | {(after['out_msgs'] - before['out_msgs']) / JOBS:.2f} |")


if __name__ == "__main__":
    main()
