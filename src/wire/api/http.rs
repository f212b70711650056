//! The JSON bodies of the HTTP API.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

use super::*;

/// `POST /v1/functions`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitFunction {
    /// Python source, at most 1 MiB of UTF-8 (413 beyond).
    #[schemars(length(max = 1048576))]
    pub code: String,
    /// Optional name; a later submit with the same name takes the name over.
    /// 1-64 lowercase letters, digits, `-` or `_`, starting with a letter or
    /// digit, and not starting with `fn-` (function ids do).
    #[serde(default)]
    #[schemars(length(min = 1, max = 64), regex(pattern = FUNCTION_NAME_PATTERN))]
    pub name: Option<String>,
    /// Image to run in; the server's default image when absent.
    #[serde(default)]
    pub image: Option<String>,
    /// The file name tracebacks and `sys.argv[0]` show, e.g. `counter.py`
    /// (1-255 bytes, no `/` or control characters); when absent, the name
    /// with `.py` added, or `function.py` for a function without one.
    /// Left out when absent: controllers from before it refuse the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 255),
        regex(pattern = r"^[^/\x00-\x1f\x7f-\x9f]+$")
    )]
    pub filename: Option<String>,
}

/// A function's name, as the server checks it (`config::valid_name`, and
/// not `fn-…`), without a lookahead: `f` and `fn` alone, `f` then anything
/// but `n`, `fn` then anything but `-`, or any other first character.
pub const FUNCTION_NAME_PATTERN: &str =
    "^(?:[a-eg-z0-9][a-z0-9_-]*|f|f[a-mo-z0-9_-][a-z0-9_-]*|fn|fn[a-z0-9_][a-z0-9_-]*)$";

/// Why submitted code does not compile: the answer to a submit whose code
/// Python refuses (400, in [`ErrorBody::syntax`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyntaxProblem {
    /// The exception, e.g. `SyntaxError` or `IndentationError`.
    pub kind: String,
    /// Python's message, e.g. `'(' was never closed`.
    pub message: String,
    /// 1-based line, where Python gives one.
    pub line: Option<u64>,
    /// 1-based column in characters, where Python gives one.
    pub column: Option<u64>,
}

impl std::fmt::Display for SyntaxProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => {
                write!(f, "{} at line {l}, column {c}: {}", self.kind, self.message)
            }
            (Some(l), None) => write!(f, "{} at line {l}: {}", self.kind, self.message),
            _ => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FunctionInfo {
    pub id: String,
    pub name: Option<String>,
    pub image: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// The file name the code runs under (tracebacks, `sys.argv[0]`).
    #[serde(default = "default_filename")]
    pub filename: String,
}

/// What functions stored before file names were recorded run under.
pub fn default_filename() -> String {
    "function.py".into()
}

/// `POST /v1/sessions`
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Function id or name.
    pub function: String,
    /// Arguments for `main(*args)`; the driver decodes each as JSON where it
    /// parses. At most 256, of at most 64 KiB each.
    #[serde(default)]
    #[schemars(length(max = 256), inner(length(max = 65536)))]
    pub args: Vec<String>,
    /// A transient session's function is killed when its client has been
    /// gone longer than the grace period.
    #[serde(default)]
    pub transient: bool,
    /// Limits for this run, within the image's maximums; unset ones take
    /// the image's defaults.
    #[serde(default)]
    pub limits: crate::wire::api::LimitsRequest,
    /// Keep the input history so that the session can be forked (default
    /// true; `false` saves the disk it takes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forkable: Option<bool>,
    /// Environment variables for the function, over the image's `env:`
    /// (docs/env.md). Names are checked; `BENTO_*` is reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 256,
        "propertyNames" = {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$"},
        "additionalProperties" = {"type": "string", "maxLength": 65536, "pattern": "^[^\\u0000]*$"}
    ))]
    pub env: BTreeMap<String, String>,
    /// Stored secrets to set as environment variables, by name: their
    /// values never cross the API again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretUse>,
}

/// A stored secret a run asks for, and the variable it is set as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretUse {
    /// The secret's name (`bento secrets set NAME`).
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"))]
    pub name: String,
    /// The environment variable; unset, the secret's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

