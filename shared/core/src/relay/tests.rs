//! Property-based fuzzing of the relay's pure parts (issue 6): the line splitting of Kafka log
//! delivery and the legacy message envelope. `PROPTEST_CASES` sets the run length.

use proptest::prelude::*;
use serde_json::Value;

use std::collections::VecDeque;

use bytes::Bytes;

use super::{complete_lines, feed_range, legacy_message};

/// Log text with many line ends, `\r\n` ones and long lines among them.
fn log_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        prop::collection::vec(prop_oneof![4 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'\r')], 0..400),
        "([a-z ]{0,20}(\r?\n)?){0,20}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #[test]
    fn fuzz_complete_lines_cover_the_text_in_order(text in log_text(), from in prop_oneof![Just(0u64), any::<u32>().prop_map(u64::from)], whole in any::<bool>()) {
        let (lines, reached) = complete_lines(&text, from, whole);
        let mut offset = from;
        for (at, line) in &lines {
            prop_assert_eq!(*at, offset, "lines are contiguous");
            prop_assert!(!line.is_empty());
            prop_assert!(!line[..line.len() - 1].contains(&b'\n'), "one line per message");
            offset += line.len() as u64;
        }
        prop_assert_eq!(reached, offset);
        let covered = usize::try_from(reached - from).unwrap();
        prop_assert_eq!(lines.iter().flat_map(|(_, l)| l.iter().copied()).collect::<Vec<u8>>(), text[..covered].to_vec());
        if whole {
            prop_assert_eq!(covered, text.len(), "the whole log is sent, its last line too");
        } else {
            prop_assert!(lines.iter().all(|(_, l)| l.ends_with(b"\n")), "a partial line is held back");
            prop_assert!(!text[covered..].contains(&b'\n'), "only a partial line is held back");
        }
    }

    #[test]
    fn fuzz_complete_lines_do_not_depend_on_how_the_log_arrived(text in log_text(), cut in any::<prop::sample::Index>()) {
        // A read that ends inside a line, then a read from where the first reached, yield the
        // lines one read of the whole log yields.
        let cut = cut.index(text.len() + 1);
        let (first, reached) = complete_lines(&text[..cut], 0, false);
        let rest = &text[usize::try_from(reached).unwrap()..];
        let (second, end) = complete_lines(rest, reached, true);
        let (at_once, at_once_end) = complete_lines(&text, 0, true);
        prop_assert_eq!(first.into_iter().chain(second).collect::<Vec<_>>(), at_once);
        prop_assert_eq!(end, at_once_end);
    }

    #[test]
    fn fuzz_legacy_message_carries_the_line(key in ".{0,20}", number in prop::option::of(any::<u64>()), line in log_text()) {
        let message = legacy_message(&key, number, &line);
        prop_assert_eq!(&message.key, &key);
        let envelope: Value = serde_json::from_slice(&message.payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        prop_assert_eq!(&envelope["message"], &Value::String(String::from_utf8_lossy(text).into_owned()));
        prop_assert_eq!(&envelope["metadata"], &Value::String(key));
        prop_assert_eq!(&envelope["build"], &number.map_or(Value::Null, Value::from));
        prop_assert_eq!(&envelope["job"], &Value::String(number.map(|n| n.to_string()).unwrap_or_default()));
    }
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
