//! An incremental server-sent-events decoder for upstream streams.
//!
//! Bytes arrive in arbitrary pieces (an event, a UTF-8 character or a
//! `\r\n` may be split anywhere); [`SseDecoder::push`] buffers them and
//! returns each complete event. Follows the WHATWG event-stream rules that
//! matter here: lines end with `\n`, `\r\n` or `\r`; a blank line ends an
//! event; `:` starts a comment; `data:` lines of one event are joined with
//! `\n`; one space after the colon is dropped; unknown fields are ignored.
//! An unfinished event at the end of the stream is discarded.

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Decodes a byte stream into events.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The last byte seen was `\r` (a following `\n` belongs to it).
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
}

impl SseDecoder {
    /// A decoder with nothing buffered.
    pub fn new() -> Self {
        SseDecoder::default()
    }

    /// Feeds `bytes`; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &byte in bytes {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' => self.end_line(&mut events),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut events);
                }
                other => self.line.push(other),
            }
        }
        events
    }

    fn end_line(&mut self, events: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                events.push(SseEvent {
                    event: self.event.take(),
                    data,
                });
            }
            self.event = None;
            return;
        }
        let line = String::from_utf8_lossy(&line);
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => match self.data.as_mut() {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut decoder = SseDecoder::new();
        input
            .chunks(piece)
            .flat_map(|bytes| decoder.push(bytes))
            .collect()
    }

    #[test]
    fn events_survive_any_split() {
        let input = ": comment\r\nevent: ping\r\ndata: {}\r\n\r\ndata: a\ndata:b\n\ndata: é\n\n";
        let whole = decode_in_pieces(input.as_bytes(), input.len());
        assert_eq!(
            whole,
            vec![
                SseEvent {
                    event: Some("ping".into()),
                    data: "{}".into()
                },
                SseEvent {
                    event: None,
                    data: "a\nb".into()
                },
                SseEvent {
                    event: None,
                    data: "é".into()
                },
            ]
        );
        for piece in 1..input.len() {
            assert_eq!(
                decode_in_pieces(input.as_bytes(), piece),
                whole,
                "piece {piece}"
            );
        }
    }

    #[test]
    fn unfinished_event_is_not_emitted() {
        assert!(decode_in_pieces(b"data: half", 3).is_empty());
    }

    #[test]
    fn comment_only_blocks_make_no_event() {
        assert!(decode_in_pieces(b": keep-alive\n\n: again\n\n", 4).is_empty());
    }

    #[test]
    fn lone_cr_ends_lines() {
        let events = decode_in_pieces(b"data: x\r\rdata: y\r\r", 1);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].data, "y");
    }
}
