//! Streaming secret masking for the deployment log.
//!
//! Log output arrives in arbitrary chunks, so a secret can be split across two
//! (or many) chunks. [`Masker`] keeps back only the few trailing bytes that could
//! still be the beginning of a secret and emits everything before them masked.
//!
//! Why holding back `longest secret - 1` bytes is enough: let `cut` be the buffer
//! length minus that hold-back (`longest` is the longest form of any secret, see
//! [`encoded_forms`]). A match that starts before `cut` has at least
//! `longest` bytes of buffer after its start, so no byte that arrives later can
//! extend it or create an earlier-starting one: it is final. And no match can
//! start before `cut` and end beyond the buffer, so after the final matches,
//! everything up to `max(cut, end of the last final match)` is safe to emit.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};
use base64::engine::general_purpose::{GeneralPurpose, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;

/// What a masked secret is replaced with.
pub const REPLACEMENT: &[u8] = b"***";

/// Emitted instead of the log if no matcher could be built for the secrets:
/// masking fails closed rather than letting a secret through.
pub const WITHHELD_NOTICE: &[u8] =
    b"[envplane: output withheld: the sensitive values could not be prepared for masking]\n";

/// Masks every occurrence of a set of secrets in a stream of byte chunks.
pub struct Masker {
    matcher: Matcher,
    /// Bytes received but not yet emitted (at most `hold_back` after a push).
    pending: Vec<u8>,
    /// Longest form length minus one: how many trailing bytes may start a secret.
    hold_back: usize,
    withheld_notice_sent: bool,
}

enum Matcher {
    /// No secrets: bytes pass through untouched and nothing is held back.
    PassThrough,
    Search(FormFinder),
    /// The automaton could not be built (absurdly many or long secrets).
    Withhold,
}

impl Masker {
    /// Builds a masker for `secrets`. Empty secrets are ignored; duplicates are fine.
    /// Where several secrets match at one position, the longest one is masked.
    /// Each secret is also masked in the forms that template code or a provider may print
    /// it in (see [`encoded_forms`]).
    pub fn new(secrets: impl IntoIterator<Item = impl AsRef<[u8]>>) -> Self {
        let secrets: Vec<Vec<u8>> = secrets
            .into_iter()
            .filter(|secret| !secret.as_ref().is_empty())
            .flat_map(|secret| encoded_forms(secret.as_ref()))
            .collect();
        let longest = secrets.iter().map(Vec::len).max().unwrap_or(0);
        let matcher = if secrets.is_empty() {
            Matcher::PassThrough
        } else {
            FormFinder::new(secrets).map_or(Matcher::Withhold, Matcher::Search)
        };
        Self::with_matcher(matcher, longest.saturating_sub(1))
    }

    fn with_matcher(matcher: Matcher, hold_back: usize) -> Self {
        Self {
            matcher,
            pending: Vec::new(),
            hold_back,
            withheld_notice_sent: false,
        }
    }

    /// Accepts the next chunk and returns the masked bytes that are safe to emit now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        match &self.matcher {
            Matcher::PassThrough => chunk.to_vec(),
            Matcher::Search(finder) => {
                self.pending.extend_from_slice(chunk);
                let cut = self.pending.len().saturating_sub(self.hold_back);
                let (masked, consumed) = mask_final_prefix(finder, &self.pending, cut);
                self.pending.drain(..consumed);
                masked
            }
            Matcher::Withhold => self.withheld_notice(),
        }
    }

    /// Flushes everything still held back, masked. The masker can be reused after.
    pub fn finish(&mut self) -> Vec<u8> {
        match &self.matcher {
            Matcher::PassThrough => Vec::new(),
            Matcher::Search(finder) => {
                let pending = std::mem::take(&mut self.pending);
                // At the end of the stream every match is final.
                mask_final_prefix(finder, &pending, pending.len()).0
            }
            Matcher::Withhold => self.withheld_notice(),
        }
    }

    fn withheld_notice(&mut self) -> Vec<u8> {
        if std::mem::replace(&mut self.withheld_notice_sent, true) {
            Vec::new()
        } else {
            WITHHELD_NOTICE.to_vec()
        }
    }
}

/// Derived forms shorter than this are not masked: they would match ordinary text.
const MIN_FORM_LEN: usize = 4;

