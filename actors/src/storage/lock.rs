//! One node per database: an exclusive `flock` on a file beside the database
//! (`<database>.lock`), taken before the node does anything with it — recovery, the sweep of
//! process groups left by a previous run, binding — and held for the life of the process. A
//! second node on the same database would otherwise take the first one's live tasks for a
//! crashed run's: fail them `interrupted` and kill their agents.
//!
//! The file holds the holder's pid, for the message a refused node prints. The lock is the
//! `flock`, not the file: the kernel drops it when the holder exits however it exits (`kill -9`
//! included), and the file stays (removing it would let a node lock a new file while another
//! holds the old one). An in-memory database is private to its process and needs no lock.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use super::DatabaseLocation;

/// The suffix appended to the database path.
pub const LOCK_FILE_SUFFIX: &str = ".lock";

/// The database's lock, held until dropped.
#[derive(Debug)]
pub struct DatabaseLock {
    /// The open lock file: the `flock` lives as long as this descriptor.
    _file: File,
    /// For logs.
    path: PathBuf,
}

/// Who holds a lock, as its file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockHolder {
    Pid(u32),
    /// The file names no pid (the holder is between taking the lock and writing it).
    Unknown,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockHolder::Pid(pid) => write!(f, "pid {pid}"),
            LockHolder::Unknown => f.write_str("pid unknown"),
        }
    }
}

/// Why the lock could not be taken. These end node start-up (stderr), never an HTTP body.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseLockError {
    #[error(
        "database {database} is in use by another alink-node ({holder}; lock file {}): stop that node first, or give this one another --database",
        path.display()
    )]
    Held { database: String, holder: LockHolder, path: PathBuf },
    #[error("database {database}: cannot lock {}: {source}", path.display())]
    Io { database: String, path: PathBuf, source: std::io::Error },
}

impl DatabaseLock {
    /// Takes the lock of the database at `location` (`None` for an in-memory database), or
    /// says who holds it. Never waits.
    pub fn acquire(location: &DatabaseLocation) -> Result<Option<DatabaseLock>, DatabaseLockError> {
        let DatabaseLocation::File(database) = location else { return Ok(None) };
        let path = PathBuf::from(format!("{database}{LOCK_FILE_SUFFIX}"));
        let io = |source| DatabaseLockError::Io { database: database.clone(), path: path.clone(), source };
        if let Some(parent) = Path::new(database).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        // Not truncated on open: a refused node must still read the holder's pid.
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = holder_of(&mut file);
                return Err(DatabaseLockError::Held { database: database.clone(), holder, path });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Some(DatabaseLock { _file: file, path }))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid a lock file names.
fn holder_of(file: &mut File) -> LockHolder {
    let mut text = String::new();
    match file.read_to_string(&mut text) {
        Ok(_) => text.trim().parse().map_or(LockHolder::Unknown, LockHolder::Pid),
        Err(_) => LockHolder::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_naming_the_holder() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("sub/node.db").display().to_string();
        let location = DatabaseLocation::File(db.clone());
        let held = DatabaseLock::acquire(&location)?.ok_or("a file database is locked")?;
        assert_eq!(std::fs::read_to_string(held.path())?, format!("{}\n", std::process::id()));
        // flock locks belong to the open file: a second open in this process conflicts too.
        match DatabaseLock::acquire(&location) {
            Err(DatabaseLockError::Held { database, holder, path }) => {
                assert_eq!(
                    (database.as_str(), holder, path.as_path()),
                    (db.as_str(), LockHolder::Pid(std::process::id()), held.path())
                );
            }
            other => return Err(format!("expected Held, got {other:?}").into()),
        }
        drop(held);
        assert!(DatabaseLock::acquire(&location)?.is_some(), "free again once the holder let go");
        assert!(DatabaseLock::acquire(&DatabaseLocation::Memory)?.is_none());
        Ok(())
    }

    #[test]
    fn the_refusal_names_database_and_pid() {
        let e = DatabaseLockError::Held {
            database: "/d/node.db".into(),
            holder: LockHolder::Pid(42),
            path: "/d/node.db.lock".into(),
        };
        assert_eq!(
            e.to_string(),
            "database /d/node.db is in use by another alink-node (pid 42; lock file /d/node.db.lock): stop that node first, or give this one another --database"
        );
        assert_eq!(LockHolder::Unknown.to_string(), "pid unknown");
    }
}
