//! PII redaction: the Python SDK's rules (wire contract, section 11), in its
//! order and with its tokens.
//!
//! Applied on the worker thread to `ai_data.input` and `ai_data.output` of
//! events and interaction updates (and, with
//! [`ClientOptions::redact_pii_in_spans`](crate::ClientOptions::redact_pii_in_spans),
//! to span inputs and outputs: beyond the reference). The patterns and the
//! set of first names are built once per process, on first use.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use regex::Regex;

/// The bundled list of first names, lowercase, one per line: about 20,000
/// from many cultures (origin and licence in `data/first-names.NOTICE.md`).
const FIRST_NAMES: &str = include_str!("../data/first-names.txt");

const NAME: &str = "<REDACTED_NAME>";

struct Rules {
    /// Rules 1-7: a pattern and its token, in order.
    simple: Vec<(Regex, &'static str)>,
    names: FirstNames,
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
            names: FirstNames::parse(FIRST_NAMES),
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
    r.names.redact(&mut out);
    redact_contextual_names(r, &mut out);
    out
}

/// The names rule: every word that is a listed first name, in any case.
///
/// The Python SDK builds one alternation regex of its whole list; with
/// 20,000 names that is a large automaton, slow to build and to run. A
/// word-by-word set lookup gives the same matches for a list of single
/// words (a name matches only a whole word: `\b` on both sides) in one
/// linear pass.
struct FirstNames {
    set: HashSet<Box<str>, BuildHasherDefault<Fnv1a>>,
    /// Bytes of the longest name: longer words are not looked up.
    longest: usize,
}

impl FirstNames {
    fn parse(list: &str) -> FirstNames {
        let set: HashSet<Box<str>, BuildHasherDefault<Fnv1a>> = list
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.to_lowercase().into_boxed_str())
            .collect();
        let longest = set.iter().map(|n| n.len()).max().unwrap_or(0);
        FirstNames { set, longest }
    }

    fn contains(&self, word: &str, lower: &mut String) -> bool {
        if word.len() < 2 || word.len() > self.longest * 3 {
            // Every name has two characters or more; lowercasing a
            // character shrinks its bytes at most threefold (the Kelvin
            // sign): a word this long is no name in any case.
            return false;
        }
        lower.clear();
        if word.is_ascii() {
            lower.push_str(word);
            lower.make_ascii_lowercase();
        } else {
            // `str::to_lowercase` knows a word-final sigma, as the list does.
            lower.push_str(&word.to_lowercase());
        }
        self.set.contains(lower.as_str())
    }

    fn redact(&self, text: &mut Cow<'_, str>) {
        let mut out: Option<String> = None;
        let mut copied = 0;
        let mut lower = String::new();
        for (start, word) in words(text) {
            if self.contains(word, &mut lower) {
                let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
                o.push_str(&text[copied..start]);
                o.push_str(NAME);
                copied = start + word.len();
            }
        }
        if let Some(mut o) = out {
            o.push_str(&text[copied..]);
            *text = Cow::Owned(o);
        }
    }
}

/// FNV-1a: the set is looked up once per word of every text, and for keys
/// this short SipHash (the default) was most of the rule's cost. The keys
/// are a fixed list, so there is no flooding to defend against: a text can
/// only look names up, never add any.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The words of `text` with their byte offsets: maximal runs of the
/// characters the regex `\w` matches, so a word ends where the other
/// rules' `\b` sees a boundary.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let start = loop {
            if at >= text.len() {
                return None;
            }
            let (is_word, len) = char_at(text, at);
            at += len;
            if is_word {
                break at - len;
            }
        };
        while at < text.len() {
            let (is_word, len) = char_at(text, at);
            if !is_word {
                break;
            }
            at += len;
        }
        Some((start, &text[start..at]))
    })
}