/// `secret` and the forms it takes when printed through common encodings: escaped
/// inside a JSON string (`jsonencode`), each line of a multi-line secret on its own
/// (Terraform indents heredoc lines), base64 in both alphabets at each of the three
/// alignments it can have inside a longer encoded text, and percent-encoded (as in a
/// URL or a form).
pub fn encoded_forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![secret.to_vec()];
    if let Ok(text) = std::str::from_utf8(secret) {
        let quoted = serde_json::to_string(text).unwrap_or_default();
        let escaped = &quoted[1..quoted.len() - 1];
        forms.push(escaped.as_bytes().to_vec());
        // Terraform's jsonencode (Go's encoder) also escapes <, > and &.
        let html_safe = escaped
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026");
        forms.push(html_safe.into_bytes());
        if text.contains('\n') {
            forms.extend(text.lines().map(|line| line.trim().as_bytes().to_vec()));
        }
    }
    for alphabet in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        forms.extend((0..3).map(|offset| base64_at_offset(alphabet, secret, offset)));
    }
    forms.push(percent_encoded(secret, false));
    forms.push(percent_encoded(secret, true));
    let mut forms: Vec<Vec<u8>> = forms
        .into_iter()
        .enumerate()
        .filter(|(index, form)| *index == 0 || form.len() >= MIN_FORM_LEN)
        .map(|(_, form)| form)
        .collect();
    forms.sort();
    forms.dedup();
    forms
}

/// The base64 characters that depend only on `secret` when it starts `offset` bytes
/// (0, 1 or 2) into a 3-byte group of a longer encoded text: the characters that also
/// hold bits of the bytes before it or after it differ from one text to the next.
fn base64_at_offset(alphabet: &GeneralPurpose, secret: &[u8], offset: usize) -> Vec<u8> {
    let mut shifted = vec![0u8; offset];
    shifted.extend_from_slice(secret);
    let encoded = alphabet.encode(&shifted).into_bytes();
    let first = (offset * 8).div_ceil(6);
    let last = shifted.len() * 8 / 6;
    encoded.get(first..last).unwrap_or_default().to_vec()
}

/// Every byte but the unreserved ones (RFC 3986: letters, digits, `-._~`) as `%XX`;
/// `form` writes a space as `+`, as HTML forms and query strings often do.
fn percent_encoded(secret: &[u8], form: bool) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(secret.len() * 3);
    for &byte in secret {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                encoded.push(byte)
            }
            b' ' if form => encoded.push(b'+'),
            _ => encoded.extend_from_slice(format!("%{byte:02X}").as_bytes()),
        }
    }
    encoded
}

/// How many leading bytes of each form the automaton searches for.
const ANCHOR_LEN: usize = 8;

/// Finds the forms of the secrets: an automaton over each form's first [`ANCHOR_LEN`]
/// bytes, then a comparison of the whole forms where an anchor is found. The automaton
/// over anchors has a fraction of the states one over whole forms would (hundreds of
/// forms of 16-55 bytes), so the scan, which reads the automaton for every byte of the
/// log, stays in the CPU's caches.
struct FormFinder {
    anchors: AhoCorasick,
    /// The forms that begin with each anchor.
    forms: HashMap<Vec<u8>, Vec<Vec<u8>>>,
    /// The anchors' distinct lengths (forms shorter than [`ANCHOR_LEN`] are their own).
    anchor_lengths: Vec<usize>,
}

impl FormFinder {
    /// Fails only when even the anchors exceed the automaton's limits.
    fn new(forms: Vec<Vec<u8>>) -> Option<Self> {
        let mut by_anchor: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
        for form in forms {
            let anchor = form[..form.len().min(ANCHOR_LEN)].to_vec();
            by_anchor.entry(anchor).or_default().push(form);
        }
        let mut anchor_lengths: Vec<usize> = by_anchor.keys().map(Vec::len).collect();
        anchor_lengths.sort_unstable();
        anchor_lengths.dedup();
        let anchors = build_automaton(by_anchor.keys())?;
        Some(Self {
            anchors,
            forms: by_anchor,
            anchor_lengths,
        })
    }

    /// The leftmost form in `haystack` at or after `from` (the longest of those that
    /// start there), as a range.
    fn find(&self, haystack: &[u8], from: usize) -> Option<(usize, usize)> {
        let mut search = from;
        loop {
            let found = self.anchors.find(Input::new(haystack).range(search..))?;
            let start = found.start();
            if let Some(len) = self.longest_form_at(haystack, start) {
                return Some((start, start + len));
            }
            // Only the anchor was there; a form may still start right after.
            search = start + 1;
        }
    }

