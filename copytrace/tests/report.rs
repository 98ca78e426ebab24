//! `copytrace report` on a committed fixture: files, validity, and crossovers derived by hand.
//!
//! The fixture (`fixtures/bench-small.json`) is a real `bench` result whose stream throughputs
//! with one connection were replaced by designed values (repeats at 0.98× and 1.02× of them):
//!
//! | size   | two-copy | one-copy | zero-copy |
//! |--------|----------|----------|-----------|
//! | 64 B   | 1        | 0.5      | 0.05      |
//! | 4 KiB  | 10       | 8        | 2         |
//! | 64 KiB | 20       | 25       | 15        |
//! | 1 MiB  | 30       | 35       | 40        |
//!
//! one-copy − two-copy goes from −2 (4 KiB, log2 = 12) to +5 (64 KiB, log2 = 16): the
//! crossing is at log2 = 12 + 4·2/7, i.e. 2^13.142857 = 9044.7 bytes.
//! zero-copy − two-copy goes from −5 (64 KiB, 16) to +10 (1 MiB, 20): 16 + 4·5/15 = 17.3333,
//! i.e. 2^17.3333 = 165140.4 bytes. Both repeats scale both modes alike, so each repeat crosses
//! at the same size.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

mod common;

use copytrace::{
    bench::results::BenchDocument,
    report::{self, Format, Options},
};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bench-small.json")
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("copytrace-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The fixture rendered as HTML into a fresh directory.
fn render_fixture(name: &str) -> (BenchDocument, PathBuf, report::Output) {
    let doc = report::load(&fixture()).unwrap();
    let dir = out_dir(name);
    let options = Options {
        format: Format::Html,
        latency_size: None,
    };
    let out = report::generate(&doc, &dir, &options).unwrap();
    (doc, dir, out)
}

#[test]
fn where_the_bytes_went_counts_every_byte_once() {
    let doc = report::load(&fixture()).unwrap();
    // 3 modes × 4 sizes × 1 connection count in the figure; 2 connection counts in the file.
    assert_eq!(common::assert_byte_classes_add_up(&doc.records), 24);
}

#[test]
fn error_bars_say_what_they_are() {
    let (_, _, out) = render_fixture("bars");
    let html = std::fs::read_to_string(&out.main).unwrap();
    // The fixture has 2 repeats per cell: min–max, never a t = 12.7 "confidence interval".
    assert!(
        html.contains("Error bars: min–max of the repeats"),
        "caption"
    );
    assert!(!html.contains("confidence interval of the mean"));
    let mut doc = report::load(&fixture()).unwrap();
    for s in &mut doc.summary {
        if let Some(e) = s.sender_gbps.as_mut() {
            e.n = 3;
        }
    }
    let dir = out_dir("bars3");
    let o = report::generate(
        &doc,
        &dir,
        &Options {
            format: Format::Html,
            latency_size: None,
        },
    )
    .unwrap();
    let html = std::fs::read_to_string(&o.main).unwrap();
    assert!(html.contains("Error bars: 95 % confidence interval of the mean"));
}

/// Decode a PNG: (width, height, one slice of channel values per pixel).
fn decode(path: &Path) -> (u32, u32, Vec<Vec<u8>>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().expect("a valid PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let channels = info.color_type.samples();
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .map(<[u8]>::to_vec)
        .collect();
    (info.width, info.height, pixels)
}

/// Count pixels that are not (near) white.
fn inked_pixels(path: &Path) -> (u32, u32, usize) {
    let (w, h, px) = decode(path);
    let inked = px
        .iter()
        .filter(|p| p.iter().take(3).any(|&c| c < 200))
        .count();
    (w, h, inked)
}

#[test]
fn fixture_renders_every_figure_and_the_hand_derived_crossovers() {
    let (doc, dir, out) = render_fixture("fixture");

    let a = &out.analysis;
    let one = a.one_copy_vs_two_copy.size.expect("one-copy crosses");
    assert!((one - 9044.7).abs() < 0.5, "one-copy crossover {one}");
    assert_eq!(a.one_copy_vs_two_copy.between, Some((4096, 65536)));
    let zero = a.zero_copy_vs_two_copy.size.expect("zero-copy crosses");
    assert!((zero - 165140.4).abs() < 0.5, "zero-copy crossover {zero}");
    assert_eq!(a.zero_copy_vs_two_copy.between, Some((65536, 1 << 20)));
    for c in [&a.one_copy_vs_two_copy, &a.zero_copy_vs_two_copy] {
        assert_eq!(c.per_repeat.len(), 2);
        for r in &c.per_repeat {
            assert!((r.unwrap() - c.size.unwrap()).abs() < 0.5);
        }
    }
    // Loopback: every completion was flagged COPIED.
    assert_eq!(a.zero_copy.copied_fraction, Some(1.0));
    assert!(a.zero_copy.verdict.contains("deferred, not real"));
    assert_eq!(a.answers.len(), 6);

    // Every figure as SVG and PNG, valid and not blank; the hardware figure is replaced by a
    // note (the fixture machine had no PMU).
    let expected = [
        "fig1-throughput-vs-size",
        "fig2-throughput-vs-threads",
        "fig3-rtt-vs-size",
        "fig4-latency-cdf",
        "fig5-where-bytes-went",
        "fig5b-time-per-path",
        "fig6-cpu-cost",
    ];
    assert_eq!(out.figures.len(), expected.len() * 2, "{:?}", out.figures);
    for name in expected {
        let svg = std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{name}"
        );
        assert!(svg.contains("<text"), "{name}: has labels");
        let (w, h, inked) = inked_pixels(&dir.join(format!("{name}.png")));
        assert!(w >= 640 && h >= 320, "{name}: {w}x{h}");
        assert!(
            inked > (w * h / 200) as usize,
            "{name}: only {inked} inked pixels"
        );
    }
    assert!(!dir.join("fig7-hardware.svg").exists());
    let html = std::fs::read_to_string(&out.main).unwrap();
    assert!(html.contains("fig7-hardware: not shown"));
    assert!(html.contains("hardware counters were unavailable"));
    // Self-contained: figures inline, nothing fetched from the network.
    assert_eq!(html.matches("<svg").count(), expected.len());
    for fetch in ["src=\"http", "href=\"http", "<script", "<link", "url(http"] {
        assert!(!html.contains(fetch), "the page fetches something: {fetch}");
    }
    assert!(html.contains("8.833 KiB"), "crossover stated in the page");

    // Markdown: the same analysis.
    let md = report::generate(
        &doc,
        &dir,
        &Options {
            format: Format::Md,
            latency_size: Some(4096),
        },
    )
    .unwrap();
    let text = std::fs::read_to_string(&md.main).unwrap();
    assert!(text.contains("### Q4.") && text.contains("8.833 KiB"));
    assert!(text.contains("![fig1-throughput-vs-size](fig1-throughput-vs-size.png)"));
}

fn run_report(input: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_copytrace"))
        .arg("report")
        .arg(input)
        .arg("--out")
        .arg(out_dir("bad"))
        .output()
        .unwrap()
}

#[test]
fn bad_input_names_the_field_or_version() {
    let dir = out_dir("inputs");
    std::fs::create_dir_all(&dir).unwrap();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture()).unwrap()).unwrap();
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "old",
            {
                let mut d = doc.clone();
                d["schema_version"] = 0.into();
                d
            },
            "field `schema_version` is 0; this copytrace reads version 1",
        ),
        (
            "foreign",
            serde_json::json!({"schema": "iperf3"}),
            "field `schema` is \"iperf3\"",
        ),
        (
            "noschema",
            serde_json::json!({"records": []}),
            "field `schema` is \"missing\"",
        ),
        (
            "norecords",
            {
                let mut d = doc.clone();
                d.as_object_mut().unwrap().remove("records");
                d
            },
            "missing field `records`",
        ),
        (
            "empty",
            {
                doc["records"] = serde_json::json!([]);
                doc.clone()
            },
            "field `records` is empty",
        ),
    ];
    for (name, v, want) in cases {
        let p = dir.join(format!("{name}.json"));
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        let o = run_report(&p);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
    }
    let p = dir.join("garbage.json");
    std::fs::write(&p, b"not json").unwrap();
    let o = run_report(&p);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid JSON"));
    let o = run_report(&dir.join("missing.json"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.json"));
}

/// The page as a person sees it: headless Chromium renders index.html to a PNG, which must
/// show the figures (plenty of coloured ink, not a blank or error page).
#[test]
#[ignore = "needs Debian's chromium: run with `cargo xtask test`"]
fn report_page_renders_in_headless_chromium() {
    let (_, dir, out) = render_fixture("chromium");
    let shot = dir.join("screenshot.png");
    let profile = dir.join("chromium-profile");
    let o = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1200,5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", out.main.display()))
        .output()
        .expect("chromium is installed (Debian package chromium)");
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (w, h, inked) = inked_pixels(&shot);
    assert_eq!((w, h), (1200, 5000));
    // Text alone inks a few percent; the figures' lines, bars and grids add much more.
    assert!(
        inked > (w * h / 25) as usize,
        "only {inked} inked pixels of {}",
        w * h
    );
    // Colour: the plotted series (blue/red/green), not just black text on white.
    let coloured = decode(&shot)
        .2
        .iter()
        .filter(|p| {
            let (r, g, b) = (p[0] as i32, p[1] as i32, p[2] as i32);
            (r - g).abs() > 60 || (g - b).abs() > 60 || (r - b).abs() > 60
        })
        .count();
    assert!(coloured > 20_000, "only {coloured} coloured pixels");
}
