//! Property-based fuzzing of the relay's pure parts (issue 6): the line splitting of Kafka log
//! delivery (long lines in pieces among it) and the legacy message envelope. `PROPTEST_CASES`
//! sets the run length.

use proptest::prelude::*;
use serde_json::Value;

use std::collections::VecDeque;

use bytes::Bytes;

use super::feed_range;
use super::kafka_log::{complete_lines, legacy_message, KAFKA_LINE_MAX_BYTES};

/// Log text with many line ends, `\r\n` ones and long lines among them, and UTF-8 text with
/// characters of every width.
fn log_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        prop::collection::vec(prop_oneof![4 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'\r')], 0..400),
        "([a-z ]{0,20}(\r?\n)?){0,20}".prop_map(String::into_bytes),
        "([a-z é€😀]{0,30}(\r?\n)?){0,20}".prop_map(String::into_bytes),
    ]
}

/// The most bytes a message carries: the product's, or one small enough that lines of
/// [`log_text`] go in pieces.
fn max_bytes() -> impl Strategy<Value = usize> {
    prop_oneof![Just(KAFKA_LINE_MAX_BYTES), 1..40usize]
}

proptest! {
    #[test]
    fn fuzz_complete_lines_cover_the_text_in_order(
        text in log_text(),
        from in prop_oneof![Just(0u64), any::<u32>().prop_map(u64::from)],
        whole in any::<bool>(),
        max in max_bytes(),
    ) {
        let (lines, reached) = complete_lines(&text, from, whole, max);
        let mut offset = from;
        for (i, (at, line)) in lines.iter().enumerate() {
            prop_assert_eq!(*at, offset, "lines are contiguous");
            prop_assert!(!line.is_empty());
            prop_assert!(line.len() <= max || (line.len() == max + 1 && line.ends_with(b"\n")), "no message is longer than the limit and its newline");
            prop_assert!(!line[..line.len() - 1].contains(&b'\n'), "one line per message");
            let last_of_whole_log = whole && i + 1 == lines.len();
            if !line.ends_with(b"\n") && !last_of_whole_log {
                // A piece of a longer line: the limit, or less the character it would cut.
                prop_assert!(line.len() + 3 >= max, "a line is cut only at the limit");
            }
            offset += line.len() as u64;
        }
        prop_assert_eq!(reached, offset);
        let covered = usize::try_from(reached - from).unwrap();
        prop_assert_eq!(lines.iter().flat_map(|(_, l)| l.iter().copied()).collect::<Vec<u8>>(), text[..covered].to_vec());
        if whole {
            prop_assert_eq!(covered, text.len(), "the whole log is sent, its last line too");
        } else {
            prop_assert!(!text[covered..].contains(&b'\n'), "only a partial line is held back");
            prop_assert!(text.len() - covered <= max, "only a line no longer than the limit is held back");
        }
        if std::str::from_utf8(&text).is_ok() && max >= 4 {
            prop_assert!(lines.iter().all(|(_, l)| std::str::from_utf8(l).is_ok()), "no character is cut in two");
        }
    }

    #[test]
    fn fuzz_complete_lines_do_not_depend_on_how_the_log_arrived(text in log_text(), cut in any::<prop::sample::Index>(), max in max_bytes()) {
        // A read that ends inside a line, then a read from where the first reached, yield the
        // lines (and pieces of lines) one read of the whole log yields.
        let cut = cut.index(text.len() + 1);
        let (first, reached) = complete_lines(&text[..cut], 0, false, max);
        let rest = &text[usize::try_from(reached).unwrap()..];
        let (second, end) = complete_lines(rest, reached, true, max);
        let (at_once, at_once_end) = complete_lines(&text, 0, true, max);
        prop_assert_eq!(first.into_iter().chain(second).collect::<Vec<_>>(), at_once);
        prop_assert_eq!(end, at_once_end);
    }

    #[test]
    fn fuzz_legacy_message_carries_the_line(key in ".{0,20}", number in prop::option::of(any::<u64>()), line in log_text()) {
        let message = legacy_message(&key.as_str().into(), number, &line);
        prop_assert_eq!(&*message.key, key.as_str());
        let envelope: Value = serde_json::from_slice(&message.payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let text = line.strip_suffix(b"\n").map_or(&line[..], |text| text.strip_suffix(b"\r").unwrap_or(text));
        prop_assert_eq!(&envelope["message"], &Value::String(String::from_utf8_lossy(text).into_owned()));
        prop_assert_eq!(&envelope["metadata"], &Value::String(key));
        prop_assert_eq!(&envelope["build"], &number.map_or(Value::Null, Value::from));
        prop_assert_eq!(&envelope["job"], &Value::String(number.map(|n| n.to_string()).unwrap_or_default()));
    }
}

#[test]
fn a_line_longer_than_the_limit_goes_in_pieces_and_its_short_rest_waits() {
    let limit = KAFKA_LINE_MAX_BYTES;
    // No newline anywhere, and bytes that differ along the line, so that order shows.
    let line: Vec<u8> = (0..3 * limit + 10).map(|i| b'a' + (i % 26) as u8).collect();
    let from = 1000;
    let (pieces, reached) = complete_lines(&line, from, false, limit);
    let expected: Vec<(u64, &[u8])> = (0..3).map(|i| (from + (i * limit) as u64, &line[i * limit..(i + 1) * limit])).collect();
    assert_eq!(pieces, expected, "three pieces of the limit, in order, each at the offset of its first byte");
    assert_eq!(reached, from + 3 * limit as u64, "the last 10 bytes wait for the rest of their line");
    // The rest of the line arrives: its last piece goes with the newline.
    let rest = [&line[3 * limit..], b"\n"].concat();
    assert_eq!(complete_lines(&rest, reached, false, limit), (vec![(reached, &rest[..])], reached + 11));
    // Or the build's log is whole: the rest goes as it is.
    let (pieces, reached) = complete_lines(&line, from, true, limit);
    assert_eq!(pieces.len(), 4);
    assert_eq!(pieces[3], (from + 3 * limit as u64, &line[3 * limit..]));
    assert_eq!(reached, from + line.len() as u64);
}

#[test]
fn a_line_of_the_limit_and_its_newline_is_one_message() {
    let limit = KAFKA_LINE_MAX_BYTES;
    let line = [vec![b'a'; limit], b"\n".to_vec()].concat();
    assert_eq!(complete_lines(&line, 0, false, limit), (vec![(0, &line[..])], line.len() as u64));
    // Without its newline yet, it waits: the next byte may end it.
    assert_eq!(complete_lines(&line[..limit], 0, false, limit), (vec![], 0));
}

#[test]
fn a_legacy_piece_keeps_the_carriage_return_it_ends_in() {
    let message = |line: &[u8]| -> Value { serde_json::from_slice(&legacy_message(&"app-space".into(), Some(3), line).payload).unwrap() };
    assert_eq!(message(b"50%\r")["message"], "50%\r", "a piece cut after a progress bar's \\r");
    assert_eq!(message(b"done\r\n")["message"], "done", "a line's end, \\r\\n");
    assert_eq!(message(b"done\n")["message"], "done");
}

#[test]
fn a_long_line_is_cut_between_characters() {
    let limit = KAFKA_LINE_MAX_BYTES;
    // `x` then two-byte characters: the limit's last byte is the first half of one.
    let line = format!("x{}\n", "é".repeat(limit));
    let (pieces, reached) = complete_lines(line.as_bytes(), 0, false, limit);
    assert_eq!(pieces[0].1.len(), limit - 1, "the character the limit would cut starts the next piece");
    assert!(pieces.iter().all(|(_, piece)| std::str::from_utf8(piece).is_ok()));
    assert_eq!(pieces.iter().flat_map(|(_, piece)| piece.iter().copied()).collect::<Vec<u8>>(), line.as_bytes());
    assert_eq!(reached, line.len() as u64);
}

#[test]
fn the_feed_gives_any_range_it_holds_across_its_chunks() {
    let text: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    // Chunks of 1000, 1000 and 1000 bytes from archive offset 500.
    let feed: VecDeque<(u64, Bytes)> =
        (0..3).map(|i| (500 + i * 1000, Bytes::copy_from_slice(&text[i as usize * 1000..(i as usize + 1) * 1000]))).collect();
    for (from, stop) in [(500, 1500), (600, 700), (1400, 1600), (999, 3500), (500, 3500), (3499, 3500)] {
        let range = feed_range(&feed, from, stop);
        assert_eq!(range.as_ref(), &text[(from - 500) as usize..(stop - 500) as usize], "{from}..{stop}");
    }
    let within = feed_range(&feed, 600, 700);
    assert_eq!(within.as_ptr(), feed[0].1[100..].as_ptr(), "a part of one chunk is not copied");
}
