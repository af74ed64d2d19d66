//! Console notes: the hidden annotations Jenkins writes into a raw build log, and their removal
//! when the log is served as plain text.
//!
//! A note is `ESC[8mha:` (`ConsoleNote.PREAMBLE`), the base64 of
//! `int(-mac length) · mac · int(size) · size bytes of a gzipped serialized ConsoleNote`, then
//! `ESC[0m` (`ConsoleNote.POSTAMBLE`); with Jenkins' 32-byte MAC the base64 starts `////4`. It is
//! written just before the text it annotates: `Started by user ‹HyperlinkNote›admin`, and a
//! `NewNodeConsoleNote` at the start of every `[Pipeline] …` line.
//!
//! The stand-in's notes have the framing, lengths and gzip header of real ones, but their MAC and
//! gzipped bytes are random: nothing decodes them into a ConsoleNote (the stand-in has no
//! `progressiveHtml`), they are only there to be stripped.
//!
//! [`strip_notes`] is Jenkins' `PlainTextConsoleOutputStream` (what `progressiveText` and
//! `consoleText` serve): line by line (a line ends after `\n`), every preamble is skipped with
//! `ConsoleNote.skip`, which reads the lengths from the base64 and then skips four more bytes
//! (the postamble) without looking at them. A well-formed note thus goes whole; where the bytes
//! are not a well-formed note, what `skip` read before it failed is dropped and the rest of the
//! line is kept. Bytes without a preamble are kept as they are, so the end of a note cut by a
//! `start` inside it is served as is.

use base64::Engine;

/// `ConsoleNote.PREAMBLE`: `ESC[8mha:`.
pub const PREAMBLE: &[u8] = b"\x1b[8mha:";
/// `ConsoleNote.POSTAMBLE`: `ESC[0m`.
pub const POSTAMBLE: &[u8] = b"\x1b[0m";

/// The MAC Jenkins puts in front of a note (HMAC-SHA256).
const MAC_LENGTH: usize = 32;

/// The header `java.util.zip.GZIPOutputStream` writes.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];

/// A `hudson.console.HyperlinkNote` (`ModelHyperlinkNote.encodeTo(url, text)`), to be written just
/// before `text`.
pub fn hyperlink(url: &str, text: &str) -> Vec<u8> {
    // The serialized note holds its class, the URL and the length of the linked text.
    encode(136 + url.len() + text.len().to_string().len())
}

/// A `NewNodeConsoleNote` of Pipeline, written at the start of every `[Pipeline] …` line.
pub fn new_node() -> Vec<u8> {
    encode(165)
}

/// A note of this framing whose gzipped part is `gzipped_length` bytes long.
fn encode(gzipped_length: usize) -> Vec<u8> {
    let gzipped_length = gzipped_length.max(GZIP_HEADER.len());
    let mut decoded = Vec::with_capacity(8 + MAC_LENGTH + gzipped_length);
    decoded.extend_from_slice(&(-(MAC_LENGTH as i32)).to_be_bytes());
    decoded.extend_from_slice(&random_bytes(MAC_LENGTH));
    decoded.extend_from_slice(&(gzipped_length as i32).to_be_bytes());
    decoded.extend_from_slice(&GZIP_HEADER);
    decoded.extend_from_slice(&random_bytes(gzipped_length - GZIP_HEADER.len()));
    let mut note = PREAMBLE.to_vec();
    note.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(decoded).as_bytes());
    note.extend_from_slice(POSTAMBLE);
    note
}

fn random_bytes(length: usize) -> Vec<u8> {
    std::iter::repeat_with(|| uuid::Uuid::new_v4().into_bytes()).flatten().take(length).collect()
}

/// The log as `PlainTextConsoleOutputStream` writes it: without its console notes.
pub fn strip_notes(raw: &[u8]) -> Vec<u8> {
    let mut plain = Vec::with_capacity(raw.len());
    // `LineTransformationOutputStream`: whole lines, and at the end what is left.
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let mut written = 0;
        while let Some(next) = find_preamble(line, written) {
            plain.extend_from_slice(&line[written..next]);
            written = next + skip(&line[next..]);
        }
        plain.extend_from_slice(&line[written..]);
    }
    plain
}