impl SecretUse {
    /// The variable the secret is set as.
    pub fn var(&self) -> &str {
        self.env.as_deref().unwrap_or(&self.name)
    }
}

/// `PUT /v1/secrets/{name}`. Its `Debug` hides the value.
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSecret {
    /// UTF-8, without NUL, at most 64 KiB.
    #[schemars(length(max = 65536), regex(pattern = r"^[^\u0000]*$"))]
    pub value: String,
}

impl fmt::Debug for SetSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SetSecret { value: <hidden> }")
    }
}

/// A stored secret, as listed: its name only, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretInfo {
    pub name: String,
    /// When it was last set, seconds since the Unix epoch.
    pub updated_at: u64,
}

/// Where a session is in its life.
///
/// (The variants' notes are plain comments: documented variants would make
/// the schema a `oneOf` of constants, which generated clients read badly;
/// a plain `enum` of strings is what they expect.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    // Container being created and started.
    Starting,
    // The controller restarted and is reattaching to the function, which
    // runs on; an attach is answered 503 until it is back (moments).
    Resuming,
    Running,
    // The function has ended; output may still be waiting for a client.
    Ended,
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionState::Starting => "starting",
            SessionState::Resuming => "resuming",
            SessionState::Running => "running",
            SessionState::Ended => "ended",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionInfo {
    pub token: String,
    /// Short id used in logs; not a secret and not enough to attach.
    pub id: String,
    pub function: String,
    pub function_name: Option<String>,
    pub image: String,
    pub state: SessionState,
    pub transient: bool,
    pub attached: bool,
    pub exit: Option<ExitInfo>,
    /// Output messages not yet acknowledged by a client.
    pub pending_messages: u64,
    pub pending_bytes: u64,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub ended_at: Option<u64>,
    /// The highest output seq so far.
    #[serde(default)]
    pub last_seq: u64,
    /// Of `pending_bytes`, how much is only on disk (not in memory).
    #[serde(default)]
    pub spooled_bytes: u64,
    /// The limits the function runs under.
    #[serde(default)]
    pub limits: Option<crate::wire::api::Limits>,
    /// When its timeout ends it, seconds since the epoch: its start plus
    /// its timeout, moved by every `extend` (docs/leases.md).
    #[serde(default)]
    pub deadline: Option<u64>,
    /// When its idle timeout would end it if nothing happens till then:
    /// absent while a client is attached, without an idle timeout, and
    /// once the function has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_deadline: Option<u64>,
    /// Its container came from the image's warm pool (already started when
    /// the session was created) rather than being started for it.
    #[serde(default)]
    pub warm: bool,
    /// It keeps its input history, so it can be forked (docs/fork.md).
    #[serde(default)]
    pub forkable: bool,
    /// It is a fork: of which session, from which point, and how its replay
    /// stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<ForkInfo>,
    /// Resource usage so far (live) or final (ended), from the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The names of the environment variables the run set (never their
    /// values; the image's own `env:` is in its YAML).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// The secrets the run asked for, by name, and the variables they were
    /// set as. Values never show.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretUse>,
}

/// `POST /v1/sessions/{token}/fork`: a new session that starts from this
/// one's state, by replaying its input (docs/fork.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkSession {
    /// Fork the session as it was after this many inputs (default: every
    /// input it has applied so far).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_at_input"
    )]
    #[schemars(range(max = 9007199254740991u64))]
    pub at_input: Option<u64>,
    /// What happens when the replay does not reproduce the parent's output
    /// (default `kill`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_divergence: Option<OnDivergence>,
}

fn de_at_input<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    crate::wire::whole::de_opt_whole(d, crate::wire::whole::MAX_SAFE)
}

/// What a fork does when its replay does not reproduce its parent's output.
///
/// (The variants' notes are plain comments: documented variants would make
/// the schema a `oneOf` of constants, which generated clients read badly;
/// a plain `enum` of strings is what they expect.)
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OnDivergence {
    // End the fork with the exit reason `diverged`.
    #[default]
    Kill,
    // Go live anyway; the fork stays marked `diverged`.
    Continue,
}

/// Where a fork comes from and how its replay stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ForkInfo {
    /// The parent session's short id (not its token).
    pub parent: String,
    /// The parent's inputs replayed into the fork.
    pub at_input: u64,
    pub state: ForkState,
}

