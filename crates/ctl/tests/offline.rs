//! The offline commands, driven through the real `smsctl` binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn smsctl(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smsctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // Write from a thread so a large input cannot deadlock against a full stdout pipe.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn segments_jsonl_reports_each_line_and_continues_after_bad_ones() {
    let mut input = Vec::new();
    input.extend(format!("\"{}\"\n", "a".repeat(161)).as_bytes());
    input.extend(b"\"\xe2\x80\x9cHi\xe2\x80\x9d\"\n");
    input.extend(b"\xff\xff\n");
    input.extend(b"\n");
    input.extend(vec![b'a'; 1024 * 1024]);
    input.extend(b"\n\"]]]\"\n");
    let out = smsctl(&["segments", "--jsonl"], &input);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["encoding"], "GSM-7");
    assert_eq!(lines[0]["segments"], 2);
    assert_eq!(lines[0]["characters"], 161);
    assert_eq!(lines[1]["encoding"], "UCS-2");
    assert_eq!(lines[1]["non_gsm"], serde_json::json!(["“", "”"]));
    assert!(lines[2]["error"].as_str().unwrap().contains("UTF-8"));
    assert!(lines[3]["error"].as_str().unwrap().contains("empty"));
    assert!(lines[4]["error"].as_str().unwrap().contains("longer than"));
    assert_eq!(lines[5]["characters"], 6);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed line makes the run fail"
    );
}

#[test]
fn segments_smart_reports_the_new_text() {
    let out = smsctl(
        &["segments", "--jsonl", "--smart"],
        "\"It’s…\"\n".as_bytes(),
    );
    let lines = json_lines(&out);
    assert_eq!(lines[0]["text"], "It's...");
    assert_eq!(lines[0]["encoding"], "GSM-7");
    assert_eq!(lines[0]["encoding_before"], "UCS-2");
    assert!(out.status.success());
}

#[test]
fn segments_for_a_person() {
    let out = smsctl(&["segments", "Don’t"], b"");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("UCS-2") && text.contains("U+2019"), "{text}");
    assert!(out.status.success());
    let empty = smsctl(&["segments"], b"");
    assert_eq!(empty.status.code(), Some(1));
    assert!(String::from_utf8(empty.stderr).unwrap().contains("empty"));
}

#[test]
fn phone_jsonl() {
    let out = smsctl(
        &["phone", "--jsonl", "--region", "US"],
        b"\"(201) 555-0123\"\n\"+61412345678\"\n\"+442079460018\"\n\"55555\"\n\"nope\"\n",
    );
    let lines = json_lines(&out);
    assert_eq!(lines[0]["e164"], "+12015550123");
    assert_eq!(lines[0]["valid"], true);
    assert_eq!(lines[0]["type"], "fixed_line_or_mobile");
    assert_eq!(lines[0]["mms_supported"], true);
    assert_eq!(lines[1]["region"], "AU");
    assert_eq!(lines[1]["type"], "mobile");
    assert_eq!(lines[2]["type"], "fixed_line");
    assert_eq!(lines[2]["sms_supported"], false);
    assert_eq!(lines[3]["short_code"], true);
    assert!(lines[4]["error"].is_string());
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_flags_and_regions_fail_clearly() {
    let out = smsctl(&["segments", "--nope"], b"");
    assert_eq!(out.status.code(), Some(2));
    let out = smsctl(&["phone", "--region", "ZZZ", "+12015550123"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("region"));
    let out = smsctl(&["phone", "020 7946 0018"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("international format")
    );
}

/// A number typed in international form is read by its own country's rules, whatever region
/// is given: with the hint US, `+49 151 …` used to lose the 1 after the country code.
#[test]
fn phone_in_international_form_keeps_every_digit() {
    let out = smsctl(&["phone", "--region", "US", "+49 151 12345678"], b"");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("+4915112345678"), "{text}");
    assert!(out.status.success());
    let out = smsctl(&["phone", "--region", "US", "+1201555O123"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr).unwrap().contains("letter"),
        "a letter in a number is refused"
    );
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    // `smsctl … | head -1`: the reader goes away after one line while smsctl still prints.
    let mut child = Command::new(env!("CARGO_BIN_EXE_smsctl"))
        .args(["segments", "--jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..100_000 {
            if input.write_all(b"\"hello\"\n").is_err() {
                break;
            }
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("GSM-7"), "{first}");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "smsctl complained about the closed pipe: {stderr}"
    );
    assert!(
        out.status.signal() == Some(13) || out.status.code() == Some(0),
        "ended with {:?}",
        out.status
    );
}