    fn longest_form_at(&self, haystack: &[u8], start: usize) -> Option<usize> {
        let rest = &haystack[start..];
        self.anchor_lengths
            .iter()
            .filter_map(|&len| self.forms.get(rest.get(..len)?))
            .flatten()
            .filter(|form| rest.starts_with(form))
            .map(Vec::len)
            .max()
    }
}

/// A DFA is the fastest search; for anchor sets too large for one, let the crate pick
/// a (slower, smaller) NFA. Fails only when even that exceeds its limits. No
/// prefilter: with hundreds of anchors it finds candidates nearly everywhere.
fn build_automaton<'a>(anchors: impl Iterator<Item = &'a Vec<u8>> + Clone) -> Option<AhoCorasick> {
    let build = |kind| {
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .prefilter(false)
            .kind(kind)
            .build(anchors.clone())
    };
    build(Some(AhoCorasickKind::DFA))
        .or_else(|_| build(None))
        .ok()
}

/// Masks the matches of `buffer` that start before `cut` and returns the masked
/// bytes together with how many bytes of `buffer` they cover.
fn mask_final_prefix(finder: &FormFinder, buffer: &[u8], cut: usize) -> (Vec<u8>, usize) {
    let mut masked = Vec::with_capacity(cut + REPLACEMENT.len());
    let mut emitted = 0;
    while let Some((start, end)) = finder.find(buffer, emitted) {
        if start >= cut {
            break;
        }
        masked.extend_from_slice(&buffer[emitted..start]);
        masked.extend_from_slice(REPLACEMENT);
        emitted = end;
    }
    let consumed = cut.max(emitted);
    masked.extend_from_slice(&buffer[emitted..consumed]);
    (masked, consumed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `chunks` one by one, then finishes; returns everything emitted.
    fn mask_chunks<'a>(masker: &mut Masker, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(masker.push(chunk));
        }
        out.extend(masker.finish());
        out
    }

    fn mask_whole(secrets: &[&str], input: &[u8]) -> Vec<u8> {
        mask_chunks(&mut Masker::new(secrets), [input])
    }

    #[test]
    fn masks_a_whole_secret_in_one_chunk() {
        let out = mask_whole(&["hunter2"], b"password is hunter2, again hunter2\n");
        assert_eq!(out, b"password is ***, again ***\n");
    }

    #[test]
    fn masks_a_secret_split_at_every_position_across_two_chunks() {
        let input = b"before s3cr3t-value after";
        let expected = b"before *** after";
        for split in 0..=input.len() {
            let mut masker = Masker::new(["s3cr3t-value"]);
            let (first, second) = input.split_at(split);
            let out = mask_chunks(&mut masker, [first, second]);
            assert_eq!(out, expected, "split at {split}");
        }
    }

    #[test]
    fn masks_a_secret_fed_one_byte_at_a_time() {
        let input = b"token=abcdef123456; token=abcdef123456";
        let mut masker = Masker::new(["abcdef123456"]);
        let out = mask_chunks(&mut masker, input.chunks(1));
        assert_eq!(out, b"token=***; token=***");
    }

    #[test]
    fn never_emits_a_partial_secret_before_finish() {
        let mut masker = Masker::new(["abcdef"]);
        let mut emitted = masker.push(b"xx abc");
        emitted.extend(masker.push(b"de"));
        assert!(!emitted.windows(3).any(|w| w == b"abc"), "{emitted:?}");
        emitted.extend(masker.push(b"f yy"));
        emitted.extend(masker.finish());
        assert_eq!(emitted, b"xx *** yy");
    }

    #[test]
    fn longest_secret_wins_when_one_is_a_prefix_of_another() {
        assert_eq!(mask_whole(&["abc", "abcdef"], b"1 abcdef 2"), b"1 *** 2");
        assert_eq!(mask_whole(&["abcdef", "abc"], b"1 abcdef 2"), b"1 *** 2");
        assert_eq!(mask_whole(&["abc", "abcdef"], b"1 abcde 2"), b"1 ***de 2");
    }

    #[test]
    fn longest_secret_wins_across_chunks() {
        let input = b"1 abcdef 2";
        for split in 0..=input.len() {
            let mut masker = Masker::new(["abc", "abcdef"]);
            let (first, second) = input.split_at(split);
            assert_eq!(
                mask_chunks(&mut masker, [first, second]),
                b"1 *** 2",
                "split {split}"
            );
        }
    }

    #[test]
    fn overlapping_secrets_mask_the_leftmost_match() {
        // "abcd" starts first, so "cdef" no longer matches in what is left ("ef").
        assert_eq!(mask_whole(&["abcd", "cdef"], b"abcdef"), b"***ef");
    }

    #[test]
    fn secret_at_the_very_end_is_masked_by_finish() {
        // "end" could still grow into "end-of-story", so push must hold it back.
        let mut masker = Masker::new(["end", "end-of-story"]);
        let mut out = masker.push(b"log line end");
        assert!(out.len() <= b"log line ".len(), "{out:?}");
        out.extend(masker.finish());
        assert_eq!(out, b"log line ***");
    }

    #[test]
    fn a_final_match_is_emitted_without_waiting_for_finish() {
        let mut masker = Masker::new(["the-end"]);
        let pushed = masker.push(b"log line the-end, and then the next line of the log");
        assert!(pushed.starts_with(b"log line ***, and"), "{pushed:?}");
    }

    #[test]
    fn masks_a_multi_line_secret() {
        let key = "-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----";
        let input = format!("key:\n{key}\ndone\n");
        let lines: Vec<&[u8]> = input.as_bytes().split_inclusive(|&b| b == b'\n').collect();
        assert_eq!(
            mask_chunks(&mut Masker::new([key]), lines),
            b"key:\n***\ndone\n"
        );
    }

    #[test]
    fn masks_a_secret_escaped_inside_json() {
        let secret = "pa\"ss\\w<o>&rd";
        let serde = format!("{{\"p\":{}}}", serde_json::to_string(secret).unwrap());
        assert_eq!(mask_whole(&[secret], serde.as_bytes()), b"{\"p\":\"***\"}");
        let terraform = br#"{"p":"pa\"ss\\w\u003co\u003e\u0026rd"}"#;
        assert_eq!(mask_whole(&[secret], terraform), b"{\"p\":\"***\"}");
    }

    #[test]
    fn masks_each_line_of_a_multi_line_secret_when_indented() {
        let key = "-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----";
        let heredoc = "    <<EOT\n      -----BEGIN KEY-----\n      MIIEvQIBADANBg\n      -----END KEY-----\n    EOT\n";
        let out = String::from_utf8(mask_whole(&[key], heredoc.as_bytes())).unwrap();
        assert_eq!(out, "    <<EOT\n      ***\n      ***\n      ***\n    EOT\n");
    }

    #[test]
    fn masks_base64_of_a_secret_at_every_alignment_in_both_alphabets() {
        let secret = b"s3cr3t?>value~~";
        for alphabet in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            for before in 0..6 {
                for after in 0..4 {
                    let mut plain = vec![b'u'; before];
                    plain.extend_from_slice(secret);
                    plain.extend(vec![b'!'; after]);
                    let encoded = alphabet.encode(&plain);
                    let out =
                        mask_whole(&[std::str::from_utf8(secret).unwrap()], encoded.as_bytes());
                    let offset = before % 3;
                    let stable = base64_at_offset(alphabet, secret, offset);
                    assert!(out.windows(3).any(|w| w == REPLACEMENT), "{encoded}");
                    assert!(
                        !out.windows(stable.len()).any(|w| w == stable.as_slice()),
                        "{encoded} -> {}",
                        String::from_utf8_lossy(&out)
                    );
                }
            }
        }
    }

    #[test]
    fn masks_a_percent_encoded_secret() {
        let secret = "p@ss w/rd!";
        assert_eq!(
            mask_whole(&[secret], b"url=https://u:p%40ss%20w%2Frd%21@h"),
            b"url=https://u:***@h"
        );
        assert_eq!(
            mask_whole(&[secret], b"body=p%40ss+w%2Frd%21&x=1"),
            b"body=***&x=1"
        );
    }

    #[test]
    fn short_secrets_are_masked_as_they_are_but_not_in_derived_forms() {
        assert_eq!(encoded_forms(b"ab"), [b"ab".to_vec()]);
        assert_eq!(mask_whole(&["ab"], b"cab YWI="), b"c*** YWI=");
    }

    #[test]
    fn passes_bytes_through_without_holding_back_when_there_are_no_secrets() {
        let mut masker = Masker::new(Vec::<&str>::new());
        assert_eq!(masker.push(b"partial li"), b"partial li");
        assert_eq!(masker.push(b"ne\n"), b"ne\n");
        assert_eq!(masker.finish(), b"");
    }

    #[test]
    fn ignores_empty_secrets_and_duplicates() {
        let mut masker = Masker::new(["", "pw", "pw", ""]);
        assert_eq!(mask_chunks(&mut masker, [b"a pw b".as_slice()]), b"a *** b");
        let mut only_empty = Masker::new([""]);
        assert_eq!(only_empty.push(b"abc"), b"abc");
    }

    #[test]
    fn holds_back_at_most_the_longest_form_minus_one_bytes() {
        let longest = encoded_forms(b"12345").iter().map(Vec::len).max().unwrap();
        let mut masker = Masker::new(["12345"]);
        let out = masker.push(b"a long line without the secret");
        assert_eq!(
            out.len(),
            "a long line without the secret".len() - (longest - 1)
        );
    }

    #[test]
    fn can_be_reused_after_finish() {
        let mut masker = Masker::new(["secret"]);
        assert_eq!(
            mask_chunks(&mut masker, [b"one secret".as_slice()]),
            b"one ***"
        );
        assert_eq!(
            mask_chunks(&mut masker, [b"two secret".as_slice()]),
            b"two ***"
        );
    }

    /// The automaton finds only the first bytes of each form: where they are not
    /// followed by the whole form, a form that starts inside them is still found, and
    /// forms sharing their first bytes are told apart.
    #[test]
    fn a_forms_first_bytes_alone_are_not_masked_and_hide_no_later_form() {
        let secrets = ["abcdefghXYZ", "abcdefgh2222", "abcd"];
        assert_eq!(
            mask_whole(
                &secrets,
                b"abcdefgh abcdefghXYZ aabcdefgh2222 abcdefg abcdefghX\n"
            ),
            b"***efgh *** a*** ***efg ***efghX\n"
        );
        assert_eq!(
            mask_whole(&["aaaaaaaab"], b"aaaaaaaaaaaaaaab aaaaaaaa\n"),
            b"aaaaaaa*** aaaaaaaa\n"
        );
    }

    #[test]
    fn fails_closed_when_the_matcher_cannot_be_built() {
        let mut masker = Masker::with_matcher(Matcher::Withhold, 0);
        assert_eq!(masker.push(b"secret"), WITHHELD_NOTICE);
        assert_eq!(masker.push(b"secret"), b"");
        assert_eq!(masker.finish(), b"");
    }

    /// xorshift64*: a deterministic PRNG, enough to vary the chunking.
    struct Prng(u64);

    impl Prng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }
    }

    /// Text over a small alphabet, so secrets and near-misses occur often.
    fn random_text(rng: &mut Prng, len: usize, secrets: &[&str]) -> Vec<u8> {
        let mut text = Vec::with_capacity(len + 16);
        while text.len() < len {
            if rng.below(8) == 0 {
                let secret = secrets[rng.below(secrets.len())];
                let keep = 1 + rng.below(secret.len()); // sometimes only a prefix
                text.extend_from_slice(&secret.as_bytes()[..keep]);
            } else {
                text.push(b"abc \n"[rng.below(5)]);
            }
        }
        text
    }

    fn random_chunks<'a>(rng: &mut Prng, mut input: &'a [u8]) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        while !input.is_empty() {
            let len = rng.below(input.len().min(12) + 1); // empty chunks too
            let (chunk, rest) = input.split_at(len);
            chunks.push(chunk);
            input = rest;
        }
        chunks
    }

    #[test]
    fn random_chunking_gives_the_same_output_as_masking_the_whole_input() {
        let secrets = ["abcab", "abc", "ca", "bbbbbbbb", "c\nc", "abcabcabc"];
        let mut rng = Prng(0x9e37_79b9_7f4a_7c15);
        for round in 0..500 {
            let len = 1 + rng.below(300);
            let input = random_text(&mut rng, len, &secrets);
            let expected = mask_whole(&secrets, &input);
            let chunks = random_chunks(&mut rng, &input);
            let actual = mask_chunks(&mut Masker::new(secrets), chunks);
            assert_eq!(
                actual,
                expected,
                "round {round}, input {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn whole_input_masking_leaves_no_secret_behind() {
        let secrets = ["abcab", "bbbb"];
        let mut rng = Prng(42);
        for _ in 0..200 {
            let input = random_text(&mut rng, 200, &secrets);
            let out = mask_whole(&secrets, &input);
            for secret in secrets {
                assert!(!out.windows(secret.len()).any(|w| w == secret.as_bytes()));
            }
        }
    }
}
