//! `copytrace report`: a bench result file turned into figures, a self-contained HTML page and
//! the original study's analysis questions answered from the data.
pub mod analysis;
mod charts;
pub mod classes;
pub mod compare;
pub mod figures;
mod page;
mod single;

use std::path::{Path, PathBuf};

use crate::bench::results::{BenchDocument, SCHEMA, SCHEMA_VERSION};
use analysis::{Analysis, analyze};
use figures::Figure;
use page::Rendered;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a copytrace bench result: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("{path}: field `schema` is {found:?}, expected \"{SCHEMA}\" (is this a bench result?)")]
    Schema { path: PathBuf, found: String },
    #[error(
        "{path}: field `schema_version` is {found}; this copytrace reads version {SCHEMA_VERSION} (re-run the bench with this version)"
    )]
    Version { path: PathBuf, found: u64 },
    #[error("{path}: field `records` is empty: nothing to report")]
    Empty { path: PathBuf },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rendering figure {figure}: {msg}")]
    Figure { figure: String, msg: String },
}

/// Load and validate a bench result: schema name and version are checked before the body, so
/// an old or foreign file gets a sentence about that, not a parse error deep inside.
pub fn load(path: &Path) -> Result<BenchDocument, ReportError> {
    let text = std::fs::read(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| ReportError::Parse {
        path: path.to_path_buf(),
        msg: format!("invalid JSON: {e}"),
    })?;
    match v.get("schema").and_then(|s| s.as_str()) {
        Some(SCHEMA) => {}
        other => {
            return Err(ReportError::Schema {
                path: path.to_path_buf(),
                found: other.map_or_else(|| "missing".into(), str::to_string),
            });
        }
    }
    match v.get("schema_version").and_then(|s| s.as_u64()) {
        Some(n) if n == u64::from(SCHEMA_VERSION) => {}
        Some(n) => {
            return Err(ReportError::Version {
                path: path.to_path_buf(),
                found: n,
            });
        }
        None => {
            return Err(ReportError::Parse {
                path: path.to_path_buf(),
                msg: "field `schema_version` is missing or not a number".into(),
            });
        }
    }
    let doc: BenchDocument = serde_json::from_value(v).map_err(|e| ReportError::Parse {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    if doc.records.is_empty() {
        return Err(ReportError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(doc)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Html,
    Md,
}

pub struct Options {
    pub format: Format,
    /// Message size for the latency distribution figure (default: the smallest measured).
    pub latency_size: Option<usize>,
}

/// What was written.
pub struct Output {
    pub main: PathBuf,
    pub figures: Vec<PathBuf>,
    pub analysis: Analysis,
}

/// A figure of the page: drawn, or absent with the reason.
struct Built {
    name: &'static str,
    caption: String,
    figure: Option<Figure>,
    /// Why the figure is absent (instead of an empty plot).
    absent: Option<String>,
}

fn create_dir(out: &Path) -> Result<(), ReportError> {
    std::fs::create_dir_all(out).map_err(|source| ReportError::Write {
        path: out.to_path_buf(),
        source,
    })
}

/// Draw each figure into `out` (SVG and PNG); the written files are appended to `files`.
fn render(
    built: Vec<Built>,
    out: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<Vec<Rendered>, ReportError> {
    let mut figs = Vec::new();
    for b in built {
        let svg = match &b.figure {
            Some(f) => {
                let stem = out.join(b.name);
                let svg = figures::render(&stem, f).map_err(|msg| ReportError::Figure {
                    figure: b.name.to_string(),
                    msg,
                })?;
                files.push(stem.with_extension("svg"));
                files.push(stem.with_extension("png"));
                Some(svg)
            }
            None => None,
        };
        figs.push((b, svg));
    }
    Ok(figs)
}

/// Write the page atomically: a reader never sees half of it.
fn write_page(path: &Path, text: &str) -> Result<(), ReportError> {
    crate::files::write_atomic(path, text.as_bytes()).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The page's file name for `format`.
fn page_name(format: Format) -> &'static str {
    match format {
        Format::Html => "index.html",
        Format::Md => "analysis.md",
    }
}

/// Render every figure and the page (or Markdown) into `out`.
pub fn generate(doc: &BenchDocument, out: &Path, opts: &Options) -> Result<Output, ReportError> {
    create_dir(out)?;
    let analysis = analyze(doc);
    let mut files = Vec::new();
    let figs = render(single::build_figures(doc, opts), out, &mut files)?;
    let text = match opts.format {
        Format::Html => page::html(doc, &figs, &analysis),
        Format::Md => page::markdown(doc, &figs, &analysis),
    };
    let main = out.join(page_name(opts.format));
    write_page(&main, &text)?;
    Ok(Output {
        main,
        figures: files,
        analysis,
    })
}
