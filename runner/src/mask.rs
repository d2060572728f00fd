//! Streaming secret masking for the deployment log.
//!
//! Log output arrives in arbitrary chunks, so a secret can be split across two
//! (or many) chunks. [`Masker`] keeps back only the few trailing bytes that could
//! still be the beginning of a secret and emits everything before them masked.
//!
//! Why holding back `longest secret - 1` bytes is enough: let `cut` be the buffer
//! length minus that hold-back. A match that starts before `cut` has at least
//! `longest` bytes of buffer after its start, so no byte that arrives later can
//! extend it or create an earlier-starting one: it is final. And no match can
//! start before `cut` and end beyond the buffer, so after the final matches,
//! everything up to `max(cut, end of the last final match)` is safe to emit.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

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
    /// Longest secret length minus one: how many trailing bytes may start a secret.
    hold_back: usize,
    withheld_notice_sent: bool,
}

enum Matcher {
    /// No secrets: bytes pass through untouched and nothing is held back.
    PassThrough,
    Search(AhoCorasick),
    /// The automaton could not be built (absurdly many or long secrets).
    Withhold,
}

impl Masker {
    /// Builds a masker for `secrets`. Empty secrets are ignored; duplicates are fine.
    /// Where several secrets match at one position, the longest one is masked.
    pub fn new(secrets: impl IntoIterator<Item = impl AsRef<[u8]>>) -> Self {
        let secrets: Vec<Vec<u8>> = secrets
            .into_iter()
            .map(|secret| secret.as_ref().to_vec())
            .filter(|secret| !secret.is_empty())
            .collect();
        let longest = secrets.iter().map(Vec::len).max().unwrap_or(0);
        let matcher = if secrets.is_empty() {
            Matcher::PassThrough
        } else {
            build_automaton(&secrets).map_or(Matcher::Withhold, Matcher::Search)
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
            Matcher::Search(automaton) => {
                self.pending.extend_from_slice(chunk);
                let cut = self.pending.len().saturating_sub(self.hold_back);
                let (masked, consumed) = mask_final_prefix(automaton, &self.pending, cut);
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
            Matcher::Search(automaton) => {
                let pending = std::mem::take(&mut self.pending);
                // At the end of the stream every match is final.
                mask_final_prefix(automaton, &pending, pending.len()).0
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

/// A DFA is the fastest search; for secret sets too large for one, let the crate
/// pick a (slower, smaller) NFA. Fails only when even that exceeds its limits.
fn build_automaton(secrets: &[Vec<u8>]) -> Option<AhoCorasick> {
    let build = |kind| {
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(kind)
            .build(secrets)
    };
    build(Some(AhoCorasickKind::DFA))
        .or_else(|_| build(None))
        .ok()
}

/// Masks the matches of `buffer` that start before `cut` and returns the masked
/// bytes together with how many bytes of `buffer` they cover.
fn mask_final_prefix(automaton: &AhoCorasick, buffer: &[u8], cut: usize) -> (Vec<u8>, usize) {
    let mut masked = Vec::with_capacity(cut + REPLACEMENT.len());
    let mut emitted = 0;
    for found in automaton.find_iter(buffer) {
        if found.start() >= cut {
            break;
        }
        masked.extend_from_slice(&buffer[emitted..found.start()]);
        masked.extend_from_slice(REPLACEMENT);
        emitted = found.end();
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
        let pushed = masker.push(b"log line end");
        assert_eq!(pushed, b"l");
        assert_eq!(masker.finish(), b"og line ***");
    }

    #[test]
    fn a_final_match_is_emitted_without_waiting_for_finish() {
        let mut masker = Masker::new(["the-end"]);
        assert_eq!(masker.push(b"log line the-end"), b"log line ***");
        assert_eq!(masker.finish(), b"");
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
    fn holds_back_at_most_longest_secret_minus_one_bytes() {
        let mut masker = Masker::new(["12345"]);
        let out = masker.push(b"a long line without the secret");
        assert_eq!(out.len(), "a long line without the secret".len() - 4);
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
