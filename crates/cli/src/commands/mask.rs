//! Replaces secret values in a byte stream with `*****`, for `keyward run --mask`.
//!
//! Output is released as soon as it cannot be the start of a secret. Only a tail that matches
//! the beginning of some value is held back until the next read decides it. So a value split
//! across reads is still masked, and a prompt without a newline is still shown. Multi-line values
//! are masked line by line. Values shorter than [`MIN_MASKED_LEN`] bytes are not masked, because
//! replacing every `1` or `true` would garble the output without protecting anything.

/// The text that replaces each value.
pub const MASK: &[u8] = b"*****";

/// Shortest value, in bytes, that is masked.
pub const MIN_MASKED_LEN: usize = 4;

/// A streaming masker for one output stream.
pub struct Masker {
    /// Byte strings to hide, longest first, so the longest match at a position wins.
    patterns: Vec<Vec<u8>>,
    pending: Vec<u8>,
}

impl Masker {
    /// Builds a masker for `values`. Each line of a multi-line value is masked on its own.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut masker = Self {
            patterns: Vec::new(),
            pending: Vec::new(),
        };
        masker.add(values);
        masker
    }

    /// Adds more values, e.g. the new versions of secrets after a restart.
    pub fn add<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) {
        for value in values {
            for line in value.split('\n') {
                let line = line.trim_end_matches('\r').as_bytes();
                if line.len() >= MIN_MASKED_LEN && !self.patterns.iter().any(|p| p == line) {
                    self.patterns.push(line.to_vec());
                }
            }
        }
        self.patterns.sort_by_key(|p| std::cmp::Reverse(p.len()));
    }

    /// Takes the next read and returns the bytes that can be written now.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(bytes);
        let (mut output, consumed) = self.mask_complete();
        let held = self.held_tail_len(consumed);
        let release = self.pending.len() - held;
        output.extend_from_slice(&self.pending[consumed..release]);
        self.pending.drain(..release);
        output
    }

    /// Returns what is still held at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        let (mut output, consumed) = self.mask_complete();
        output.extend_from_slice(&self.pending[consumed..]);
        self.pending.clear();
        output
    }

    /// Masks every complete match in `pending`; returns the output up to the end of the last
    /// match and how many bytes of `pending` it covers.
    fn mask_complete(&self) -> (Vec<u8>, usize) {
        let mut output = Vec::with_capacity(self.pending.len());
        let mut start = 0;
        let mut position = 0;
        while position < self.pending.len() {
            let rest = &self.pending[position..];
            if let Some(pattern) = self.patterns.iter().find(|p| rest.starts_with(p)) {
                output.extend_from_slice(&self.pending[start..position]);
                output.extend_from_slice(MASK);
                position += pattern.len();
                start = position;
            } else {
                position += 1;
            }
        }
        (output, start)
    }

    /// Length of the longest tail of `pending[from..]` that is a proper prefix of a pattern.
    fn held_tail_len(&self, from: usize) -> usize {
        let tail = &self.pending[from..];
        let longest = self.patterns.first().map_or(0, Vec::len);
        let max = tail.len().min(longest.saturating_sub(1));
        (1..=max)
            .rev()
            .find(|&len| {
                let suffix = &tail[tail.len() - len..];
                self.patterns.iter().any(|p| p.starts_with(suffix))
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(masker: &mut Masker, chunks: &[&[u8]]) -> String {
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(masker.push(chunk));
        }
        out.extend(masker.finish());
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn value_in_one_read_is_masked() {
        let mut masker = Masker::new(["kw-canary-123"]);
        assert_eq!(
            run(&mut masker, &[b"key=kw-canary-123 done\n"]),
            "key=***** done\n"
        );
    }

    #[test]
    fn value_split_across_reads_is_masked() {
        let mut masker = Masker::new(["kw-canary-123"]);
        let value = b"a kw-canary-123 b kw-canary-123\n";
        for split in 0..value.len() {
            let (first, second) = value.split_at(split);
            assert_eq!(
                run(&mut masker, &[first, second]),
                "a ***** b *****\n",
                "split at {split}"
            );
        }
    }

    #[test]
    fn byte_by_byte_output_is_masked() {
        let mut masker = Masker::new(["secret-one", "secret-two-longer"]);
        let text = b"[secret-two-longer|secret-one|secret-on]";
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(run(&mut masker, &chunks), "[*****|*****|secret-on]");
    }

    #[test]
    fn unrelated_text_is_released_at_once() {
        let mut masker = Masker::new(["kw-canary-123"]);
        assert_eq!(masker.push(b"password: "), b"password: ");
        assert_eq!(masker.push(b"xkw-"), b"x");
        assert_eq!(masker.push(b"z"), b"kw-z");
    }

    #[test]
    fn multi_line_values_are_masked_per_line() {
        let mut masker = Masker::new(["line-one\nline-two"]);
        assert_eq!(
            run(&mut masker, &[b"line-one\nline-two\n"]),
            "*****\n*****\n"
        );
    }

    #[test]
    fn short_values_are_not_masked() {
        let mut masker = Masker::new(["abc"]);
        assert_eq!(run(&mut masker, &[b"abc\n"]), "abc\n");
    }
}
