//! The AsyncAPI 3.0.0 description of the attach WebSocket, served at
//! `/asyncapi.json` beside the OpenAPI document.
//!
//! Every JSON message is cut out of the schema schemars derives from the
//! wire enums ([`ServerMsg`], [`ClientMsg`]), one message per variant, so a
//! new variant or field shows up here by itself. The binary frames have no
//! serde form; their layout is written from the constants the codec uses.
//! The tests check a sample of every variant against the document.

use schemars::{schema_for, JsonSchema};
use serde_json::{json, Map, Value};

use super::openapi::componentize;
use crate::config::Config;
use crate::session::actor::TAKEOVER_GRACE;
use crate::wire::api::{
    ClientMsg, CloseReason, ExitReason, ServerMsg, INPUT_HEADER_LEN, MAX_INPUT_BYTES,
    OUTPUT_HEADER_LEN,
};

/// The channel's name in the document.
const CHANNEL: &str = "attach";

/// The exactly-once rules, for someone writing a client: the channel's
/// description. docs/api.md ("Attaching") has the long form.
fn rules() -> String {
    let config = Config::default();
    format!(
        "One client at a time is attached to a session; the function runs on whether or not one is. \
Authenticate with `Authorization: Bearer KEY`, or (browsers) offer the subprotocols `bento.v1` and `bento.key.HEX` (the key's bytes in hex); the server answers `bento.v1`.\n\n\
**Sequence numbers.** Output messages (binary `output` chunks and the `exit` message) are numbered 1, 2, 3, … per session; the exit is always the last. \
Input messages (binary `input` frames and `eof`) are numbered 1, 2, 3, … by the client.\n\n\
**Connect and resume.** Connect with `after` = the highest output seq the client holds (0 for none). The server sends `hello` first, then every held output message with seq > after, in order, then live output. \
`after` beyond `hello.last_seq` is refused with HTTP 400, except after a controller restart (docs/durability.md). The client drops any output whose seq it already has, and takes an `exit` it has not had yet even if its seq is not new.\n\n\
**Output acks.** The client sends `ack` with the highest seq it has written out (to a terminal, a file), not merely received. Acks are cumulative and may be batched. The server keeps every message until it is acked, so a client that reconnects with `after` loses nothing and, dropping by seq, sees each message exactly once.\n\n\
**Input.** The server writes input in seq order: seq == next is written and acked (`input_ack`, cumulative); seq < next is a resend, acked again and dropped; seq > next is a gap and closes the connection with reason `protocol`. \
The client keeps input until it is acked and, on every connect, resends what it holds from `hello.input_next` on. `eof` ends input and takes a seq like an input message; input after it is acked and discarded, and `hello.input_closed` says it has been applied. An input frame carries at most {MAX_INPUT_BYTES} bytes.\n\n\
**Heartbeats.** The server sends `ping` every heartbeat interval (`heartbeat_interval` in bento.yaml, {hb} s by default) and closes a client from which nothing has arrived for two intervals (reason `heartbeat_timeout`). Any message counts. The client answers `ping` with `pong`, and may `ping` the server (answered with `pong`) to tell a dead connection: the Rust client pings every {hb} s and gives up after {hb2} s of silence.\n\n\
**Flow control.** Each client has a queue of `client_queue` ({queue} by default) messages; one that stays full for `slow_client_timeout` ({slow} s by default) closes the client with reason `slow_client`.\n\n\
**Ending.** After the exit is acked the server sends `closed` with reason `finished`. `detach` leaves on purpose: the server applies everything sent before it (acks included), then ends the connection. \
Before closing the socket the server sends `closed` with a reason; `server_shutdown`, `heartbeat_timeout` and `slow_client` are about the connection, so a client reconnects; the others end this attachment.\n\n\
**Deadline.** `deadline_warning` ({warn} s by default) before the session's timeout ends it, the attached client gets `deadline` (when, in how long, and why); a client that attaches within that time gets it after `hello`, and one warned gets it again when `POST /v1/sessions/{{token}}/extend` moves the deadline. At the deadline the function is sent SIGTERM, and killed after its image's `stop_grace` (docs/leases.md).\n\n\
**Takeover.** A new attach sends the attached client `closed` with reason `taken_over` at once and nothing more after it. That client should stop delivering output, ack exactly what it wrote out, and `detach`: the server waits up to {grace} ms for this before answering the new attach, which then starts right after the old client's last ack. An old client that does not detach in time may see its unacked output repeated by the new one.",
        hb = config.heartbeat_interval.as_secs_f64(),
        hb2 = 2.0 * config.heartbeat_interval.as_secs_f64(),
        queue = config.client_queue,
        slow = config.slow_client_timeout.as_secs_f64(),
        grace = TAKEOVER_GRACE.as_millis(),
        warn = config.deadline_warning.as_secs_f64(),
    )
}

