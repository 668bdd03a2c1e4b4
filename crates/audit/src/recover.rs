//! Finding where an existing log ends, so `open` can resume its chain.
//!
//! Only the end of the file is read, so opening a large log is fast. This does not check the
//! chain of earlier entries: [`verify`](crate::verify) does that.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// First read size when scanning backwards. Each further read doubles it.
const FIRST_CHUNK: u64 = 8 * 1024;

/// The end of a log file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Tail {
    /// Length of the file up to and including its last newline. Bytes after it are a line
    /// that a crash interrupted.
    pub complete_len: u64,
    /// Last newline-terminated line, without its newline. `None` if the file has none.
    pub last_line: Option<Vec<u8>>,
}

/// Reads backwards from `len` until the last complete line of `file` is found.
pub(crate) fn read_tail(file: &File, len: u64) -> io::Result<Tail> {
    // `buffer` contains the bytes from `start` to `len`.
    let mut start = len;
    let mut buffer: Vec<u8> = Vec::new();
    let mut chunk = FIRST_CHUNK;

    loop {
        if let Some(tail) = find_last_line(&buffer, start) {
            return Ok(tail);
        }

        let read_start = start.saturating_sub(chunk);
        let read_len = usize::try_from(start - read_start)
            .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "last line too long"))?;
        let mut bytes = vec![0; read_len];
        file.read_exact_at(&mut bytes, read_start)?;
        bytes.extend_from_slice(&buffer);

        buffer = bytes;
        start = read_start;
        chunk = chunk.saturating_mul(2);
    }
}

/// Returns the tail if `buffer`, which starts at file offset `start`, contains all of the
/// last complete line, or `None` if more bytes before it are needed.
fn find_last_line(buffer: &[u8], start: u64) -> Option<Tail> {
    let Some(end) = buffer.iter().rposition(|&b| b == b'\n') else {
        return (start == 0).then_some(Tail {
            complete_len: 0,
            last_line: None,
        });
    };

    let line_start = match buffer[..end].iter().rposition(|&b| b == b'\n') {
        Some(newline) => newline + 1,
        None if start == 0 => 0,
        None => return None,
    };

    Some(Tail {
        complete_len: start + end as u64 + 1,
        last_line: Some(buffer[line_start..end].to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn tail_of(contents: &[u8]) -> Tail {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(contents).expect("write temp file");

        read_tail(&file, contents.len() as u64).expect("read tail")
    }

    #[test]
    fn empty_file_has_no_last_line() {
        assert_eq!(
            tail_of(b""),
            Tail {
                complete_len: 0,
                last_line: None
            }
        );
    }

    #[test]
    fn last_complete_line_is_found() {
        assert_eq!(
            tail_of(b"one\ntwo\n"),
            Tail {
                complete_len: 8,
                last_line: Some(b"two".to_vec())
            }
        );
    }

    #[test]
    fn single_line_is_found() {
        assert_eq!(
            tail_of(b"only\n"),
            Tail {
                complete_len: 5,
                last_line: Some(b"only".to_vec())
            }
        );
    }

    #[test]
    fn partial_line_is_excluded() {
        assert_eq!(
            tail_of(b"one\ntwo\nthr"),
            Tail {
                complete_len: 8,
                last_line: Some(b"two".to_vec())
            }
        );
    }

    #[test]
    fn file_of_only_partial_line() {
        assert_eq!(
            tail_of(b"partial"),
            Tail {
                complete_len: 0,
                last_line: None
            }
        );
    }

    #[test]
    fn line_longer_than_first_chunk_is_found() {
        let long_line = vec![b'x'; FIRST_CHUNK as usize * 3];
        let mut contents = b"first\n".to_vec();
        contents.extend_from_slice(&long_line);
        contents.push(b'\n');
        contents.extend_from_slice(b"partial");

        let tail = tail_of(&contents);

        assert_eq!(tail.complete_len, contents.len() as u64 - 7);
        assert_eq!(tail.last_line, Some(long_line));
    }
}
