//! Where a report goes: the JSON report, the HTML page and the JUnit document at the paths the
//! user gave (`-`: standard output, at most one of them), and the text summary on stdout, or
//! on stderr when a report took stdout (so that stdout pipes into `jq` alone).

use std::io::Write as _;
use std::path::PathBuf;

use super::{html, junit, text, Report};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{0} cannot all go to standard output")]
    SharedStdout(String),
    #[error("writing {path}: {error}")]
    Write { path: String, error: std::io::Error },
}

/// The outputs a run or a merge asked for.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub json: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub junit: Option<PathBuf>,
}

/// Turns a report into one output's text.
type Renderer = fn(&Report) -> String;

fn is_stdout(path: Option<&PathBuf>) -> bool {
    path.is_some_and(|p| p.as_os_str() == "-")
}

impl Outputs {
    /// Refuses two outputs on standard output before any run (a usage mistake must not cost a
    /// whole fleet's run).
    pub fn check(&self) -> Result<(), OutputError> {
        let on_stdout: Vec<&str> = [
            ("--report -", &self.json),
            ("--html -", &self.html),
            ("--junit -", &self.junit),
        ]
        .into_iter()
        .filter(|(_, p)| is_stdout(p.as_ref()))
        .map(|(name, _)| name)
        .collect();
        if on_stdout.len() > 1 {
            return Err(OutputError::SharedStdout(on_stdout.join(" and ")));
        }
        Ok(())
    }

    fn summary_on_stderr(&self) -> bool {
        [&self.json, &self.html, &self.junit]
            .iter()
            .any(|p| is_stdout(p.as_ref()))
    }

    /// Writes every requested report, then the summary.
    pub fn write(&self, report: &Report) -> Result<(), OutputError> {
        self.check()?;
        let renderers: [(&Option<PathBuf>, Renderer); 3] = [
            (&self.json, json),
            (&self.html, html::render),
            (&self.junit, junit::render),
        ];
        for (path, render) in renderers {
            if let Some(path) = path {
                write_to(path, render(report))?;
            }
        }
        let summary = text::render(report);
        if self.summary_on_stderr() {
            eprint!("{summary}");
        } else {
            print!("{summary}");
        }
        Ok(())
    }
}

/// The JSON report (a report always serializes: its maps have string keys).
fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_default()
}

fn write_to(path: &PathBuf, mut text: String) -> Result<(), OutputError> {
    let error = |error| OutputError::Write {
        path: path.display().to_string(),
        error,
    };
    if is_stdout(Some(path)) {
        text.push('\n');
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(error)
    } else {
        std::fs::write(path, text).map_err(error)
    }
}
