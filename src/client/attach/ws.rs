//! Opening one attach WebSocket and reading its `Hello`, and sending
//! control messages on it.

use crate::client::{error_chain, http_error, root_cause, ClientError};
use crate::wire::api::{ClientMsg, ServerMsg};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// The halves of a [`Ws`], so that reading and writing are separate.
pub(super) type Sink = SplitSink<Ws, Message>;
pub(super) type Source = SplitStream<Ws>;

/// How long the handshake plus `Hello` may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where to attach: the `ws://` URL of one session, as
/// [`Client`](crate::client::Client) makes it.
#[derive(Debug, Clone)]
pub(in crate::client) struct Endpoint {
    pub(in crate::client) url: Url,
    /// The server's base URL, for messages.
    pub(in crate::client) display_url: String,
    pub(in crate::client) api_key: Option<String>,
}

/// What the server said in `Hello`.
#[derive(Debug, Clone)]
pub(super) struct Hello {
    pub(super) session: String,
    pub(super) input_next: u64,
    pub(super) last_seq: u64,
    pub(super) input_closed: bool,
}

/// Connects, asking for output after `after`, and reads the `Hello`.
pub(super) async fn connect(ep: &Endpoint, after: u64) -> Result<(Ws, Hello), ClientError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(ep, after)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Unreachable {
            url: ep.display_url.clone(),
            message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        }),
    }
}

async fn connect_inner(ep: &Endpoint, after: u64) -> Result<(Ws, Hello), ClientError> {
    let mut url = ep.url.clone();
    url.query_pairs_mut()
        .clear()
        .append_pair("after", &after.to_string());
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::Protocol(format!("cannot build the attach request: {e}")))?;
    if let Some(key) = &ep.api_key {
        let value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
            ClientError::Protocol("the API key holds characters not allowed in a header".into())
        })?;
        req.headers_mut().insert("authorization", value);
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| handshake_error(ep, e))?;
    let hello = loop {
        let msg = match ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(ClientError::Transport(error_chain(&e))),
            None => return Err(ClientError::Transport("closed before saying hello".into())),
        };
        match msg {
            Message::Text(t) => match serde_json::from_str::<ServerMsg>(&t) {
                Ok(ServerMsg::Hello {
                    session,
                    input_next,
                    last_seq,
                    input_closed,
                }) => {
                    break Hello {
                        session,
                        input_next,
                        last_seq,
                        input_closed,
                    }
                }
                // The server may refuse right after the upgrade (say, the
                // session ended while we connected); that is its answer.
                Ok(ServerMsg::Closed { reason }) => return Err(ClientError::Closed(reason)),
                Ok(other) => {
                    return Err(ClientError::Protocol(format!(
                        "expected hello first, got {other:?}"
                    )))
                }
                Err(e) => return Err(ClientError::Protocol(format!("bad hello: {e}"))),
            },
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => {
                return Err(ClientError::Transport("closed before saying hello".into()))
            }
            Message::Binary(_) | Message::Frame(_) => {
                return Err(ClientError::Protocol(
                    "expected hello first, got output".into(),
                ))
            }
        }
    };
    Ok((ws, hello))
}

fn handshake_error(ep: &Endpoint, e: tungstenite::Error) -> ClientError {
    match e {
        tungstenite::Error::Http(resp) => {
            let body = resp.body().as_deref().unwrap_or_default();
            http_error(resp.status(), body)
        }
        tungstenite::Error::Io(e) => ClientError::Unreachable {
            url: ep.display_url.clone(),
            message: root_cause(&e),
        },
        other => ClientError::Transport(error_chain(&other)),
    }
}

/// A control message as a WebSocket text message.
pub(super) fn encode(msg: &ClientMsg) -> Result<Message, String> {
    serde_json::to_string(msg)
        .map(Message::text)
        .map_err(|e| format!("cannot encode {msg:?}: {e}"))
}

/// Sends one control message; the error says why the transport failed.
pub(super) async fn send(sink: &mut Sink, msg: &ClientMsg) -> Result<(), String> {
    let m = encode(msg)?;
    sink.send(m).await.map_err(|e| error_chain(&e))
}
