//! Stop strings over a stream of text.
//!
//! The matcher emits text as early as possible: it holds back only the
//! longest suffix of what it has seen that is still the beginning of
//! some stop string (the least it can hold without risking emitting part
//! of a stop), cut on character boundaries. When a stop string completes,
//! possibly across many pushes, everything before it is emitted and the
//! stop text itself never is.
//!
//! With several stop strings, the match that *completes* first wins
//! (ties: the one that starts first). That is the only rule a streaming
//! matcher can honour however the text is split into pushes, so the
//! output never depends on chunking.

/// What one [`StopMatcher::push`] releases.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopOutcome {
    /// Text safe to send to the client now.
    pub emit: String,
    /// A stop string completed; generation should end. Later pushes emit
    /// nothing.
    pub stopped: bool,
}

/// Streaming stop-string matcher for one sequence.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet emitted: always a proper prefix of some
    /// stop string between pushes.
    pending: String,
    stopped: bool,
    /// The stop string that matched, once one has.
    matched: Option<String>,
}

impl StopMatcher {
    /// A matcher for `stops`; empty strings are ignored.
    pub fn new(stops: &[String]) -> Self {
        let mut stops: Vec<String> = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        stops.sort();
        stops.dedup();
        Self {
            stops,
            pending: String::new(),
            stopped: false,
            matched: None,
        }
    }

    /// Whether a stop string has been seen.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// The stop string that ended the stream, once one has (Anthropic's
    /// `stop_sequence` reports it).
    pub fn matched(&self) -> Option<&str> {
        self.matched.as_deref()
    }

    /// Feeds the next piece of text.
    pub fn push(&mut self, text: &str) -> StopOutcome {
        if self.stopped {
            return StopOutcome {
                emit: String::new(),
                stopped: true,
            };
        }
        if self.stops.is_empty() {
            return StopOutcome {
                emit: text.to_owned(),
                stopped: false,
            };
        }
        self.pending.push_str(text);
        if let Some((start, stop)) = self.first_completed_match() {
            self.matched = Some(self.stops[stop].clone());
            self.pending.truncate(start);
            self.stopped = true;
            return StopOutcome {
                emit: std::mem::take(&mut self.pending),
                stopped: true,
            };
        }
        let hold = self.held_suffix_len();
        let emit = self.pending[..self.pending.len() - hold].to_owned();
        self.pending.drain(..self.pending.len() - hold);
        StopOutcome {
            emit,
            stopped: false,
        }
    }

    /// Ends the stream: releases any held-back text (nothing if stopped).
    pub fn finish(&mut self) -> String {
        if self.stopped {
            self.pending.clear();
            return String::new();
        }
        std::mem::take(&mut self.pending)
    }

    /// Byte offset where the earliest-completing stop match starts, and
    /// which stop string it is.
    fn first_completed_match(&self) -> Option<(usize, usize)> {
        self.stops
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                self.pending
                    .find(s.as_str())
                    .map(|at| (at + s.len(), at, i))
            })
            .min()
            .map(|(_, start, i)| (start, i))
    }

    /// Length of the longest suffix of `pending` that begins some stop
    /// string (and starts on a character boundary).
    fn held_suffix_len(&self) -> usize {
        let p = &self.pending;
        let longest_stop = self.stops.iter().map(String::len).max().unwrap_or(0);
        let max_hold = p.len().min(longest_stop.saturating_sub(1));
        (1..=max_hold)
            .rev()
            .filter(|&k| p.is_char_boundary(p.len() - k))
            .find(|&k| {
                let tail = &p[p.len() - k..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
#[path = "stop_tests.rs"]
mod tests;
