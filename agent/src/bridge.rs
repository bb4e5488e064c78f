//! The result-to-event half of [`crate::perform`], shared by the agent's driver, the fleet
//! simulator and the fault tests so all turn network results into machine events the same way:
//! an error [`ErrorClass`] becomes the machine's [`FailureClass`], and a finished call becomes
//! the one completion [`Event`] its action expects.

use ucupdate_protocol::{CheckResponse, FileName};

use crate::machine::{CatalogVerdict, DownloadFailure, DownloadedFile, Event, FailureClass};
use crate::net::{self, ErrorClass, NetError};

/// How the machine schedules around a network failure class.
pub fn failure_class(class: ErrorClass) -> FailureClass {
    match class {
        ErrorClass::Dns => FailureClass::Dns,
        ErrorClass::Connect => FailureClass::Connect,
        ErrorClass::Tls => FailureClass::Tls,
        ErrorClass::Timeout => FailureClass::Timeout,
        // A connection that dies mid-exchange looks like an unreachable server to scheduling.
        ErrorClass::Transport => FailureClass::Connect,
        ErrorClass::Http4xx => FailureClass::Client4xx,
        ErrorClass::Http5xx => FailureClass::Server5xx,
        ErrorClass::Unauthorized => FailureClass::Unauthorized,
        ErrorClass::Protocol => FailureClass::Protocol,
        ErrorClass::HashMismatch => FailureClass::HashMismatch,
        ErrorClass::Io | ErrorClass::Config => FailureClass::Io,
    }
}

/// The `CheckDone` event for a finished check, and the error it was made from (for logs and
/// metrics: the event keeps only its class).
pub fn check_event(result: Result<CheckResponse, NetError>) -> (Event, Option<NetError>) {
    match result {
        Ok(response) => (Event::CheckDone(Ok(response)), None),
        Err(e) => (Event::CheckDone(Err(failure_class(e.class()))), Some(e)),
    }
}

/// The `DownloadDone` event for a finished download of `file_name`, and its error. A failure
/// keeps the bytes the net layer left on disk (for a ranged resume); a hash mismatch keeps none.
pub fn download_event(
    file_name: &FileName,
    result: Result<net::DownloadedFile, NetError>,
) -> (Event, Option<NetError>) {
    match result {
        Ok(done) => {
            let file = DownloadedFile {
                file_name: file_name.clone(),
                size: done.size,
                sha256: done.sha256,
                catalog: CatalogVerdict::NotChecked,
            };
            (Event::DownloadDone(Ok(file)), None)
        }
        Err(e) => (Event::DownloadDone(Err(download_failure(&e))), Some(e)),
    }
}

/// How a failed download is reported to the machine.
pub fn download_failure(error: &NetError) -> DownloadFailure {
    let class = failure_class(error.class());
    let bytes_kept = match class {
        FailureClass::HashMismatch => 0,
        _ => error.bytes_on_disk().unwrap_or(0),
    };
    DownloadFailure { class, bytes_kept }
}

/// The `LogUploaded` event for a finished log upload, and its error.
pub fn log_event(result: Result<(), NetError>) -> (Event, Option<NetError>) {
    match result {
        Ok(()) => (Event::LogUploaded(Ok(())), None),
        Err(e) => (Event::LogUploaded(Err(failure_class(e.class()))), Some(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_maps_and_the_outside_signals_survive() {
        for class in ErrorClass::ALL {
            let _ = failure_class(class);
        }
        assert!(failure_class(ErrorClass::Dns).suggests_outside());
        assert!(failure_class(ErrorClass::Connect).suggests_outside());
        assert!(!failure_class(ErrorClass::Unauthorized).suggests_outside());
        assert_eq!(failure_class(ErrorClass::Http5xx), FailureClass::Server5xx);
    }

    #[test]
    fn hash_mismatch_keeps_no_bytes_and_a_cut_keeps_its_bytes() {
        let name = FileName::new("CPE.nbt").unwrap();
        let cut = NetError::Partial {
            on_disk: 4096,
            cause: Box::new(NetError::Timeout {
                phase: net::TimeoutPhase::BodyIdle,
            }),
        };
        match download_event(&name, Err(cut)).0 {
            Event::DownloadDone(Err(f)) => {
                assert_eq!((f.class, f.bytes_kept), (FailureClass::Timeout, 4096))
            }
            other => panic!("{other:?}"),
        }
        let bad = NetError::SizeMismatch {
            expected: 1,
            actual: 2,
        };
        match download_event(&name, Err(bad)).0 {
            Event::DownloadDone(Err(f)) => {
                assert_eq!((f.class, f.bytes_kept), (FailureClass::HashMismatch, 0))
            }
            other => panic!("{other:?}"),
        }
    }
}
