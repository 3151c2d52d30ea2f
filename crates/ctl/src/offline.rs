//! Offline commands: segment calculator and phone-number classifier.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use sms_core::phone::is_short_code;
use sms_core::{PhoneNumber, Region, encoding, smart};

use crate::input::{self, Line};

/// `smsctl segments`.
#[derive(Debug, Args)]
pub struct SegmentsArgs {
    /// Apply smart encoding (look-alike characters to GSM-7) first, and show its effect.
    #[arg(long)]
    smart: bool,
    /// Read one JSON string per line from standard input; print one JSON object per line.
    #[arg(long, conflicts_with = "text")]
    jsonl: bool,
    /// The body; read from standard input when absent.
    text: Option<String>,
}

/// `smsctl phone`.
#[derive(Debug, Args)]
pub struct PhoneArgs {
    /// Region (ISO code such as US, GB) for numbers in national format.
    #[arg(long, value_parser = parse_region)]
    region: Option<Region>,
    /// Read one JSON string per line from standard input; print one JSON object per line.
    #[arg(long, conflicts_with = "number")]
    jsonl: bool,
    /// The number; read from standard input when absent.
    number: Option<String>,
}

fn parse_region(s: &str) -> Result<Region, String> {
    s.parse().map_err(|e: sms_core::PhoneError| e.to_string())
}

/// Runs `segments`.
pub fn segments(args: &SegmentsArgs) -> anyhow::Result<ExitCode> {
    if args.jsonl {
        return jsonl(|text| segments_json(&text, args.smart));
    }
    let text = argument_or_stdin(args.text.as_deref())?;
    let report = segments_json(&text, args.smart).map_err(anyhow::Error::msg)?;
    print_segments(&report);
    Ok(ExitCode::SUCCESS)
}

/// Runs `phone`.
pub fn phone(args: &PhoneArgs) -> anyhow::Result<ExitCode> {
    if args.jsonl {
        return jsonl(|number| phone_json(&number, args.region));
    }
    let number = argument_or_stdin(args.number.as_deref())?;
    let report = phone_json(number.trim(), args.region).map_err(anyhow::Error::msg)?;
    print_phone(&report);
    let valid = report["valid"].as_bool().unwrap_or(false);
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn argument_or_stdin(arg: Option<&str>) -> anyhow::Result<String> {
    let text = match arg {
        Some(t) => t.to_owned(),
        None => input::read_all(io::stdin().lock())?,
    };
    if text.is_empty() {
        bail!("the input is empty");
    }
    if text.len() > input::MAX_INPUT_BYTES {
        bail!("the input is longer than {} bytes", input::MAX_INPUT_BYTES);
    }
    Ok(text)
}

/// Runs a `--jsonl` loop: every line gets an object, an unusable line an `error` object, and
/// the exit status is non-zero when any line failed.
fn jsonl(handle: impl Fn(String) -> Result<Value, String>) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut failed = 0usize;
    input::for_each_line(io::stdin().lock(), |line: Line| {
        let value = line.and_then(&handle).unwrap_or_else(|error| {
            failed += 1;
            json!({ "error": error })
        });
        serde_json::to_writer(&mut out, &value)?;
        out.write_all(b"\n").context("writing standard output")
    })?;
    out.flush().context("writing standard output")?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn segments_json(text: &str, use_smart: bool) -> Result<Value, String> {
    if text.is_empty() {
        return Err("the text is empty".into());
    }
    let encoded = use_smart.then(|| smart::smart_encoded(text));
    let body = encoded.as_ref().map_or(text, |s| s.text.as_str());
    let a = encoding::analyze(body);
    let mut v = json!({
        "encoding": a.encoding,
        "segments": a.segments,
        "characters": a.characters,
        "non_gsm": a.non_gsm.iter().map(char::to_string).collect::<Vec<_>>(),
    });
    if let Some(s) = encoded {
        v["text"] = json!(s.text);
        v["segments_before"] = json!(s.before.segments);
        v["encoding_before"] = json!(s.before.encoding);
    }
    Ok(v)
}

fn print_segments(v: &Value) {
    let encoding = v["encoding"].as_str().unwrap_or("?");
    let non_gsm: Vec<String> = v["non_gsm"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|c| {
                    let code = c.chars().next().map_or(0, u32::from);
                    format!("{c:?} (U+{code:04X})")
                })
                .collect()
        })
        .unwrap_or_default();
    // The encoding as sms-core serializes it, not a word of our own.
    let gsm7 = serde_json::to_value(sms_core::Encoding::Gsm7).unwrap_or_default();
    let unit = if v["encoding"] == gsm7 {
        "septets"
    } else {
        "UTF-16 code units"
    };
    println!("Encoding:   {encoding}");
    println!("Characters: {} {unit}", v["characters"]);
    println!("Segments:   {}", v["segments"]);
    if !non_gsm.is_empty() {
        println!("UCS-2 forced by: {}", non_gsm.join(", "));
    }
    if let Some(text) = v["text"].as_str() {
        println!(
            "Smart encoding: {} segment(s) in {} before; text after:\n{text}",
            v["segments_before"],
            v["encoding_before"].as_str().unwrap_or("?")
        );
    }
}

fn phone_json(input: &str, region: Option<Region>) -> Result<Value, String> {
    let input = input.trim();
    if is_short_code(input) {
        return Ok(json!({
            "input": input,
            "valid": false,
            "short_code": true,
            "e164": null,
            "region": null,
            "type": "short_code",
            "sms_supported": false,
            "mms_supported": false,
        }));
    }
    let n = PhoneNumber::parse(input, region).map_err(|e| e.to_string())?;
    Ok(json!({
        "input": input,
        "valid": n.is_valid(),
        "short_code": false,
        "e164": n.e164(),
        "region": n.region(),
        "type": n.number_type(),
        "sms_supported": n.sms_supported(),
        "mms_supported": n.mms_supported(),
    }))
}

fn print_phone(v: &Value) {
    let yes_no = |k: &str| {
        if v[k].as_bool().unwrap_or(false) {
            "yes"
        } else {
            "no"
        }
    };
    let text = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
    println!("E.164:      {}", text("e164"));
    println!("Valid:      {}", yes_no("valid"));
    println!("Region:     {}", text("region"));
    println!("Type:       {}", text("type"));
    println!("Short code: {}", yes_no("short_code"));
    println!("SMS:        {}", yes_no("sms_supported"));
    println!("MMS:        {}", yes_no("mms_supported"));
}