/// Whether the character at byte `at` (a character boundary) is a word
/// character, and its length in bytes. ASCII, most of any text, is decided
/// without the Unicode table.
fn char_at(text: &str, at: usize) -> (bool, usize) {
    let b = text.as_bytes()[at];
    if b.is_ascii() {
        return (b.is_ascii_alphanumeric() || b == b'_', 1);
    }
    match text[at..].chars().next() {
        Some(c) => (regex_syntax::is_word_character(c), c.len_utf8()),
        None => (false, 1),
    }
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

    /// Names the earlier 172-name list did not know, from several cultures
    /// and scripts, in any case and next to punctuation.
    #[test]
    fn names_of_many_cultures_are_redacted() {
        for name in [
            "Abimbola",
            "Oluwaseun",
            "Amahle",
            "Deniz",
            "Mehmet",
            "Aaditya",
            "Priya",
            "Alejandro",
            "Aurélie",
            "Giuseppe",
            "Chiara",
            "Björn",
            "Søren",
            "أحمد",
            "Иван",
            "אביגיל",
            "가람",
            "ΑΛΈΞΑΝΔΡΟΣ",
        ] {
            let text = format!("ticket from {name}: printer broken ({name})");
            assert_eq!(
                redact_pii(&text),
                "ticket from <REDACTED_NAME>: printer broken (<REDACTED_NAME>)",
                "{name}"
            );
        }
        // A name inside a longer word is not a name.
        assert_eq!(redact_pii("abimbolaX pricey"), "abimbolaX pricey");
    }

    /// Like the Python SDK, any word of the list is redacted whatever its
    /// case, so names that are also English words go too. Words that are
    /// names only elsewhere, and function words, are not in the list.
    #[test]
    fn common_words_that_are_names() {
        let cases: &[(&str, &str)] = &[
            ("Mark my words", "<REDACTED_NAME> my words"),
            (
                "mark it done, grace period",
                "<REDACTED_NAME> it done, <REDACTED_NAME> period",
            ),
            ("we hope so", "we <REDACTED_NAME> so"),
            ("you can and will and may go", "you can and will and may go"),
            (
                "the server is on the floor among others",
                "the server is on the floor among others",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_pii(input), *want, "input: {input:?}");
        }
    }

    /// Every entry is one lowercase word as the tokenizer splits text, or
    /// it could never match; and the list has the coverage it claims.
    #[test]
    fn the_list_is_single_lowercase_words() {
        let names = super::FirstNames::parse(super::FIRST_NAMES);
        assert!(names.set.len() > 20_000, "{}", names.set.len());
        for n in &names.set {
            let words: Vec<_> = super::words(n).collect();
            assert_eq!(words, [(0, &**n)], "{n:?}");
            assert_eq!(n.to_lowercase(), **n, "{n:?}");
        }
    }

    /// The set lookup redacts exactly what the alternation regex of the
    /// same names did (`(?i)\b(n1|n2|...)\b`, the earlier implementation
    /// and the Python SDK's), on generated text: names in several cases,
    /// glued to letters, digits, `_`, marks and punctuation, in many scripts.
    #[test]
    fn set_lookup_matches_the_alternation_regex() {
        let all = super::FirstNames::parse(super::FIRST_NAMES);
        let mut sample: Vec<&str> = all.set.iter().map(|n| &**n).collect();
        sample.sort_unstable();
        // Every 16th name keeps the regex small enough for a debug build.
        let sample: Vec<&str> = sample.into_iter().step_by(16).collect();
        let names = super::FirstNames::parse(&sample.join("\n"));
        let alternation: Vec<String> = sample.iter().map(|n| regex::escape(n)).collect();
        let re = regex::RegexBuilder::new(&format!(r"(?i)\b(?:{})\b", alternation.join("|")))
            .size_limit(1 << 30)
            .build()
            .unwrap();
        let glue = [
            " ", " ", " ", ", ", ".", "-", "'", "_", "7", "x", "\u{301}", "\n", "(", "\u{5d0}",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..2_000 {
            let mut text = String::new();
            for _ in 0..next(12) {
                let name = sample[next(sample.len())];
                match next(4) {
                    0 => text.push_str(name),
                    1 => text.push_str(&name.to_uppercase()),
                    2 => {
                        let mut c = name.chars();
                        text.extend(c.next().into_iter().flat_map(char::to_uppercase));
                        text.push_str(c.as_str());
                    }
                    _ => text.push_str(["the", "Mark", "a1", "été", "x_y"][next(5)]),
                }
                text.push_str(glue[next(glue.len())]);
            }
            let want = re.replace_all(&text, regex::NoExpand(super::NAME));
            let mut got = std::borrow::Cow::Borrowed(text.as_str());
            names.redact(&mut got);
            assert_eq!(got, want, "text: {text:?}");
        }
    }

    #[test]
    fn words_split_where_the_regex_boundary_does() {
        let w: Vec<_> = super::words("Hi, Ann-Marie! o'Neil_x 42 \u{e9}t\u{e9}").collect();
        assert_eq!(
            w,
            [
                (0, "Hi"),
                (4, "Ann"),
                (8, "Marie"),
                (15, "o"),
                (17, "Neil_x"),
                (24, "42"),
                (27, "\u{e9}t\u{e9}")
            ]
        );
        assert_eq!(super::words("").count(), 0);
        assert_eq!(super::words(" ,. ").count(), 0);
    }

    #[test]
    fn text_with_no_match_is_borrowed() {
        assert!(matches!(
            redact_pii("nothing to see"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