/// A fork's replay.
///
/// (The variants' notes are plain comments: documented variants would make
/// the schema a `oneOf` of constants, which generated clients read badly;
/// a plain `enum` of strings is what they expect.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ForkState {
    // The parent's input is being fed in; its output is checked, not shown.
    Replaying,
    // The replay reproduced the parent: output from here on is the fork's.
    Live,
    // The replay's output differed from the parent's: the function is not
    // deterministic.
    Diverged,
}

impl fmt::Display for ForkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForkState::Replaying => "replaying",
            ForkState::Live => "live",
            ForkState::Diverged => "diverged",
        })
    }
}

/// `GET /v1/sessions/{token}/output` answer: a page of the output the
/// session still holds, for read-only watchers (`bento logs`). Nothing is
/// acknowledged by reading it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OutputPage {
    /// Output messages, in order. Their bytes are given as text (lossy
    /// UTF-8): pages are for people watching, `attach` is byte-exact.
    pub messages: Vec<PageMessage>,
    /// The exit, if the page reaches it.
    pub exit: Option<ExitInfo>,
    /// The seq to ask after for the next page.
    pub next_after: u64,
    /// The session holds nothing after `next_after` (yet).
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PageMessage {
    pub seq: u64,
    pub stream: Stream,
    pub end: bool,
    /// The bytes as text (lossy: invalid UTF-8 becomes U+FFFD).
    pub text: String,
}

/// `POST /v1/sessions/{token}/extend`: moves the session's deadline later,
/// within the image's maximum timeout counted from the session's start.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendSession {
    /// How much later: seconds, or a string such as `"30m"`.
    #[serde(
        deserialize_with = "crate::wire::duration::de_duration",
        serialize_with = "ser_secs"
    )]
    #[schemars(schema_with = "by_schema")]
    pub by: std::time::Duration,
}

fn ser_secs<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(super::limits::ceil_secs(d))
}

/// What `by` may be written as: whole seconds, or a number with a unit
/// (`crate::wire::duration::parse_duration`).
fn by_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Seconds, or a string such as `\"30m\"`.",
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": 9007199254740991u64},
            {"type": "string", "pattern": r"^\s*[0-9]{1,12}\s*(ms|s|m|h|d)?\s*$"}
        ]
    })
}

/// `POST /v1/sessions/{token}/extend` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionExtended {
    /// The new deadline, seconds since the epoch.
    pub deadline: u64,
    /// The latest it may be moved to (the session's start plus the image's
    /// maximum timeout); absent when the image has no maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deadline: Option<u64>,
}

/// `POST /v1/sessions` answer.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionCreated {
    pub token: String,
    pub id: String,
}

/// An error's kind, one per status the API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    // 403: the key is known but its role may not do this. (A plain comment:
    // a documented variant would make the schema a oneOf, not an enum.)
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    TooManyRequests,
    Internal,
    BadGateway,
    Unavailable,
}

impl ErrorCode {
    /// The code of an HTTP status; `None` for one that is not an error.
    pub fn of(status: u16) -> Option<ErrorCode> {
        Some(match status {
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            409 => ErrorCode::Conflict,
            413 => ErrorCode::PayloadTooLarge,
            415 => ErrorCode::UnsupportedMediaType,
            429 => ErrorCode::TooManyRequests,
            502 => ErrorCode::BadGateway,
            503 => ErrorCode::Unavailable,
            400..=499 => ErrorCode::BadRequest,
            500..=599 => ErrorCode::Internal,
            _ => return None,
        })
    }
}

/// Every error answer of the HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// What is wrong, in words: the text to show a person.
    pub error: String,
    /// What is wrong, for a program: one per HTTP status (`not_found`,
    /// `conflict`, `too_many_requests`, ...). Absent from controllers
    /// before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// Where and why the code does not compile, for a submit refused so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syntax: Option<SyntaxProblem>,
    /// The tenant quota a 429 ran into (`sessions`, `starts_per_minute`,
    /// `memory`, `cpus`, `functions`, `function_bytes`, `spool_bytes`);
    /// see docs/tenants.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
}
