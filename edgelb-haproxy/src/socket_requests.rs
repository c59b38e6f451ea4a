//! Many HAProxy CLI commands in few requests: the CLI takes `a; b; c` in one request (up to
//! its request buffer) and answers each command with its output and one empty line.
//!
//! Pure helpers, with no host behind them, so that the [`EdgeHost`](crate::EdgeHost) seam
//! and the CLI clients in `cli/` share them without importing each other.

use std::ops::Range;

/// Characters of commands per request, kept well below HAProxy's request buffer
/// (`tune.bufsize`, 16 KiB by default).
pub(crate) const MAX_REQUEST_CHARS: usize = 8 * 1024;

/// `lines` cut into requests: ranges of consecutive lines whose `a; b; c` fits
/// [`MAX_REQUEST_CHARS`] (a longer line alone is a request of its own).
pub(crate) fn batches(lines: &[String]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < lines.len() {
        let mut end = start + 1;
        let mut chars = lines[start].len();
        while end < lines.len() && chars + lines[end].len() + 2 <= MAX_REQUEST_CHARS {
            chars += lines[end].len() + 2;
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

/// Splits the answer to `a; b; c`: each command's answer ends with one empty line (an empty
/// answer is just that line). Answers of `set server` never hold empty lines themselves.
pub(crate) fn split_answers(text: &str) -> Vec<String> {
    let mut answers = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in text.split_inclusive('\n') {
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            answers.push(current.join("\n"));
            current.clear();
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        answers.push(current.join("\n"));
    }
    answers
}

/// Where the answers [`split_answers`] finds in `text` are, as byte ranges (for a text
/// without `\r`, the answers are exactly these slices).
fn answer_ranges(text: &str) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut end, mut open, mut pos) = (0, 0, false, 0);
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches('\n');
        if content.is_empty() {
            ranges.push(start..if open { end } else { start });
            open = false;
            start = pos + line.len();
        } else {
            open = true;
            end = pos + content.len();
        }
        pos += line.len();
    }
    if open {
        ranges.push(start..end);
    }
    ranges
}

/// [`split_answers`] of a text it may take: the last answer (a `show servers state` after
/// runtime commands, say, megabytes at 80,000 servers) is `text` itself, cut to it, not a
/// copy.
pub(crate) fn split_answers_owned(mut text: String) -> Vec<String> {
    if text.contains('\r') {
        return split_answers(&text);
    }
    let ranges = answer_ranges(&text);
    let Some((last, rest)) = ranges.split_last() else {
        return Vec::new();
    };
    let mut answers: Vec<String> = rest
        .iter()
        .map(|range| text.get(range.clone()).unwrap_or_default().to_owned())
        .collect();
    text.truncate(last.end);
    text.drain(..last.start);
    answers.push(text);
    answers
}

/// The answer to a request of one command, without copying `text`: all of it when it holds
/// empty lines of its own (it is all one answer), else it less its closing empty line.
pub(crate) fn alone_answer(text: String) -> Vec<String> {
    if answer_ranges(&text).len() > 1 {
        vec![text]
    } else {
        split_answers_owned(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owned_text_splits_as_a_borrowed_one() {
        let texts = [
            "",
            "\n",
            "\n\n",
            "abc",
            "a\nb\n\nc\n\n",
            "IP changed\n\n\nNo such server.\n\n\n",
            "\n\n1\n# h\nx y\nz w\n\n",
            "a\r\n\r\nb\n",
            "a\n\nlast without its empty line",
        ];
        for text in texts {
            assert_eq!(
                split_answers_owned(text.to_owned()),
                split_answers(text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn one_answer_is_kept_whole_as_split_answers_would_cut_it() {
        for text in [
            "",
            "\n",
            "abc",
            "abc\n",
            "abc\n\n",
            "1\n# h\nx y\n\n",
            "a\r\nb\r\n\r\n",
        ] {
            assert_eq!(
                alone_answer(text.to_owned()),
                split_answers(text),
                "{text:?}"
            );
        }
        // Empty lines of its own: it is all one answer, whole.
        let own = "line 1\n\nline 3\n\n";
        assert_eq!(split_answers(own).len(), 2);
        assert_eq!(alone_answer(own.to_owned()), [own]);
    }

    #[test]
    fn lines_are_cut_into_requests_that_fit() {
        let short: Vec<String> = (0..3)
            .map(|i| format!("set server b/s{i} state ready"))
            .collect();
        assert_eq!(batches(&short), vec![Range { start: 0, end: 3 }]);
        let long = vec![
            "x".repeat(MAX_REQUEST_CHARS - 10),
            "y".repeat(20),
            "z".into(),
        ];
        assert_eq!(batches(&long), [0..1, 1..3]);
        assert!(batches(&[]).is_empty());
        let huge = vec!["h".repeat(MAX_REQUEST_CHARS * 2)];
        assert_eq!(
            batches(&huge),
            vec![Range { start: 0, end: 1 }],
            "a line longer than the buffer goes alone"
        );
    }
}
