//! The control socket: `state_dir/control.sock`, a unix socket (mode 0600: only the agent's
//! user may sign in or out) speaking one command per connection, one line each way:
//!
//! ```text
//! status                          -> ok {json StatusReport}
//! check-now                       -> ok
//! sign-in USER [INTERNAL|-] [EXTERNAL|-]
//! PASSWORD                        -> ok          (second line; empty = no password)
//! sign-out | activity | call-start | call-end -> ok
//! anything else                   -> error <why>
//! ```
//!
//! The optional URLs of `sign-in` stand for the in-band provisioning a real sign-in carries.
//! The password never appears in a reply or a log line.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use ucupdate_protocol::Provisioning;

use super::{Command, DriverError, StatusReport};
use crate::device::{Secret, SignIn};

/// The socket's file name in the state dir.
pub const CONTROL_SOCKET: &str = "control.sock";

/// Why a control command failed on the CLI side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No daemon listens on the socket.
    #[error("no agent is running ({path}: {error})")]
    NotRunning {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("control socket: {0}")]
    Io(std::io::Error),
    /// The daemon refused the command.
    #[error("the agent refused: {0}")]
    Refused(String),
}

/// The serving task; dropping it stops serving and removes the socket file.
pub(super) struct ControlServer {
    task: JoinHandle<()>,
    path: PathBuf,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

pub(super) async fn serve(
    state_dir: &Path,
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<StatusReport>,
) -> Result<ControlServer, DriverError> {
    let path = state_dir.join(CONTROL_SOCKET);
    // A socket left by a killed agent would make bind fail; a live agent would answer.
    if UnixStream::connect(&path).await.is_err() {
        let _ = tokio::fs::remove_file(&path).await;
    }
    let io = |what| {
        let path = path.clone();
        move |source| DriverError::Io {
            what,
            path,
            error: source,
        }
    };
    let listener = UnixListener::bind(&path).map_err(io("bind"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(io("chmod"))?;
    }
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let commands = commands.clone();
            let status = status.clone();
            tokio::spawn(async move {
                if let Err(e) = connection(stream, commands, status).await {
                    tracing::debug!(error = %e, "control connection");
                }
            });
        }
    });
    Ok(ControlServer { task, path })
}

async fn connection(
    stream: UnixStream,
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<StatusReport>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(64 * 1024)).lines();
    let first = lines.next_line().await?.unwrap_or_default();
    let mut words = first.split_whitespace();
    let verb = words.next().unwrap_or("");
    let command = match verb {
        "status" => {
            let json = serde_json::to_string(&*status.borrow()).unwrap_or_default();
            write.write_all(format!("ok {json}\n").as_bytes()).await?;
            return Ok(());
        }
        "check-now" => Ok(Command::CheckNow),
        "sign-out" => Ok(Command::SignOut),
        "activity" => Ok(Command::Activity),
        "call-start" => Ok(Command::CallStarted),
        "call-end" => Ok(Command::CallEnded),
        "sign-in" => match words.next() {
            None => Err("sign-in needs a user".to_owned()),
            Some(user) => {
                let url = |w: Option<&str>| w.filter(|u| *u != "-").map(str::to_owned);
                let (internal, external) = (url(words.next()), url(words.next()));
                let provisioning =
                    (internal.is_some() || external.is_some()).then_some(Provisioning {
                        enabled: true,
                        internal_url: internal,
                        external_url: external,
                    });
                let password = lines.next_line().await?.unwrap_or_default();
                Ok(Command::SignIn {
                    signin: SignIn {
                        user: user.to_owned(),
                        password: (!password.is_empty()).then(|| Secret::new(password)),
                    },
                    provisioning,
                })
            }
        },
        other => Err(format!("unknown command {other:?}")),
    };
    let reply = match command {
        Ok(command) => {
            if commands.send(command).is_ok() {
                "ok\n".to_owned()
            } else {
                "error the agent is stopping\n".to_owned()
            }
        }
        Err(why) => format!("error {why}\n"),
    };
    write.write_all(reply.as_bytes()).await
}

/// Sends one command (its lines) to the agent whose state dir is `state_dir` and returns the
/// text after `ok`.
pub async fn send_command(state_dir: &Path, lines: &[&str]) -> Result<String, ControlError> {
    let path = state_dir.join(CONTROL_SOCKET);
    let mut stream =
        UnixStream::connect(&path)
            .await
            .map_err(|source| ControlError::NotRunning {
                path: path.clone(),
                error: source,
            })?;
    let mut request = String::new();
    for line in lines {
        request.push_str(line);
        request.push('\n');
    }
    stream.write_all(request.as_bytes()).await?;
    stream.shutdown().await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    let reply = reply.trim_end();
    if let Some(rest) = reply.strip_prefix("ok") {
        Ok(rest.trim_start().to_owned())
    } else {
        Err(ControlError::Refused(
            reply.strip_prefix("error ").unwrap_or(reply).to_owned(),
        ))
    }
}

// By hand, not `#[from]`: the message carries the cause already, and a `source` would print
// it twice in a `{:#}` chain.
impl From<std::io::Error> for ControlError {
    fn from(error: std::io::Error) -> Self {
        ControlError::Io(error)
    }
}
