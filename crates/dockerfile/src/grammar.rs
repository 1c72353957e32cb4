//! The pest parser generated from `grammar/dockerfile.pest`. Private: pest's
//! `Rule` and `Pair` never appear in a public signature.
//!
//! A handful of the grammar's rules describe trivially regular text — a
//! flag's `--name=value`, an EXPOSE port, a Go duration, an instruction's
//! head, the tail of a continued line. A pest call costs a few thousand
//! instructions of set-up before it matches anything (a parser state, a
//! token queue, a line index), and a 1 MB Dockerfile needs tens of
//! thousands of such calls, so these rules also have a direct matcher here.
//! The grammar stays the definition: every matcher is tested against its
//! rule on generated input (`tests` below), and the matchers hand anything
//! out of the ordinary (where an error message would come from pest) back
//! to the rule.

/// The generated parser.
#[derive(pest_derive::Parser)]
#[grammar = "../../grammar/dockerfile.pest"]
pub(crate) struct DockerfileGrammar;

/// Rule `flag`: `--name` or `--name=value` → the name and the value.
/// `None` when the text does not start with `--` (the rule fails).
pub(crate) fn flag(raw: &str) -> Option<(&str, Option<&str>)> {
    let body = raw.strip_prefix("--")?;
    Some(match body.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (body, None),
    })
}

/// The tokens of rule `port_spec`: `port_number` (one or two) and
/// `port_proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortTokens<'a> {
    /// The first `port_number`.
    pub low: &'a str,
    /// The second `port_number` of a range.
    pub high: Option<&'a str>,
    /// `port_proto`.
    pub proto: Option<&'a str>,
}

/// Rule `port_spec`; `None` when it does not match.
pub(crate) fn port_spec(text: &str) -> Option<PortTokens<'_>> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (range, proto) = match text.split_once('/') {
        Some((range, proto)) => (range, Some(proto)),
        None => (text, None),
    };
    if proto.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphabetic())) {
        return None;
    }
    let (low, high) = match range.split_once('-') {
        Some((low, high)) => (low, Some(high)),
        None => (range, None),
    };
    if !digits(low) || high.is_some_and(|h| !digits(h)) {
        return None;
    }
    Some(PortTokens { low, high, proto })
}

/// The units of rule `duration_unit`, in the rule's order (PEG: the first
/// that matches wins, so `ms` before `m`).
const DURATION_UNITS: [&str; 8] = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"];

/// Rule `duration`: its `(duration_number, duration_unit)` parts in order;
/// `None` when it does not match.
pub(crate) fn duration(text: &str) -> Option<Vec<(&str, &str)>> {
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        // duration_number: ASCII_DIGIT* ~ ("." ~ ASCII_DIGIT*)?
        let b = rest.as_bytes();
        let mut n = b.iter().take_while(|c| c.is_ascii_digit()).count();
        if b.get(n) == Some(&b'.') {
            n += 1 + b[n + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        }
        let after = &rest[n..];
        let Some(unit) = DURATION_UNITS.iter().find(|u| after.starts_with(**u)) else {
            // This part fails; `duration_part+` ends here, and EOI must follow.
            break;
        };
        parts.push((&rest[..n], *unit));
        rest = &after[unit.len()..];
    }
    (!parts.is_empty() && rest.is_empty()).then_some(parts)
}

/// The characters of rule `hspace`.
const HSPACE: [char; 5] = [' ', '\t', '\u{0B}', '\u{0C}', '\r'];

/// Rule `instruction` on a logical line without a line feed: the
/// `keyword` and the `rest` (empty when absent). `None` — for a line the
/// rule may reject, so that pest reports it — when the text holds a line
/// feed or ends with `hspace`.
pub(crate) fn instruction(text: &str) -> Option<(&str, &str)> {
    if text.contains('\n') {
        return None;
    }
    let Some(i) = text.find(HSPACE) else {
        return Some((text, ""));
    };
    let rest = text[i..].trim_start_matches(HSPACE);
    // `(hspace+ ~ rest)?` needs a character after the spaces.
    (!rest.is_empty()).then_some((&text[..i], rest))
}

