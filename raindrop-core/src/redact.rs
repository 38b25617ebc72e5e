//! PII redaction: the Python SDK's rules (wire contract, section 11), in its
//! order and with its tokens.
//!
//! Applied on the worker thread to `ai_data.input` and `ai_data.output` of
//! events and interaction updates (and, with
//! [`ClientOptions::redact_pii_in_spans`](crate::ClientOptions::redact_pii_in_spans),
//! to span inputs and outputs: beyond the reference). The patterns are
//! compiled once per process, on first use.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;

/// The bundled list of well-known first names (data, one per line).
const FIRST_NAMES: &str = include_str!("../data/first-names.txt");

const NAME: &str = "<REDACTED_NAME>";

struct Rules {
    /// Rules 1-7: a pattern and its token, in order.
    simple: Vec<(Regex, &'static str)>,
    names: Regex,
    greeting: Regex,
    after_greeting: Regex,
    closing: Regex,
    before_closing: Regex,
    signature: Regex,
}

fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let re = |p: &str| Regex::new(p).expect("redaction patterns are valid");
        let names: Vec<String> = FIRST_NAMES
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(regex::escape)
            .collect();
        Rules {
            simple: vec![
                (
                    re(r#"(?i)\b(api[_-]?key|token|bearer|authorization|auth[_-]?token|access[_-]?token|secret[_-]?key)\s*[:=]\s*["']?[\w-]+["']?"#),
                    "<REDACTED_CREDENTIALS>",
                ),
                (re(r"\b(?:\d[ -]*?){13,19}\b"), "<REDACTED_CREDIT_CARD>"),
                (
                    re(r"(?i)\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Z|a-z]{2,}\b"),
                    "<REDACTED_EMAIL>",
                ),
                (
                    re(r"(\+?1[-.\s]?)?\(?\d{3}\)?[-.\s]?\d{3}[-.\s]?\d{4}\b"),
                    "<REDACTED_PHONE>",
                ),
                (re(r"\b\d{3}[-\s]?\d{2}[-\s]?\d{4}\b"), "<REDACTED_SSN>"),
                (
                    re(r"(?i)\b(pass(word|phrase)?|secret|pwd|passwd)\s*[:=]\s*\S+"),
                    "<REDACTED_SECRET>",
                ),
                (
                    re(r"(?i)\b\d+\s+[A-Za-z\s]+\s+(street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|plaza|pl|terrace|ter|place|way|parkway|pkwy)\b"),
                    "<REDACTED_ADDRESS>",
                ),
            ],
            names: re(&format!(r"(?i)\b({})\b", names.join("|"))),
            greeting: re(r"(?i)(^|\.\s+)(dear|hi|hello|greetings|hey|hey there)[\s-]*"),
            after_greeting: re(r"^\s*([A-Z][a-z]+(?:\s+[A-Z][a-z]+)*)"),
            closing: re(r"(?i)(thx|thanks|thank you|regards|best|[a-z]+ly|[a-z]+ regards|all the best|happy [a-z]+ing|take care|have a [a-z]+ (weekend|night|day))\s*[,.!]*"),
            before_closing: re(r"([A-Z][a-z]+(?:\s+[A-Z][a-z]+)*)\s*$"),
            signature: re(r"^[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*[,.]?$"),
        }
    })
}

/// Redacts PII from `text` with the Python SDK's rules, in its order:
/// credentials, card numbers, e-mail addresses, phone numbers, SSNs,
/// passwords and secrets, street addresses, then names (well-known first
/// names, capitalised words after a greeting or before a closing, and short
/// signature-like lines). IP addresses, URLs, user names and ZIP codes are
/// left alone, as in the reference. Text with no match is returned borrowed.
///
/// ```
/// let out = raindrop_core::redact_pii("mail bob@example.com or call 415-555-0123");
/// assert_eq!(out, "mail <REDACTED_EMAIL> or call <REDACTED_PHONE>");
/// ```
pub fn redact_pii(text: &str) -> Cow<'_, str> {
    let r = rules();
    let mut out: Cow<'_, str> = Cow::Borrowed(text);
    for (re, token) in &r.simple {
        replace_all(&mut out, re, token);
    }
    replace_all(&mut out, &r.names, NAME);
    redact_contextual_names(r, &mut out);
    out
}

fn replace_all(text: &mut Cow<'_, str>, re: &Regex, token: &str) {
    if let Cow::Owned(s) = re.replace_all(text, regex::NoExpand(token)) {
        *text = Cow::Owned(s);
    }
}

