//! Offline verification of a log file and its head file.
//!
//! `verify` needs no key and does not lock the log, so it can check a copy or a live log. On a
//! live log it may see the head file one batch behind the log, which is reported as success.
//!
//! What it cannot detect: the chain uses plain SHA-256, so someone able to rewrite both the
//! log and its head file can recompute every hash. Removing the last entries of a log whose
//! head file is missing is not detected either. Copying the head (or `last_hash`) elsewhere,
//! for example into a monitoring system, closes both gaps.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::error::VerifyError;
use crate::head::{self, Head};
use crate::line::{ZERO_HASH, check_line, peek_seq};

/// Result of a successful [`verify`].
///
/// `Ok` means that every complete entry is intact, in order and chained to the one before.
/// It does not mean that nothing needs attention: check [`VerifyReport::warnings`], which
/// turns the two fields below into messages to show an operator.
///
/// - `partial_last_line`: the log ends in an incomplete line that was not checked. A crash
///   during a write leaves one; so does someone who appended bytes to the log.
/// - `head_checked == false`: no head file was found, so entries cut from the end of the log
///   would go unnoticed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of complete entries checked.
    pub entries: u64,
    /// Sequence number of the last complete entry (0 if the log has none).
    pub last_seq: u64,
    /// Hash of the last complete entry (64 zeros if the log has none).
    pub last_hash: String,
    /// Whether a head file was found and matched the log. When false, entries removed from
    /// the end of the log cannot be detected.
    pub head_checked: bool,
    /// Whether the log ends in a line without a newline. Such a line was cut by a crash
    /// before its write was acknowledged, so it is not checked, and opening the log removes
    /// it. A successful result with this set still calls for a look, because bytes appended
    /// by hand look the same.
    pub partial_last_line: bool,
}

impl VerifyReport {
    /// Returns one message for each condition of an otherwise successful verification that an
    /// operator should see: an unchecked partial last line and a missing head file. Empty when
    /// the log verified without reservation.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.partial_last_line {
            warnings.push(format!(
                "the log ends in an incomplete line after entry {}, which was not checked: a \
                 crash during a write leaves one, and opening the log removes it",
                self.last_seq
            ));
        }
        if !self.head_checked {
            warnings.push(
                "no head file was found, so entries removed from the end of the log cannot be \
                 detected"
                    .to_owned(),
            );
        }
        warnings
    }
}

/// Checks every entry of the log at `path` and compares the last one with `<path>.head`.
///
/// Each line must be well formed, match its own hash, carry the next sequence number (the
/// first is 1) and name the previous line's hash as `prev` (64 zeros for the first). The head
/// file must not record an entry past the end of the log, and the entry it records must have
/// the hash it records. The first problem found is returned, with its line number counted
/// from 1. A successful result can still carry warnings: see [`VerifyReport::warnings`].
pub fn verify(path: &Path) -> Result<VerifyReport, VerifyError> {
    let head_path = head::head_path(path);
    let head = match head::read(&head_path).map_err(|e| VerifyError::io("read", &head_path, e))? {
        None => None,
        Some(Ok(head)) => Some(head),
        Some(Err(reason)) => return Err(VerifyError::MalformedHead { reason }),
    };
    if let Some(head) = &head
        && head.seq == 0
        && head.hash != ZERO_HASH
    {
        return Err(VerifyError::MalformedHead {
            reason: "seq 0 with a non-zero hash".to_owned(),
        });
    }

    let file = File::open(path).map_err(|e| VerifyError::io("open", path, e))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut chain = Chain::new(head.as_ref());
    let mut line = Vec::new();
    let mut partial_last_line = false;

    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| VerifyError::io("read", path, e))?;
        if read == 0 {
            break;
        }
        if line.pop() != Some(b'\n') {
            partial_last_line = true;
            break;
        }

        chain.check_next(&line, &mut reader, path)?;
    }

    let mut head_checked = false;
    if let Some(head) = &head {
        if head.seq > chain.last_seq {
            return Err(VerifyError::Truncated {
                last_seq: chain.last_seq,
                head_seq: head.seq,
            });
        }
        head_checked = true;
    }

    Ok(VerifyReport {
        entries: chain.entries,
        last_seq: chain.last_seq,
        last_hash: chain.last_hash,
        head_checked,
        partial_last_line,
    })
}

/// Running state of the check: what the next line must continue.
struct Chain<'a> {
    head: Option<&'a Head>,
    line_number: u64,
    entries: u64,
    last_seq: u64,
    last_hash: String,
}

impl<'a> Chain<'a> {
    fn new(head: Option<&'a Head>) -> Self {
        Chain {
            head,
            line_number: 0,
            entries: 0,
            last_seq: 0,
            last_hash: ZERO_HASH.to_owned(),
        }
    }

    /// Checks one complete line (without its newline). `rest` is the remainder of the file,
    /// read only to tell a removed entry from a reordered one.
    fn check_next(
        &mut self,
        bytes: &[u8],
        rest: &mut impl BufRead,
        path: &Path,
    ) -> Result<(), VerifyError> {
        self.line_number += 1;
        let line = self.line_number;

        let checked =
            check_line(bytes).map_err(|reason| VerifyError::Malformed { line, reason })?;
        let seq = checked.seq;
        if !checked.hash_matches() {
            return Err(VerifyError::Edited { line, seq });
        }

        let expected_seq = self.last_seq + 1;
        if seq > expected_seq && !seq_appears_in(rest, expected_seq, path)? {
            return Err(VerifyError::Removed {
                line,
                expected_seq,
                found_seq: seq,
            });
        }
        if seq != expected_seq {
            return Err(VerifyError::Reordered {
                line,
                expected_seq,
                found_seq: seq,
            });
        }

        if checked.prev != self.last_hash {
            return Err(VerifyError::BrokenChain { line, seq });
        }
        if let Some(head) = self.head
            && head.seq == seq
            && head.hash != checked.hash
        {
            return Err(VerifyError::HeadMismatch { line, seq });
        }

        self.entries += 1;
        self.last_seq = seq;
        self.last_hash = checked.hash;
        Ok(())
    }
}

/// Returns whether any remaining line of `rest` starts with sequence number `seq`.
fn seq_appears_in(rest: &mut impl BufRead, seq: u64, path: &Path) -> Result<bool, VerifyError> {
    let mut line = Vec::new();

    loop {
        line.clear();
        let read = rest
            .read_until(b'\n', &mut line)
            .map_err(|e| VerifyError::io("read", path, e))?;
        if read == 0 {
            return Ok(false);
        }
        if peek_seq(&line) == Some(seq) {
            return Ok(true);
        }
    }
}