/// Rules `continuation_bs` / `continuation_bt` on the tail of a line: the
/// character before the line's last non-blank character (if any), that
/// character, and the trailing spaces and tabs. Whether the tail marks a
/// continued line: it ends with the escape and blanks, and the escape is
/// not itself escaped.
pub(crate) fn continuation(tail: &str, escape: char) -> bool {
    let body = tail.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return false;
    };
    let mut chars = before.chars();
    match (chars.next(), chars.next()) {
        // `continuation_marker` alone.
        (None, _) => true,
        // `continued_last ~ continuation_marker`.
        (Some(c), None) => c != escape,
        // More than one character before the marker: the rule fails.
        (Some(_), Some(_)) => false,
    }
}

/// Rule `words` for text without quotes or the escape character: then a
/// `word` is a run of `plain` characters, so the words are the runs of
/// non-whitespace (`uspace`, Unicode's White_Space, is what
/// `char::is_whitespace` tests). `None` for any other text.
pub(crate) fn plain_words(text: &str, escape: char) -> Option<Vec<String>> {
    if text.contains(['"', '\'', escape]) {
        return None;
    }
    Some(
        text.split(char::is_whitespace)
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

/// Run `rule` over `text` with pest (the tests' oracle): the matched tokens as `(rule, text)`, or `None`.
#[cfg(test)]
fn pest_tokens(rule: Rule, text: &str) -> Option<Vec<(Rule, String)>> {
    use pest::Parser as _;
    let pairs = DockerfileGrammar::parse(rule, text).ok()?;
    Some(
        pairs
            .flatten()
            .map(|p| (p.as_rule(), p.as_str().to_string()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pick(tokens: &[(Rule, String)], rule: Rule) -> Vec<String> {
        tokens
            .iter()
            .filter(|(r, _)| *r == rule)
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn check_flag(raw: &str) {
        let fast = flag(raw).map(|(n, v)| (n.to_string(), v.map(str::to_string)));
        let oracle = pest_tokens(Rule::flag, raw).map(|t| {
            let name = pick(&t, Rule::flag_name).pop().unwrap_or_default();
            (name, pick(&t, Rule::flag_value).pop())
        });
        assert_eq!(fast, oracle, "flag {raw:?}");
    }

    fn check_port(text: &str) {
        let fast = port_spec(text).map(|p| {
            let mut numbers = vec![p.low.to_string()];
            numbers.extend(p.high.map(str::to_string));
            (numbers, p.proto.map(str::to_string))
        });
        let oracle = pest_tokens(Rule::port_spec, text).map(|t| {
            (
                pick(&t, Rule::port_number),
                pick(&t, Rule::port_proto).pop(),
            )
        });
        assert_eq!(fast, oracle, "port {text:?}");
    }

    fn check_duration(text: &str) {
        let fast = duration(text).map(|parts| {
            parts
                .iter()
                .flat_map(|(n, u)| [n.to_string(), u.to_string()])
                .collect::<Vec<_>>()
        });
        let oracle = pest_tokens(Rule::duration, text).map(|t| {
            t.into_iter()
                .filter(|(r, _)| matches!(r, Rule::duration_number | Rule::duration_unit))
                .map(|(_, s)| s)
                .collect::<Vec<_>>()
        });
        assert_eq!(fast, oracle, "duration {text:?}");
    }

    fn check_instruction(text: &str) {
        let oracle = pest_tokens(Rule::instruction, text).map(|t| {
            let keyword = pick(&t, Rule::keyword).pop().unwrap_or_default();
            (keyword, pick(&t, Rule::rest).pop().unwrap_or_default())
        });
        match instruction(text) {
            Some((k, r)) => assert_eq!(
                Some((k.to_string(), r.to_string())),
                oracle,
                "instruction {text:?}"
            ),
            // Handed to pest: only where the rule may fail.
            None => assert!(
                text.contains('\n') || text.ends_with(HSPACE),
                "instruction {text:?} handed back"
            ),
        }
    }

    fn check_words(text: &str) {
        for escape in ['\\', '`'] {
            let Some(fast) = plain_words(text, escape) else {
                assert!(
                    text.contains(['"', '\'', escape]),
                    "words {text:?} handed back"
                );
                continue;
            };
            let input = format!("{escape}{text}");
            let oracle = pest_tokens(Rule::words, &input).map(|t| pick(&t, Rule::word));
            assert_eq!(Some(fast), oracle, "words {text:?} with escape {escape:?}");
        }
    }

    fn check_continuation(tail: &str) {
        for (escape, rule) in [('\\', Rule::continuation_bs), ('`', Rule::continuation_bt)] {
            assert_eq!(
                continuation(tail, escape),
                pest_tokens(rule, tail).is_some(),
                "continuation {tail:?} with escape {escape:?}"
            );
        }
    }

    #[test]
    fn matchers_agree_with_the_grammar_on_examples() {
        for raw in [
            "--from=build",
            "--link",
            "--mount=type=cache,target=/x",
            "--",
            "--=",
            "--a==b",
            "-x",
            "",
            "--chmod=",
            "--é=ü",
        ] {
            check_flag(raw);
        }
        for text in [
            "80",
            "80/tcp",
            "53/UDP",
            "8000-8010",
            "8000-8010/sctp",
            "80-",
            "-80",
            "80/",
            "/tcp",
            "80/tcp/x",
            "80-90-100",
            "80/t1",
            "",
            "99999",
            "8a",
            "٣",
        ] {
            check_port(text);
        }
        for text in [
            "30s",
            "1m30s",
            "1.5h",
            "500ms",
            "0",
            "",
            "s",
            ".s",
            "1.",
            "1.s",
            "1ms5",
            "1m5s",
            "10us",
            "10µs",
            "10μs",
            "3ns",
            "1h2m3s4ms5us6ns",
            "1d",
            "1 s",
            "1sm",
            "1..5s",
        ] {
            check_duration(text);
        }
        for text in [
            "RUN make",
            "run",
            "",
            "FROM  \t debian AS x",
            "ONBUILD RUN a\tb",
            "RUN \u{b}x",
            "X\u{a0}y z",
            "RUN a\nb",
            "RUN ",
            "\tRUN",
        ] {
            check_instruction(text);
        }
        for text in [
            "",
            "a",
            "  a=1  b=2 ",
            "A=\"x y\" B",
            "a\\b c",
            "a`b c",
            "x\u{85}y\u{a0}z\u{1680}w\u{2000}v\u{200a}u\u{2028}t\u{202f}s\u{205f}r\u{3000}q",
            "no\u{180e}break\u{200b}here\u{feff}",
            "tab\tnl\nvt\u{b}ff\u{c}cr\r",
        ] {
            check_words(text);
        }
        for tail in [
            "a\\", "\\", "\\\\", "a\\  \t", "a\\ x", "ab\\", "é\\", "`", "a`", "``", "a` ", "",
            "a", "\\`", "`\\",
        ] {
            check_continuation(tail);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn flag_matches_its_rule(raw in "(--|-)?[a-z=é\\- ]{0,12}") {
            check_flag(&raw);
        }

        #[test]
        fn port_spec_matches_its_rule(text in "[0-9/\\-a-zA-Z٣ ]{0,12}") {
            check_port(&text);
        }

        #[test]
        fn duration_matches_its_rule(text in "[0-9.nsuµμmhd ]{0,14}") {
            check_duration(&text);
        }

        #[test]
        fn instruction_matches_its_rule(text in "[a-zA-Z \t\u{b}\u{c}\r\n\u{a0}\u{85}=-]{0,16}") {
            check_instruction(&text);
        }

        #[test]
        fn plain_words_match_their_rule(text in "[a-z=$:{}\"'`\\\\ \t\n\r\u{b}\u{c}\u{85}\u{a0}\u{1680}\u{180e}\u{2000}-\u{200b}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}\u{feff}é]{0,16}") {
            check_words(&text);
        }

        #[test]
        fn continuation_matches_its_rule(tail in "[a\\\\` \té]{0,5}") {
            check_continuation(&tail);
        }
    }
}
