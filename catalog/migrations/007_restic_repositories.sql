-- A volume service's restic repositories, one row per generation. A repository that cannot be
-- opened any more (a damaged config or key, an init that did not finish) is never written to
-- again: it is marked failed, and the next backup starts generation + 1 under a new prefix
-- with a full backup. Older generations stay readable for restore as long as they open.
-- key_id pins restic's --key-hint: restic 0.14 opens the first key the password fits, and a
-- prefix that somehow holds a second key would otherwise be opened with the wrong one.
CREATE TABLE restic_repository (
    tenant_id      uuid NOT NULL,
    service_name   varchar(100) NOT NULL CHECK (service_name ~ '^[a-z0-9][a-z0-9_.-]*$'),
    generation     integer NOT NULL CHECK (generation > 0),
    storage_bucket text NOT NULL CHECK (storage_bucket <> ''),
    storage_prefix text NOT NULL CHECK (storage_prefix ~ '/g[0-9]+/$'),
    repository_id  text CHECK (repository_id ~ '^[0-9a-f]{64}$'),
    key_id         text CHECK (key_id ~ '^[0-9a-f]{64}$'),
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'failed')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    failed_at      timestamptz,
    failure        text,
    PRIMARY KEY (tenant_id, service_name, generation),
    CHECK (status <> 'active' OR (repository_id IS NOT NULL AND key_id IS NOT NULL)),
    CHECK (status <> 'failed' OR (failed_at IS NOT NULL AND failure IS NOT NULL))
);

-- At most one generation of a service is written to.
CREATE UNIQUE INDEX restic_repository_one_active ON restic_repository (tenant_id, service_name) WHERE status = 'active';

REVOKE ALL ON restic_repository FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON restic_repository TO kryonix_dr_writer;
GRANT SELECT ON restic_repository TO kryonix_dr_reader;
