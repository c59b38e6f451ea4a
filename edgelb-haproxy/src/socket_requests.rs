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

/// How many answers [`split_answers`] finds in `text`, without splitting it.
fn answer_count(text: &str) -> usize {
    let (mut count, mut open) = (0, false);
    for line in text.split_inclusive('\n') {
        if line.trim_end_matches(['\n', '\r']).is_empty() {
            count += 1;
            open = false;
        } else {
            open = true;
        }
    }
    count + usize::from(open)
}

/// The answer to a request of one command, as [`split_answers`] would give it but without
/// copying `text` (an answer such as `show servers state` can be megabytes): all of it when
/// it holds empty lines of its own (it is all one answer), else it less its closing empty
/// line.
pub(crate) fn alone_answer(text: String) -> Vec<String> {
    match answer_count(&text) {
        0 => Vec::new(),
        1 if !text.contains('\r') => {
            let mut text = text;
            text.truncate(text.trim_end_matches('\n').len());
            vec![text]
        }
        1 => split_answers(&text),
        _ => vec![text],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
