//! The open-file limit. Every connection is a file descriptor, and the usual soft limit (1024)
//! is far below what a simulator holding a fleet of devices needs, while the hard limit is not.

/// The open-file limit (`RLIMIT_NOFILE`) before and after [`raise_to_hard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit found.
    pub before: u64,
    /// The soft limit now.
    pub now: u64,
    /// The hard limit: the most an unprivileged process can raise its soft limit to.
    pub hard: u64,
}

/// File descriptors a simulator uses besides its device connections: listeners, the data
/// directory's file, stdio, the HTTP server's own sockets.
const RESERVED: u64 = 64;

/// Raises the open-file limit to the hard limit for a simulator that may hold
/// `max_connections` connections, and logs what it did; warns when that is still too few.
pub fn raise_for(max_connections: usize) {
    match raise_to_hard() {
        Ok(limit) => {
            tracing::info!(
                before = limit.before,
                now = limit.now,
                "open-file soft limit set to the hard limit"
            );
            let needed = max_connections as u64 + RESERVED;
            if limit.now < needed {
                tracing::warn!(
                    limit = limit.now,
                    max_connections,
                    "the open-file limit is below max_connections + {RESERVED}: connections \
                     beyond it fail to be accepted; raise the hard limit (ulimit -Hn, as root) \
                     or lower --max-connections"
                );
            }
        }
        Err(err) => tracing::warn!(
            %err,
            "cannot raise the open-file limit; connections beyond it fail to be accepted"
        ),
    }
}

/// Raises this process's soft open-file limit to its hard limit.
#[cfg(unix)]
// `rlim_t` is u64 here, narrower on some 32-bit platforms.
#[allow(clippy::unnecessary_cast)]
pub fn raise_to_hard() -> std::io::Result<FdLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur as u64;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit, read above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(FdLimit {
        before,
        now: limit.rlim_cur as u64,
        hard: limit.rlim_max as u64,
    })
}

/// Without `RLIMIT_NOFILE`, nothing to raise.
#[cfg(not(unix))]
pub fn raise_to_hard() -> std::io::Result<FdLimit> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = super::raise_to_hard().unwrap();
        assert_eq!(limit.now, limit.hard);
        assert!(limit.now >= limit.before);
    }
}
