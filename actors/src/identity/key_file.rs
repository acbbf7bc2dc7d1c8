//! Where the node's key pair is kept: a file beside the database (`<database>.node-key`), mode
//! 0600, or — for an in-memory database — only in memory for the life of the process.
//!
//! Why a file and not a `node_meta` row: the database is copied, inspected and attached to bug
//! reports, and SQLite creates it with the umask's mode; a secret in it would travel with every
//! copy. A separate file can be held to "owner only" (checked at every start, like ssh does) and
//! backed up or rotated on its own. The database records the key's id (`node_key_id`), so a key
//! file that goes missing or is swapped is noticed instead of silently giving the node a new
//! identity (see `src/node.rs`).
//!
//! The file is JSON: `{"alg":"ed25519","secret_key":<base64url seed>,"public_key":<base64url>,
//! "created_at":<RFC 3339>}`; the public key is checked against the seed when read.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::{KeyError, NodeKey};
use crate::clock::Timestamp;

/// The suffix appended to the database path.
pub const KEY_FILE_SUFFIX: &str = ".node-key";

/// Permission bits a key file may not have: any access for group or others.
const FORBIDDEN_MODE_BITS: u32 = 0o077;

/// Where the key pair lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyStore {
    /// In memory only (an in-memory database): a new key each start.
    Memory,
    /// A 0600 file.
    File(PathBuf),
}

/// What is wrong with a key file's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedKey {
    #[error("not a node key document (JSON with alg, secret_key, public_key, created_at)")]
    NotAKeyDocument,
    #[error("unsupported key algorithm (only ed25519)")]
    UnsupportedAlg,
    #[error("secret_key is not 32 bytes of base64url")]
    SecretKey,
    #[error("public_key does not match secret_key")]
    PublicKeyMismatch,
    #[error("created_at is not an RFC 3339 timestamp")]
    CreatedAt,
}

/// Why the key could not be loaded or created. Every variant names the file: these end node
/// start-up (stderr), never an HTTP body.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "node key file {} has mode {mode:04o}: it must be readable by its owner only (chmod 600 {})",
        path.display(), path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("node key file {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("node key file {}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("node key file {}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: MalformedKey },
    #[error("node key file {}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("node key: {0}")]
    Key(#[from] KeyError),
}

/// A key pair and when it was made.
#[derive(Clone, Debug)]
pub struct StoredKey {
    pub key: NodeKey,
    pub created_at: Timestamp,
    /// Whether it was made by this call (a first start).
    pub created: bool,
}

/// The on-disk document.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyDocument {
    alg: String,
    secret_key: String,
    public_key: String,
    created_at: String,
}

impl KeyStore {
    /// The key file of the database at `database_path`.
    pub fn beside(database_path: &str) -> KeyStore {
        KeyStore::File(PathBuf::from(format!("{database_path}{KEY_FILE_SUFFIX}")))
    }

    /// The file, if the key lives in one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            KeyStore::Memory => None,
            KeyStore::File(path) => Some(path),
        }
    }

    /// Reads the key if there is one (`None`: no file yet, or an in-memory store).
    pub fn load(&self) -> Result<Option<StoredKey>, KeyFileError> {
        let KeyStore::File(path) = self else { return Ok(None) };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(KeyFileError::Read { path: path.clone(), source }),
        };
        // The mode of the file that was opened (not of whatever the path names later).
        let meta = file.metadata().map_err(|source| KeyFileError::Read { path: path.clone(), source })?;
        if !meta.is_file() {
            return Err(KeyFileError::NotAFile { path: path.clone() });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & FORBIDDEN_MODE_BITS != 0 {
            return Err(KeyFileError::Permissions { path: path.clone(), mode });
        }
        let text = std::io::read_to_string(file).map_err(|source| KeyFileError::Read { path: path.clone(), source })?;
        let (key, created_at) =
            decode(&text).map_err(|reason| KeyFileError::Malformed { path: path.clone(), reason })?;
        Ok(Some(StoredKey { key, created_at, created: false }))
    }

    /// Reads the key, or makes one (see [`KeyStore::create`]) if none exists.
    pub fn load_or_create(&self) -> Result<StoredKey, KeyFileError> {
        match self.load()? {
            Some(stored) => Ok(stored),
            None => self.create(),
        }
    }

    /// Makes a new key pair and, for a file, writes it 0600 and durably (refused if the file
    /// appeared meanwhile: a key is never overwritten).
    pub fn create(&self) -> Result<StoredKey, KeyFileError> {
        let stored = StoredKey { key: NodeKey::generate()?, created_at: Timestamp::now(), created: true };
        if let KeyStore::File(path) = self {
            write_new(path, &encode(&stored.key, &stored.created_at))
                .map_err(|source| KeyFileError::Write { path: path.clone(), source })?;
        }
        Ok(stored)
    }
}

