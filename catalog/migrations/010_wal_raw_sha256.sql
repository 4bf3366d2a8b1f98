-- The SHA-256 of a WAL segment's plaintext, beside the stored (encrypted) one. age encrypts with a
-- fresh key each time, so the same segment uploaded twice (pg_receivewal streams again from its
-- slot after a restart, up to a segment behind) never has the same stored SHA-256: only this one
-- tells a harmless second upload from a segment whose content really differs.
ALTER TABLE wal_segment ADD COLUMN raw_sha256 text CHECK (raw_sha256 ~ '^[0-9a-f]{64}$');
