//! The open-file limit (`RLIMIT_NOFILE`): raising it at start, and the
//! connection cap derived from it.
//!
//! Every client connection is a descriptor, and so is every session's attach
//! socket to the engine, its spool file, the database and the engine API's
//! connections. A controller that runs out of descriptors can no longer
//! accept anyone, so client connections are capped below the limit, leaving
//! room for what sessions need.

/// Descriptors kept for the controller itself: stdio, the runtime's epoll
/// and wakers, the listener, the database and its journal, the engine API's
/// pooled connections, image builds.
const RESERVED: u64 = 64;
/// Descriptors a session may hold: its attach socket to the engine, its
/// spool file, and an engine API call in flight (inspect, kill, remove).
const PER_SESSION: u64 = 3;
/// Connections above the cap still take a descriptor for the moment it
/// takes to answer them 503; at most this many at once (see
/// `accept::MAX_REFUSING`).
const REFUSING: u64 = super::accept::MAX_REFUSING as u64;
/// The least the derived cap goes down to, however low the limit: a
/// controller nobody can reach is no use, and the limit is then mostly
/// free anyway unless every session runs.
const FLOOR: u64 = 16;
/// A derived cap above this is not needed by anything Bento serves, and an
/// unlimited `nofile` must not mean unlimited connections.
const CEILING: u64 = 65_536;

/// The soft and hard open-file limits, as the kernel reports them.
pub fn limits() -> std::io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // rlim_t is u64 on Linux, the only platform Bento runs on.
    Ok((r.rlim_cur, r.rlim_max))
}

/// Raises the soft open-file limit to the hard one, which any process may
/// do. Many systems start processes with a soft limit of 1024 (or less)
/// under a hard limit far above it; a server should use what it is allowed.
/// Returns the soft limit before and after.
pub fn raise() -> std::io::Result<(u64, u64)> {
    let (soft, hard) = limits()?;
    if soft >= hard {
        return Ok((soft, soft));
    }
    let r = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((soft, limits()?.0))
}

/// The connection cap when `max_connections` is not set: the soft
/// open-file limit less what the controller and `max_sessions` sessions
/// need, between 16 and 65 536.
pub fn default_max_connections(soft_limit: u64, max_sessions: usize) -> usize {
    let sessions = PER_SESSION.saturating_mul(max_sessions as u64);
    let free = soft_limit
        .saturating_sub(RESERVED)
        .saturating_sub(REFUSING)
        .saturating_sub(sessions);
    usize::try_from(free.clamp(FLOOR, CEILING)).unwrap_or(FLOOR as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_sessions() {
        // 1024 files, 100 sessions: 1024 - 64 - 32 - 300.
        assert_eq!(default_max_connections(1024, 100), 628);
        // Too few files for the sessions asked for: the floor.
        assert_eq!(default_max_connections(256, 256), 16);
        // Unlimited files: the ceiling.
        assert_eq!(default_max_connections(u64::MAX, 256), 65_536);
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let (before, after) = match raise() {
            Ok(r) => r,
            Err(e) => panic!("raise: {e}"),
        };
        let (soft, hard) = match limits() {
            Ok(l) => l,
            Err(e) => panic!("limits: {e}"),
        };
        assert!(after >= before);
        assert_eq!((after, soft), (hard, hard));
    }
}
