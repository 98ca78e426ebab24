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
//!
//! `fixtures/guest-{loopback,wire}.json` are unedited results of the guest test bed's
//! `guest_zero_copy_is_real_on_the_wire_and_deferred_on_loopback` (Debian 6.1, fentry tier,
//! QEMU TCG): the same stream cells over loopback and over two e1000 NICs on a QEMU hub.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

mod common;

use copytrace::{
    bench::results::BenchDocument,
    report::{self, Format, Options, compare},
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
        "fig1b-modes-vs-two-copy",
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

/// `page` rendered by headless Chromium (Debian's chromium) into a 1200 × `height` PNG.
fn screenshot(page: &Path, height: u32) -> PathBuf {
    let dir = page.parent().unwrap();
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
        ])
        .arg(format!("--window-size=1200,{height}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium is installed (Debian package chromium)");
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    shot
}

/// Pixels of clearly saturated colour: the plotted series, not black text on white.
fn coloured_pixels(png: &Path) -> usize {
    decode(png)
        .2
        .iter()
        .filter(|p| {
            let (r, g, b) = (p[0] as i32, p[1] as i32, p[2] as i32);
            (r - g).abs() > 60 || (g - b).abs() > 60 || (r - b).abs() > 60
        })
        .count()
}

/// The page as a person sees it: headless Chromium renders index.html to a PNG, which must
/// show the figures (plenty of coloured ink, not a blank or error page).
#[test]
#[ignore = "needs Debian's chromium: run with `cargo xtask test`"]
fn report_page_renders_in_headless_chromium() {
    let (_, _, out) = render_fixture("chromium");
    let shot = screenshot(&out.main, 5000);
    let (w, h, inked) = inked_pixels(&shot);
    assert_eq!((w, h), (1200, 5000));
    // Text alone inks a few percent; the figures' lines, bars and grids add much more.
    assert!(
        inked > (w * h / 25) as usize,
        "only {inked} inked pixels of {}",
        w * h
    );
    let coloured = coloured_pixels(&shot);
    assert!(coloured > 20_000, "only {coloured} coloured pixels");
}

/// The side-by-side page as a person sees it: the bars of both runs (red: copied later over
/// loopback, green: real zero-copy on the wire) are on screen.
#[test]
#[ignore = "needs Debian's chromium: run with `cargo xtask test`"]
fn comparison_page_renders_in_headless_chromium() {
    let inputs = ["loopback", "wire"].map(|n| compare::Input {
        path: guest_fixture(n),
        doc: report::load(&guest_fixture(n)).unwrap(),
    });
    let opts = Options {
        format: Format::Html,
        latency_size: None,
    };
    let out = compare::generate_comparison(&inputs, &out_dir("compare-chromium"), &opts).unwrap();
    let shot = screenshot(&out.main, 3800);
    let px = decode(&shot).2;
    let near = |c: [i32; 3]| {
        px.iter()
            .filter(|p| (0..3).all(|i| (p[i] as i32 - c[i]).abs() < 24))
            .count()
    };
    // The palette's red (copied later) and green (real zero-copy) bars, each well visible.
    let (red, green) = (near([0xd6, 0x27, 0x28]), near([0x2c, 0xa0, 0x2c]));
    assert!(
        red > 5_000 && green > 5_000,
        "red {red}, green {green} pixels"
    );
    assert!(coloured_pixels(&shot) > 20_000);
}

fn guest_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/guest-{name}.json"))
}

