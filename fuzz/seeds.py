#!/usr/bin/env python3
"""Writes the seed corpus: fuzz/corpus/<target>/seed-*, a few valid (and a
few nearly valid) inputs per target. Run it again after a wire format
changes; libFuzzer's own finds in the same folders are not committed."""
import json
import pathlib
import shutil
import struct

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


def driver_frame(kind, end, payload):
    # docs/driver.md: kind, flags, 2 reserved zero bytes, u32 BE length.
    return struct.pack(">BBHI", kind, 1 if end else 0, 0, len(payload)) + payload


def main():
    for old in CORPUS.glob("*/seed-*"):
        old.unlink()

    # driver_session: ops on session A (see fuzz_targets/driver_session.rs):
    # 0 L bytes (raw stdout), 1 kind flags L payload (a frame), 2 u64 (CREDIT),
    # 3 delta size (client input; size 255 = end of input), 4 (chunk), 5 L
    # bytes (raw stderr).
    def op_frame(kind, flags, payload):
        return bytes([1, kind, flags, len(payload)]) + payload

    def op_credit(n):
        return bytes([2]) + struct.pack(">Q", n)

    def op_input(delta, size):
        return bytes([3, delta, size])

    inputs = op_input(1, 3) + op_input(1, 0) + op_input(1, 255)
    write("driver_session", "well-behaved",
          op_frame(1, 1, b"hello") + bytes([4]) + inputs + op_credit(1)
          + op_credit(3) + op_frame(2, 0, b"out\n") + bytes([4]))
    write("driver_session", "forged-credit-ahead",
          op_frame(1, 1, b"x") + op_credit(2**64 - 1) + bytes([4]) + inputs)
    write("driver_session", "forged-credit-backwards",
          inputs + op_credit(2) + op_credit(1) + bytes([4]))
    write("driver_session", "too-many-inputs",
          b"".join(op_input(1, 200) for _ in range(80)) + op_credit(10) + bytes([4]))
    write("driver_session", "garbage-then-output",
          bytes([0, 4]) + b"junk" + bytes([4]) + op_frame(1, 1, b"after") + bytes([5, 2]) + b"e!")
    write("driver_session", "empty-flood",
          b"".join(op_frame(1, 1, b"") for _ in range(200)) + bytes([4]))

    # driver_frame: [k][k chunk sizes][stream]
    stream = (driver_frame(2, False, b"hi\n")
              + driver_frame(3, True, b"Traceback...\n")
              + driver_frame(1, False, b'{"part":')
              + driver_frame(1, True, b'1}')
              + driver_frame(1, True, b""))
    write("driver_frame", "whole", bytes([0]) + stream)
    write("driver_frame", "chunked", bytes([3, 1, 7, 200]) + stream)
    write("driver_frame", "bytewise", bytes([1, 1]) + stream)
    write("driver_frame", "truncated", bytes([1, 5]) + stream[:-3] + driver_frame(1, True, b"abc")[:10])
    write("driver_frame", "too-large", bytes([0]) + struct.pack(">BBHI", 1, 1, 0, (1 << 20) + 1))
    write("driver_frame", "max-header", bytes([0]) + struct.pack(">BBHI", 2, 0, 0, 1 << 20) + b"x" * 64)

    # driver_sync: [k][k chunk sizes][16-byte nonce][stream]
    nonce = bytes(range(0x40, 0x50))
    sync = driver_frame(4, False, nonce + struct.pack(">QQQ", 4096, 3, 2))
    noise = b"\x01\x00\x00\x00\x00\x00\x01\x00tail of an old frame"
    write("driver_sync", "noise-then-sync", bytes([0]) + nonce + noise + sync + stream)
    write("driver_sync", "chunked", bytes([4, 3, 1, 50, 9]) + nonce + noise + sync + stream)
    write("driver_sync", "wrong-nonce", bytes([1, 7]) + bytes(16) + noise + sync + stream)
    write("driver_sync", "cut-sync", bytes([1, 5]) + nonce + noise + sync[:30])

    # ws_output_frame: [stream u8][flags u8][seq u64 BE][bytes]
    for name, (stream_id, flags, seq, body) in {
        "data-end": (1, 1, 42, b'{"result": [1, 2, 3]}'),
        "stdout": (2, 1, 1, b"hello\n"),
        "stderr-empty": (3, 0, 2**64 - 1, b""),
    }.items():
        write("ws_output_frame", name, struct.pack(">BBQ", stream_id, flags, seq) + body)

    # ws_input_frame: [kind u8 = 1][seq u64 BE][bytes]
    write("ws_input_frame", "line", struct.pack(">BQ", 1, 0) + b"some input\n")
    write("ws_input_frame", "empty", struct.pack(">BQ", 1, 2**63))

    # json_client_msg
    for name, msg in {
        "ack": {"type": "ack", "seq": 7},
        "eof": {"type": "eof", "seq": 3},
        "ping": {"type": "ping"},
        "pong": {"type": "pong"},
        "detach": {"type": "detach"},
    }.items():
        write("json_client_msg", name, json.dumps(msg))

    # json_server_msg
    def exit_info(reason, code, message):
        return {"reason": reason, "code": code, "message": message}

    for name, msg in {
        "hello": {"type": "hello", "session": "s-1a2b", "input_next": 1, "last_seq": 0},
        "exit-code": {"type": "exit", "seq": 9,
                      "exit": exit_info({"kind": "exited", "code": 2}, 2, "exited with code 2")},
        "exit-signal": {"type": "exit", "seq": 1,
                        "exit": exit_info({"kind": "signaled", "signal": 9}, 137, "killed")},
        "exit-protocol": {"type": "exit", "seq": 4,
                          "exit": exit_info({"kind": "protocol_error", "message": "bad frame"}, 1, "x")},
        "exit-oom": {"type": "exit", "seq": 4, "exit": exit_info({"kind": "oom_killed"}, 137, "oom")},
        "input-ack": {"type": "input_ack", "seq": 12},
        "ping": {"type": "ping"},
        "closed": {"type": "closed", "reason": {"kind": "taken_over"}},
        "closed-protocol": {"type": "closed", "reason": {"kind": "protocol", "message": "seq gap"}},
    }.items():
        write("json_server_msg", name, json.dumps(msg))

    # json_http_bodies
    for name, body in {
        "submit": {"code": "def main():\n    return 1\n", "name": "one", "image": "python"},
        "submit-min": {"code": ""},
        "create": {"function": "one", "args": ["1", "\"x\""], "transient": True},
        "create-limits": {"function": "f-1", "limits": {"memory": 67108864, "cpus": 0.5,
                                                        "pids": 32, "timeout": "30s"}},
        "function-info": {"id": "f-1", "name": None, "image": "python", "size": 10,
                          "created_at": 1700000000},
        "session-info": [{"token": "t", "id": "s", "function": "f-1", "function_name": "one",
                          "image": "python", "state": "ended", "transient": False,
                          "attached": False,
                          "exit": {"reason": {"kind": "timeout"}, "code": 124,
                                   "message": "killed: timed out"},
                          "pending_messages": 0, "pending_bytes": 0,
                          "created_at": 1, "ended_at": 2}],
        "created": {"token": "abc", "id": "s-1"},
        "error": {"error": "no such function"},
    }.items():
        write("json_http_bodies", name, json.dumps(body))

    # config_yaml: the repository's own files, plus a few by hand.
    repo = HERE.parent
    write("config_yaml", "bento-yaml", (repo / "config" / "bento.yaml").read_bytes())
    for f in sorted((repo / "config" / "images").glob("*.yaml")):
        write("config_yaml", f"image-{f.stem}", f.read_bytes())
    write("config_yaml", "small", "listen: 0.0.0.0:80\nsession_ttl: 90\nheartbeat_interval: 500ms\n"
                                  "api_key: 0123456789abcdef0123\nmax_sessions: 4\n")
    write("config_yaml", "image-flow", "name: p\nlimits: {memory: 67108864, timeout: 10s}\n"
                                       "max: {memory: 134217728, timeout: 60s}\n"
                                       "sandbox: {network: bridge, user: '1000:1000'}\n")
    write("config_yaml", "anchors", "a: &x [1, 2]\nb: *x\n")

    # parse_duration
    for s in ["90", "90s", "15m", "24h", "2d", "500ms", " 5 s ", "18446744073709551615d"]:
        write("parse_duration", s.strip().replace(" ", "_"), s)


if __name__ == "__main__":
    main()
