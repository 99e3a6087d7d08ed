//! What the tests that run `parlance serve` as a child process share: a
//! handle that kills the server when dropped, and the wait for the line in
//! which it names its address; [`python`], the virtualenv of the tests that
//! drive it with the `openai` SDK.
#![allow(dead_code)] // Each test binary uses a different part of it.

pub mod python;

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStderr};

/// A running `parlance serve`, killed (and reaped) when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The rest of a server's stderr, after the line that named its address.
pub type Stderr = Lines<BufReader<ChildStderr>>;

impl Server {
    /// Reads `child`'s stderr (which must be piped) until it prints
    /// `listening on http://ADDR`; returns the server, `ADDR` and the rest of
    /// stderr. Panics with what it printed if it exits first.
    pub fn listening(child: Child) -> (Server, String, Stderr) {
        let mut server = Server(child);
        let stderr = server.0.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = String::new();
        loop {
            let Some(line) = lines.next() else {
                panic!("serve exited before listening:\n{seen}");
            };
            let line = line.expect("stderr is text");
            if let Some(rest) = line.strip_prefix("listening on http://") {
                return (server, rest.trim().to_owned(), lines);
            }
            seen.push_str(&line);
            seen.push('\n');
        }
    }
}