/// Both sides of the zero-copy distinction on one page, from real runs: every loopback
/// zero-copy byte was copied later (and the page says why), no wire byte was.
#[test]
fn loopback_and_wire_side_by_side_tell_deferred_from_real_zero_copy() {
    let inputs = ["loopback", "wire"].map(|n| compare::Input {
        path: guest_fixture(n),
        doc: report::load(&guest_fixture(n)).unwrap(),
    });
    for i in &inputs {
        assert_eq!(
            common::assert_byte_classes_add_up(&i.doc.records),
            i.doc.config.modes.len() * 2
        );
    }
    let dir = out_dir("compare");
    let opts = Options {
        format: Format::Html,
        latency_size: None,
    };
    let out = compare::generate_comparison(&inputs, &dir, &opts).unwrap();
    let [lo, wire] = &out.sides[..] else {
        panic!("{} sides", out.sides.len())
    };
    assert_eq!(lo.label, "loopback");
    assert_eq!(wire.label, "nics eth0 → eth1");
    for (side, real) in [(lo, false), (wire, true)] {
        let sizes: Vec<usize> = side.rows.iter().map(|r| r.size).collect();
        assert_eq!(sizes, [64 << 10, 1 << 20], "{}", side.label);
        for r in &side.rows {
            let what = format!("{} {} B", side.label, r.size);
            let copied = r.copied_fraction.unwrap();
            let classes = r.zero_copy_classes.unwrap();
            if real {
                assert!(copied < 0.05, "{what}: {copied}");
                assert!(classes[2] > 0.95, "{what}: real zero-copy {classes:?}");
                assert_eq!(r.cause, None, "{what}");
            } else {
                assert!(copied > 0.95, "{what}: {copied}");
                assert!(classes[1] > 0.95, "{what}: copied later {classes:?}");
                let cause = r.cause.as_deref().unwrap();
                assert!(
                    cause.starts_with("delivered to a local socket"),
                    "{what}: {cause}"
                );
            }
            assert!(r.zero_copy_gbps.unwrap() > 0.0 && r.two_copy_gbps.unwrap() > 0.0);
        }
        // Each run's own report, linked from the page.
        assert!(
            side.report.starts_with(&dir) && side.report.exists(),
            "{:?}",
            side.report
        );
    }
    assert!(lo.analysis.zero_copy.verdict.contains("deferred, not real"));
    assert!(wire.analysis.zero_copy.verdict.contains("was real"));

    let html = std::fs::read_to_string(&out.main).unwrap();
    // Q1 and Q5 answered once per run.
    for label in ["loopback", "nics eth0 → eth1"] {
        let n = html.matches(&format!("<p><b>{label}:</b>")).count();
        assert_eq!(n, 2, "{label}: Q1 and Q5");
    }
    assert!(html.contains("<td>100.0 %</td>") && html.contains("<td>0.0 %</td>"));
    assert!(html.contains("delivered to a local socket"));
    for name in [
        "cmp1-copied-fraction",
        "cmp2-where-bytes-went",
        "cmp3-throughput",
        "cmp4-cpu-cost",
    ] {
        let (w, h, inked) = inked_pixels(&dir.join(format!("{name}.png")));
        assert!(
            inked > (w * h / 200) as usize,
            "{name}: only {inked} inked pixels"
        );
        assert!(
            html.contains(&format!("<figure id=\"{name}\"><svg")),
            "{name} inlined"
        );
    }
    assert!(
        html.contains("href=\"run1-loopback/index.html\"")
            || html.contains("run1-loopback/index.html")
    );
}

/// The command line: several files make a comparison (Markdown here); one unreadable file
/// stops it with one line before anything is written.
#[test]
fn report_of_two_files_compares_and_a_bad_one_writes_nothing() {
    let dir = out_dir("compare-cli");
    let o = Command::new(env!("CARGO_BIN_EXE_copytrace"))
        .arg("report")
        .args([guest_fixture("wire"), guest_fixture("loopback")])
        .arg("--out")
        .arg(&dir)
        .args(["--format", "md"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        stdout.matches("zero-copy copied fraction 0.0 %").count(),
        2,
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("zero-copy copied fraction 100.0 %").count(),
        2,
        "{stdout}"
    );
    let md = std::fs::read_to_string(dir.join("analysis.md")).unwrap();
    assert!(md.contains("| 64 KiB | nics eth0 → eth1 | 0.0 % |"), "{md}");
    assert!(md.contains("| 64 KiB | loopback | 100.0 % |"), "{md}");
    assert!(md.contains("### Q5.") && md.contains("**loopback:**"));
    assert!(dir.join("run1-nics-eth0-eth1/analysis.md").exists());

    let bad = out_dir("compare-bad");
    let o = Command::new(env!("CARGO_BIN_EXE_copytrace"))
        .arg("report")
        .arg(guest_fixture("wire"))
        .arg(bad.join("missing.json"))
        .arg("--out")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("missing.json"), "{err}");
    assert!(!bad.exists(), "nothing written");
}
