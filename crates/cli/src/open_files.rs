//! The open-file limit of `parlance serve`: raised at start from the soft
//! limit (often 1,024) to the hard one the system allows.
//!
//! Every client connection, upstream connection and database file is a
//! descriptor; with 1,024 a busy server ran out at about a thousand
//! connections in flight, and SQLite then could not open the files it
//! needed (its CANTOPEN). Go's runtime and nginx's `worker_rlimit_nofile`
//! raise it the same way. Raising a soft limit up to the hard one needs no
//! privilege.

/// Raises the soft open-file limit to the hard limit; answers the limit in
/// force afterwards (`None` where it cannot be read).
pub fn raise() -> Option<u64> {
    let limit = limits()?;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given and nothing else.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(raised.rlim_cur);
        }
    }
    Some(limit.rlim_cur)
}

/// The soft and hard open-file limits in force (`None` where they cannot
/// be read).
fn limits() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let now = super::raise().expect("a readable limit");
        let limit = super::limits().expect("a readable limit");
        assert_eq!(limit.rlim_cur, limit.rlim_max);
        assert_eq!(now, limit.rlim_cur);
    }
}