/// One message per variant of a `"type"`-tagged enum, named `PREFIX_TAG`:
/// schemars writes such an enum as a `oneOf` of object schemas whose `type`
/// property is a `const`, and each becomes a message's payload. The schemas
/// the variants refer to go into `schemas`.
fn variants<T: JsonSchema>(
    prefix: &str,
    direction: &str,
    schemas: &mut Map<String, Value>,
    messages: &mut Map<String, Value>,
) -> Vec<String> {
    let whole = componentize(schema_for!(T), schemas);
    let mut names = Vec::new();
    for branch in whole["oneOf"].as_array().into_iter().flatten() {
        // A branch of another shape would be a variant left out: the tests
        // then find a sample without its message.
        let Some(tag) = branch["properties"]["type"]["const"].as_str() else {
            continue;
        };
        let name = format!("{prefix}_{tag}");
        let mut message = json!({
            "name": tag,
            "title": format!("{tag} ({direction})"),
            "contentType": "application/json",
            "payload": branch,
        });
        // The variant's doc comment, unwrapped; its first sentence is the
        // summary a viewer lists.
        if let Some(d) = branch["description"].as_str() {
            let d = d.split_whitespace().collect::<Vec<_>>().join(" ");
            let first = d.find(". ").map_or(d.as_str(), |i| &d[..=i]);
            message["summary"] = json!(first);
            message["description"] = json!(d);
        }
        messages.insert(name.clone(), message);
        names.push(name);
    }
    names
}

/// The binary messages: no serde type, so their layout is spelled out.
fn binary_messages(messages: &mut Map<String, Value>) {
    messages.insert(
        "server_output".into(),
        json!({
            "name": "output",
            "title": "output (server to client, binary)",
            "summary": "A chunk of output: a binary WebSocket message.",
            "description": format!(
                "Layout: `stream` (u8: 1 data, 2 stdout, 3 stderr), `flags` (u8: bit 0 = last chunk of a data message), `seq` (u64, big-endian), then the bytes: a {OUTPUT_HEADER_LEN}-byte header. \
A data message (one `send()` in the function) may span several chunks with consecutive seqs, the last with the end flag; stdout and stderr chunks always have it. \
`seq` is the output sequence number the client acks and resumes from."
            ),
            "contentType": "application/octet-stream",
            "payload": {"type": "string", "format": "binary"},
            "x-layout": [
                {"field": "stream", "offset": 0, "type": "u8", "values": {"1": "data", "2": "stdout", "3": "stderr"}},
                {"field": "flags", "offset": 1, "type": "u8", "bits": {"0": "end of a data message"}},
                {"field": "seq", "offset": 2, "type": "u64 big-endian"},
                {"field": "bytes", "offset": OUTPUT_HEADER_LEN, "type": "the rest"},
            ],
        }),
    );
    messages.insert(
        "client_input".into(),
        json!({
            "name": "input",
            "title": "input (client to server, binary)",
            "summary": "An input message: a binary WebSocket message.",
            "description": format!(
                "Layout: `kind` (u8 = 1), `seq` (u64, big-endian), then the message bytes (at most {MAX_INPUT_BYTES}): a {INPUT_HEADER_LEN}-byte header. \
`seq` is the input sequence number the server acks with `input_ack`; a short frame or another kind closes the connection with reason `protocol`."
            ),
            "contentType": "application/octet-stream",
            "payload": {"type": "string", "format": "binary"},
            "x-layout": [
                {"field": "kind", "offset": 0, "type": "u8", "values": {"1": "data"}},
                {"field": "seq", "offset": 1, "type": "u64 big-endian"},
                {"field": "bytes", "offset": INPUT_HEADER_LEN, "type": "the rest", "maxLength": MAX_INPUT_BYTES},
            ],
        }),
    );
}