/// `ConsoleNote.findPreamble`.
fn find_preamble(line: &[u8], from: usize) -> Option<usize> {
    line.get(from..)?.windows(PREAMBLE.len()).position(|w| w == PREAMBLE).map(|at| from + at)
}

/// `ConsoleNote.skip` on a line from a preamble: the number of bytes it consumed, also when it
/// failed (`PlainTextConsoleOutputStream` then goes on after what was consumed).
fn skip(from_preamble: &[u8]) -> usize {
    let mut note = NoteReader { input: from_preamble, position: PREAMBLE.len(), decoded: Vec::new(), eof: false };
    let _ = note.skip_body();
    note.position
}

/// The base64 after a preamble, read as `Base64.getDecoder().wrap(in)` reads it: four
/// characters at a time, consumed as they are read.
struct NoteReader<'a> {
    input: &'a [u8],
    /// Bytes of the input consumed so far.
    position: usize,
    /// Decoded bytes not handed out yet, in reverse order.
    decoded: Vec<u8>,
    eof: bool,
}

/// `ConsoleNote.skip` failed (an `IOException` or `EOFException`).
struct Malformed;

impl NoteReader<'_> {
    fn skip_body(&mut self) -> Result<(), Malformed> {
        let mac_length = self.read_int()?.wrapping_neg();
        let length = if mac_length > 0 {
            self.skip_decoded(mac_length)?;
            self.read_int()?
        } else {
            mac_length.wrapping_neg() // the format before MACs: the length alone
        };
        self.skip_decoded(length)?;
        // The postamble: four bytes, not checked.
        let postamble_end = self.position + POSTAMBLE.len();
        self.position = postamble_end.min(self.input.len());
        if postamble_end > self.input.len() {
            return Err(Malformed);
        }
        Ok(())
    }

    fn read_int(&mut self) -> Result<i32, Malformed> {
        let mut bytes = [0; 4];
        for byte in &mut bytes {
            *byte = self.next_byte()?;
        }
        Ok(i32::from_be_bytes(bytes))
    }

    fn skip_decoded(&mut self, count: i32) -> Result<(), Malformed> {
        if count < 0 {
            return Err(Malformed);
        }
        for _ in 0..count {
            self.next_byte()?;
        }
        Ok(())
    }

    fn next_byte(&mut self) -> Result<u8, Malformed> {
        if self.decoded.is_empty() {
            self.decode_group()?;
        }
        self.decoded.pop().ok_or(Malformed)
    }

    /// Decodes the next group of (up to) four characters.
    fn decode_group(&mut self) -> Result<(), Malformed> {
        if self.eof {
            return Err(Malformed);
        }
        let mut bits: u32 = 0;
        let mut count = 0;
        let bytes: Vec<u8> = loop {
            let Some(&c) = self.input.get(self.position) else {
                // The end of the line: `xx` and `xxx` without padding are accepted.
                self.eof = true;
                break match count {
                    2 => vec![(bits >> 4) as u8],
                    3 => vec![(bits >> 10) as u8, (bits >> 2) as u8],
                    _ => return Err(Malformed),
                };
            };
            self.position += 1;
            if c == b'=' {
                self.eof = true;
                break match count {
                    2 => {
                        // `xx=` must be followed by a second `=`, which is read either way.
                        let second = self.input.get(self.position).copied();
                        if second.is_some() {
                            self.position += 1;
                        }
                        if second != Some(b'=') {
                            return Err(Malformed);
                        }
                        vec![(bits >> 4) as u8]
                    }
                    3 => vec![(bits >> 10) as u8, (bits >> 2) as u8],
                    _ => return Err(Malformed),
                };
            }
            let value = sextet(c).ok_or(Malformed)?;
            bits = (bits << 6) | u32::from(value);
            count += 1;
            if count == 4 {
                break vec![(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
            }
        };
        self.decoded = bytes.into_iter().rev().collect();
        Ok(())
    }
}

/// The value of a character of the standard base64 alphabet.
fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_with(note: &[u8]) -> Vec<u8> {
        [b"Started by user ".as_slice(), note, b"admin\n"].concat()
    }

    #[test]
    fn notes_are_framed_as_jenkins_writes_them() {
        for note in [hyperlink("/user/admin", "admin"), new_node()] {
            assert!(note.starts_with(b"\x1b[8mha:////4"), "{}", String::from_utf8_lossy(&note));
            assert!(note.ends_with(b"\x1b[0m"));
            let base64 = &note[PREAMBLE.len()..note.len() - POSTAMBLE.len()];
            assert!(base64.iter().all(|&c| sextet(c).is_some() || c == b'='), "{}", String::from_utf8_lossy(base64));
            let decoded = base64::engine::general_purpose::STANDARD.decode(base64).expect("base64");
            assert_eq!(decoded[..4], (-32i32).to_be_bytes());
            let length = i32::from_be_bytes(decoded[36..40].try_into().expect("4 bytes")) as usize;
            assert_eq!(decoded.len(), 40 + length);
            assert_eq!(decoded[40..50], GZIP_HEADER);
            assert!(note.len() > 200, "as long as real notes: {}", note.len());
        }
    }

    #[test]
    fn well_formed_notes_are_removed_whole() {
        let mut raw = line_with(&hyperlink("/user/admin", "admin"));
        raw.extend_from_slice(&[new_node(), b"[Pipeline] Start of Pipeline\n".to_vec()].concat());
        raw.extend_from_slice(&[new_node(), b"[Pipeline] sh".to_vec(), new_node(), b" twice\n".to_vec()].concat());
        raw.extend_from_slice(&[b"no newline at the end ".to_vec(), new_node()].concat());
        assert_eq!(
            String::from_utf8(strip_notes(&raw)).expect("utf-8"),
            "Started by user admin\n[Pipeline] Start of Pipeline\n[Pipeline] sh twice\nno newline at the end "
        );
        assert_eq!(strip_notes(b"plain text\nonly\n"), b"plain text\nonly\n");
        assert_eq!(strip_notes(b""), b"");
    }

    #[test]
    fn the_end_of_a_note_cut_by_the_start_is_kept() {
        let note = hyperlink("/user/admin", "admin");
        let raw = [line_with(&note), new_node(), b"[Pipeline] node\n".to_vec()].concat();
        let cut = "Started by user ".len() + 3; // inside the preamble
        let mut expected = note[3..].to_vec();
        expected.extend_from_slice(b"admin\n[Pipeline] node\n");
        assert_eq!(strip_notes(&raw[cut..]), expected);
        let cut = "Started by user ".len() + 40; // inside the base64
        assert_eq!(strip_notes(&raw[cut..]), [&note[40..], b"admin\n[Pipeline] node\n".as_slice()].concat());
    }

    #[test]
    fn malformed_notes_lose_what_skip_read() {
        // An illegal base64 character: consumed with what came before it.
        assert_eq!(strip_notes(b"a\x1b[8mha:AB$cd\nnext\n"), b"acd\nnext\n");
        // The line ends inside the base64: the rest of the line, newline included, is read.
        assert_eq!(strip_notes(b"a\x1b[8mha:////4AAA\nnext\n"), b"anext\n");
        // The postamble is not checked: any four bytes after the note's length are skipped.
        let note = new_node();
        let unchecked = [&note[..note.len() - POSTAMBLE.len()], b"XXXXtext\n".as_slice()].concat();
        assert_eq!(strip_notes(&unchecked), b"text\n");
        // A bare preamble and postamble: the postamble is an illegal character.
        assert_eq!(strip_notes(b"\x1b[8mha:\x1b[0mtext\n"), b"[0mtext\n");
    }
}