/// Names by context: after a greeting, before a closing, signature lines.
fn redact_contextual_names(r: &Rules, text: &mut Cow<'_, str>) {
    // After greetings, last first so earlier positions stay valid.
    let spots: Vec<usize> = r.greeting.find_iter(text).map(|m| m.end()).collect();
    for start in spots.into_iter().rev() {
        let Some(name) = r
            .after_greeting
            .captures(&text[start..])
            .and_then(|c| c.get(1))
        else {
            continue;
        };
        let (a, b) = (start + name.start(), start + name.end());
        // Cloned at most once, then edited in place.
        text.to_mut().replace_range(a..b, NAME);
    }
    // Before closings and signature lines, line by line, in one pass; the
    // text is rebuilt only if some line changed.
    let mut changed = false;
    let lines: Vec<Cow<'_, str>> = text
        .split('\n')
        .map(|line| {
            let mut line = Cow::Borrowed(line);
            if let Some(c) = r.closing.find(&line) {
                let before = &line[..c.start()];
                if let Some(n) = r.before_closing.captures(before).and_then(|m| m.get(1)) {
                    let named = format!(
                        "{}{NAME}{}{}",
                        &before[..n.start()],
                        &before[n.end()..],
                        &line[c.start()..]
                    );
                    line = Cow::Owned(named);
                }
            }
            if is_signature(r, &line) && !line.contains(NAME) {
                line = Cow::Owned(line.replace(line.trim(), NAME));
            }
            changed |= matches!(line, Cow::Owned(_));
            line
        })
        .collect();
    if changed {
        let joined = lines.join("\n");
        *text = Cow::Owned(joined);
    }
}

/// A short line of capitalised words only (a signature).
fn is_signature(r: &Rules, line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && t.chars().count() < 50 && r.signature.is_match(t)
}

#[cfg(test)]
mod tests {
    use super::redact_pii;

    /// Each rule, overlaps, rule order, and what is deliberately left alone.
    #[test]
    fn table() {
        let cases: &[(&str, &str)] = &[
            ("no pii here at all", "no pii here at all"),
            ("api_key=sk-abc123 ok", "<REDACTED_CREDENTIALS> ok"),
            (
                "Authorization: 'abc-def' done",
                "<REDACTED_CREDENTIALS> done",
            ),
            (
                "card 4111 1111 1111 1111 ok",
                "card <REDACTED_CREDIT_CARD> ok",
            ),
            ("card 4111-1111-1111-1111", "card <REDACTED_CREDIT_CARD>"),
            (
                "write to bob@example.com now",
                "write to <REDACTED_EMAIL> now",
            ),
            ("call (415) 555-0123 today", "call <REDACTED_PHONE> today"),
            ("call +1 415.555.0123", "call <REDACTED_PHONE>"),
            ("ssn 123-45-6789 on file", "ssn <REDACTED_SSN> on file"),
            ("password: hunter2 is bad", "<REDACTED_SECRET> is bad"),
            ("pwd=x secret=y", "<REDACTED_SECRET> <REDACTED_SECRET>"),
            (
                "ship to 221 baker street now",
                "ship to <REDACTED_ADDRESS> now",
            ),
            ("ask james about it", "ask <REDACTED_NAME> about it"),
            ("hello Zorblax, welcome", "hello <REDACTED_NAME>, welcome"),
            (
                "see you soon\nZorblax Quux",
                "see you soon\n<REDACTED_NAME>",
            ),
            ("Zorblax thanks", "<REDACTED_NAME> thanks"),
            // Order: the credential rule takes `token=...` before the
            // secret rule could, and a phone-shaped run inside a card number
            // goes with the card.
            (
                "token=abc secret=def",
                "<REDACTED_CREDENTIALS> <REDACTED_SECRET>",
            ),
            ("4111111111111111", "<REDACTED_CREDIT_CARD>"),
            // Deliberately not redacted: IPs, URLs, user names, ZIP codes.
            ("host 10.0.0.1 is up", "host 10.0.0.1 is up"),
            (
                "see https://example.com/a?b=c",
                "see https://example.com/a?b=c",
            ),
            ("user @zorblax posted", "user @zorblax posted"),
            ("zip 94107 is sf", "zip 94107 is sf"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_pii(input), *want, "input: {input:?}");
        }
    }

    #[test]
    fn text_with_no_match_is_borrowed() {
        assert!(matches!(
            redact_pii("nothing to see"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
