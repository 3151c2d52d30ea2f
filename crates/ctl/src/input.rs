//! Reading text from arguments and standard input, with bounds.

use std::io::{BufRead, Read};

use anyhow::{Context, bail};

/// Longest input line (or whole input, without `--jsonl`) accepted, in bytes.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

/// One line of `--jsonl` input, or why it cannot be used.
pub type Line = Result<String, String>;

/// Reads the whole of `reader` as UTF-8, refusing more than [`MAX_INPUT_BYTES`].
pub fn read_all(reader: impl Read) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    reader
        .take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .context("reading standard input")?;
    if buf.len() > MAX_INPUT_BYTES {
        bail!("input is longer than {MAX_INPUT_BYTES} bytes");
    }
    let text = String::from_utf8(buf).context("input is not valid UTF-8")?;
    // A trailing newline from `echo` or a file is not part of the message.
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
}

/// Reads lines of at most [`MAX_INPUT_BYTES`] without ever holding a longer one in memory,
/// calling `each` with the decoded line or the reason it is unusable.
pub fn for_each_line(
    mut reader: impl BufRead,
    mut each: impl FnMut(Line) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let chunk = reader.fill_buf().context("reading standard input")?;
        if chunk.is_empty() {
            if !line.is_empty() || too_long {
                each(decode(&line, too_long))?;
            }
            return Ok(());
        }
        let (take, end_of_line) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if line.len() + take > MAX_INPUT_BYTES {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(&chunk[..take]);
            }
        }
        reader.consume(take + usize::from(end_of_line));
        if end_of_line {
            each(decode(&line, too_long))?;
            line.clear();
            too_long = false;
        }
    }
}

fn decode(line: &[u8], too_long: bool) -> Line {
    if too_long {
        return Err(format!("line is longer than {MAX_INPUT_BYTES} bytes"));
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|e| format!("line is not valid UTF-8: {e}"))?;
    if text.trim().is_empty() {
        return Err("empty line: expected a JSON string".into());
    }
    serde_json::from_str::<String>(text).map_err(|e| format!("line is not a JSON string: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        for_each_line(std::io::BufReader::with_capacity(7, input), |l| {
            out.push(l);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn splits_decodes_and_bounds_lines() {
        let mut input = b"\"a\"\n\"b\\n\"\r\n\xff\n\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_INPUT_BYTES + 10));
        input.extend(b"\n\"last\"");
        let got = lines(&input);
        assert_eq!(got[0], Ok("a".into()));
        assert_eq!(got[1], Ok("b\n".into()));
        assert!(got[2].as_ref().unwrap_err().contains("UTF-8"));
        assert!(got[3].as_ref().unwrap_err().contains("empty line"));
        assert!(got[4].as_ref().unwrap_err().contains("longer than"));
        assert_eq!(got[5], Ok("last".into()));
        assert_eq!(got.len(), 6);
    }
}