fn encode(key: &NodeKey, created_at: &Timestamp) -> String {
    let document = KeyDocument {
        alg: super::ALG_ED25519.to_owned(),
        secret_key: URL_SAFE_NO_PAD.encode(key.seed()),
        public_key: key.public_key().to_base64url(),
        created_at: created_at.to_string(),
    };
    // Serialising a struct of strings cannot fail; an empty document would be refused on read.
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

fn decode(text: &str) -> Result<(NodeKey, Timestamp), MalformedKey> {
    let document: KeyDocument = serde_json::from_str(text).map_err(|_| MalformedKey::NotAKeyDocument)?;
    if document.alg != super::ALG_ED25519 {
        return Err(MalformedKey::UnsupportedAlg);
    }
    let seed = URL_SAFE_NO_PAD.decode(document.secret_key.trim()).map_err(|_| MalformedKey::SecretKey)?;
    let seed: [u8; 32] = seed.try_into().map_err(|_| MalformedKey::SecretKey)?;
    let key = NodeKey::from_seed(&seed);
    if key.public_key().to_base64url() != document.public_key.trim() {
        return Err(MalformedKey::PublicKeyMismatch);
    }
    let created_at = Timestamp::parse(&document.created_at).map_err(|_| MalformedKey::CreatedAt)?;
    Ok((key, created_at))
}

/// Writes `text` to a fresh temporary file created 0600, fsyncs it, links it into place and
/// fsyncs the directory: a crash leaves either no key file or a whole one.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    // A leftover from a crash before the rename holds a key never used: replace it.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    // The umask may only remove bits; set them explicitly anyway.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    // hard_link + remove instead of rename: it fails rather than replace an existing key file.
    let linked = std::fs::hard_link(&tmp, path);
    std::fs::remove_file(&tmp)?;
    linked?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn store_in(dir: &tempfile::TempDir) -> KeyStore {
        KeyStore::beside(&dir.path().join("node.db").display().to_string())
    }

    #[test]
    fn a_first_start_creates_an_owner_only_file_and_the_next_reads_it() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = store_in(&dir);
        let first = store.load_or_create()?;
        assert!(first.created);
        let path = store.path().ok_or("file store")?;
        assert_eq!(path.file_name().and_then(|n| n.to_str()), Some("node.db.node-key"));
        assert_eq!(std::fs::metadata(path)?.permissions().mode() & 0o777, 0o600);
        let again = store.load_or_create()?;
        assert!(!again.created);
        assert_eq!(again.key.public_key(), first.key.public_key());
        assert_eq!(again.created_at, first.created_at);
        Ok(())
    }

    #[test]
    fn memory_keys_are_never_written() -> TestResult {
        assert!(KeyStore::Memory.load()?.is_none());
        let a = KeyStore::Memory.load_or_create()?;
        assert!(a.created);
        Ok(())
    }

    #[test]
    fn group_or_other_access_is_refused_naming_the_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = store_in(&dir);
        store.load_or_create()?;
        let path = store.path().ok_or("file store")?.to_path_buf();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            let err = store.load().err().ok_or("must refuse")?;
            assert!(matches!(err, KeyFileError::Permissions { mode: m, .. } if m == mode), "{err}");
            assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))?;
        assert!(store.load()?.is_some(), "read-only for the owner is fine");
        Ok(())
    }

    #[test]
    fn bad_content_is_refused_with_its_reason() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = store_in(&dir);
        let path = store.path().ok_or("file store")?.to_path_buf();
        let good = encode(&NodeKey::from_seed(&[1; 32]), &Timestamp::now());
        let other_public = NodeKey::from_seed(&[2; 32]).public_key().to_base64url();
        let table = [
            ("garbage".to_owned(), MalformedKey::NotAKeyDocument),
            (good.replace("\"ed25519\"", "\"rsa\""), MalformedKey::UnsupportedAlg),
            (good.replace(&URL_SAFE_NO_PAD.encode([1u8; 32]), "AAAA"), MalformedKey::SecretKey),
            (
                good.replace(&NodeKey::from_seed(&[1; 32]).public_key().to_base64url(), &other_public),
                MalformedKey::PublicKeyMismatch,
            ),
        ];
        for (text, reason) in table {
            std::fs::write(&path, text)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            match store.load() {
                Err(KeyFileError::Malformed { reason: r, path: p }) => {
                    assert_eq!(r, reason);
                    assert_eq!(p, path);
                }
                other => return Err(format!("expected {reason:?}, got {other:?}").into()),
            }
        }
        Ok(())
    }
}
