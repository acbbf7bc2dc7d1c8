-- A peer's pinned public key (base64url ed25519) and its key id (RFC 7638 thumbprint): given at
-- registration or pinned at the first successful sync; only an explicit re-pin changes it.
ALTER TABLE peers ADD COLUMN public_key TEXT;
ALTER TABLE peers ADD COLUMN key_id TEXT;