/// References from the channel or an operation to `names`.
fn refs(names: &[String], base: &str) -> Vec<Value> {
    names
        .iter()
        .map(|n| json!({ "$ref": format!("{base}/{n}") }))
        .collect()
}

/// The whole document.
pub fn document() -> Value {
    let mut schemas = Map::new();
    let mut messages = Map::new();
    let mut from_server =
        variants::<ServerMsg>("server", "server to client", &mut schemas, &mut messages);
    let mut from_client =
        variants::<ClientMsg>("client", "client to server", &mut schemas, &mut messages);
    binary_messages(&mut messages);
    from_server.push("server_output".into());
    from_client.push("client_input".into());
    // Named components whether or not a message refers to them today: a
    // client keys its handling of a close or an exit on them.
    for (name, s) in [
        ("CloseReason", schema_for!(CloseReason)),
        ("ExitReason", schema_for!(ExitReason)),
    ] {
        let v = componentize(s, &mut schemas);
        schemas.insert(name.into(), v);
    }
    let channel_messages: Map<String, Value> = from_server
        .iter()
        .chain(&from_client)
        .map(|n| {
            (
                n.clone(),
                json!({ "$ref": format!("#/components/messages/{n}") }),
            )
        })
        .collect();
    let in_channel = format!("#/channels/{CHANNEL}/messages");
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Bento attach WebSocket",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The WebSocket a client attaches to a session with (GET /v1/sessions/{token}/attach). Operations are from the client's side: it sends input, acks and heartbeats, and receives output, acks and close reasons. The HTTP API is in /openapi.json; docs/api.md has both in prose.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "controller": {
                "host": "127.0.0.1:7470",
                "protocol": "ws",
                "description": "A controller (`bento serve`), by default on loopback. Behind a TLS-terminating proxy the protocol is `wss`.",
            }
        },
        "channels": {
            CHANNEL: {
                "address": "/v1/sessions/{token}/attach",
                "title": "Attach to a session",
                "description": rules(),
                "servers": [{ "$ref": "#/servers/controller" }],
                "parameters": {
                    "token": { "description": "The session's token, from POST /v1/sessions (or a fork)." }
                },
                "messages": channel_messages,
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "query": {
                            "type": "object",
                            "properties": {
                                "after": {
                                    "type": "integer",
                                    "minimum": 0,
                                    "default": 0,
                                    "description": "The highest output seq the client already holds (0 for none): the server resends everything after it. Not an acknowledgement."
                                }
                            }
                        },
                        "bindingVersion": "0.1.0",
                    }
                },
            }
        },
        // Security is declared on the operations, where AsyncAPI 3 allows it
        // as well as on a server: pydantic-asyncapi, which the Python suite
        // reads the document with, misreads a server's `security` list.
        "operations": {
            "sendToSession": {
                "security": [{ "$ref": "#/components/securitySchemes/bearer" }],
                "action": "send",
                "channel": { "$ref": format!("#/channels/{CHANNEL}") },
                "summary": "What the client sends: input, end of input, acks, heartbeats, detach.",
                "messages": refs(&from_client, &in_channel),
            },
            "receiveFromSession": {
                "security": [{ "$ref": "#/components/securitySchemes/bearer" }],
                "action": "receive",
                "channel": { "$ref": format!("#/channels/{CHANNEL}") },
                "summary": "What the client receives: hello, output, the exit, input acks, heartbeats, closed.",
                "messages": refs(&from_server, &in_channel),
            },
        },
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The controller's API key. A browser, which cannot set headers on a WebSocket, offers the subprotocols `bento.v1` and `bento.key.HEX` instead. A controller without a key listens on loopback only and needs none.",
                }
            },
        },
    })
}

#[cfg(test)]
mod tests;
